//! How deep a JSON text nests, without parsing it: the guard in front of every JSON decoder.
//!
//! A decoder recurses once per array or object it opens, so a body of nested brackets reaches
//! its recursion limit (or the stack) before anything else is checked. One pass over the bytes,
//! strings skipped (a backslash escapes the byte after it), counts the brackets: a `[` or `{`
//! opens a level, a `]` or `}` closes one. A text that does not balance is malformed, but a
//! decoder still recurses as deep as it opens before it finds out, so the depth that counts is
//! the highest the running count reaches, from 0 (a stray closing bracket first lowers it).
//! Linear in the text's length: a 10 MB body is one scan, where the Python version it replaced
//! stripped bracket pairs pass by pass (up to the limit's number of passes, seconds of CPU).

/// Whether `text`'s arrays and objects nest at most `limit` levels deep (see the module).
pub fn depth_within(text: &[u8], limit: usize) -> bool {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut depth: i64 = 0;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return false;
                }
            }
            b']' | b'}' => depth -= 1,
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::depth_within;

    fn nested(open: &str, inner: &str, close: &str, n: usize) -> Vec<u8> {
        format!("{}{}{}", open.repeat(n), inner, close.repeat(n)).into_bytes()
    }

    #[test]
    fn exact_at_the_limit() {
        assert!(depth_within(&nested("[", "", "]", 64), 64));
        assert!(!depth_within(&nested("[", "", "]", 65), 64));
        assert!(depth_within(&nested("{\"a\":", "1", "}", 64), 64));
        assert!(!depth_within(&nested("{\"a\":", "1", "}", 65), 64));
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        let text = format!("[\"{}\"]", "[".repeat(200));
        assert!(depth_within(text.as_bytes(), 64));
        let escaped_quote = format!("[\"\\\"{}\"]", "[".repeat(200));
        assert!(depth_within(escaped_quote.as_bytes(), 64));
        let escaped_backslash = format!("[\"\\\\\"{}{}]", "[".repeat(80), "]".repeat(80));
        assert!(!depth_within(escaped_backslash.as_bytes(), 64));
    }

    #[test]
    fn unbalanced_counts_the_highest_level_reached() {
        let closes_first = format!("{}{}", "]".repeat(100), "[".repeat(100));
        assert!(depth_within(closes_first.as_bytes(), 64));
        let wrong_closers = format!("{}{}{}", "[".repeat(60), "}".repeat(60), "[]".repeat(100));
        assert!(depth_within(wrong_closers.as_bytes(), 64));
        assert!(!depth_within(&nested("[", "", "}", 2000), 64));
        let one_short = format!("{}{}", "[".repeat(65), "]".repeat(64));
        assert!(!depth_within(one_short.as_bytes(), 64));
    }

    #[test]
    fn an_unterminated_string_hides_the_rest() {
        assert!(depth_within(
            format!("[\"{}", "[".repeat(100)).as_bytes(),
            64
        ));
        assert!(depth_within(b"", 64) && depth_within(b"\\", 0));
    }
}
