//! GS1 helpers: mod-10 check digits, GTIN and SSCC, GS1 Digital Link URIs, EPC URNs.
//!
//! Sources: GS1 General Specifications (check digit, GTIN, SSCC, the AI formats and their dates
//! as the GS1 Barcode Syntax Dictionary breaks them into components, CSET 82),
//! GS1 Digital Link URI syntax (path order, query data attributes, percent-encoding) and the
//! GS1 EPC Tag Data Standard (SGTIN and SSCC pure identity URNs and their escaping).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gs1Error(pub String);

impl fmt::Display for Gs1Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, Gs1Error> {
    Err(Gs1Error(msg.into()))
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Mod-10 check digit of `data`: weights 3,1,3,... from the rightmost data digit.
pub fn check_digit(data: &str) -> Result<u8, Gs1Error> {
    if !all_digits(data) || data.len() > 17 {
        return err("check digit input must be 1 to 17 digits");
    }
    Ok(check_digit_of(data.as_bytes()))
}

fn check_digit_of(digits: &[u8]) -> u8 {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| (d - b'0') as u32 * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// Whether the last digit of an all-digit string is its check digit.
fn check_ok(digits: &str) -> bool {
    let b = digits.as_bytes();
    let (data, check) = b.split_at(b.len() - 1);
    check_digit_of(data) == check[0] - b'0'
}

/// Validates a GTIN-8/12/13/14 (digits, length, check digit, not all zeros) and returns it as
/// 14 digits.
pub fn normalize_gtin(gtin: &str) -> Result<String, Gs1Error> {
    if !all_digits(gtin) {
        return err("GTIN must be digits only");
    }
    if ![8, 12, 13, 14].contains(&gtin.len()) {
        return err("GTIN must have 8, 12, 13 or 14 digits");
    }
    if !check_ok(gtin) {
        return err("GTIN check digit is wrong");
    }
    // all zeros passes the check digit but GS1 allocates no such GTIN: ERPs write it for "no
    // barcode", and stored it became every such product's (a probe: duplicate_gtin thereafter)
    if gtin.bytes().all(|b| b == b'0') {
        return err("GTIN must not be all zeros");
    }
    Ok(format!("{gtin:0>14}"))
}

pub fn is_valid_gtin(gtin: &str) -> bool {
    normalize_gtin(gtin).is_ok()
}

fn check_company_prefix(prefix: &str) -> Result<(), Gs1Error> {
    if !all_digits(prefix) || !(6..=12).contains(&prefix.len()) {
        return err("company prefix must be 6 to 12 digits");
    }
    Ok(())
}

/// SSCC-18: extension digit + company prefix + serial reference (zero-padded to 16 digits in
/// all with the prefix) + check digit.
pub fn build_sscc(
    extension: u32,
    company_prefix: &str,
    serial_ref: u64,
) -> Result<String, Gs1Error> {
    if extension > 9 {
        return err("SSCC extension digit must be 0 to 9");
    }
    check_company_prefix(company_prefix)?;
    let width = 16 - company_prefix.len();
    let body = format!("{extension}{company_prefix}{serial_ref:0>width$}");
    if body.len() != 17 {
        return err(format!(
            "serial reference must be below 10^{width} for this company prefix"
        ));
    }
    let check = check_digit_of(body.as_bytes());
    Ok(format!("{body}{check}"))
}

pub fn validate_sscc(sscc: &str) -> Result<(), Gs1Error> {
    if !all_digits(sscc) || sscc.len() != 18 {
        return err("SSCC must be 18 digits");
    }
    if !check_ok(sscc) {
        return err("SSCC check digit is wrong");
    }
    Ok(())
}

pub fn is_valid_sscc(sscc: &str) -> bool {
    validate_sscc(sscc).is_ok()
}

/// GS1 AI encodable character set 82.
fn is_cset82(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!\"%&'()*+,-./:;<=>?_".contains(&b)
}

fn check_cset82(ai: &str, value: &str, max: usize) -> Result<(), Gs1Error> {
    if value.is_empty() || value.len() > max {
        return err(format!("AI {ai} must have 1 to {max} characters"));
    }
    if !value.bytes().all(is_cset82) {
        return err(format!("AI {ai} has a character outside GS1 CSET 82"));
    }
    Ok(())
}

/// A date YYMMDD (`day_zero`: DD may be 00, "end of the month", GS1 linter `yymmd0`): a
/// calendar date of the year that GS1's sliding window gives the two digits (`now`: this year).
fn date_ok(d: &[u8], day_zero: bool, now: i64) -> bool {
    let two = |i: usize| i64::from(d[i] - b'0') * 10 + i64::from(d[i + 1] - b'0');
    if d.len() != 6 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let (year, month, day) = (full_year(two(0), now), two(2), two(4));
    let last = match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return false,
    };
    (day >= 1 || day_zero) && day <= last
}

/// The year of a two-digit year YY by the GS1 General Specifications' sliding window (7.12):
/// YY 51 to 99 above this year's is of the previous century, 50 to 99 below of the next one,
/// else of this century.
fn full_year(yy: i64, now: i64) -> i64 {
    let (century, this) = (now - now.rem_euclid(100), now.rem_euclid(100));
    match yy - this {
        51..=99 => century - 100 + yy,
        -99..=-50 => century + 100 + yy,
        _ => century + yy,
    }
}

/// This year (UTC).
fn current_year() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    year_of_day(i64::try_from(secs / 86_400).unwrap_or(0))
}

/// The civil year of a day counted from 1970-01-01 (the inverse of Howard Hinnant's
/// `days_from_civil`, up to the year).
fn year_of_day(days: i64) -> i64 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let march_based_month = (5 * doy + 2) / 153; // 0 = March .. 11 = February
    yoe + era * 400 + i64::from(march_based_month >= 10)
}

/// The character set of a component of an AI's value (General Specifications 7.11): digits,
/// CSET 82, CSET 39, CSET 64 (the file-safe base64 of a digital signature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Set {
    N,
    X,
    Y,
    Z,
}

