//! NIST SP 800-38G FF1 format-preserving encryption over AES.
//!
//! Why FF1 for the serial permutation: we need a keyed pseudorandom *permutation* of the 64-bit
//! space `batch_no << 32 | index`. A permutation makes every issued serial unique by construction,
//! so issuing millions of codes needs no dedup set and no row per code, and the serial can be
//! inverted back to (batch, index) without a database. FF1 is published, standardised by NIST
//! (SP 800-38G, rev. 1), built on AES, and has been analysed for years; at radix 2 and 64 bits the
//! domain (2^64) is far above the size where the known small-domain attacks on FF1/FF3 matter.
//! An ad-hoc Feistel or a truncated block cipher would give none of that assurance.
//!
//! Two implementations live here:
//! * [`Ff1`]: the general algorithm (any radix 2..=2^16, any tweak, AES-128/192/256), checked
//!   against the nine NIST sample vectors (`vectors/known_answers.txt`, run by
//!   `tests/known_answers.rs`). Integers are `u128`, which limits it to `radix^ceil(n/2) < 2^96`;
//!   that covers the samples and our 64-bit domain.
//! * [`Ff1Bin64`]: the same function specialised to radix 2, n = 64, empty tweak, AES-256.
//!   With those parameters the first CBC-MAC block `P` is a constant, so `AES_K(P)` is computed
//!   once per key and each Feistel round costs exactly one AES block. The batch entry points run
//!   many inputs in lock step so the AES-NI pipeline stays full. Tests check it equals [`Ff1`].

use aes::cipher::consts::U16;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, BlockSizeUser, KeyInit};
use aes::{Aes256Enc, Block};
use zeroize::Zeroize;

/// FF1 parameters outside what this implementation (or the standard) accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ff1Error {
    /// radix must be in 2..=65536.
    Radix,
    /// radix^n must be >= 1,000,000 (SP 800-38G rev. 1) and radix^ceil(n/2) < 2^96 (u128 maths).
    Length,
    /// A numeral is not below the radix.
    Numeral,
}

const ROUNDS: u8 = 10;

/// General FF1 over any AES variant (`C` is `Aes128Enc`, `Aes192Enc` or `Aes256Enc`).
pub struct Ff1<C: BlockEncrypt + BlockSizeUser<BlockSize = U16>> {
    cipher: C,
    radix: u32,
}

impl<C: BlockEncrypt + BlockSizeUser<BlockSize = U16>> Ff1<C> {
    pub fn new(cipher: C, radix: u32) -> Result<Self, Ff1Error> {
        if !(2..=1 << 16).contains(&radix) {
            return Err(Ff1Error::Radix);
        }
        Ok(Self { cipher, radix })
    }

    /// CBC-MAC with a zero IV over whole 16-byte blocks (the PRF of the standard).
    fn prf(&self, data: &[u8]) -> [u8; 16] {
        debug_assert!(data.len().is_multiple_of(16));
        let mut y = Block::default();
        for chunk in data.chunks_exact(16) {
            for (a, b) in y.iter_mut().zip(chunk) {
                *a ^= b;
            }
            self.cipher.encrypt_block(&mut y);
        }
        y.into()
    }

    fn pow(&self, e: usize) -> Option<u128> {
        let mut acc: u128 = 1;
        for _ in 0..e {
            acc = acc.checked_mul(self.radix as u128)?;
        }
        Some(acc)
    }

    fn num(&self, x: &[u32]) -> u128 {
        x.iter()
            .fold(0u128, |acc, &d| acc * self.radix as u128 + d as u128)
    }

    fn str_m(&self, mut x: u128, out: &mut [u32]) {
        for slot in out.iter_mut().rev() {
            *slot = (x % self.radix as u128) as u32;
            x /= self.radix as u128;
        }
    }

