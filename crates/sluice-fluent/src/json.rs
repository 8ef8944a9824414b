//! Rendering msgpack records as one line of compact JSON, by hand.
//!
//! Rules (they are the crate's contract, see the crate docs):
//! - str and bin become JSON strings; bytes that are not UTF-8 become
//!   U+FFFD, one per invalid sequence (as `String::from_utf8_lossy` does).
//!   `"`, `\` and control characters are escaped, so the output never holds
//!   a raw newline.
//! - ints, bools and nil render as themselves; floats in Rust's shortest
//!   round-trip form; NaN and infinities as `null`.
//! - maps keep their key order (duplicates included); a key that is not a
//!   str or bin is rendered as JSON and that text becomes the key string.
//! - an EventTime (ext 0, 8 bytes) renders as a number of seconds with nine
//!   decimals; any other ext as `null`.

use crate::FluentError;
use crate::msgpack::{Reader, Value};

/// Appends the value at the reader to `out` as JSON; the value sits at
/// nesting level `depth` (containers there count as that level).
pub(crate) fn render_value(
    r: &mut Reader<'_>,
    out: &mut Vec<u8>,
    depth: usize,
    max_depth: usize,
) -> Result<(), FluentError> {
    match r.next()? {
        Value::Map(n) => {
            if depth > max_depth {
                return Err(FluentError::TooDeep { limit: max_depth });
            }
            render_map_body(r, n, out, depth, max_depth)
        }
        Value::Array(n) => {
            if depth > max_depth {
                return Err(FluentError::TooDeep { limit: max_depth });
            }
            out.push(b'[');
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                render_value(r, out, depth + 1, max_depth)?;
            }
            out.push(b']');
            Ok(())
        }
        scalar => {
            render_scalar(scalar, out);
            Ok(())
        }
    }
}

/// Appends a map of `n` pairs, whose header the reader already consumed.
pub(crate) fn render_map_body(
    r: &mut Reader<'_>,
    n: u32,
    out: &mut Vec<u8>,
    depth: usize,
    max_depth: usize,
) -> Result<(), FluentError> {
    out.push(b'{');
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        let key_start = r.pos();
        match r.next()? {
            Value::Str(s) | Value::Bin(s) => write_string(out, s),
            _ => {
                // Rare: render the key as JSON, then quote that text.
                r.rewind(key_start);
                let mark = out.len();
                render_value(r, out, depth + 1, max_depth)?;
                let text = out.split_off(mark);
                write_string(out, &text);
            }
        }
        out.push(b':');
        render_value(r, out, depth + 1, max_depth)?;
    }
    out.push(b'}');
    Ok(())
}

fn render_scalar(v: Value<'_>, out: &mut Vec<u8>) {
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Uint(u) => write_u64(out, u),
        Value::Int(i) => {
            if i < 0 {
                out.push(b'-');
            }
            write_u64(out, i.unsigned_abs());
        }
        Value::F32(f) => write_float(out, f.is_finite(), format_args!("{f:?}")),
        Value::F64(f) => write_float(out, f.is_finite(), format_args!("{f:?}")),
        Value::Str(s) | Value::Bin(s) => write_string(out, s),
        Value::Ext(0, body) if body.len() == 8 => {
            let secs = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            let nanos = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
            write_u64(out, u64::from(secs) + u64::from(nanos / 1_000_000_000));
            out.push(b'.');
            let frac = nanos % 1_000_000_000;
            let mut digits = [b'0'; 9];
            let mut rest = frac;
            for d in digits.iter_mut().rev() {
                *d = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            out.extend_from_slice(&digits);
        }
        Value::Ext(..) => out.extend_from_slice(b"null"),
        // Containers never reach here.
        Value::Map(_) | Value::Array(_) => out.extend_from_slice(b"null"),
    }
}