/// The content checks of the GS1 Syntax Dictionary ("linters") made here beyond the character
/// set: the cheap ones that decide whether a value means anything (check digits, dates, times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lint {
    No,
    Csum,
    Yymmd0,
    Yymmdd,
    Yymmddhh,
    Hhmm,
    Mmoptss,
    Zero,
    Hyphen,
}

impl Lint {
    /// How a date or time component is written, for an error message.
    fn pattern(self) -> Option<&'static str> {
        match self {
            Lint::Yymmd0 | Lint::Yymmdd => Some("YYMMDD"),
            Lint::Yymmddhh => Some("YYMMDDHH"),
            Lint::Hhmm => Some("HHMM"),
            Lint::Mmoptss => Some("MM[SS]"),
            _ => None,
        }
    }
}

/// One component of an AI's format: `N6` is `fix(N, 6)`, `X..20` `upto(X, 20)`, `[N..4]`
/// `opt(upto(N, 4))`. Only the last component (or the last one before an optional one) may
/// vary in length, as in every GS1 format.
#[derive(Debug, Clone, Copy)]
struct Part {
    set: Set,
    min: u8,
    max: u8,
    optional: bool,
    lint: Lint,
}

const fn fix(set: Set, len: u8) -> Part {
    Part {
        set,
        min: len,
        max: len,
        optional: false,
        lint: Lint::No,
    }
}

const fn upto(set: Set, max: u8) -> Part {
    Part {
        set,
        min: 1,
        max,
        optional: false,
        lint: Lint::No,
    }
}

const fn lint(part: Part, lint: Lint) -> Part {
    Part { lint, ..part }
}

const fn opt(part: Part) -> Part {
    Part {
        optional: true,
        ..part
    }
}

use Set::{N, X, Y, Z};

const N1: &[Part] = &[fix(N, 1)];
const N2: &[Part] = &[fix(N, 2)];
const N3: &[Part] = &[fix(N, 3)];
const N4: &[Part] = &[fix(N, 4)];
const N6: &[Part] = &[fix(N, 6)];
const N13: &[Part] = &[fix(N, 13)];
const N14: &[Part] = &[fix(N, 14)];
const N20: &[Part] = &[fix(N, 10), fix(N, 10)];
const N13_CSUM: &[Part] = &[lint(fix(N, 13), Lint::Csum)];
const N14_CSUM: &[Part] = &[lint(fix(N, 14), Lint::Csum)];
const N17_CSUM: &[Part] = &[lint(fix(N, 17), Lint::Csum)];
const N18_CSUM: &[Part] = &[lint(fix(N, 18), Lint::Csum)];
const N_4: &[Part] = &[upto(N, 4)];
const N_6: &[Part] = &[upto(N, 6)];
const N_8: &[Part] = &[upto(N, 8)];
const N_10: &[Part] = &[upto(N, 10)];
const N_12: &[Part] = &[upto(N, 12)];
const N_15: &[Part] = &[upto(N, 15)];
const X2: &[Part] = &[fix(X, 2)];
const X_2: &[Part] = &[upto(X, 2)];
const X_3: &[Part] = &[upto(X, 3)];
const X_10: &[Part] = &[upto(X, 10)];
const X_12: &[Part] = &[upto(X, 12)];
const X_20: &[Part] = &[upto(X, 20)];
const X_25: &[Part] = &[upto(X, 25)];
const X_28: &[Part] = &[upto(X, 28)];
const X_30: &[Part] = &[upto(X, 30)];
const X_34: &[Part] = &[upto(X, 34)];
const X_35: &[Part] = &[upto(X, 35)];
const X_50: &[Part] = &[upto(X, 50)];
const X_70: &[Part] = &[upto(X, 70)];
const X_90: &[Part] = &[upto(X, 90)];
const DATE0: &[Part] = &[lint(fix(N, 6), Lint::Yymmd0)];
const DATE: &[Part] = &[lint(fix(N, 6), Lint::Yymmdd)];
const DATE0_TIME: &[Part] = &[DATE0[0], lint(fix(N, 4), Lint::Hhmm)];
const DATE_TIME: &[Part] = &[DATE[0], lint(fix(N, 4), Lint::Hhmm)];
const DATE_OPT_TIME: &[Part] = &[DATE[0], opt(lint(fix(N, 4), Lint::Hhmm))];
const DATE_OPT_DATE: &[Part] = &[DATE[0], opt(DATE[0])];
const PROD_TIME: &[Part] = &[
    lint(fix(N, 8), Lint::Yymmddhh),
    opt(lint(upto(N, 4), Lint::Mmoptss)),
];
const GDTI: &[Part] = &[N13_CSUM[0], opt(upto(X, 17))];
const GCN: &[Part] = &[N13_CSUM[0], opt(upto(N, 12))];
const GRAI: &[Part] = &[lint(fix(N, 1), Lint::Zero), N13_CSUM[0], opt(upto(X, 16))];
const ITIP: &[Part] = &[N14_CSUM[0], fix(N, 4)];
const N3_X_9: &[Part] = &[fix(N, 3), upto(X, 9)];
const N3_X_27: &[Part] = &[fix(N, 3), upto(X, 27)];
const N3_N_15: &[Part] = &[fix(N, 3), upto(N, 15)];
const X2_X_28: &[Part] = &[fix(X, 2), upto(X, 28)];
const N1_X1_X1_X1: &[Part] = &[fix(N, 1), fix(X, 1), fix(X, 1), fix(X, 1)];
const TEMPERATURE: &[Part] = &[fix(N, 6), opt(lint(fix(X, 1), Lint::Hyphen))];
const Y_30: &[Part] = &[upto(Y, 30)];
const Z_90: &[Part] = &[upto(Z, 90)];