    fn check(&self, x: &[u32]) -> Result<(usize, u128, u128), Ff1Error> {
        let n = x.len();
        let u = n / 2;
        let v = n - u;
        let full = self.pow(n);
        if n < 2 || full.is_some_and(|f| f < 1_000_000) {
            return Err(Ff1Error::Length);
        }
        let rv = self
            .pow(v)
            .filter(|&p| p < 1 << 96)
            .ok_or(Ff1Error::Length)?;
        let ru = self.pow(u).ok_or(Ff1Error::Length)?;
        if x.iter().any(|&d| d >= self.radix) {
            return Err(Ff1Error::Numeral);
        }
        Ok((u, ru, rv))
    }

    /// `P || Q` for round `i` with the `b`-byte numeral `num`; P is the fixed header block.
    fn round_y(&self, tweak: &[u8], n: usize, u: usize, b: usize, i: u8, num: u128) -> u128 {
        let t = tweak.len();
        let mut msg = Vec::with_capacity(16 + t + b + 17);
        msg.extend_from_slice(&[1, 2, 1]);
        msg.extend_from_slice(&self.radix.to_be_bytes()[1..]);
        msg.push(10);
        msg.push((u % 256) as u8);
        msg.extend_from_slice(&(n as u32).to_be_bytes());
        msg.extend_from_slice(&(t as u32).to_be_bytes());
        msg.extend_from_slice(tweak);
        let pad = (16 - (t + b + 1) % 16) % 16;
        msg.resize(msg.len() + pad, 0);
        msg.push(i);
        msg.extend_from_slice(&num.to_be_bytes()[16 - b..]);
        let r = self.prf(&msg);
        // d = 4 * ceil(b / 4) + 4 <= 16 under our length limit, so S is a prefix of R.
        let d = 4 * b.div_ceil(4) + 4;
        r[..d]
            .iter()
            .fold(0u128, |acc, &byte| (acc << 8) | byte as u128)
    }

    fn byte_len(rv: u128) -> usize {
        // ceil(ceil(v * log2(radix)) / 8), exactly: ceil(log2 x) = bit length of x - 1.
        let bits = 128 - (rv - 1).leading_zeros() as usize;
        bits.div_ceil(8)
    }

    /// Encrypts the numeral string `x` (each numeral < radix) under `tweak`.
    pub fn encrypt(&self, x: &[u32], tweak: &[u8]) -> Result<Vec<u32>, Ff1Error> {
        let (u, ru, rv) = self.check(x)?;
        let n = x.len();
        let b = Self::byte_len(rv);
        let (mut a, mut bb) = (self.num(&x[..u]), self.num(&x[u..]));
        for i in 0..ROUNDS {
            let y = self.round_y(tweak, n, u, b, i, bb);
            let m = if i % 2 == 0 { ru } else { rv };
            let c = (a % m + y % m) % m;
            a = bb;
            bb = c;
        }
        let mut out = vec![0u32; n];
        self.str_m(a, &mut out[..u]);
        self.str_m(bb, &mut out[u..]);
        Ok(out)
    }

    /// Inverse of [`Ff1::encrypt`].
    pub fn decrypt(&self, x: &[u32], tweak: &[u8]) -> Result<Vec<u32>, Ff1Error> {
        let (u, ru, rv) = self.check(x)?;
        let n = x.len();
        let b = Self::byte_len(rv);
        let (mut a, mut bb) = (self.num(&x[..u]), self.num(&x[u..]));
        for i in (0..ROUNDS).rev() {
            let y = self.round_y(tweak, n, u, b, i, a);
            let m = if i % 2 == 0 { ru } else { rv };
            let c = (bb % m + m - y % m) % m;
            bb = a;
            a = c;
        }
        let mut out = vec![0u32; n];
        self.str_m(a, &mut out[..u]);
        self.str_m(bb, &mut out[u..]);
        Ok(out)
    }
}

