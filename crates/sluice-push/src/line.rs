//! One pushed line made a record payload.

use sluice_record::FLAG_TRUNCATED;

/// A pushed line as a payload: one trailing line feed (with its carriage
/// return) removed, inner line feeds made spaces (a payload holds no
/// newline; syslog's multi-line messages get the same treatment), and cut
/// at `max_line_bytes` with [`FLAG_TRUNCATED`] set. Returns the payload
/// (borrowed from `line`, or built in `scratch` when a line feed had to
/// go), its flags, and whether line feeds were replaced.
pub fn clean_line<'a>(
    line: &'a [u8],
    max_line_bytes: usize,
    scratch: &'a mut Vec<u8>,
) -> (&'a [u8], u8, bool) {
    let mut line = line;
    if let Some(rest) = line.strip_suffix(b"\n") {
        line = rest.strip_suffix(b"\r").unwrap_or(rest);
    }
    let mut flags = 0;
    if line.len() > max_line_bytes {
        line = &line[..max_line_bytes];
        flags |= FLAG_TRUNCATED;
    }
    if memchr_newline(line) {
        scratch.clear();
        scratch.extend(line.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
        return (scratch.as_slice(), flags, true);
    }
    (line, flags, false)
}

/// `memchr` rather than `<[u8]>::contains`: the standard library's
/// search was a visible share of decoding a push in a profile.
fn memchr_newline(line: &[u8]) -> bool {
    memchr::memchr(b'\n', line).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_lose_their_newlines_and_are_cut_at_the_limit() {
        let mut scratch = Vec::new();
        assert_eq!(
            clean_line(b"plain", 10, &mut scratch),
            (&b"plain"[..], 0, false)
        );
        assert_eq!(
            clean_line(b"ends\r\n", 10, &mut scratch),
            (&b"ends"[..], 0, false)
        );
        assert_eq!(
            clean_line(b"a\nb\n", 10, &mut scratch),
            (&b"a b"[..], 0, true)
        );
        assert_eq!(
            clean_line(b"0123456789abc", 10, &mut scratch),
            (&b"0123456789"[..], FLAG_TRUNCATED, false)
        );
        assert_eq!(clean_line(b"", 10, &mut scratch), (&b""[..], 0, false));
    }
}