/// One row of the AI table: the AIs `lo..=hi` (of one length), their format, and whether they
/// are a Digital Link primary key or key qualifier (path only, never a query's data attribute).
type AiRow = (&'static str, &'static str, &'static [Part], bool);

/// The GS1 Application Identifiers and their formats (GS1 General Specifications 3.2, as the
/// GS1 Barcode Syntax Dictionary breaks them into components), in the lexical order of their AI:
/// AIs are prefix-free, so the row of an AI is the last one starting at or before it.
const AIS: &[AiRow] = &[
    ("00", "00", N18_CSUM, true),  // SSCC
    ("01", "01", N14_CSUM, true),  // GTIN
    ("02", "02", N14_CSUM, false), // CONTENT
    ("10", "10", X_20, true),      // BATCH/LOT
    ("11", "13", DATE0, false),    // PROD DATE, DUE DATE, PACK DATE
    ("15", "17", DATE0, false),    // BEST BEFORE, SELL BY, USE BY or EXPIRY
    ("20", "20", N2, false),       // VARIANT
    ("21", "22", X_20, true),      // SERIAL, CPV
    ("235", "235", X_28, true),    // TPX
    ("240", "241", X_30, false),   // ADDITIONAL ID, CUST. PART No.
    ("242", "242", N_6, false),    // MTO VARIANT
    ("243", "243", X_20, false),   // PCN
    ("250", "251", X_30, false),   // SECONDARY SERIAL, REF. TO SOURCE
    ("253", "253", GDTI, true),    // GDTI
    ("254", "254", X_20, true),    // GLN EXTENSION COMPONENT
    ("255", "255", GCN, true),     // GCN
    ("30", "30", N_8, false),      // VAR. COUNT
    ("3100", "3105", N6, false),   // NET WEIGHT (kg) ... 31nn-36nn: trade measures
    ("3110", "3115", N6, false),
    ("3120", "3125", N6, false),
    ("3130", "3135", N6, false),
    ("3140", "3145", N6, false),
    ("3150", "3155", N6, false),
    ("3160", "3165", N6, false),
    ("3200", "3205", N6, false),
    ("3210", "3215", N6, false),
    ("3220", "3225", N6, false),
    ("3230", "3235", N6, false),
    ("3240", "3245", N6, false),
    ("3250", "3255", N6, false),
    ("3260", "3265", N6, false),
    ("3270", "3275", N6, false),
    ("3280", "3285", N6, false),
    ("3290", "3295", N6, false),
    ("3300", "3305", N6, false),
    ("3310", "3315", N6, false),
    ("3320", "3325", N6, false),
    ("3330", "3335", N6, false),
    ("3340", "3345", N6, false),
    ("3350", "3355", N6, false),
    ("3360", "3365", N6, false),
    ("3370", "3375", N6, false),
    ("3400", "3405", N6, false),
    ("3410", "3415", N6, false),
    ("3420", "3425", N6, false),
    ("3430", "3435", N6, false),
    ("3440", "3445", N6, false),
    ("3450", "3455", N6, false),
    ("3460", "3465", N6, false),
    ("3470", "3475", N6, false),
    ("3480", "3485", N6, false),
    ("3490", "3495", N6, false),
    ("3500", "3505", N6, false),
    ("3510", "3515", N6, false),
    ("3520", "3525", N6, false),
    ("3530", "3535", N6, false),
    ("3540", "3545", N6, false),
    ("3550", "3555", N6, false),
    ("3560", "3565", N6, false),
    ("3570", "3575", N6, false),
    ("3600", "3605", N6, false),
    ("3610", "3615", N6, false),
    ("3620", "3625", N6, false),
    ("3630", "3635", N6, false),
    ("3640", "3645", N6, false),
    ("3650", "3655", N6, false),
    ("3660", "3665", N6, false),
    ("3670", "3675", N6, false),
    ("3680", "3685", N6, false),
    ("3690", "3695", N6, false),
    ("37", "37", N_8, false),               // COUNT
    ("3900", "3909", N_15, false),          // AMOUNT
    ("3910", "3919", N3_N_15, false),       // AMOUNT (ISO 4217 currency)
    ("3920", "3929", N_15, false),          // PRICE
    ("3930", "3939", N3_N_15, false),       // PRICE (ISO 4217 currency)
    ("3940", "3943", N4, false),            // PRCNT OFF
    ("3950", "3955", N6, false),            // PRICE/UoM
    ("400", "400", X_30, false),            // ORDER NUMBER
    ("401", "401", X_30, true),             // GINC
    ("402", "402", N17_CSUM, true),         // GSIN
    ("403", "403", X_30, false),            // ROUTE
    ("410", "413", N13_CSUM, false),        // SHIP TO LOC, BILL TO, PURCHASE FROM, SHIP FOR LOC
    ("414", "415", N13_CSUM, true),         // LOC No., PAY TO
    ("416", "416", N13_CSUM, false),        // PROD/SERV LOC
    ("417", "417", N13_CSUM, true),         // PARTY
    ("420", "420", X_20, false),            // SHIP TO POST
    ("421", "421", N3_X_9, false),          // SHIP TO POST (ISO 3166 country)
    ("422", "422", N3, false),              // ORIGIN
    ("423", "423", N_15, false),            // COUNTRY - INITIAL PROCESS
    ("424", "424", N3, false),              // COUNTRY - PROCESS
    ("425", "425", N_15, false),            // COUNTRY - DISASSEMBLY
    ("426", "426", N3, false),              // COUNTRY - FULL PROCESS
    ("427", "427", X_3, false),             // ORIGIN SUBDIVISION
    ("4300", "4301", X_35, false),          // SHIP TO COMP, NAME
    ("4302", "4306", X_70, false),          // SHIP TO ADD1, ADD2, SUB, LOC, REG
    ("4307", "4307", X2, false),            // SHIP TO COUNTRY
    ("4308", "4308", X_30, false),          // SHIP TO PHONE
    ("4309", "4309", N20, false),           // SHIP TO GEO
    ("4310", "4311", X_35, false),          // RTN TO COMP, NAME
    ("4312", "4316", X_70, false),          // RTN TO ADD1, ADD2, SUB, LOC, REG
    ("4317", "4317", X2, false),            // RTN TO COUNTRY
    ("4318", "4318", X_20, false),          // RTN TO POST
    ("4319", "4319", X_30, false),          // RTN TO PHONE
    ("4320", "4320", X_35, false),          // SRV DESCRIPTION
    ("4321", "4323", N1, false),            // DANGEROUS GOODS, AUTH TO LEAVE, SIG REQUIRED
    ("4324", "4325", DATE0_TIME, false),    // NOT BEF DEL DT, NOT AFT DEL DT
    ("4326", "4326", DATE, false),          // REL DATE
    ("4330", "4333", TEMPERATURE, false),   // MAX/MIN TEMP F./C.
    ("7001", "7001", N13, false),           // NSN
    ("7002", "7002", X_30, false),          // MEAT CUT
    ("7003", "7003", DATE_TIME, false),     // EXPIRY TIME
    ("7004", "7004", N_4, false),           // ACTIVE POTENCY
    ("7005", "7005", X_12, false),          // CATCH AREA
    ("7006", "7006", DATE, false),          // FIRST FREEZE DATE
    ("7007", "7007", DATE_OPT_DATE, false), // HARVEST DATE
    ("7008", "7008", X_3, false),           // AQUATIC SPECIES
    ("7009", "7009", X_10, false),          // FISHING GEAR TYPE
    ("7010", "7010", X_2, false),           // PROD METHOD
    ("7011", "7011", DATE_OPT_TIME, false), // TEST BY DATE
    ("7020", "7022", X_20, false),          // REFURB LOT, FUNC STAT, REV STAT
    ("7023", "7023", X_30, false),          // GIAI - ASSEMBLY
    ("7030", "7039", N3_X_27, false),       // PROCESSOR # 0-9
    ("7040", "7040", N1_X1_X1_X1, true),    // UIC+EXT
    ("710", "716", X_20, false),            // NHRN PZN, CIP, CN, DRN, AIM, NDC, AIC
    ("7230", "7239", X2_X_28, false),       // CERT # 1-10
    ("7240", "7240", X_20, false),          // PROTOCOL
    ("7241", "7241", N2, false),            // AIDC MEDIA TYPE
    ("7242", "7242", X_25, false),          // VCN
    ("8001", "8001", N14, false),           // DIMENSIONS
    ("8002", "8002", X_20, false),          // CMT No.
    ("8003", "8003", GRAI, true),           // GRAI
    ("8004", "8004", X_30, true),           // GIAI
    ("8005", "8005", N6, false),            // PRICE PER UNIT
    ("8006", "8006", ITIP, true),           // ITIP
    ("8007", "8007", X_34, false),          // IBAN
    ("8008", "8008", PROD_TIME, false),     // PROD TIME
    ("8009", "8009", X_50, false),          // OPTSEN
    ("8010", "8010", Y_30, true),           // CPID
    ("8011", "8011", N_12, true),           // CPID SERIAL
    ("8012", "8012", X_20, false),          // VERSION
    ("8013", "8013", X_25, true),           // GMN
    ("8017", "8018", N18_CSUM, true),       // GSRN - PROVIDER, RECIPIENT
    ("8019", "8019", N_10, true),           // SRIN
    ("8020", "8020", X_25, true),           // REF No.
    ("8026", "8026", ITIP, false),          // ITIP CONTENT
    ("8030", "8030", Z_90, false),          // DIGSIG
    ("8110", "8110", X_70, false),          // coupon code
    ("8111", "8111", N4, false),            // POINTS
    ("8112", "8112", X_70, false),          // positive offer file coupon code
    ("8200", "8200", X_70, false),          // PRODUCT URL
    ("90", "90", X_30, false),              // INTERNAL
    ("91", "99", X_90, false),              // INTERNAL
];

/// The row of an AI (2 to 4 digits), or None if no AI is spelt so.
fn ai_row(ai: &str) -> Option<&'static AiRow> {
    let at = AIS.partition_point(|row| row.0 <= ai);
    let row = AIS.get(at.checked_sub(1)?)?;
    (row.0.len() == ai.len() && ai <= row.1).then_some(row)
}

