//! Crockford Base32 over integers of up to 125 bits (25 symbols), most significant symbol first.
//!
//! Serials are 100 bits = exactly 20 symbols, so a serial is a `u128` and encoding is a fixed
//! sequence of shifts: no allocation, no big integers.

/// The Crockford alphabet: digits and upper-case letters without I, L, O and U.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Most symbols a `u128` can hold (25 x 5 = 125 bits).
pub const MAX_SYMBOLS: usize = 25;

/// Symbol value of each byte; `INVALID` for bytes outside the alphabet, `SKIP` for the hyphen.
/// Decoding is case-insensitive and maps the look-alikes O to 0 and I/L to 1, as Crockford says.
const INVALID: u8 = 0xFF;
const SKIP: u8 = 0xFE;
const DECODE: [u8; 256] = build_decode_table();

const fn build_decode_table() -> [u8; 256] {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 32 {
        let c = ALPHABET[i];
        t[c as usize] = i as u8;
        t[c.to_ascii_lowercase() as usize] = i as u8;
        i += 1;
    }
    t[b'O' as usize] = 0;
    t[b'o' as usize] = 0;
    t[b'I' as usize] = 1;
    t[b'i' as usize] = 1;
    t[b'L' as usize] = 1;
    t[b'l' as usize] = 1;
    t[b'-' as usize] = SKIP;
    t
}

/// Why a text is not Crockford Base32 of the expected size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A byte outside the alphabet (after case folding and the O/I/L look-alikes).
    BadSymbol,
    /// Not the expected number of symbols (hyphens are not counted).
    BadLength,
}

/// Writes the low `5 * out.len()` bits of `value` as symbols into `out` (`out.len() <= 25`).
#[inline]
pub fn encode_into(value: u128, out: &mut [u8]) {
    debug_assert!(out.len() <= MAX_SYMBOLS);
    let n = out.len();
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (n - 1 - i);
        *slot = ALPHABET[((value >> shift) & 31) as usize];
    }
}

/// Encodes `value` as exactly `symbols` symbols; `None` if it does not fit.
pub fn encode(value: u128, symbols: usize) -> Option<String> {
    if symbols == 0
        || symbols > MAX_SYMBOLS
        || (symbols < MAX_SYMBOLS && value >> (5 * symbols) != 0)
    {
        return None;
    }
    let mut buf = [0u8; MAX_SYMBOLS];
    encode_into(value, &mut buf[..symbols]);
    // The alphabet is ASCII, so this cannot fail.
    Some(buf[..symbols].iter().map(|&b| b as char).collect())
}

/// Decodes text of exactly `symbols` symbols (hyphens anywhere are ignored).
#[inline]
pub fn decode_exact(text: &[u8], symbols: usize) -> Result<u128, DecodeError> {
    debug_assert!(symbols <= MAX_SYMBOLS);
    let mut value: u128 = 0;
    let mut count = 0usize;
    for &b in text {
        match DECODE[b as usize] {
            SKIP => continue,
            INVALID => return Err(DecodeError::BadSymbol),
            d => {
                count += 1;
                if count > symbols {
                    return Err(DecodeError::BadLength);
                }
                value = (value << 5) | d as u128;
            }
        }
    }
    if count != symbols {
        return Err(DecodeError::BadLength);
    }
    Ok(value)
}

