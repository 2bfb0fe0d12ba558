//! The code scheme (SPEC C1): permutation, tag, Base32 serial, PIN, verification, bulk paths.
//!
//! ```text
//! w      = batch_no << 32 | index                     (64 bits)
//! v      = FF1-AES256_K1(w)   radix 2, n = 64, empty tweak
//! t      = first 36 bits of AES256_K2(0^64 || v)      (PRF; forgery chance 2^-36 per try)
//! serial = Crockford Base32(v || t)                  (100 bits = 20 symbols)
//! pin    = first 64 bits of AES256_K3(0^64 || v) mod 10^pin_length
//! ```
//!
//! A serial does not carry its key version (all 100 bits are spent), so verification tries the
//! active versions, current first. A serial of version A also carries a valid tag under version
//! B only by a 2^-36 accident per extra active version.

use std::ops::Range;

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes256Enc, Block};
use subtle::ConstantTimeEq;

use crate::base32;
use crate::ff1::{Ff1Bin64, LANES};
use crate::keys::{self, KeyError, MasterKey};
use crate::pin;

/// Symbols in a serial.
pub const SERIAL_LEN: usize = 20;
/// Longest text accepted by single verification, hyphens included; longer is malformed at once.
pub const MAX_TEXT_LEN: usize = 64;
/// Bits of tag appended to `v`.
pub const TAG_BITS: u32 = 36;
/// Most records one bulk call produces (stream bigger ranges in chunks).
pub const MAX_BULK: u64 = 1 << 26;
/// Below this many items the bulk paths stay on the calling thread.
const PAR_MIN: usize = 4096;

/// Why a serial was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialError {
    /// Not 20 Crockford symbols (length or alphabet).
    Malformed(&'static str),
    /// Well-formed, but the tag matches under no active key version.
    Forged,
    /// A key version that is not active was asked for.
    UnknownVersion(u32),
}

/// Per-item outcome of bulk verification.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    Malformed = 1,
    Forged = 2,
}

/// Result of verifying one serial; `batch_no`, `index` and `version` are 0 unless `status` is Ok.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub batch_no: u32,
    pub index: u32,
    pub version: u32,
}

impl Verdict {
    const MALFORMED: Verdict = Verdict {
        status: Status::Malformed,
        batch_no: 0,
        index: 0,
        version: 0,
    };
    const FORGED: Verdict = Verdict {
        status: Status::Forged,
        batch_no: 0,
        index: 0,
        version: 0,
    };

    /// Little-endian `<IIII`: status, batch_no, index, version.
    pub fn write_le(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&(self.status as u32).to_le_bytes());
        out[4..8].copy_from_slice(&self.batch_no.to_le_bytes());
        out[8..12].copy_from_slice(&self.index.to_le_bytes());
        out[12..16].copy_from_slice(&self.version.to_le_bytes());
    }
}

/// Bytes per bulk verification result record.
pub const VERDICT_SIZE: usize = 16;

/// Marks an input that did not decode, in the decoded-value arrays of the bulk paths.
pub const UNDECODABLE: u128 = u128::MAX;

/// Layout of one generated record: `SERIAL[PIN]` or, with `newline`, `SERIAL[,PIN]\n`.
#[derive(Debug, Clone, Copy)]
pub struct RecordFormat {
    pub pins: bool,
    pub newline: bool,
}

