//! The order of the lines in a sorted 2.2 block.
//!
//! A record's sort key is [`SORT_KEY_LEN`] bytes:
//!
//! ```text
//! severity u8        1 fatal .. 9 trace; 0: no severity word
//! status [u8; 3]     a status-like number's digits; zeros: none
//! template           the first 60 bytes of the line's template
//! ```
//!
//! - The *severity* is the first word, within the first
//!   [`FACET_SCAN_BYTES`] of the line, that names a level (`ERROR`,
//!   `warn`, `Info`, ...; any case).
//! - The *status* is the first word there of exactly three digits from
//!   `100` to `599` after a space, tab, quote, `=` or `:`: an HTTP status
//!   in access logs, `status=503`, `"status":503`; not a part of a path
//!   such as `/orders/404`.
//! - Past the template's end, the scan stops at the first of the two it
//!   finds (most lines have one or neither, and it is the costly part of
//!   the key).
//! - The *template* is the line with every word that holds a digit (a
//!   time, a number, an id) replaced by one byte 0x01, and the rest (field
//!   names, levels, message words, punctuation) kept.
//!
//! Why these fields first: a sorted block puts lines of one key next to
//! each other, so a frame holds few kinds of line, and a word that lies on
//! few kinds lies in few frames, which the frames' filters let a query
//! find. The queries people run most on logs are for a level and for a
//! status. With the template alone, a status sits 60 bytes into an access
//! log line, after the request's path, so lines of every status shared
//! frames: `" 503 "` lay in most of an nginx corpus's frames, and with the
//! severity and status first, in a few (BENCHMARKS.md, "Design
//! measurements"). A word of the template comes next: lines of one shape
//! stay together within a severity and status.
//!
//! The key is a heuristic and only orders lines: a query's results do not
//! depend on it, since every frame is filtered on what it holds.

/// Bytes of a record's sort key.
pub(crate) const SORT_KEY_LEN: usize = 64;
/// How far into a line [`sort_key`] looks for a severity and a status.
const FACET_SCAN_BYTES: usize = 256;
/// Key bytes before the template: the severity and the status.
const FACET_BYTES: usize = 4;

/// The bytes of words for [`sort_key`].
const WORD_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'+');
        b += 1;
    }
    table
};

#[inline]
fn word_byte(b: u8) -> bool {
    WORD_BYTE[b as usize]
}

/// The rank of a severity word, most severe first, or 0.
#[inline]
fn severity(word: &[u8]) -> u8 {
    // Most words are no severity: rule them out by length and first letter.
    if !(3..=9).contains(&word.len())
        || !matches!(
            word[0] | 0x20,
            b'a' | b'c' | b'd' | b'e' | b'f' | b'i' | b'n' | b'p' | b't' | b'w'
        )
    {
        return 0;
    }
    let mut lower = [0u8; 9];
    for (l, b) in lower.iter_mut().zip(word) {
        *l = b.to_ascii_lowercase();
    }
    match &lower[..word.len()] {
        b"fatal" | b"panic" | b"emerg" | b"emergency" => 1,
        b"alert" => 2,
        b"crit" | b"critical" => 3,
        b"err" | b"error" => 4,
        b"warn" | b"warning" => 5,
        b"notice" => 6,
        b"info" => 7,
        b"debug" => 8,
        b"trace" => 9,
        _ => 0,
    }
}

/// Whether `word`, after the byte `before`, looks like a status: three
/// digits, `100` to `599`, after a field's or a column's start.
fn is_status(before: Option<u8>, word: &[u8]) -> bool {
    matches!(before, Some(b' ' | b'\t' | b'"' | b'=' | b':'))
        && matches!(word, [b'1'..=b'5', b'0'..=b'9', b'0'..=b'9'])
}

/// The rank of `payload`'s severity: its first word within the first
/// 256 bytes (`FACET_SCAN_BYTES`) that names a level, by the sort key's rule (1
/// fatal .. 9 trace; 0: none). What LogQL's `detected_level` is made from, so a query groups
/// lines by the level their blocks were sorted by.
pub fn severity_of(payload: &[u8]) -> u8 {
    let scan = &payload[..payload.len().min(FACET_SCAN_BYTES)];
    let mut i = 0;
    while i < scan.len() {
        if !word_byte(scan[i]) {
            i += 1;
            continue;
        }
        let start = i;
        // A word that starts inside the scan is read whole, as the sort
        // key reads it.
        while i < payload.len() && word_byte(payload[i]) {
            i += 1;
        }
        let level = severity(&payload[start..i]);
        if level != 0 {
            return level;
        }
    }
    0
}

