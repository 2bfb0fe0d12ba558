//! PIN derivation: the hidden code inside the pack, `PRF_K3(v)` reduced to decimal digits.
//!
//! The PRF output is one AES-256 block of `v`; its first 8 bytes (big-endian u64) are taken
//! mod 10^len. The bias of a 64-bit value mod 10^10 is below 10^10 / 2^64 < 6e-10 per digit
//! string, far below anything observable. PINs are never stored: verification recomputes them.

use subtle::ConstantTimeEq;

pub const MIN_LEN: usize = 4;
pub const MAX_LEN: usize = 10;
pub const DEFAULT_LEN: usize = 6;

/// Powers of ten up to 10^10.
const POW10: [u64; 11] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
];

/// Whether `len` is an allowed PIN length.
pub fn valid_len(len: usize) -> bool {
    (MIN_LEN..=MAX_LEN).contains(&len)
}

/// Writes the PIN of PRF block `prf` as `out.len()` ASCII digits, zero-padded.
#[inline]
pub fn write_pin(prf: &[u8; 16], out: &mut [u8]) {
    debug_assert!(valid_len(out.len()));
    let x = u64::from_be_bytes(prf[..8].try_into().expect("8 bytes"));
    let mut r = x % POW10[out.len()];
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (r % 10) as u8;
        r /= 10;
    }
}

/// Constant-time comparison of a candidate PIN with the expected one.
pub fn pin_eq(expected: &[u8], candidate: &[u8]) -> bool {
    // Lengths are public (configuration), so an early length check leaks nothing secret.
    expected.len() == candidate.len() && bool::from(expected.ct_eq(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_zero_padded_and_reduced() {
        let mut block = [0u8; 16];
        block[7] = 7;
        let mut out = [0u8; 6];
        write_pin(&block, &mut out);
        assert_eq!(&out, b"000007");
        let block = [0xFF; 16];
        let mut out = [0u8; 10];
        write_pin(&block, &mut out);
        // u64::MAX = 18446744073709551615, mod 10^10 = 3709551615.
        assert_eq!(&out, b"3709551615");
        let mut out = [0u8; 4];
        write_pin(&block, &mut out);
        assert_eq!(&out, b"1615");
    }

    #[test]
    fn lengths() {
        assert!(!valid_len(3));
        assert!(valid_len(4));
        assert!(valid_len(10));
        assert!(!valid_len(11));
    }

    #[test]
    fn comparison() {
        assert!(pin_eq(b"123456", b"123456"));
        assert!(!pin_eq(b"123456", b"123457"));
        assert!(!pin_eq(b"123456", b"12345"));
        assert!(!pin_eq(b"123456", b""));
    }
}