impl RecordFormat {
    pub fn width(&self, pin_length: usize) -> usize {
        let sep = usize::from(self.newline);
        SERIAL_LEN + if self.pins { sep + pin_length } else { 0 } + sep
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemeError {
    Key(KeyError),
    PinLength(usize),
}

impl From<KeyError> for SchemeError {
    fn from(e: KeyError) -> Self {
        SchemeError::Key(e)
    }
}

/// The keys of one version. The AES key schedules zeroise themselves on drop.
struct VersionKeys {
    version: u32,
    prp: Ff1Bin64,
    tag: Aes256Enc,
    pin: Aes256Enc,
}

impl VersionKeys {
    fn new(master: &MasterKey, version: u32) -> Self {
        let k1 = master.scheme_key("prp", version);
        let k2 = master.scheme_key("tag", version);
        let k3 = master.scheme_key("pin", version);
        Self {
            version,
            prp: Ff1Bin64::new(&k1),
            tag: Aes256Enc::new(GenericArray::from_slice(k2.as_slice())),
            pin: Aes256Enc::new(GenericArray::from_slice(k3.as_slice())),
        }
    }
}

/// `0^64 || v`, the PRF input block of the tag and the PIN.
#[inline(always)]
fn prf_block(v: u64) -> Block {
    Block::from((v as u128).to_be_bytes())
}

#[inline(always)]
fn tag_of(block: &Block) -> u64 {
    u64::from_be_bytes(block[..8].try_into().expect("8 bytes")) >> (64 - TAG_BITS)
}

/// Writes the 20 symbols of `v || t` into `out[..20]`, as two 50-bit halves of 10 symbols.
#[inline(always)]
fn write_serial(v: u64, t: u64, out: &mut [u8]) {
    let hi = v >> 14;
    let lo = ((v & 0x3FFF) << TAG_BITS) | t;
    for i in 0..10 {
        let shift = 5 * (9 - i);
        out[i] = base32::ALPHABET[((hi >> shift) & 31) as usize];
        out[10 + i] = base32::ALPHABET[((lo >> shift) & 31) as usize];
    }
}

/// Splits `v || t` (as decoded) into its parts.
#[inline(always)]
fn split(x: u128) -> (u64, u64) {
    ((x >> TAG_BITS) as u64, (x as u64) & ((1 << TAG_BITS) - 1))
}

/// Number of worker threads for a `threads` argument: 0 = all cores.
pub fn resolve_threads(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
}

/// Runs `f(range, out_part)` over `n` items split into contiguous parts, one per thread;
/// `out` holds `width` bytes per item and each part gets its own slice of it.
fn split_work<F>(n: usize, threads: usize, out: &mut [u8], width: usize, f: F)
where
    F: Fn(Range<usize>, &mut [u8]) + Sync,
{
    debug_assert_eq!(out.len(), n * width);
    let threads = threads.clamp(1, 64);
    if threads == 1 || n < PAR_MIN {
        f(0..n, out);
        return;
    }
    let per = n.div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let mut rest = out;
        let mut start = 0;
        while start < n {
            let end = (start + per).min(n);
            let (head, tail) = std::mem::take(&mut rest).split_at_mut((end - start) * width);
            rest = tail;
            if end == n {
                f(start..end, head);
            } else {
                s.spawn(move || f(start..end, head));
            }
            start = end;
        }
    });
}

/// Decodes exactly 20 bytes (no hyphens) or returns [`UNDECODABLE`].
#[inline(always)]
fn decode_record(rec: &[u8]) -> u128 {
    match base32::decode_exact(&rec[..SERIAL_LEN], SERIAL_LEN) {
        Ok(x) if !rec[..SERIAL_LEN].contains(&b'-') => x,
        _ => UNDECODABLE,
    }
}

/// Decodes user text (hyphens allowed) into `v || t`.
pub fn parse(text: &[u8]) -> Result<u128, SerialError> {
    if text.len() > MAX_TEXT_LEN {
        return Err(SerialError::Malformed("serial text is too long"));
    }
    base32::decode_exact(text, SERIAL_LEN).map_err(|e| match e {
        base32::DecodeError::BadSymbol => {
            SerialError::Malformed("serial has a character outside Crockford Base32")
        }
        base32::DecodeError::BadLength => SerialError::Malformed("serial must have 20 symbols"),
    })
}

/// The scheme under a set of active key versions.
pub struct Scheme {
    /// Try order: the current version first, then the others as configured.
    keys: Vec<VersionKeys>,
    /// Active versions in the order the caller gave them.
    versions: Vec<u32>,
    master: MasterKey,
    pin_length: usize,
}

/// Shows the versions and PIN length only: key material never appears in logs or reprs.
impl std::fmt::Debug for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Scheme(versions={:?}, current_version={}, pin_length={})",
            self.versions,
            self.current_version(),
            self.pin_length
        )
    }
}

impl Scheme {
    pub fn new(
        master: &[u8],
        versions: &[u32],
        current: u32,
        pin_length: usize,
    ) -> Result<Self, SchemeError> {
        if !pin::valid_len(pin_length) {
            return Err(SchemeError::PinLength(pin_length));
        }
        let order = keys::check_versions(versions, current)?;
        let master = MasterKey::new(master)?;
        let keys = order
            .iter()
            .map(|&v| VersionKeys::new(&master, v))
            .collect();
        Ok(Self {
            keys,
            versions: versions.to_vec(),
            master,
            pin_length,
        })
    }

