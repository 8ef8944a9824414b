//! The RFC 5424 header: everything after `<PRI>1 `.

use memchr::memchr;

use super::time::rfc3339_ms;
use super::{Header, topic};

/// Everything after `<PRI>1 `.
pub(super) fn rfc5424(b: &[u8]) -> Option<Header<'_>> {
    let (timestamp, b) = field(b)?;
    let time_ms = match timestamp {
        b"-" => None,
        ts => Some(rfc3339_ms(ts)?),
    };
    let (_hostname, b) = field(b)?;
    let (app_name, b) = field(b)?;
    let (_procid, b) = field(b)?;
    let (_msgid, b) = field(b)?;
    let rest = structured_data(b)?;
    if !matches!(rest.first(), None | Some(b' ')) {
        return None;
    }
    let topic = match app_name {
        b"-" => None,
        app => topic(app),
    };
    Some((topic, time_ms))
}

/// One RFC 5424 header field (one or more bytes other than space) and the
/// rest after the space that ends it.
fn field(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = memchr(b' ', b)?;
    if n == 0 {
        return None;
    }
    Some((&b[..n], &b[n + 1..]))
}

/// STRUCTURED-DATA: `-` or one or more SD-ELEMENTs. Returns what follows.
fn structured_data(b: &[u8]) -> Option<&[u8]> {
    if let Some(rest) = b.strip_prefix(b"-") {
        return Some(rest);
    }
    let mut b = b;
    loop {
        b = sd_name(b.strip_prefix(b"[")?)?;
        loop {
            match *b.first()? {
                b']' => {
                    b = &b[1..];
                    break;
                }
                b' ' => {
                    b = sd_name(&b[1..])?.strip_prefix(b"=\"")?;
                    let mut i = 0;
                    loop {
                        match *b.get(i)? {
                            b'\\' => i += 2,
                            b'"' => break,
                            _ => i += 1,
                        }
                    }
                    b = &b[i + 1..];
                }
                _ => return None,
            }
        }
        if b.first() != Some(&b'[') {
            return Some(b);
        }
    }
}

/// SD-NAME: printable ASCII except `=`, space, `]` and `"`. Returns what
/// follows.
fn sd_name(b: &[u8]) -> Option<&[u8]> {
    let n = b
        .iter()
        .position(|&c| !c.is_ascii_graphic() || matches!(c, b'=' | b']' | b'"'))
        .unwrap_or(b.len());
    if n == 0 { None } else { Some(&b[n..]) }
}

#[cfg(test)]
mod tests {
    use crate::parse::Parsed;
    use crate::parse::tests::{p, rfc5424_parsed};

    #[test]
    fn rfc5424_section_6_5_examples() {
        // Example 1: no STRUCTURED-DATA, a BOM before the message.
        assert_eq!(
            p(b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8"),
            rfc5424_parsed(Some("su"), Some("2003-10-11T22:14:15.003Z"), 34)
        );
        // Example 2: microseconds and a negative offset.
        assert_eq!(
            p(b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts."),
            rfc5424_parsed(Some("myproc"), Some("2003-08-24T12:14:15Z"), 165)
        );
        // Example 3: STRUCTURED-DATA and a message.
        assert_eq!(
            p(b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \xEF\xBB\xBFAn application event log entry..."),
            rfc5424_parsed(Some("evntslog"), Some("2003-10-11T22:14:15.003Z"), 165)
        );
        // Example 4: STRUCTURED-DATA only, two elements.
        assert_eq!(
            p(b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"]"),
            rfc5424_parsed(Some("evntslog"), Some("2003-10-11T22:14:15.003Z"), 165)
        );
    }

    #[test]
    fn rfc5424_nil_values_and_structure() {
        assert_eq!(p(b"<13>1 - - - - - -"), rfc5424_parsed(None, None, 13));
        assert_eq!(
            p(b"<13>1 - - app - - - msg"),
            rfc5424_parsed(Some("app"), None, 13)
        );
        // SD values may hold escaped quotes, backslashes and brackets, and
        // unescaped brackets and spaces.
        assert_eq!(
            p(br#"<13>1 - h app - - [a@1 x="q\"b\\s\]" y="] [ =" z=""][b c="1"] m"#),
            rfc5424_parsed(Some("app"), None, 13)
        );
        // Non-ASCII hostnames and ids are tolerated.
        assert_eq!(
            p("<13>1 - hôte app prøc - -".as_bytes()),
            rfc5424_parsed(Some("app"), None, 13)
        );
        for frame in [
            &b"<13>1 - - - - -"[..],
            b"<13>1 - - - - - ",
            b"<13>1 - - - - - x",
            b"<13>1 - - - - - -x",
            b"<13>1 - - -  - - -",
            b"<13>1  - - - - - -",
            b"<13>1 - - - - - []",
            b"<13>1 - - - - - [a",
            b"<13>1 - - - - - [a x=\"1]",
            b"<13>1 - - - - - [a x=\"1\\\"]",
            b"<13>1 - - - - - [a x=1]",
            b"<13>1 - - - - - [a x]",
            b"<13>1 - - - - - [a  x=\"1\"]",
            b"<13>1 - - - - - [a x=\"1\"]x",
            b"<13>1 - - - - - [a][b]c",
        ] {
            assert_eq!(
                p(frame),
                Parsed::UNKNOWN,
                "{}",
                String::from_utf8_lossy(frame)
            );
        }
        // The version must be 1.
        assert_eq!(p(b"<13>2 - - app - - -"), Parsed::UNKNOWN);
    }
}
