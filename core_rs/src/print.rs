//! Printer-file lines (SPEC C3): the outer print `seq,SERIAL,URL` and the inner print `seq,PIN`.
//!
//! Formatting 10 million CSV lines is the slowest part of an export when done per code in
//! Python, so it is a bulk buffer function here: codes come from `Scheme::generate_into`, lines
//! are formatted in parallel parts and concatenated. `seq` is `index + seq_base`.

use crate::serial::{resolve_threads, RecordFormat, Scheme, SerialError, SERIAL_LEN};

/// Which of the two printer files a line belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `seq,SERIAL,{url_prefix}SERIAL\n`
    Outer,
    /// `seq,PIN\n`
    Inner,
}

fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn format_part(records: &[u8], width: usize, first_seq: u64, kind: Kind, prefix: &[u8]) -> Vec<u8> {
    let n = records.len() / width;
    let per_line = match kind {
        Kind::Outer => 12 + 2 * SERIAL_LEN + prefix.len(),
        Kind::Inner => 12 + width - SERIAL_LEN,
    };
    let mut out = Vec::with_capacity(n * per_line);
    for (i, record) in records.chunks_exact(width).enumerate() {
        push_decimal(&mut out, first_seq + i as u64);
        out.push(b',');
        match kind {
            Kind::Outer => {
                let serial = &record[..SERIAL_LEN];
                out.extend_from_slice(serial);
                out.push(b',');
                out.extend_from_slice(prefix);
                out.extend_from_slice(serial);
            }
            Kind::Inner => out.extend_from_slice(&record[SERIAL_LEN..]),
        }
        out.push(b'\n');
    }
    out
}

/// The lines of indexes `start..start + n` of a batch, for one of the two printer files, as
/// consecutive parts (one per thread) so the caller can copy them once into its own buffer.
#[allow(clippy::too_many_arguments)]
pub fn print_parts(
    scheme: &Scheme,
    batch_no: u32,
    start: u32,
    n: usize,
    kind: Kind,
    url_prefix: &[u8],
    seq_base: u64,
    version: Option<u32>,
    threads: usize,
) -> Result<Vec<Vec<u8>>, SerialError> {
    let fmt = RecordFormat {
        pins: kind == Kind::Inner,
        newline: false,
    };
    let width = fmt.width(scheme.pin_length());
    let mut records = vec![0u8; n * width];
    scheme.generate_into(batch_no, start, fmt, version, threads, &mut records)?;
    let first = u64::from(start) + seq_base;
    let threads = resolve_threads(threads).clamp(1, 64);
    if threads == 1 || n < 65_536 {
        return Ok(vec![format_part(&records, width, first, kind, url_prefix)]);
    }
    let per = n.div_ceil(threads);
    let parts: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = records
            .chunks(per * width)
            .enumerate()
            .map(|(i, part)| {
                let seq = first + (i * per) as u64;
                s.spawn(move || format_part(part, width, seq, kind, url_prefix))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("format thread"))
            .collect()
    });
    Ok(parts)
}

/// `print_parts` joined into one buffer.
#[allow(clippy::too_many_arguments)]
pub fn print_lines(
    scheme: &Scheme,
    batch_no: u32,
    start: u32,
    n: usize,
    kind: Kind,
    url_prefix: &[u8],
    seq_base: u64,
    version: Option<u32>,
    threads: usize,
) -> Result<Vec<u8>, SerialError> {
    let parts = print_parts(
        scheme, batch_no, start, n, kind, url_prefix, seq_base, version, threads,
    )?;
    Ok(parts.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheme() -> Scheme {
        Scheme::new(&[7u8; 32], &[1], 1, 6).expect("scheme")
    }

    #[test]
    fn outer_and_inner_lines_match_single_codes() {
        let s = scheme();
        let outer = print_lines(&s, 9, 100, 3, Kind::Outer, b"https://h/c/", 1, None, 1).unwrap();
        let inner = print_lines(&s, 9, 100, 3, Kind::Inner, b"", 1, None, 1).unwrap();
        let outer = String::from_utf8(outer).unwrap();
        let inner = String::from_utf8(inner).unwrap();
        for (i, (o, p)) in outer.lines().zip(inner.lines()).enumerate() {
            let serial =
                String::from_utf8(s.serial(9, 100 + i as u32, None).unwrap().to_vec()).unwrap();
            let pin = s.pin(serial.as_bytes()).unwrap();
            assert_eq!(o, format!("{},{serial},https://h/c/{serial}", 101 + i));
            assert_eq!(p, format!("{},{pin}", 101 + i));
        }
        assert_eq!(outer.lines().count(), 3);
    }

    #[test]
    fn parallel_parts_equal_one_thread() {
        let s = scheme();
        for kind in [Kind::Outer, Kind::Inner] {
            let one = print_lines(&s, 3, 5, 200_001, kind, b"x/", 0, None, 1).unwrap();
            let two = print_lines(&s, 3, 5, 200_001, kind, b"x/", 0, None, 2).unwrap();
            assert_eq!(one, two);
        }
    }

    #[test]
    fn empty_range_is_empty() {
        assert!(
            print_lines(&scheme(), 1, 0, 0, Kind::Outer, b"", 1, None, 1)
                .unwrap()
                .is_empty()
        );
    }
}