    pub fn versions(&self) -> &[u32] {
        &self.versions
    }

    pub fn current_version(&self) -> u32 {
        self.keys[0].version
    }

    pub fn pin_length(&self) -> usize {
        self.pin_length
    }

    fn keys_for(&self, version: Option<u32>) -> Result<&VersionKeys, SerialError> {
        match version {
            None => Ok(&self.keys[0]),
            Some(v) => self
                .keys
                .iter()
                .find(|k| k.version == v)
                .ok_or(SerialError::UnknownVersion(v)),
        }
    }

    /// A generic key for another purpose (see [`MasterKey::derive`]), for active versions only.
    pub fn derive(&self, purpose: &str, version: u32, length: usize) -> Result<Vec<u8>, KeyError> {
        if !self.versions.contains(&version) {
            return Err(KeyError::UnknownVersion(version));
        }
        self.master.derive(purpose, version, length)
    }

    /// The 20-symbol serial of (batch_no, index) under `version` (default: current).
    pub fn serial(
        &self,
        batch_no: u32,
        index: u32,
        version: Option<u32>,
    ) -> Result<[u8; SERIAL_LEN], SerialError> {
        let k = self.keys_for(version)?;
        let v = k.prp.encrypt((batch_no as u64) << 32 | index as u64);
        let mut b = prf_block(v);
        k.tag.encrypt_block(&mut b);
        let mut out = [0u8; SERIAL_LEN];
        write_serial(v, tag_of(&b), &mut out);
        Ok(out)
    }

    /// Checks the tags of up to [`LANES`] decoded values and inverts the permutation of those
    /// that pass. Also returns `v` and the key index per lane for PIN work.
    fn verify_lanes(
        &self,
        xs: &[u128],
        out: &mut [Verdict],
        vs_out: &mut [u64],
        key_out: &mut [u8],
    ) {
        let n = xs.len();
        debug_assert!(n <= LANES && out.len() >= n);
        const NONE: u8 = u8::MAX;
        let mut key_of = [NONE; LANES];
        let mut vs = [0u64; LANES];
        let mut ts = [0u64; LANES];
        let mut pending = [0usize; LANES];
        let mut np = 0;
        for (j, &x) in xs.iter().enumerate() {
            if x == UNDECODABLE {
                out[j] = Verdict::MALFORMED;
            } else {
                (vs[j], ts[j]) = split(x);
                out[j] = Verdict::FORGED;
                pending[np] = j;
                np += 1;
            }
        }
        let mut blocks = [Block::default(); LANES];
        for (ki, k) in self.keys.iter().enumerate() {
            if np == 0 {
                break;
            }
            for p in 0..np {
                blocks[p] = prf_block(vs[pending[p]]);
            }
            k.tag.encrypt_blocks(&mut blocks[..np]);
            let mut still = 0;
            for p in 0..np {
                let j = pending[p];
                if bool::from(tag_of(&blocks[p]).ct_eq(&ts[j])) {
                    key_of[j] = ki as u8;
                } else {
                    pending[still] = j;
                    still += 1;
                }
            }
            np = still;
        }
        let mut group = [0u64; LANES];
        let mut members = [0usize; LANES];
        for (ki, k) in self.keys.iter().enumerate() {
            let mut m = 0;
            for j in 0..n {
                if key_of[j] == ki as u8 {
                    group[m] = vs[j];
                    members[m] = j;
                    m += 1;
                }
            }
            if m == 0 {
                continue;
            }
            k.prp.decrypt_many(&mut group[..m]);
            for p in 0..m {
                let w = group[p];
                out[members[p]] = Verdict {
                    status: Status::Ok,
                    batch_no: (w >> 32) as u32,
                    index: w as u32,
                    version: k.version,
                };
            }
        }
        if !vs_out.is_empty() {
            vs_out[..n].copy_from_slice(&vs[..n]);
            key_out[..n].copy_from_slice(&key_of[..n]);
        }
    }