/// FF1-AES-256 at radix 2, n = 64, empty tweak, on `u64` values (bit 63 is the first numeral).
pub struct Ff1Bin64 {
    cipher: Aes256Enc,
    /// AES_K(P): the constant first CBC-MAC block, so each round is `AES_K(EP ^ Q)`.
    ep: u128,
}

/// P for radix 2, u = 32, n = 64, t = 0: [1,2,1] [radix]^3 [10] [u mod 256] [n]^4 [t]^4.
const P_BIN64: [u8; 16] = [1, 2, 1, 0, 0, 2, 10, 32, 0, 0, 0, 64, 0, 0, 0, 0];

/// Inputs processed in lock step by the batch paths; the `aes` crate pipelines 8 blocks at once.
pub const LANES: usize = 16;

impl Drop for Ff1Bin64 {
    fn drop(&mut self) {
        // The AES key schedule zeroises itself (aes "zeroize" feature); EP is keyed too.
        self.ep.zeroize();
    }
}

impl Ff1Bin64 {
    pub fn new(key: &[u8; 32]) -> Self {
        let cipher = Aes256Enc::new(GenericArray::from_slice(key));
        let mut p = Block::from(P_BIN64);
        cipher.encrypt_block(&mut p);
        let ep = u128::from_be_bytes(p.into());
        Self { cipher, ep }
    }

    /// y mod 2^32 for round `i` with half `half`: Q = [0]^11 [i] [half]^4, R = AES(EP ^ Q),
    /// y = first 8 bytes of R, and only its low 32 bits survive the mod 2^32.
    #[inline(always)]
    fn q(&self, i: u8, half: u32) -> Block {
        Block::from((self.ep ^ ((i as u128) << 32) ^ half as u128).to_be_bytes())
    }

    #[inline(always)]
    fn y32(r: &Block) -> u32 {
        u32::from_be_bytes([r[4], r[5], r[6], r[7]])
    }

    pub fn encrypt(&self, w: u64) -> u64 {
        let (mut a, mut b) = ((w >> 32) as u32, w as u32);
        for i in 0..ROUNDS {
            let mut r = self.q(i, b);
            self.cipher.encrypt_block(&mut r);
            let c = a.wrapping_add(Self::y32(&r));
            a = b;
            b = c;
        }
        (a as u64) << 32 | b as u64
    }

    pub fn decrypt(&self, v: u64) -> u64 {
        let (mut a, mut b) = ((v >> 32) as u32, v as u32);
        for i in (0..ROUNDS).rev() {
            let mut r = self.q(i, a);
            self.cipher.encrypt_block(&mut r);
            let c = b.wrapping_sub(Self::y32(&r));
            b = a;
            a = c;
        }
        (a as u64) << 32 | b as u64
    }

    /// Encrypts every value of `ws` in place (up to [`LANES`] at a time in lock step).
    pub fn encrypt_many(&self, ws: &mut [u64]) {
        for chunk in ws.chunks_mut(LANES) {
            let n = chunk.len();
            let mut a = [0u32; LANES];
            let mut b = [0u32; LANES];
            for (j, &w) in chunk.iter().enumerate() {
                a[j] = (w >> 32) as u32;
                b[j] = w as u32;
            }
            let mut blocks = [Block::default(); LANES];
            for i in 0..ROUNDS {
                for j in 0..n {
                    blocks[j] = self.q(i, b[j]);
                }
                self.cipher.encrypt_blocks(&mut blocks[..n]);
                for j in 0..n {
                    let c = a[j].wrapping_add(Self::y32(&blocks[j]));
                    a[j] = b[j];
                    b[j] = c;
                }
            }
            for (j, w) in chunk.iter_mut().enumerate() {
                *w = (a[j] as u64) << 32 | b[j] as u64;
            }
        }
    }

