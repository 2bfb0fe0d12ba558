//! The request log: what the request layer (`app/front.py`) keeps of every answered request —
//! the Prometheus request counts and latency histogram per method and route, and the access log
//! line — and the process's other log lines, gathered in one buffer, in order, for the log
//! writer thread to take and write.
//!
//! One call per request does all of it: the counts are plain integers in a map of routes, the
//! line is JSON written straight into the buffer. The same work in Python (a dict look-up and a
//! bisection, a struct per line encoded later by the writer thread) cost ~12k instructions a
//! request, a tenth of the bare framework's whole `/ping` (bench/RESULTS.md, issue 21).
use std::collections::HashMap;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Upper bounds (seconds) of the latency histogram's buckets; one more bucket holds the rest.
pub const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The methods counted by name; any other is counted as `other` (a client cannot grow the
/// label set at will).
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];

fn method_index(method: &str) -> usize {
    METHODS[..7].iter().position(|m| *m == method).unwrap_or(7)
}

/// One (method, route): its requests per bucket (not cumulative), their sum, their statuses.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Series {
    pub buckets: [u64; BUCKETS.len() + 1],
    pub sum: f64,
    pub statuses: Vec<(u16, u64)>,
}

/// Bytes of lines kept while the writer is stuck (a stalled log pipe): past this, new lines are
/// dropped and counted, and a line saying how many goes out with the next write (probe S: the
/// buffer grew by ~7 MB per 1,000 requests with long paths, without end).
pub const MAX_GATHERED: usize = 32 << 20;

#[derive(Debug, Default)]
pub struct RequestLog {
    lines: Vec<u8>,
    dropped: u64,
    routes: HashMap<String, [Option<Box<Series>>; METHODS.len()]>,
    rng: u64,
}

impl RequestLog {
    pub fn new(seed: u64) -> Self {
        RequestLog {
            rng: seed | 1,
            ..Default::default()
        }
    }

    /// Count one answered request (`route`: its route's path template).
    pub fn observe(&mut self, method: &str, route: &str, status: u16, seconds: f64) {
        let index = method_index(method);
        let methods = match self.routes.get_mut(route) {
            Some(methods) => methods,
            None => self.routes.entry(route.to_owned()).or_default(),
        };
        let series = methods[index].get_or_insert_with(Box::default);
        series.buckets[BUCKETS.iter().take_while(|b| **b < seconds).count()] += 1;
        series.sum += seconds;
        match series.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => series.statuses.push((status, 1)),
        }
    }

    /// True for a fraction `sample` of the calls (xorshift64: cheap, not for secrets).
    pub fn sampled(&mut self, sample: f64) -> bool {
        if sample >= 1.0 {
            return true;
        }
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        ((x >> 11) as f64) / ((1u64 << 53) as f64) < sample
    }

    /// Add the access line of one request, in the shape of every other log line: time (s, to
    /// the ms), level, logger, message, request id, then method, path, status, ms (to 10 µs).
    pub fn access(
        &mut self,
        now_ms: u128,
        rid: &str,
        method: &str,
        path: &str,
        status: u16,
        seconds: f64,
    ) {
        if self.full() {
            return;
        }
        let out = &mut self.lines;
        push_head(out, now_ms);
        out.extend_from_slice(
            b",\"level\":\"INFO\",\"logger\":\"tracecode.access\",\"msg\":\"request\",\"request_id\":",
        );
        escape_into(out, rid);
        out.extend_from_slice(b",\"method\":");
        escape_into(out, method);
        out.extend_from_slice(b",\"path\":");
        escape_into(out, path);
        out.extend_from_slice(b",\"status\":");
        push_decimal(out, u64::from(status));
        out.extend_from_slice(b",\"ms\":");
        let hundredths = (seconds.max(0.0) * 100_000.0).round() as u64; // of a ms
        push_decimal(out, hundredths / 100);
        out.push(b'.');
        push_digits(out, hundredths % 100, 2);
        out.extend_from_slice(b"}\n");
    }

    /// Add a line made elsewhere (a formatted log record); the newline is added here.
    pub fn put(&mut self, line: &str) {
        if self.full() {
            return;
        }
        self.lines.extend_from_slice(line.as_bytes());
        self.lines.push(b'\n');
    }

    /// Whether the buffer is at `MAX_GATHERED` (the line about to be added is counted as
    /// dropped).
    fn full(&mut self) -> bool {
        if self.lines.len() < MAX_GATHERED {
            return false;
        }
        self.dropped += 1;
        true
    }

    /// Bytes of lines gathered and not yet taken.
    pub fn gathered(&self) -> usize {
        self.lines.len()
    }

    /// The lines gathered so far, to be written; the buffer starts again (its memory kept,
    /// unless a stuck writer let it grow past 4 MB).
    pub fn take_into(&mut self, write: impl FnOnce(&[u8])) {
        if self.dropped > 0 {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let out = &mut self.lines;
            push_head(out, now_ms);
            out.extend_from_slice(
                b",\"level\":\"WARNING\",\"logger\":\"tracecode.logs\",\"msg\":\"log lines dropped: the log stream did not take them\",\"dropped\":",
            );
            push_decimal(out, self.dropped);
            out.extend_from_slice(b"}\n");
            self.dropped = 0;
        }
        write(&self.lines);
        self.lines.clear();
        if self.lines.capacity() > 4 << 20 {
            self.lines.shrink_to(1 << 20);
        }
    }

    /// Every series: method, route and its counts.
    pub fn series(&self) -> Vec<(&'static str, &str, &Series)> {
        let mut all = Vec::new();
        for (route, methods) in &self.routes {
            for (method, series) in METHODS.iter().zip(methods) {
                if let Some(series) = series {
                    all.push((*method, route.as_str(), series.as_ref()));
                }
            }
        }
        all
    }
}