    fn verify_one(&self, text: &[u8]) -> Result<(Verdict, u64, usize), SerialError> {
        let x = parse(text)?;
        let mut out = [Verdict::FORGED];
        let mut v = [0u64];
        let mut k = [0u8];
        self.verify_lanes(&[x], &mut out, &mut v, &mut k);
        match out[0].status {
            Status::Ok => Ok((out[0], v[0], k[0] as usize)),
            Status::Forged => Err(SerialError::Forged),
            Status::Malformed => Err(SerialError::Malformed("serial must have 20 symbols")),
        }
    }

    /// Parses a serial, checks its tag under the active versions, inverts the permutation.
    pub fn verify(&self, text: &[u8]) -> Result<Verdict, SerialError> {
        self.verify_one(text).map(|(verdict, _, _)| verdict)
    }

    /// The PIN printed inside the pack of a (valid) serial.
    pub fn pin(&self, text: &[u8]) -> Result<String, SerialError> {
        let (_, v, ki) = self.verify_one(text)?;
        let mut b = prf_block(v);
        self.keys[ki].pin.encrypt_block(&mut b);
        let mut out = [0u8; pin::MAX_LEN];
        pin::write_pin(&b.into(), &mut out[..self.pin_length]);
        Ok(out[..self.pin_length].iter().map(|&d| d as char).collect())
    }

    /// Whether `candidate` is the PIN of a (valid) serial, compared in constant time.
    pub fn check_pin(&self, text: &[u8], candidate: &[u8]) -> Result<bool, SerialError> {
        let expected = self.pin(text)?;
        Ok(pin::pin_eq(expected.as_bytes(), candidate))
    }

    /// Fills `out` with the records of indexes `start..start + out.len() / width` of `batch_no`.
    pub fn generate_into(
        &self,
        batch_no: u32,
        start: u32,
        fmt: RecordFormat,
        version: Option<u32>,
        threads: usize,
        out: &mut [u8],
    ) -> Result<(), SerialError> {
        let k = self.keys_for(version)?;
        let width = fmt.width(self.pin_length);
        let n = out.len() / width;
        debug_assert_eq!(n * width, out.len());
        debug_assert!(start as u64 + n as u64 <= 1 << 32);
        let base = (batch_no as u64) << 32 | start as u64;
        split_work(n, resolve_threads(threads), out, width, |range, part| {
            self.generate_part(k, base + range.start as u64, fmt, width, part);
        });
        Ok(())
    }

    fn generate_part(
        &self,
        k: &VersionKeys,
        first: u64,
        fmt: RecordFormat,
        width: usize,
        out: &mut [u8],
    ) {
        let pin_len = self.pin_length;
        let pin_at = SERIAL_LEN + usize::from(fmt.newline);
        let mut ws = [0u64; LANES];
        let mut tags = [Block::default(); LANES];
        let mut pins = [Block::default(); LANES];
        let mut w_next = first;
        for chunk in out.chunks_mut(width * LANES) {
            let n = chunk.len() / width;
            for w in ws[..n].iter_mut() {
                *w = w_next;
                // Wraps only past the last index of batch u32::MAX, a value never used.
                w_next = w_next.wrapping_add(1);
            }
            k.prp.encrypt_many(&mut ws[..n]);
            for j in 0..n {
                tags[j] = prf_block(ws[j]);
            }
            if fmt.pins {
                pins[..n].copy_from_slice(&tags[..n]);
                k.pin.encrypt_blocks(&mut pins[..n]);
            }
            k.tag.encrypt_blocks(&mut tags[..n]);
            for (j, rec) in chunk.chunks_exact_mut(width).enumerate() {
                write_serial(ws[j], tag_of(&tags[j]), rec);
                if fmt.pins {
                    pin::write_pin(&pins[j].into(), &mut rec[pin_at..pin_at + pin_len]);
                }
                if fmt.newline {
                    if fmt.pins {
                        rec[SERIAL_LEN] = b',';
                    }
                    rec[width - 1] = b'\n';
                }
            }
        }
    }