fn set_has(set: Set, b: u8) -> bool {
    match set {
        N => b.is_ascii_digit(),
        X => is_cset82(b),
        Y => b.is_ascii_digit() || b.is_ascii_uppercase() || b"#-/".contains(&b),
        Z => b.is_ascii_alphanumeric() || b"-_=".contains(&b),
    }
}

/// Whether a component (its characters already of its set) passes its content check.
fn lint_ok(lint: Lint, v: &[u8], now: i64) -> bool {
    let two = |i: usize| (v[i] - b'0') * 10 + (v[i + 1] - b'0'); // digits, checked before
    match lint {
        Lint::No => true,
        Lint::Csum => check_ok(std::str::from_utf8(v).unwrap_or("0")),
        Lint::Yymmd0 => date_ok(v, true, now),
        Lint::Yymmdd => date_ok(v, false, now),
        Lint::Yymmddhh => date_ok(&v[..6], false, now) && two(6) <= 23,
        Lint::Hhmm => two(0) <= 23 && two(2) <= 59,
        Lint::Mmoptss => matches!(v.len(), 2 | 4) && two(0) <= 59 && (v.len() == 2 || two(2) <= 59),
        Lint::Zero => v == b"0",
        Lint::Hyphen => v == b"-",
    }
}

/// Whether `value` is of the format `parts`: the components in turn, each of its length,
/// character set and content (`now`: this year, for the century of a date).
fn fits(parts: &[Part], value: &[u8], now: i64) -> bool {
    let mut rest = value;
    for (i, part) in parts.iter().enumerate() {
        if rest.is_empty() && part.optional {
            return true;
        }
        // a component of variable length takes what is left but what the next ones need
        let after: usize = parts[i + 1..]
            .iter()
            .filter(|p| !p.optional)
            .map(|p| usize::from(p.min))
            .sum();
        let len = if part.min == part.max {
            usize::from(part.min)
        } else {
            rest.len().saturating_sub(after).min(usize::from(part.max))
        };
        if len < usize::from(part.min) || len > rest.len() {
            return false;
        }
        let (here, next) = rest.split_at(len);
        if !here.iter().all(|&b| set_has(part.set, b)) || !lint_ok(part.lint, here, now) {
            return false;
        }
        rest = next;
    }
    rest.is_empty()
}

/// A format as the General Specifications write it: `N6`, `N3+X..27`, `N8+[N..4]`.
fn describe(parts: &[Part]) -> String {
    let words: Vec<String> = parts
        .iter()
        .map(|p| {
            let set = format!("{:?}", p.set);
            let len = if p.min == p.max {
                p.min.to_string()
            } else {
                format!("..{}", p.max)
            };
            if p.optional {
                format!("[{set}{len}]")
            } else {
                format!("{set}{len}")
            }
        })
        .collect();
    words.join("+")
}