fn write_float(out: &mut Vec<u8>, finite: bool, text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if finite {
        // Debug is the shortest round-trip form and always valid JSON for
        // finite values ("1.0", "1e300", "-0.0", "1.5e-7").
        let _ = out.write_fmt(text);
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Appends the decimal digits of `v`.
pub(crate) fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Which ASCII bytes need escaping inside a JSON string: 0 = none, `u` =
/// `\u00XX`, anything else = that letter after a backslash.
static ESCAPE: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Appends `s` as a quoted JSON string, replacing invalid UTF-8 by U+FFFD.
pub(crate) fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    if s.is_ascii() || std::str::from_utf8(s).is_ok() {
        write_escaped(out, s);
    } else {
        for chunk in s.utf8_chunks() {
            write_escaped(out, chunk.valid().as_bytes());
            if !chunk.invalid().is_empty() {
                out.extend_from_slice("\u{FFFD}".as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Appends valid UTF-8, escaping what JSON requires.
fn write_escaped(out: &mut Vec<u8>, s: &[u8]) {
    let mut run = 0;
    for (i, &b) in s.iter().enumerate() {
        let esc = if b < 0x80 { ESCAPE[b as usize] } else { 0 };
        if esc == 0 {
            continue;
        }
        out.extend_from_slice(&s[run..i]);
        run = i + 1;
        if esc == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', esc]);
        }
    }
    out.extend_from_slice(&s[run..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(buf: &[u8]) -> String {
        let mut out = Vec::new();
        render_value(&mut Reader::new(buf, "the frame"), &mut out, 1, 32).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_escape_and_replace() {
        let mut out = Vec::new();
        write_string(&mut out, b"a\"b\\c\n\t\x01\x7f\xc3\xa9\xff\xfez\xe2\x82");
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "\"a\\\"b\\\\c\\n\\t\\u0001\u{7f}é\u{FFFD}\u{FFFD}z\u{FFFD}\""
        );
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(
            back,
            String::from_utf8_lossy(b"a\"b\\c\n\t\x01\x7f\xc3\xa9\xff\xfez\xe2\x82")
        );
    }

    #[test]
    fn scalars() {
        assert_eq!(render(&[0xc0]), "null");
        assert_eq!(render(&[0xc2]), "false");
        assert_eq!(
            render(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            "18446744073709551615"
        );
        assert_eq!(
            render(&[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            "-9223372036854775808"
        );
        assert_eq!(render(&[0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]), "1.5");
        assert_eq!(render(&[0xca, 0x3f, 0x80, 0, 0]), "1.0");
        assert_eq!(render(&[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1]), "null");
        assert_eq!(render(&[0xca, 0xff, 0x80, 0, 0]), "null");
        assert_eq!(render(&[0xd7, 0, 0, 0, 0, 5, 0, 0, 0, 7]), "5.000000007");
        assert_eq!(render(&[0xd4, 9, 1]), "null");
        let big = 1e300f64.to_bits().to_be_bytes();
        let mut buf = vec![0xcb];
        buf.extend_from_slice(&big);
        assert_eq!(render(&buf), "1e300");
    }

    #[test]
    fn maps_keep_order_and_quote_odd_keys() {
        // {"z":1, 7:[true,nil], nil:{"a":"b"}, {"k":1}:2, "z":3}
        let buf = [
            0x85, 0xa1, b'z', 1, 7, 0x92, 0xc3, 0xc0, 0xc0, 0x81, 0xa1, b'a', 0xa1, b'b', 0x81,
            0xa1, b'k', 1, 2, 0xa1, b'z', 3,
        ];
        assert_eq!(
            render(&buf),
            r#"{"z":1,"7":[true,null],"null":{"a":"b"},"{\"k\":1}":2,"z":3}"#
        );
    }

    #[test]
    fn depth_is_checked() {
        let mut out = Vec::new();
        let err = render_value(
            &mut Reader::new(&[0x91, 0x91, 0x90], "the frame"),
            &mut out,
            1,
            2,
        );
        assert_eq!(err, Err(FluentError::TooDeep { limit: 2 }));
    }
}