    /// Verifies fixed-width records (the serial is the first 20 bytes of each) into
    /// [`VERDICT_SIZE`]-byte little-endian results.
    pub fn verify_records(
        &self,
        records: &[u8],
        record_size: usize,
        threads: usize,
        out: &mut [u8],
    ) {
        let n = records.len() / record_size;
        debug_assert!(record_size >= SERIAL_LEN && n * VERDICT_SIZE == out.len());
        split_work(
            n,
            resolve_threads(threads),
            out,
            VERDICT_SIZE,
            |range, part| {
                let input = &records[range.start * record_size..range.end * record_size];
                let mut xs = [0u128; LANES];
                let mut verdicts = [Verdict::FORGED; LANES];
                for (recs, outs) in input
                    .chunks(record_size * LANES)
                    .zip(part.chunks_mut(VERDICT_SIZE * LANES))
                {
                    let m = recs.len() / record_size;
                    for (x, rec) in xs.iter_mut().zip(recs.chunks_exact(record_size)) {
                        *x = decode_record(rec);
                    }
                    self.verify_lanes(&xs[..m], &mut verdicts, &mut [], &mut []);
                    for (v, o) in verdicts[..m]
                        .iter()
                        .zip(outs.chunks_exact_mut(VERDICT_SIZE))
                    {
                        v.write_le(o);
                    }
                }
            },
        );
    }

