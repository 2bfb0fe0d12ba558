//! GS1 helpers: mod-10 check digits, GTIN and SSCC, GS1 Digital Link URIs, EPC URNs.
//!
//! Sources: GS1 General Specifications (check digit, GTIN, SSCC, AI 10/17/21/22, CSET 82),
//! GS1 Digital Link URI syntax (path order, query data attributes, percent-encoding) and the
//! GS1 EPC Tag Data Standard (SGTIN and SSCC pure identity URNs and their escaping).

use std::fmt;

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

/// YYMMDD with month 01-12 and day 00-31 within the month (00 = end of month, as GS1 allows).
fn check_date(ai: &str, value: &str) -> Result<(), Gs1Error> {
    let ok = value.len() == 6 && all_digits(value) && {
        let month: u32 = value[2..4].parse().unwrap_or(0);
        let day: u32 = value[4..6].parse().unwrap_or(99);
        let max = match month {
            2 => 29,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        (1..=12).contains(&month) && day <= max
    };
    if !ok {
        return err(format!("AI {ai} must be a date YYMMDD"));
    }
    Ok(())
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
        check_date("17", expiry)?;
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
/// given. Other non-AI query parameters are ignored.
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
        if !(all_digits(&k) && (2..=4).contains(&k.len())) {
            continue;
        }
        if matches!(k.as_str(), "00" | "01" | "10" | "21" | "22") {
            return err(format!("AI {k} belongs in the path, not the query"));
        }
        if out.iter().any(|(key, _)| *key == k) {
            return err(format!("AI {k} is given twice"));
        }
        match k.as_str() {
            "11" | "12" | "13" | "15" | "16" | "17" => check_date(&k, &v)?,
            _ => check_cset82(&k, &v, 90)?,
        }
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