/// Checks an AI's value against the AI's format (`now`: this year, for dates).
fn check_ai_at(ai: &str, value: &str, now: i64) -> Result<(), Gs1Error> {
    let Some((_, _, parts, _)) = ai_row(ai) else {
        return err(format!("{ai} is not a GS1 Application Identifier"));
    };
    if !fits(parts, value.as_bytes(), now) {
        let when: Vec<&str> = parts.iter().filter_map(|p| p.lint.pattern()).collect();
        let what = if when.is_empty() {
            String::new()
        } else {
            format!(" ({}, a date that exists)", when.join("+"))
        };
        return err(format!("AI {ai} must be {}{what}", describe(parts)));
    }
    Ok(())
}

/// Checks an AI's value against the AI's format, dates against this year's century window.
fn check_ai(ai: &str, value: &str) -> Result<(), Gs1Error> {
    check_ai_at(ai, value, current_year())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn percent_encode(value: &str, out: &mut String) {
    for b in value.bytes() {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn percent_decode(text: &str) -> Result<String, Gs1Error> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) if hex.is_some_and(|h| h.bytes().all(|c| c.is_ascii_hexdigit())) => {
                    out.push(v)
                }
                _ => return err("bad percent-encoding in Digital Link URI"),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).or_else(|_| err("percent-encoded bytes are not UTF-8"))
}

fn check_host(host: &str) -> Result<(), Gs1Error> {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok = port.is_none_or(|p| all_digits(p) && p.len() <= 5);
    if !name_ok || !port_ok {
        return err("host must be a DNS name with an optional :port");
    }
    Ok(())
}

fn check_prefix(prefix: &str) -> Result<(), Gs1Error> {
    if prefix.is_empty() {
        return Ok(());
    }
    let ok = prefix.starts_with('/')
        && prefix[1..]
            .split('/')
            .all(|s| !s.is_empty() && s.bytes().all(is_unreserved));
    if !ok {
        return err("path prefix must look like /seg/seg with unreserved characters only");
    }
    Ok(())
}

/// Optional parts of a product Digital Link.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkParts<'a> {
    pub cpv: Option<&'a str>,
    pub lot: Option<&'a str>,
    pub serial: Option<&'a str>,
    pub expiry: Option<&'a str>,
    pub prefix: &'a str,
}

/// `https://{host}{prefix}/01/{gtin14}[/22/{cpv}][/10/{lot}][/21/{serial}][?17={expiry}]`.
pub fn digital_link(host: &str, gtin: &str, parts: LinkParts<'_>) -> Result<String, Gs1Error> {
    check_host(host)?;
    check_prefix(parts.prefix)?;
    let gtin14 = normalize_gtin(gtin)?;
    let mut uri = format!("https://{host}{}/01/{gtin14}", parts.prefix);
    for (ai, value) in [("22", parts.cpv), ("10", parts.lot), ("21", parts.serial)] {
        if let Some(value) = value {
            check_cset82(ai, value, 20)?;
            uri.push('/');
            uri.push_str(ai);
            uri.push('/');
            percent_encode(value, &mut uri);
        }
    }
    if let Some(expiry) = parts.expiry {
        check_ai("17", expiry)?;
        uri.push_str("?17=");
        uri.push_str(expiry);
    }
    Ok(uri)
}

/// `https://{host}{prefix}/00/{sscc}`.
pub fn sscc_link(host: &str, sscc: &str, prefix: &str) -> Result<String, Gs1Error> {
    check_host(host)?;
    check_prefix(prefix)?;
    validate_sscc(sscc)?;
    Ok(format!("https://{host}{prefix}/00/{sscc}"))
}

/// Longest Digital Link URI accepted by the parser.
const MAX_URI: usize = 2048;

/// Parses the tail of a path starting at the primary key; `None` if it is not a valid tail.
fn parse_tail(segs: &[String]) -> Result<Vec<(String, String)>, Gs1Error> {
    let mut out = Vec::new();
    match segs[0].as_str() {
        "00" => {
            if segs.len() != 2 {
                return err("nothing may follow the SSCC in a Digital Link path");
            }
            validate_sscc(&segs[1])?;
            out.push(("00".to_string(), segs[1].clone()));
        }
        "01" => {
            out.push(("01".to_string(), normalize_gtin(&segs[1])?));
            let order = ["22", "10", "21"];
            let mut next = 0;
            for pair in segs[2..].chunks(2) {
                let ai = pair[0].as_str();
                let Some(pos) = order[next..].iter().position(|&o| o == ai) else {
                    return err(format!("AI {ai} is not allowed here after a GTIN"));
                };
                next += pos + 1;
                check_cset82(ai, &pair[1], 20)?;
                out.push((ai.to_string(), pair[1].clone()));
            }
        }
        _ => return err("Digital Link path needs /01/ or /00/"),
    }
    Ok(out)
}