    /// Verifies already decoded values (`UNDECODABLE` marks malformed input).
    pub fn verify_decoded(&self, xs: &[u128], threads: usize, out: &mut [u8]) {
        debug_assert_eq!(xs.len() * VERDICT_SIZE, out.len());
        split_work(
            xs.len(),
            resolve_threads(threads),
            out,
            VERDICT_SIZE,
            |range, part| {
                let mut verdicts = [Verdict::FORGED; LANES];
                for (x, outs) in xs[range]
                    .chunks(LANES)
                    .zip(part.chunks_mut(VERDICT_SIZE * LANES))
                {
                    self.verify_lanes(x, &mut verdicts, &mut [], &mut []);
                    for (v, o) in verdicts[..x.len()]
                        .iter()
                        .zip(outs.chunks_exact_mut(VERDICT_SIZE))
                    {
                        v.write_le(o);
                    }
                }
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheme(versions: &[u32], current: u32) -> Scheme {
        Scheme::new(&[0x42; 32], versions, current, 6).unwrap()
    }

    fn text(s: &[u8]) -> &str {
        std::str::from_utf8(s).unwrap()
    }

    #[test]
    fn serial_shape_and_round_trip() {
        let s = scheme(&[1], 1);
        for (b, i) in [(0u32, 0u32), (1, 2), (u32::MAX, u32::MAX), (7, 123_456)] {
            let serial = s.serial(b, i, None).unwrap();
            assert!(serial.iter().all(|c| base32::ALPHABET.contains(c)));
            let got = s.verify(&serial).unwrap();
            assert_eq!((got.batch_no, got.index, got.version), (b, i, 1));
            let lower = text(&serial).to_ascii_lowercase();
            assert_eq!(s.verify(lower.as_bytes()).unwrap(), got);
            let hyphenated = format!("{}-{}", text(&serial[..10]), text(&serial[10..]));
            assert_eq!(s.verify(hyphenated.as_bytes()).unwrap(), got);
        }
    }

    #[test]
    fn serial_layout_is_v_then_tag() {
        let s = scheme(&[1], 1);
        let serial = s.serial(5, 9, None).unwrap();
        let x = base32::decode_exact(&serial, 20).unwrap();
        let (v, t) = split(x);
        assert_eq!(v, s.keys[0].prp.encrypt(5 << 32 | 9));
        let mut b = prf_block(v);
        s.keys[0].tag.encrypt_block(&mut b);
        assert_eq!(t, tag_of(&b));
        assert!(t < 1 << 36);
    }

    #[test]
    fn every_single_symbol_change_is_rejected() {
        let s = scheme(&[1], 1);
        for (b, i) in [(1u32, 1u32), (99, 0)] {
            let serial = s.serial(b, i, None).unwrap();
            for pos in 0..20 {
                for &c in base32::ALPHABET {
                    if c == serial[pos] {
                        continue;
                    }
                    let mut bad = serial;
                    bad[pos] = c;
                    assert_eq!(s.verify(&bad).err(), Some(SerialError::Forged));
                }
            }
            for pos in 0..19 {
                let mut bad = serial;
                bad.swap(pos, pos + 1);
                if bad != serial {
                    assert_eq!(s.verify(&bad).err(), Some(SerialError::Forged));
                }
            }
        }
    }

    #[test]
    fn malformed_inputs() {
        let s = scheme(&[1], 1);
        for junk in [
            &b""[..],
            b"ABC",
            b"0123456789ABCDEFGHJU",
            &[b'0'; 21],
            &[0xFF; 20],
            &[b'A'; 65],
        ] {
            assert!(
                matches!(s.verify(junk), Err(SerialError::Malformed(_))),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn rotation() {
        let old = scheme(&[1], 1);
        let serial = old.serial(3, 4, None).unwrap();
        let both = scheme(&[1, 2], 2);
        let v = both.verify(&serial).unwrap();
        assert_eq!((v.batch_no, v.index, v.version), (3, 4, 1));
        assert_eq!(both.pin(&serial).unwrap(), old.pin(&serial).unwrap());
        let new_serial = both.serial(3, 4, None).unwrap();
        assert_ne!(new_serial, serial);
        assert_eq!(both.verify(&new_serial).unwrap().version, 2);
        assert_eq!(both.serial(3, 4, Some(1)).unwrap(), serial);
        assert_eq!(
            both.serial(3, 4, Some(3)).err(),
            Some(SerialError::UnknownVersion(3))
        );
        let only_new = scheme(&[2], 2);
        assert_eq!(only_new.verify(&serial).err(), Some(SerialError::Forged));
    }

    #[test]
    fn pins() {
        let s = scheme(&[1], 1);
        let serial = s.serial(1, 1, None).unwrap();
        let p = s.pin(&serial).unwrap();
        assert_eq!(p.len(), 6);
        assert!(p.bytes().all(|c| c.is_ascii_digit()));
        assert!(s.check_pin(&serial, p.as_bytes()).unwrap());
        let mut wrong = p.clone().into_bytes();
        wrong[0] = if wrong[0] == b'9' { b'0' } else { wrong[0] + 1 };
        assert!(!s.check_pin(&serial, &wrong).unwrap());
        assert!(!s.check_pin(&serial, &p.as_bytes()[..5]).unwrap());
        let s10 = Scheme::new(&[0x42; 32], &[1], 1, 10).unwrap();
        let p10 = s10.pin(&serial).unwrap();
        assert_eq!(p10.len(), 10);
        // Same PRF output, shorter reduction: the 6-digit PIN is the 10-digit one's tail.
        assert_eq!(&p10[4..], p);
        assert!(matches!(
            Scheme::new(&[0; 32], &[1], 1, 3),
            Err(SchemeError::PinLength(3))
        ));
        assert!(matches!(
            Scheme::new(&[0; 32], &[1], 1, 11),
            Err(SchemeError::PinLength(11))
        ));
    }

    #[test]
    fn bulk_generation_matches_single_calls() {
        let s = scheme(&[1, 2], 1);
        for fmt in [
            RecordFormat {
                pins: true,
                newline: false,
            },
            RecordFormat {
                pins: false,
                newline: false,
            },
            RecordFormat {
                pins: true,
                newline: true,
            },
            RecordFormat {
                pins: false,
                newline: true,
            },
        ] {
            let width = fmt.width(6);
            for threads in [1, 2, 3] {
                let n = 5000 + 7;
                let mut out = vec![0u8; n * width];
                s.generate_into(9, 100, fmt, Some(2), threads, &mut out)
                    .unwrap();
                for (i, rec) in out.chunks_exact(width).enumerate() {
                    let serial = s.serial(9, 100 + i as u32, Some(2)).unwrap();
                    assert_eq!(&rec[..20], serial);
                    if fmt.pins {
                        let at = 20 + usize::from(fmt.newline);
                        assert_eq!(text(&rec[at..at + 6]), s.pin(&serial).unwrap());
                    }
                    if fmt.newline {
                        assert_eq!(rec[width - 1], b'\n');
                    }
                }
            }
        }
    }

    #[test]
    fn bulk_verification_reports_each_item() {
        let s = scheme(&[1, 2], 2);
        let n = 6000;
        let width = 26;
        let mut recs = vec![0u8; n * width];
        s.generate_into(
            4,
            0,
            RecordFormat {
                pins: true,
                newline: false,
            },
            Some(1),
            2,
            &mut recs,
        )
        .unwrap();
        recs[26 * 5..26 * 5 + 20].copy_from_slice(b"00000000000000000000");
        recs[26 * 6] = b'U';
        recs[26 * 7 + 3] = b'-';
        for threads in [1, 2] {
            let mut out = vec![0u8; n * VERDICT_SIZE];
            s.verify_records(&recs, width, threads, &mut out);
            for (i, o) in out.chunks_exact(16).enumerate() {
                let f = |k: usize| u32::from_le_bytes(o[4 * k..4 * k + 4].try_into().unwrap());
                match i {
                    5 => assert_eq!(f(0), Status::Forged as u32),
                    6 | 7 => assert_eq!(f(0), Status::Malformed as u32),
                    _ => assert_eq!((f(0), f(1), f(2), f(3)), (0, 4, i as u32, 1), "item {i}"),
                }
            }
        }
        let xs = [
            base32::decode_exact(&s.serial(1, 2, None).unwrap(), 20).unwrap(),
            UNDECODABLE,
            0,
        ];
        let mut out = vec![0u8; 3 * VERDICT_SIZE];
        s.verify_decoded(&xs, 1, &mut out);
        assert_eq!(
            &out[0..16],
            &[0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0]
        );
        assert_eq!(out[16], 1);
        assert_eq!(out[32], 2);
    }

    #[test]
    fn bulk_serials_of_a_batch_are_distinct() {
        let s = scheme(&[1], 1);
        let n = 200_000;
        let mut out = vec![0u8; n * 20];
        s.generate_into(
            1,
            0,
            RecordFormat {
                pins: false,
                newline: false,
            },
            None,
            2,
            &mut out,
        )
        .unwrap();
        let set: std::collections::HashSet<&[u8]> = out.chunks_exact(20).collect();
        assert_eq!(set.len(), n);
    }

    #[test]
    fn junk_never_panics() {
        let s = scheme(&[1, 2], 2);
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let z = (state ^ (state >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z ^ (z >> 29)
        };
        let mut recs = Vec::new();
        for round in 0..20_000 {
            let len = (next() % 70) as usize;
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    // Mostly alphabet bytes, so many inputs get past the parser to the tag check.
                    if round % 2 == 0 {
                        base32::ALPHABET[(r % 32) as usize]
                    } else {
                        r as u8
                    }
                })
                .collect();
            assert!(s.verify(&junk).is_err());
            assert!(s.pin(&junk).is_err());
            if junk.len() >= 20 {
                recs.extend_from_slice(&junk[..20]);
            }
        }
        let mut out = vec![0u8; recs.len() / 20 * VERDICT_SIZE];
        s.verify_records(&recs, 20, 2, &mut out);
        assert!(out.chunks_exact(16).all(|o| o[0] == 1 || o[0] == 2));
        assert!(s.verify(&vec![b'0'; 10_000_000]).is_err());
    }

    #[test]
    fn last_indexes_of_the_last_batch() {
        let s = scheme(&[1], 1);
        let fmt = RecordFormat {
            pins: true,
            newline: false,
        };
        let n = 40;
        let mut out = vec![0u8; n * 26];
        s.generate_into(u32::MAX, u32::MAX - (n as u32 - 1), fmt, None, 1, &mut out)
            .unwrap();
        let last = &out[(n - 1) * 26..(n - 1) * 26 + 20];
        let v = s.verify(last).unwrap();
        assert_eq!((v.batch_no, v.index), (u32::MAX, u32::MAX));
    }

    #[test]
    fn debug_output_hides_key_material() {
        let master = [0xA5u8; 32];
        let s = Scheme::new(&master, &[1, 2], 2, 6).unwrap();
        let shown = format!("{s:?}");
        assert_eq!(
            shown,
            "Scheme(versions=[1, 2], current_version=2, pin_length=6)"
        );
        let m = MasterKey::new(&master).unwrap();
        for secret in [
            m.scheme_key("prp", 1),
            m.scheme_key("tag", 2),
            m.scheme_key("pin", 2),
        ] {
            let hex: String = secret[..4].iter().map(|b| format!("{b:02x}")).collect();
            assert!(!shown.to_lowercase().contains(&hex));
        }
        assert!(!shown.contains("a5a5"));
    }

    #[test]
    fn derive_needs_an_active_version() {
        let s = scheme(&[1, 2], 2);
        assert_eq!(s.derive("export", 1, 32).unwrap().len(), 32);
        assert_eq!(
            s.derive("export", 3, 32).err(),
            Some(KeyError::UnknownVersion(3))
        );
    }
}
