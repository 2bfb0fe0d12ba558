//! Key derivation: one 32-byte master secret, per-purpose and per-version keys by HKDF-SHA256.
//!
//! info strings are `tracecode/v{version}/{purpose}` for the scheme's own keys (`prp`, `tag`,
//! `pin`) and `tracecode/v{version}/ext/{purpose}` for keys handed to Python, so no purpose name
//! can ever make [`KeyRing::derive`] return a key the serial scheme itself uses.
//! Rotation = a new version: new codes use the current version, old printed codes still verify
//! while their version stays active.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// HKDF salt: fixed and public; it only separates this application's use of the master secret.
const SALT: &[u8] = b"tracecode/hkdf-salt/v1";

/// Most key versions active at once (verification tries each of them).
pub const MAX_VERSIONS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The master secret is not 32 bytes.
    MasterLength(usize),
    /// No version, too many versions, a duplicate, or version 0.
    Versions(String),
    /// The requested version is not active.
    UnknownVersion(u32),
    /// A purpose name outside `[a-z0-9._-]{1,64}`, or a length outside 16..=64.
    Purpose(String),
}

/// The HKDF pseudorandom key extracted from the master secret; zeroised on drop.
pub struct MasterKey {
    prk: Zeroizing<[u8; 32]>,
}

impl ZeroizeOnDrop for MasterKey {}

impl MasterKey {
    pub fn new(master: &[u8]) -> Result<Self, KeyError> {
        if master.len() != 32 {
            return Err(KeyError::MasterLength(master.len()));
        }
        let (prk, _) = Hkdf::<Sha256>::extract(Some(SALT), master);
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&prk);
        // `prk` is a GenericArray on the stack; wipe our copy source as well.
        let mut prk = prk;
        prk.as_mut_slice().zeroize();
        Ok(Self { prk: out })
    }

    fn expand(&self, info: &[u8], out: &mut [u8]) {
        let hk = Hkdf::<Sha256>::from_prk(self.prk.as_slice()).expect("32-byte PRK is valid");
        hk.expand(info, out).expect("output length <= 255 * 32");
    }

    /// A 32-byte key of the scheme itself (`prp`, `tag` or `pin`) for `version`.
    pub fn scheme_key(&self, purpose: &str, version: u32) -> Zeroizing<[u8; 32]> {
        let mut key = Zeroizing::new([0u8; 32]);
        self.expand(
            format!("tracecode/v{version}/{purpose}").as_bytes(),
            key.as_mut_slice(),
        );
        key
    }

    /// A key for another purpose (export files, tokens...), never equal to a scheme key.
    pub fn derive(&self, purpose: &str, version: u32, length: usize) -> Result<Vec<u8>, KeyError> {
        let ok_name = !purpose.is_empty()
            && purpose.len() <= 64
            && purpose
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !ok_name {
            return Err(KeyError::Purpose(
                "purpose must be 1-64 characters of a-z, 0-9, '.', '_' or '-'".into(),
            ));
        }
        if !(16..=64).contains(&length) {
            return Err(KeyError::Purpose(
                "length must be between 16 and 64 bytes".into(),
            ));
        }
        let mut out = vec![0u8; length];
        self.expand(
            format!("tracecode/v{version}/ext/{purpose}").as_bytes(),
            &mut out,
        );
        Ok(out)
    }
}

/// Checks a list of active versions and the current one; returns them newest-first-tried order:
/// the current version first, then the others in the order given.
pub fn check_versions(versions: &[u32], current: u32) -> Result<Vec<u32>, KeyError> {
    if versions.is_empty() || versions.len() > MAX_VERSIONS {
        return Err(KeyError::Versions(format!(
            "between 1 and {MAX_VERSIONS} active key versions are needed, got {}",
            versions.len()
        )));
    }
    let mut seen = Vec::with_capacity(versions.len());
    for &v in versions {
        if v == 0 {
            return Err(KeyError::Versions("key versions start at 1".into()));
        }
        if seen.contains(&v) {
            return Err(KeyError::Versions(format!(
                "key version {v} is listed twice"
            )));
        }
        seen.push(v);
    }
    if !seen.contains(&current) {
        return Err(KeyError::UnknownVersion(current));
    }
    let mut order = vec![current];
    order.extend(seen.into_iter().filter(|&v| v != current));
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_zeroize_on_drop<T: ZeroizeOnDrop>() {}

    #[test]
    fn key_material_types_zeroize_on_drop() {
        assert_zeroize_on_drop::<MasterKey>();
        assert_zeroize_on_drop::<aes::Aes256Enc>();
        assert_zeroize_on_drop::<Zeroizing<[u8; 32]>>();
    }

    #[test]
    fn zeroizing_buffer_is_cleared() {
        let m = MasterKey::new(&[9u8; 32]).unwrap();
        let mut k = m.scheme_key("prp", 1);
        assert_ne!(*k, [0u8; 32]);
        k.zeroize();
        assert_eq!(*k, [0u8; 32]);
    }

    #[test]
    fn hkdf_rfc5869_case_1_through_the_same_crate() {
        // RFC 5869 A.1 checks that the hkdf crate is HKDF-SHA256 as we use it (salt + info).
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0u8..=0x0c).collect();
        let info: Vec<u8> = (0xf0u8..=0xf9).collect();
        let hk = Hkdf::<Sha256>::new(Some(&salt), &ikm);
        let mut okm = [0u8; 42];
        hk.expand(&info, &mut okm).unwrap();
        let expect = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf\
                      34007208d5b887185865";
        let got: String = okm.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn purposes_and_versions_separate_keys() {
        let m = MasterKey::new(&[1u8; 32]).unwrap();
        let prp1 = m.scheme_key("prp", 1);
        assert_ne!(*prp1, *m.scheme_key("prp", 2));
        assert_ne!(*prp1, *m.scheme_key("tag", 1));
        assert_eq!(
            *prp1,
            *MasterKey::new(&[1u8; 32]).unwrap().scheme_key("prp", 1)
        );
        assert_ne!(
            *prp1,
            *MasterKey::new(&[2u8; 32]).unwrap().scheme_key("prp", 1)
        );
        let export = m.derive("export", 1, 32).unwrap();
        assert_ne!(export.as_slice(), prp1.as_slice());
        assert_ne!(m.derive("prp", 1, 32).unwrap().as_slice(), prp1.as_slice());
        assert_eq!(m.derive("export", 1, 16).unwrap(), export[..16]);
        assert!(m.derive("", 1, 32).is_err());
        assert!(m.derive("a/b", 1, 32).is_err());
        assert!(m.derive("Export", 1, 32).is_err());
        assert!(m.derive("export", 1, 15).is_err());
        assert!(m.derive("export", 1, 65).is_err());
    }

    #[test]
    fn master_length_and_versions() {
        assert_eq!(
            MasterKey::new(&[0u8; 31]).err(),
            Some(KeyError::MasterLength(31))
        );
        assert!(MasterKey::new(&[]).is_err());
        assert_eq!(check_versions(&[1, 2, 3], 2).unwrap(), vec![2, 1, 3]);
        assert_eq!(
            check_versions(&[1], 2).err(),
            Some(KeyError::UnknownVersion(2))
        );
        assert!(check_versions(&[], 1).is_err());
        assert!(check_versions(&[1, 1], 1).is_err());
        assert!(check_versions(&[0, 1], 1).is_err());
        assert!(check_versions(&[1, 2, 3, 4, 5, 6, 7, 8, 9], 1).is_err());
    }
}