/// `n` in decimal (the formatting machinery of `write!` cost more than the rest of a line).
/// A log line's start: `{"ts":` and the time in seconds, to the ms.
fn push_head(out: &mut Vec<u8>, now_ms: u128) {
    out.extend_from_slice(b"{\"ts\":");
    push_decimal(out, (now_ms / 1000) as u64);
    out.push(b'.');
    push_digits(out, (now_ms % 1000) as u64, 3);
}

fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = 1;
    while digits < 20 && n >= 10u64.pow(digits) {
        digits += 1;
    }
    push_digits(out, n, digits as usize);
}

/// The last `width` decimal digits of `n`, zeros in front.
fn push_digits(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for place in out[start..].iter_mut().rev() {
        *place = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Whether a byte of UTF-8 may start something `escape_into` escapes: a quote, a backslash, a
/// control character, or the lead byte of U+0085 (C2) or U+2028 / U+2029 (E2).
fn may_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f || b == 0xc2 || b == 0xe2
}

/// `s` as a JSON string: quotes, backslash and control characters escaped, and the line ends
/// beyond them — NEL (U+0085), LINE and PARAGRAPH SEPARATOR (U+2028, U+2029), which Python's
/// `str.splitlines` and JavaScript take for line ends: written raw, a path holding one split its
/// access line in two for such a reader (a probe) — the rest as is (UTF-8 passes through, as the
/// other log lines write it). Most strings need none: they are copied whole after one scan.
pub fn escape_into(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| may_escape(b)) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let (escaped, width): (&[u8], usize) = match (b, bytes.get(i + 1), bytes.get(i + 2)) {
            (b'"', ..) => (b"\\\"", 1),
            (b'\\', ..) => (b"\\\\", 1),
            (b'\n', ..) => (b"\\n", 1),
            (b'\r', ..) => (b"\\r", 1),
            (b'\t', ..) => (b"\\t", 1),
            (0..=0x1f | 0x7f, ..) => (b"", 1),
            (0xc2, Some(0x85), _) => (b"\\u0085", 2),
            (0xe2, Some(0x80), Some(0xa8)) => (b"\\u2028", 3),
            (0xe2, Some(0x80), Some(0xa9)) => (b"\\u2029", 3),
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escaped.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.extend_from_slice(escaped);
        }
        start = i + width;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(log: &mut RequestLog) -> String {
        let mut taken = Vec::new();
        log.take_into(|b| taken.extend_from_slice(b));
        String::from_utf8(taken).unwrap()
    }

    #[test]
    fn writes_numbers_in_decimal() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 99, 1_796_194_717, u64::MAX] {
            push_decimal(&mut out, n);
            out.push(b' ');
        }
        push_digits(&mut out, 5, 3);
        let want = format!("0 7 10 99 1796194717 {} 005", u64::MAX);
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn escapes_what_json_needs_and_keeps_utf8() {
        let mut out = Vec::new();
        escape_into(&mut out, "a\"b\\c\n\u{0}\u{7f}é/x");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#""a\"b\\c\n\u0000\u007fé/x""#
        );
    }

    #[test]
    fn escapes_the_unicode_line_ends_and_keeps_their_neighbours() {
        let mut out = Vec::new();
        // the line ends, beside their UTF-8 neighbours (the same lead bytes C2 and E2)
        escape_into(
            &mut out,
            "/a\u{2028}{\"x\":1}\u{2029}b\u{85}c\u{b0}\u{2027}\u{202a}é",
        );
        let text = String::from_utf8(out).unwrap();
        let want = "\"/a\\u2028{\\\"x\\\":1}\\u2029b\\u0085c\u{b0}\u{2027}\u{202a}é\"";
        assert_eq!(text, want);
        assert!(!text.contains(['\u{85}', '\u{2028}', '\u{2029}']));
        let mut plain = Vec::new(); // the common case: copied whole
        escape_into(&mut plain, "/v1/verify");
        assert_eq!(plain, b"\"/v1/verify\"");
        let mut near = Vec::new(); // the lead bytes, then something else, last in the string
        escape_into(&mut near, "\u{80}\u{2000}");
        assert_eq!(String::from_utf8(near).unwrap(), "\"\u{80}\u{2000}\"");
    }

    #[test]
    fn a_stuck_writer_keeps_at_most_max_gathered_and_counts_the_rest() {
        let mut log = RequestLog::new(1);
        let line = "x".repeat(1 << 20);
        for _ in 0..40 {
            log.put(&line);
        }
        log.access(0, "r", "GET", "/p", 200, 0.0);
        assert!(log.gathered() < MAX_GATHERED + (2 << 20));
        let written = text(&mut log);
        assert!(
            written.ends_with("\"dropped\":9}\n"),
            "{}",
            &written[written.len() - 200..]
        );
        log.put("after");
        assert_eq!(text(&mut log), "after\n");
    }

    #[test]
    fn access_lines_and_other_lines_keep_their_order() {
        let mut log = RequestLog::new(1);
        log.access(1_796_194_717_012, "abc-1", "GET", "/p\"q", 200, 0.001_234_9);
        log.put(r#"{"msg":"other"}"#);
        let want = "{\"ts\":1796194717.012,\"level\":\"INFO\",\"logger\":\"tracecode.access\",\
                    \"msg\":\"request\",\"request_id\":\"abc-1\",\"method\":\"GET\",\
                    \"path\":\"/p\\\"q\",\"status\":200,\"ms\":1.23}\n{\"msg\":\"other\"}\n";
        assert_eq!(log.gathered(), want.len());
        assert_eq!(text(&mut log), want);
        assert_eq!(log.gathered(), 0);
    }

    #[test]
    fn counts_by_method_route_bucket_and_status() {
        let mut log = RequestLog::new(7);
        log.observe("GET", "/ping", 200, 0.0005);
        log.observe("GET", "/ping", 200, 0.001); // on a bound: that bucket (le)
        log.observe("GET", "/ping", 404, 20.0);
        log.observe("BREW", "/ping", 405, 0.003);
        let mut all = log.series();
        all.sort_by_key(|(m, r, _)| (*m, *r));
        assert_eq!(all.len(), 2);
        let (method, route, get) = all[0];
        assert_eq!((method, route), ("GET", "/ping"));
        assert_eq!(get.buckets[0], 2);
        assert_eq!(get.buckets[BUCKETS.len()], 1);
        assert_eq!(get.statuses, vec![(200, 2), (404, 1)]);
        assert!((get.sum - 20.0015).abs() < 1e-9);
        assert_eq!(
            (all[1].0, all[1].2.statuses.clone()),
            ("other", vec![(405, 1)])
        );
    }

    #[test]
    fn samples_about_the_fraction_asked() {
        let mut log = RequestLog::new(42);
        let kept = (0..100_000).filter(|_| log.sampled(0.25)).count();
        assert!((24_000..26_000).contains(&kept), "{kept}");
        assert!((0..1000).all(|_| log.sampled(1.0)));
        assert!((0..1000).all(|_| !log.sampled(0.0)));
    }
}
