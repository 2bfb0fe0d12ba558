//! The known answers of `vectors/known_answers.txt` (the same file tests/test_vectors.py reads):
//! the serials, PINs and printer lines pinned when the scheme was fixed, and NIST's FF1 samples.
//! Any change to what the scheme prints fails here and in pytest.
use std::collections::HashMap;

use _core::ff1::Ff1;
use _core::print::{self, Kind};
use _core::serial::{RecordFormat, Scheme};
use aes::cipher::KeyInit;
use aes::{Aes128Enc, Aes192Enc, Aes256Enc};

const VECTORS: &str = include_str!("../vectors/known_answers.txt");

/// The records of one kind (`key`, `code`, `print`, `ff1`), each as its fields after the kind.
fn records(kind: &str) -> Vec<Vec<&'static str>> {
    VECTORS
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|f| f[0] == kind)
        .map(|f| f[1..].to_vec())
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    if s == "-" {
        return Vec::new();
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn num<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("number")
}

fn masters() -> HashMap<&'static str, Vec<u8>> {
    records("key")
        .into_iter()
        .map(|f| (f[0], hex(f[1])))
        .collect()
}

/// The scheme every code line is checked under: versions 1 and 2 active, 2 current.
fn scheme(master: &[u8], pin_length: usize) -> Scheme {
    Scheme::new(master, &[1, 2], 2, pin_length).expect("scheme")
}

#[test]
fn serials_and_pins_are_pinned() {
    let masters = masters();
    let codes = records("code");
    for f in &codes {
        let (version, batch, index) = (num::<u32>(f[1]), num::<u32>(f[2]), num::<u32>(f[3]));
        let (pin_length, serial, pin) = (num::<usize>(f[4]), f[5], f[6]);
        let s = scheme(&masters[f[0]], pin_length);
        let line = f.join(" ");
        assert_eq!(
            &s.serial(batch, index, Some(version)).unwrap(),
            serial.as_bytes(),
            "{line}"
        );
        assert_eq!(s.pin(serial.as_bytes()).unwrap(), pin, "{line}");
        let v = s.verify(serial.as_bytes()).unwrap();
        assert_eq!(
            (v.batch_no, v.index, v.version),
            (batch, index, version),
            "{line}"
        );
        // The bulk path (lanes, threads) prints the same record.
        let fmt = RecordFormat {
            pins: true,
            newline: false,
        };
        let mut record = vec![0u8; fmt.width(pin_length)];
        s.generate_into(batch, index, fmt, Some(version), 1, &mut record)
            .unwrap();
        assert_eq!(record, format!("{serial}{pin}").into_bytes(), "{line}");
    }
    // The file keeps its coverage: both ends of the index range, two versions, two keys.
    let has = |col: usize, value: &str| codes.iter().any(|f| f[col] == value);
    assert!(has(3, "0") && has(3, "4294967295"), "indexes 0 and 2^32-1");
    assert!(has(1, "1") && has(1, "2"), "two key versions");
    assert!(masters.len() >= 2 && codes.len() >= 32);
}

#[test]
fn printer_lines_are_pinned() {
    let masters = masters();
    let prints = records("print");
    assert!(prints.len() >= 4);
    for f in &prints {
        let (version, batch, index) = (num::<u32>(f[1]), num::<u32>(f[2]), num::<u32>(f[3]));
        let kind = match f[4] {
            "outer" => Kind::Outer,
            "inner" => Kind::Inner,
            other => panic!("unknown kind {other}"),
        };
        let prefix = if f[5] == "-" { "" } else { f[5] };
        let s = scheme(&masters[f[0]], 6);
        let got = print::print_lines(
            &s,
            batch,
            index,
            1,
            kind,
            prefix.as_bytes(),
            1,
            Some(version),
            1,
        )
        .unwrap();
        assert_eq!(got, format!("{}\n", f[6]).into_bytes(), "{}", f.join(" "));
    }
}

fn numerals(s: &str, radix: u32) -> Vec<u32> {
    s.chars().map(|c| c.to_digit(radix).unwrap()).collect()
}

fn text(x: &[u32], radix: u32) -> String {
    x.iter()
        .map(|&d| char::from_digit(d, radix).unwrap())
        .collect()
}

fn check_ff1<C>(cipher: C, radix: u32, tweak: &[u8], pt: &str, ct: &str, sample: &str)
where
    C: aes::cipher::BlockEncrypt + aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
{
    let f = Ff1::new(cipher, radix).unwrap();
    let enc = f.encrypt(&numerals(pt, radix), tweak).unwrap();
    assert_eq!(text(&enc, radix), ct, "NIST sample {sample} encrypt");
    let dec = f.decrypt(&enc, tweak).unwrap();
    assert_eq!(text(&dec, radix), pt, "NIST sample {sample} decrypt");
}

#[test]
fn nist_sp800_38g_ff1_samples() {
    let samples = records("ff1");
    assert_eq!(samples.len(), 9);
    for f in samples {
        let (sample, key, radix, tweak, pt, ct) =
            (f[0], hex(f[1]), num(f[2]), hex(f[3]), f[4], f[5]);
        match key.len() {
            16 => check_ff1(
                Aes128Enc::new_from_slice(&key).unwrap(),
                radix,
                &tweak,
                pt,
                ct,
                sample,
            ),
            24 => check_ff1(
                Aes192Enc::new_from_slice(&key).unwrap(),
                radix,
                &tweak,
                pt,
                ct,
                sample,
            ),
            32 => check_ff1(
                Aes256Enc::new_from_slice(&key).unwrap(),
                radix,
                &tweak,
                pt,
                ct,
                sample,
            ),
            n => panic!("sample {sample}: key of {n} bytes"),
        }
    }
}