/// Decodes text of 1 to 25 symbols (hyphens ignored) to its integer value.
pub fn decode(text: &[u8]) -> Result<u128, DecodeError> {
    let mut value: u128 = 0;
    let mut count = 0usize;
    for &b in text {
        match DECODE[b as usize] {
            SKIP => continue,
            INVALID => return Err(DecodeError::BadSymbol),
            d => {
                count += 1;
                if count > MAX_SYMBOLS {
                    return Err(DecodeError::BadLength);
                }
                value = (value << 5) | d as u128;
            }
        }
    }
    if count == 0 {
        return Err(DecodeError::BadLength);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_symbols() {
        assert_eq!(encode(0, 4).unwrap(), "0000");
        assert_eq!(encode(31, 2).unwrap(), "0Z");
        assert_eq!(encode(32, 2).unwrap(), "10");
        assert_eq!(
            encode((1u128 << 100) - 1, 20).unwrap(),
            "ZZZZZZZZZZZZZZZZZZZZ"
        );
        assert_eq!(encode(1u128 << 100, 20), None);
        assert_eq!(encode(u128::MAX >> 3, 25).unwrap().len(), 25);
        assert_eq!(encode(0, 0), None);
        assert_eq!(encode(0, 26), None);
    }

    #[test]
    fn round_trip_edges() {
        for v in [
            0u128,
            1,
            31,
            32,
            12345678901234567890,
            (1u128 << 100) - 1,
            1u128 << 99,
        ] {
            let s = encode(v, 20).unwrap();
            assert_eq!(decode_exact(s.as_bytes(), 20), Ok(v));
            assert_eq!(decode(s.as_bytes()), Ok(v));
        }
    }

    #[test]
    fn decode_quirks() {
        let canonical = decode_exact(b"0123456789ABCDEFGHJK", 20).unwrap();
        assert_eq!(decode_exact(b"0123456789abcdefghjk", 20), Ok(canonical));
        assert_eq!(decode_exact(b"O123456789ABCDEFGHJK", 20), Ok(canonical));
        assert_eq!(decode_exact(b"oi23456789ABCDEFGHJK", 20), Ok(canonical));
        assert_eq!(decode_exact(b"0L23456789ABCDEFGHJK", 20), Ok(canonical));
        assert_eq!(decode_exact(b"0l23456789ABCDEFGHJK", 20), Ok(canonical));
        assert_eq!(decode_exact(b"01234-56789-ABCDE-FGHJK", 20), Ok(canonical));
        assert_eq!(decode_exact(b"-0123456789ABCDEFGHJK--", 20), Ok(canonical));
        // U is not in the alphabet, nor are spaces or other punctuation.
        assert_eq!(
            decode_exact(b"U123456789ABCDEFGHJK", 20),
            Err(DecodeError::BadSymbol)
        );
        assert_eq!(
            decode_exact(b"0123456789ABCDEFGHJ ", 20),
            Err(DecodeError::BadSymbol)
        );
        assert_eq!(
            decode_exact(b"0123456789ABCDEFGHJ_", 20),
            Err(DecodeError::BadSymbol)
        );
        assert_eq!(
            decode_exact("0123456789ABCDEFGHJÄ".as_bytes(), 20),
            Err(DecodeError::BadSymbol)
        );
        assert_eq!(
            decode_exact(b"0123456789ABCDEFGHJ", 20),
            Err(DecodeError::BadLength)
        );
        assert_eq!(
            decode_exact(b"0123456789ABCDEFGHJKM", 20),
            Err(DecodeError::BadLength)
        );
        assert_eq!(decode_exact(b"", 20), Err(DecodeError::BadLength));
        assert_eq!(decode_exact(b"----", 20), Err(DecodeError::BadLength));
        assert_eq!(decode(b""), Err(DecodeError::BadLength));
        assert_eq!(decode(&[b'Z'; 26]), Err(DecodeError::BadLength));
    }

    #[test]
    fn every_byte_is_handled() {
        for b in 0u8..=255 {
            let text = [b; 20];
            let r = decode_exact(&text, 20);
            let expect_ok = ALPHABET.contains(&b.to_ascii_uppercase())
                || matches!(b, b'o' | b'O' | b'i' | b'I' | b'l' | b'L');
            if b == b'-' {
                assert_eq!(r, Err(DecodeError::BadLength));
            } else {
                assert_eq!(r.is_ok(), expect_ok, "byte {b}");
            }
        }
    }
}