/// Write `payload`'s sort key (see the module docs) into `key`.
pub(crate) fn sort_key(payload: &[u8], key: &mut [u8; SORT_KEY_LEN]) {
    key.fill(0);
    let (facets, template) = key.split_at_mut(FACET_BYTES);
    let (mut level, mut status) = (0u8, false);
    let mut out = 0;
    let mut i = 0;
    let scan = payload.len().min(FACET_SCAN_BYTES);
    // Words up to the scan limit (or a status past the template's end),
    // the template while it has room.
    while i < payload.len() {
        let template_full = out == template.len();
        if template_full && (i >= scan || status || level != 0) {
            break;
        }
        let b = payload[i];
        if !word_byte(b) {
            if !template_full {
                template[out] = b;
                out += 1;
            }
            i += 1;
            continue;
        }
        let start = i;
        let mut digit = false;
        while i < payload.len() && word_byte(payload[i]) {
            digit |= payload[i].is_ascii_digit();
            i += 1;
        }
        let word = &payload[start..i];
        if start < scan {
            if level == 0 {
                level = severity(word);
            }
            if !status && is_status(start.checked_sub(1).map(|b| payload[b]), word) {
                facets[1..].copy_from_slice(word);
                status = true;
            }
        }
        if template_full {
            continue;
        }
        if digit {
            template[out] = 1;
            out += 1;
        } else {
            let n = word.len().min(template.len() - out);
            template[out..out + n].copy_from_slice(&word[..n]);
            out += n;
        }
    }
    facets[0] = level;
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// `severity_of` finds the level the sort key holds, when it holds
        /// one (the key stops looking once its template is full and it
        /// has a status; `severity_of` looks on through the window).
        #[test]
        fn severity_of_is_the_sort_keys_level(
            words in proptest::collection::vec(
                proptest::sample::select(vec!["ERROR", "info", "x", "level=warn", "503", "a.b", " ", "\"Debug\"", "trace_id=1"]),
                0..80,
            ),
        ) {
            let line = words.join(" ");
            let mut key = [0u8; SORT_KEY_LEN];
            sort_key(line.as_bytes(), &mut key);
            if key[0] != 0 {
                proptest::prop_assert_eq!(severity_of(line.as_bytes()), key[0]);
            }
        }
    }

    fn key(payload: &str) -> Vec<u8> {
        let mut key = [0u8; SORT_KEY_LEN];
        sort_key(payload.as_bytes(), &mut key);
        let end = key.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        key[..end].to_vec()
    }

    #[test]
    fn a_sort_key_is_severity_status_and_template() {
        assert_eq!(
            key("ts=2026-11-21T06:00:00Z level=ERROR id=4bf92f35 msg=\"done\""),
            b"\x04\0\0\0ts=\x01:\x01:\x01 level=ERROR id=\x01 msg=\"done\""
        );
        assert_eq!(
            key("{\"level\":\"info\",\"status\":503}"),
            b"\x07503{\"level\":\"info\",\"status\":\x01}"
        );
        assert_eq!(
            key("1.2.3.4 - - [21/Nov/2026:06:00:00 +0000] \"GET /a HTTP/1.1\" 404 0"),
            b"\x00404\x01 - - [\x01/Nov/\x01:\x01:\x01:\x01 \x01] \"GET /a HTTP/\x01\" \x01 \x01"
        );
        // The first of each; words of digits out of range, or not three
        // of them, are no status.
        assert_eq!(key("warn error 99 600 1000 302 201")[..4], *b"\x05302");
        assert_eq!(key("x=ERRORS y=warning")[..4], *b"\x05\0\0\0");
        assert_eq!(
            key("GET /orders/404 HTTP/1.1\" 200 12")[..4],
            *b"\x00200",
            "not a part of a path"
        );
        assert_eq!(key(""), b"");
    }

    #[test]
    fn the_template_is_cut_at_its_room_and_facets_are_looked_for_beyond() {
        let long = format!("{} tail", "abcdefghij".repeat(10));
        assert_eq!(
            key(&long)[FACET_BYTES..],
            long.as_bytes()[..SORT_KEY_LEN - FACET_BYTES]
        );
        let late = format!("{} level=debug", "word ".repeat(30));
        assert_eq!(key(&late)[..4], *b"\x08\0\0\0");
        let late = format!("{} status=503 level=debug", "word ".repeat(30));
        assert_eq!(
            key(&late)[..4],
            *b"\x00503",
            "the scan stops at a late status"
        );
        let early = format!("level=debug {} status=503", "word ".repeat(30));
        assert_eq!(key(&early)[..4], *b"\x08\0\0\0", "or a late severity");
        let early = format!("level=debug status=503 {}", "word ".repeat(30));
        assert_eq!(key(&early)[..4], *b"\x08503");
        let too_late = format!("{} status=503", "word ".repeat(60));
        assert_eq!(key(&too_late)[..4], *b"\0\0\0\0");
    }

    #[test]
    fn lines_sort_by_severity_then_status_then_shape() {
        let mut lines = [
            "10.0.0.1 - - \"GET /b HTTP/1.1\" 503 12",
            "level=INFO msg=b status=200",
            "level=ERROR msg=a",
            "10.0.0.2 - - \"GET /a HTTP/1.1\" 200 12",
            "10.0.0.3 - - \"GET /a HTTP/1.1\" 503 12",
        ];
        lines.sort_by_key(|l| key(l));
        assert_eq!(
            lines,
            [
                "10.0.0.2 - - \"GET /a HTTP/1.1\" 200 12",
                "10.0.0.3 - - \"GET /a HTTP/1.1\" 503 12",
                "10.0.0.1 - - \"GET /b HTTP/1.1\" 503 12",
                "level=ERROR msg=a",
                "level=INFO msg=b status=200",
            ]
        );
    }
}