/// Parses a Digital Link URI (or only its path and query) into (key, value) pairs: `prefix` (the
/// custom path prefix, "" if none), the AIs of the path and query in order, and `linkType` if
/// given. Every all-digit query key is an AI, a data attribute whose value must fit the AI's
/// format (`AIS`), and no key or key qualifier; other query parameters (non-GS1 extensions)
/// are ignored.
pub fn parse_digital_link(uri: &str) -> Result<Vec<(String, String)>, Gs1Error> {
    if uri.len() > MAX_URI {
        return err("Digital Link URI is too long");
    }
    let mut rest = uri;
    let lower = uri
        .get(..8)
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    let scheme_len = if lower.starts_with("https://") {
        8
    } else if lower.starts_with("http://") {
        7
    } else {
        0
    };
    if scheme_len > 0 {
        rest = &uri[scheme_len..];
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        check_host(&rest[..end])?;
        rest = &rest[end..];
    }
    let rest = rest.split_once('#').map_or(rest, |(a, _)| a);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !path.starts_with('/') {
        return err("Digital Link must be an http(s) URI or a path starting with /");
    }
    let path = if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    };
    let raw: Vec<&str> = path[1..].split('/').collect();
    if raw.iter().any(|s| s.is_empty()) {
        return err("empty path segment in Digital Link URI");
    }
    let segs = raw
        .iter()
        .map(|s| percent_decode(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut found = None;
    let mut first_err = None;
    for i in 0..segs.len() {
        if (segs.len() - i) % 2 != 0 || !matches!(segs[i].as_str(), "00" | "01") {
            continue;
        }
        match parse_tail(&segs[i..]) {
            Ok(pairs) => {
                found = Some((i, pairs));
                break;
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let Some((start, path_ais)) = found else {
        return Err(first_err.unwrap_or(Gs1Error("Digital Link path needs /01/ or /00/".into())));
    };
    let prefix: String = raw[..start].iter().map(|s| format!("/{s}")).collect();
    let mut out = vec![("prefix".to_string(), prefix)];
    out.extend(path_ais);
    let mut now = None; // this year, read once and only for a query's data attributes
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        let (k, v) = (percent_decode(k)?, percent_decode(v)?);
        if k == "linkType" {
            if out.iter().any(|(key, _)| key == "linkType") {
                return err("linkType is given twice");
            }
            out.push((k, v));
            continue;
        }
        // a key not all digits is no AI: a non-GS1 extension, passed through; an all-digit
        // one is an AI, a data attribute (GS1 Digital Link URI syntax): it must be one, of
        // its format, and neither a key nor a key qualifier (those are the path's)
        if !all_digits(&k) {
            continue;
        }
        if ai_row(&k).is_some_and(|row| row.3) {
            return err(format!("AI {k} belongs in the path, not the query"));
        }
        if out.iter().any(|(key, _)| *key == k) {
            return err(format!("AI {k} is given twice"));
        }
        check_ai_at(&k, &v, *now.get_or_insert_with(current_year))?;
        out.push((k, v));
    }
    Ok(out)
}

fn check_cp_len(len: usize) -> Result<(), Gs1Error> {
    if !(6..=12).contains(&len) {
        return err("company prefix length must be 6 to 12");
    }
    Ok(())
}

/// Escapes the characters the EPC URI syntax reserves (Tag Data Standard, URI form of
/// alphanumeric serials): `"` `%` `&` `/` `<` `>` `?`.
fn epc_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' | '%' | '&' | '/' | '<' | '>' | '?' => out.push_str(&format!("%{:02X}", c as u32)),
            _ => out.push(c),
        }
    }
    out
}

/// `urn:epc:id:sgtin:CompanyPrefix.IndicatorItemRef.Serial`.
pub fn sgtin_urn(gtin: &str, serial: &str, cp_len: usize) -> Result<String, Gs1Error> {
    let g = normalize_gtin(gtin)?;
    check_cp_len(cp_len)?;
    check_cset82("21", serial, 20)?;
    let company = &g[1..1 + cp_len];
    let item = &g[1 + cp_len..13];
    Ok(format!(
        "urn:epc:id:sgtin:{company}.{}{item}.{}",
        &g[..1],
        epc_escape(serial)
    ))
}