    /// Decrypts every value of `vs` in place (batched like [`Ff1Bin64::encrypt_many`]).
    pub fn decrypt_many(&self, vs: &mut [u64]) {
        for chunk in vs.chunks_mut(LANES) {
            let n = chunk.len();
            let mut a = [0u32; LANES];
            let mut b = [0u32; LANES];
            for (j, &v) in chunk.iter().enumerate() {
                a[j] = (v >> 32) as u32;
                b[j] = v as u32;
            }
            let mut blocks = [Block::default(); LANES];
            for i in (0..ROUNDS).rev() {
                for j in 0..n {
                    blocks[j] = self.q(i, a[j]);
                }
                self.cipher.encrypt_blocks(&mut blocks[..n]);
                for j in 0..n {
                    let c = b[j].wrapping_sub(Self::y32(&blocks[j]));
                    b[j] = a[j];
                    a[j] = c;
                }
            }
            for (j, v) in chunk.iter_mut().enumerate() {
                *v = (a[j] as u64) << 32 | b[j] as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::Aes128Enc;

    #[test]
    fn parameter_checks() {
        let c = || Aes128Enc::new_from_slice(&[0u8; 16]).unwrap();
        assert_eq!(Ff1::new(c(), 1).err(), Some(Ff1Error::Radix));
        assert_eq!(Ff1::new(c(), 65537).err(), Some(Ff1Error::Radix));
        let f = Ff1::new(c(), 10).unwrap();
        assert_eq!(
            f.encrypt(&[1, 2, 3, 4, 5], b"").err(),
            Some(Ff1Error::Length)
        );
        assert_eq!(
            f.encrypt(&[1, 2, 3, 4, 5, 10], b"").err(),
            Some(Ff1Error::Numeral)
        );
        assert_eq!(f.encrypt(&[0; 60], b"").err(), Some(Ff1Error::Length));
        assert!(f.encrypt(&[0; 6], b"").is_ok());
    }

    fn bits(w: u64) -> Vec<u32> {
        (0..64).rev().map(|i| ((w >> i) & 1) as u32).collect()
    }

    fn from_bits(x: &[u32]) -> u64 {
        x.iter().fold(0u64, |acc, &d| acc << 1 | d as u64)
    }

    /// A small deterministic generator so the cross-check covers many inputs without a dep.
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn fast_path_equals_general_path() {
        let mut s = 42u64;
        for _ in 0..8 {
            let mut key = [0u8; 32];
            for chunk in key.chunks_mut(8) {
                chunk.copy_from_slice(&splitmix(&mut s).to_le_bytes());
            }
            let fast = Ff1Bin64::new(&key);
            let general = Ff1::new(Aes256Enc::new_from_slice(&key).unwrap(), 2).unwrap();
            let mut inputs: Vec<u64> = vec![0, 1, u64::MAX, 1 << 32, (7 << 32) | 123];
            inputs.extend((0..200).map(|_| splitmix(&mut s)));
            for &w in &inputs {
                let v = fast.encrypt(w);
                assert_eq!(
                    from_bits(&general.encrypt(&bits(w), b"").unwrap()),
                    v,
                    "w={w:#x}"
                );
                assert_eq!(fast.decrypt(v), w);
                assert_eq!(from_bits(&general.decrypt(&bits(v), b"").unwrap()), w);
            }
            // Batched lanes, including a ragged last chunk, equal the one-at-a-time path.
            let mut batch = inputs.clone();
            fast.encrypt_many(&mut batch);
            let single: Vec<u64> = inputs.iter().map(|&w| fast.encrypt(w)).collect();
            assert_eq!(batch, single);
            fast.decrypt_many(&mut batch);
            assert_eq!(batch, inputs);
        }
    }

    #[test]
    fn permutation_on_a_small_slice() {
        let fast = Ff1Bin64::new(&[7u8; 32]);
        let mut seen = std::collections::HashSet::new();
        for i in 0..50_000u64 {
            assert!(seen.insert(fast.encrypt((3 << 32) | i)));
        }
    }
}