/// `urn:epc:id:sscc:CompanyPrefix.ExtSerialRef`.
pub fn sscc_urn(sscc: &str, cp_len: usize) -> Result<String, Gs1Error> {
    validate_sscc(sscc)?;
    check_cp_len(cp_len)?;
    let company = &sscc[1..1 + cp_len];
    let serial_ref = &sscc[1 + cp_len..17];
    Ok(format!(
        "urn:epc:id:sscc:{company}.{}{serial_ref}",
        &sscc[..1]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn spec_known_answers() {
        assert_eq!(check_digit("0952123454321"), Ok(3));
        assert_eq!(check_digit("10614141123456789"), Ok(7));
        assert!(is_valid_gtin("09521234543213"));
        assert!(is_valid_sscc("106141411234567897"));
        assert!(check_digit("").is_err());
        assert!(check_digit("12a").is_err());
        assert!(check_digit("123456789012345678").is_err());
    }

    #[test]
    fn gtins() {
        assert_eq!(normalize_gtin("9521234543213").unwrap(), "09521234543213");
        assert_eq!(normalize_gtin("614141007349").unwrap(), "00614141007349");
        assert_eq!(normalize_gtin("95012346").unwrap(), "00000095012346");
        assert_eq!(normalize_gtin("10614141007346").unwrap(), "10614141007346");
        assert!(normalize_gtin("10614141007347").is_err());
        assert_eq!(normalize_gtin("0614141007349").unwrap(), "00614141007349");
        assert!(normalize_gtin("0614141007348").is_err());
        assert!(normalize_gtin("1234567").is_err());
        assert!(normalize_gtin("").is_err());
        assert!(normalize_gtin("１２３４５６７８").is_err());
    }

    #[test]
    fn the_all_zero_gtin_is_refused() {
        for zeros in [
            "00000000",
            "000000000000",
            "0000000000000",
            "00000000000000",
        ] {
            assert_eq!(check_digit(&zeros[1..]), Ok(0));
            assert_eq!(
                normalize_gtin(zeros),
                Err(Gs1Error("GTIN must not be all zeros".into()))
            );
            assert!(!is_valid_gtin(zeros));
        }
        assert!(parse_digital_link("/01/00000000000000").is_err());
        assert!(digital_link("h", "00000000000000", LinkParts::default()).is_err());
        assert!(sgtin_urn("00000000000000", "1", 7).is_err());
        assert_eq!(normalize_gtin("00000017").unwrap(), "00000000000017");
    }

    #[test]
    fn ssccs() {
        assert_eq!(
            build_sscc(1, "0614141", 123456789).unwrap(),
            "106141411234567897"
        );
        assert_eq!(build_sscc(0, "0614141", 1).unwrap(), "006141410000000012");
        assert!(build_sscc(10, "0614141", 1).is_err());
        assert!(build_sscc(1, "0614141", 1_000_000_000).is_err());
        assert!(build_sscc(1, "12345", 1).is_err());
        assert!(!is_valid_sscc("106141411234567898"));
        assert!(!is_valid_sscc("10614141123456789"));
    }

    #[test]
    fn digital_links() {
        let parts = LinkParts {
            lot: Some("L1"),
            serial: Some("ABC/1"),
            ..Default::default()
        };
        let uri = digital_link("id.example.com", "9521234543213", parts).unwrap();
        assert_eq!(
            uri,
            "https://id.example.com/01/09521234543213/10/L1/21/ABC%2F1"
        );
        assert_eq!(
            parse_digital_link(&uri).unwrap(),
            pairs(&[
                ("prefix", ""),
                ("01", "09521234543213"),
                ("10", "L1"),
                ("21", "ABC/1")
            ])
        );
        let parts = LinkParts {
            expiry: Some("261231"),
            prefix: "/p/q",
            ..Default::default()
        };
        let uri = digital_link("h:8080", "09521234543213", parts).unwrap();
        assert_eq!(uri, "https://h:8080/p/q/01/09521234543213?17=261231");
        assert_eq!(
            parse_digital_link(&uri).unwrap(),
            pairs(&[
                ("prefix", "/p/q"),
                ("01", "09521234543213"),
                ("17", "261231")
            ])
        );
        assert_eq!(
            parse_digital_link("/00/106141411234567897/").unwrap(),
            pairs(&[("prefix", ""), ("00", "106141411234567897")])
        );
        assert_eq!(
            sscc_link("h", "106141411234567897", "").unwrap(),
            "https://h/00/106141411234567897"
        );
        assert_eq!(
            parse_digital_link(
                "HTTPS://ID.EXAMPLE.COM/01/09521234543213/22/V1/21/X?linkType=gs1:pip"
            )
            .unwrap(),
            pairs(&[
                ("prefix", ""),
                ("01", "09521234543213"),
                ("22", "V1"),
                ("21", "X"),
                ("linkType", "gs1:pip")
            ])
        );
    }

    #[test]
    fn bad_digital_links() {
        for bad in [
            "",
            "01/09521234543213",
            "/01/09521234543212",
            "/01/09521234543213/21",
            "/01/09521234543213/21/",
            "/01/09521234543213/21/A/10/B",
            "/01/09521234543213/99/A",
            "/01/09521234543213/21/%ZZ",
            "/01/09521234543213/21/%E2%82",
            "/01/09521234543213/21/ABCDEFGHIJKLMNOPQRSTU",
            "/01/09521234543213/21/A%20B",
            "/01/09521234543213?17=261332",
            "/01/09521234543213?17=26123",
            "/01/09521234543213?21=A",
            "/01/09521234543213?17=261231&17=261231",
            "/00/106141411234567897/21/A",
            "//01/09521234543213",
            "https:///01/09521234543213",
            "https://bad host/01/09521234543213",
            "/foo/bar",
        ] {
            assert!(parse_digital_link(bad).is_err(), "{bad:?}");
        }
        let long = format!("/01/09521234543213/21/{}", "A".repeat(5000));
        assert!(parse_digital_link(&long).is_err());
        assert!(digital_link("h", "123", LinkParts::default()).is_err());
        assert!(digital_link("https://h", "09521234543213", LinkParts::default()).is_err());
        let bad_prefix = LinkParts {
            prefix: "p",
            ..Default::default()
        };
        assert!(digital_link("h", "09521234543213", bad_prefix).is_err());
        let long_lot = LinkParts {
            lot: Some("123456789012345678901"),
            ..Default::default()
        };
        assert!(digital_link("h", "09521234543213", long_lot).is_err());
        let bad_date = LinkParts {
            expiry: Some("260230"),
            ..Default::default()
        };
        assert!(digital_link("h", "09521234543213", bad_date).is_err());
    }

    #[test]
    fn data_attributes_are_checked_against_their_ai_format() {
        let gtin = "/01/09521234543213/21/S?";
        for bad in [
            "3103=ABCDEF",                        // N6: digits
            "3103=12",                            // N6: six of them
            "3106=000189",                        // 310n: n is 0 to 5
            "20=XYZ",                             // N2
            "20=123",                             // N2
            "7003=ZZ",                            // N10: YYMMDDHHMM
            "7003=2712312460",                    // no hour 24
            "7003=2712001200",                    // 7003's date has no day 00
            "30=123456789",                       // N..8
            "422=15",                             // N3
            "8005=12345A",                        // N6
            "4330=001250+",                       // N6 [X1] with "-" only
            "8008=2712311",                       // N8 [N..4]: minutes, or minutes and seconds
            "90=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", // X..30
            "99=%C3%A9",                          // CSET 82
            "12345=1",                            // all digits: no AI is spelt so
            "7=1",
            "8004=X", // a primary key: the path's
            "254=X",  // a key qualifier: the path's
            "235=X",
        ]
        .map(|q| format!("{gtin}{q}"))
        {
            assert!(parse_digital_link(&bad).is_err(), "{bad}");
        }
        for good in [
            "3103=000189",
            "3925=1999",
            "3932=1561999",
            "20=01",
            "7003=2712312359",
            "7007=270101",
            "7007=270101270131",
            "8008=27123123",
            "8008=2712312359",
            "8008=271231235959",
            "4330=001250-",
            "8200=https%3A%2F%2Fex.example%2Fp",
            "240=A-1",
            "422=156&427=31",
            "11=270100&13=270100&15=270100&16=270100",
            "10x=pass&utm_source=qr&3103=000189",
        ]
        .map(|q| format!("{gtin}{q}"))
        {
            assert!(parse_digital_link(&good).is_ok(), "{good}");
        }
        let pairs = parse_digital_link("/01/09521234543213?3103=000189&x7=y&20=01").unwrap();
        assert_eq!(pairs[2], ("3103".to_string(), "000189".to_string()));
        assert_eq!(pairs[3], ("20".to_string(), "01".to_string()));
        assert_eq!(
            parse_digital_link("/01/09521234543213?3103=12"),
            Err(Gs1Error("AI 3103 must be N6".into()))
        );
        assert_eq!(
            parse_digital_link("/01/09521234543213?20=0&7030=156A"),
            Err(Gs1Error("AI 20 must be N2".into()))
        );
        assert!(check_ai_at("7030", "156PLANT-1", 2026).is_ok());
        assert_eq!(
            check_ai_at("7030", "15", 2026),
            Err(Gs1Error("AI 7030 must be N3+X..27".into()))
        );
        assert!(check_ai_at("253", "9521234543213", 2026).is_ok());
        assert!(check_ai_at("253", "9521234543213DOC", 2026).is_ok());
        assert!(check_ai_at("253", "9521234543212", 2026).is_err()); // check digit
    }

    #[test]
    fn the_ai_table_is_in_lexical_order_and_prefix_free() {
        for pair in AIS.windows(2) {
            let ((lo, hi, ..), (next, ..)) = (pair[0], pair[1]);
            assert!(lo <= hi && hi < next, "{lo}-{hi} before {next}");
            assert!(
                !next.starts_with(hi) && !hi.starts_with(next),
                "{hi} {next}"
            );
        }
        for (lo, hi, parts, _) in AIS {
            assert_eq!(lo.len(), hi.len());
            assert!((2..=4).contains(&lo.len()) && all_digits(lo) && all_digits(hi));
            assert!(!parts.is_empty());
            assert_eq!(ai_row(lo).map(|r| r.0), Some(*lo));
            assert_eq!(ai_row(hi).map(|r| r.0), Some(*lo));
        }
        for unknown in [
            "03", "14", "18", "3", "31", "3106", "3380", "38", "4", "9", "999", "89",
        ] {
            assert!(ai_row(unknown).is_none(), "{unknown}");
        }
    }

    #[test]
    fn dates_are_calendar_dates_in_the_sliding_century_window() {
        // GS1 General Specifications 7.12: up to 50 years ahead, else up to 49 behind
        assert_eq!(full_year(76, 2026), 2076);
        assert_eq!(full_year(77, 2026), 1977);
        assert_eq!(full_year(0, 2026), 2000);
        assert_eq!(full_year(0, 2075), 2100);
        assert_eq!(full_year(99, 2001), 1999);
        assert_eq!(full_year(49, 1999), 2049);
        assert_eq!(full_year(50, 1999), 1950);
        assert_eq!(full_year(48, 1998), 2048);
        assert_eq!(full_year(49, 1998), 1949);
        assert!(check_ai_at("17", "270229", 2026).is_err()); // 2027: a common year
        assert!(check_ai_at("17", "280229", 2026).is_ok()); // 2028: a leap year
        assert!(check_ai_at("17", "000229", 2049).is_ok()); // 2000: leap (by 400)
        assert!(check_ai_at("17", "000229", 2051).is_err()); // 2100: common (by 100)
        assert!(check_ai_at("17", "270230", 2026).is_err());
        assert!(check_ai_at("17", "270431", 2026).is_err());
        assert!(check_ai_at("17", "271301", 2026).is_err());
        assert!(check_ai_at("17", "270001", 2026).is_err());
        // day 00, "the end of the month", where the Syntax Dictionary allows it (yymmd0)
        for ai in ["11", "12", "13", "15", "16", "17"] {
            assert!(check_ai_at(ai, "270200", 2026).is_ok(), "{ai}");
        }
        assert!(check_ai_at("7006", "270200", 2026).is_err());
        assert!(check_ai_at("4326", "270200", 2026).is_err());
        assert!(check_ai_at("7006", "270228", 2026).is_ok());
        assert!(parse_digital_link("/01/09521234543213?17=270229").is_err()); // 2027 (till 2077)
                                                                              // the calendar under current_year()
        assert_eq!(year_of_day(0), 1970);
        assert_eq!(year_of_day(-1), 1969);
        assert_eq!(year_of_day(10_956), 1999);
        assert_eq!(year_of_day(10_957), 2000); // 2000-01-01
        assert_eq!(year_of_day(11_016), 2000); // 2000-02-29
        assert_eq!(year_of_day(11_322), 2000); // 2000-12-31
        assert_eq!(year_of_day(11_323), 2001);
        assert!((2025..2200).contains(&current_year()));
        let bad_leap_day = LinkParts {
            expiry: Some("270229"),
            ..Default::default()
        };
        let built = digital_link("h", "09521234543213", bad_leap_day);
        assert!(built.is_err());
    }

    #[test]
    fn prefix_containing_a_key_segment() {
        assert_eq!(
            parse_digital_link("/01/x/01/09521234543213/21/S").unwrap(),
            pairs(&[("prefix", "/01/x"), ("01", "09521234543213"), ("21", "S")])
        );
    }

    #[test]
    fn junk_never_panics() {
        let pieces = [
            "/",
            "01",
            "00",
            "21",
            "10",
            "22",
            "?",
            "&",
            "=",
            "17",
            "%",
            "%4",
            "%41",
            "é",
            "09521234543213",
            "106141411234567897",
            "https://",
            "h",
            "#",
            "A",
            "linkType",
        ];
        let mut state = 11u64;
        for _ in 0..50_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut s = String::new();
            let mut x = state;
            for _ in 0..(x % 12) {
                x = x.rotate_left(7).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                s.push_str(pieces[(x >> 40) as usize % pieces.len()]);
            }
            let _ = parse_digital_link(&s);
            let _ = normalize_gtin(&s);
            let _ = sscc_urn(&s, 7);
            let _ = sgtin_urn(&s, &s, 7);
            let _ = check_digit(&s);
        }
    }

    #[test]
    fn epc_urns() {
        assert_eq!(
            sgtin_urn("10614141007346", "2", 7).unwrap(),
            "urn:epc:id:sgtin:0614141.100734.2"
        );
        assert_eq!(
            sgtin_urn("10614141007346", "A/B&C", 7).unwrap(),
            "urn:epc:id:sgtin:0614141.100734.A%2FB%26C"
        );
        assert_eq!(
            sscc_urn("106141411234567897", 7).unwrap(),
            "urn:epc:id:sscc:0614141.1123456789"
        );
        assert_eq!(
            sgtin_urn("10614141007346", "2", 12).unwrap(),
            "urn:epc:id:sgtin:061414100734.1.2"
        );
        assert!(sgtin_urn("10614141007346", "2", 5).is_err());
        assert!(sgtin_urn("10614141007346", "", 7).is_err());
        assert!(sscc_urn("106141411234567897", 13).is_err());
        assert!(sscc_urn("106141411234567898", 7).is_err());
    }
}
