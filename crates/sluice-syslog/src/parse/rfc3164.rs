//! The RFC 3164 header: everything after `<PRI>` when it is not RFC 5424,
//! and its TAG.

use memchr::memchr;
use sluice_record::MAX_TOPIC_BYTES;

use super::time::{bsd_timestamp, rfc3339_ms};
use super::{Header, topic};

/// Longest HOSTNAME looked past when searching for an RFC 3164 tag.
const MAX_HOSTNAME: usize = 255;
/// Longest PID inside `TAG[PID]`.
const MAX_PID: usize = 128;

/// Everything after `<PRI>` when it is not RFC 5424.
pub(super) fn rfc3164(b: &[u8], now_ms: i64) -> Option<Header<'_>> {
    let (time_ms, rest) = if b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' {
        let end = memchr(b' ', b).unwrap_or(b.len());
        (Some(rfc3339_ms(&b[..end])?), &b[end..])
    } else {
        bsd_timestamp(b, now_ms)?
    };
    let topic = match rest {
        [] => None,
        [b' ', rest @ ..] => tag_after_timestamp(rest),
        _ => return None,
    };
    Some((topic, time_ms))
}

/// The RFC 3164 tag in the bytes after the timestamp and its space: the
/// first word if it has the shape of a tag, else the second word (the first
/// being the hostname).
fn tag_after_timestamp(b: &[u8]) -> Option<&str> {
    if let Some(tag) = tag_at(b) {
        return topic(tag);
    }
    let hostname_end = memchr(b' ', &b[..b.len().min(MAX_HOSTNAME + 1)])?;
    if hostname_end == 0 {
        return None;
    }
    topic(tag_at(&b[hostname_end + 1..])?)
}

/// `TAG:`, `TAG[PID]` or `TAG[PID]:` at the start of `b`, followed by a space
/// or the end: the TAG.
fn tag_at(b: &[u8]) -> Option<&[u8]> {
    let n = b
        .iter()
        .take(MAX_TOPIC_BYTES + 1)
        .position(|&c| !is_tag_byte(c))?;
    if n == 0 {
        return None;
    }
    let after = match b[n] {
        b':' => &b[n + 1..],
        b'[' => {
            let pid = &b[n + 1..];
            let close = pid
                .iter()
                .take(MAX_PID + 1)
                .position(|&c| c == b']' || !c.is_ascii_graphic())?;
            if pid[close] != b']' {
                return None;
            }
            let after = &pid[close + 1..];
            after.strip_prefix(b":").unwrap_or(after)
        }
        _ => return None,
    };
    match after.first() {
        None | Some(b' ') => Some(&b[..n]),
        _ => None,
    }
}

fn is_tag_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'/')
}

#[cfg(test)]
mod tests {
    use crate::parse::Parsed;
    use crate::parse::tests::{p, rfc3164_parsed};

    #[test]
    fn rfc3164_section_5_4_examples() {
        // Example 1. Oct 11 is before Nov 21: this year.
        assert_eq!(
            p(b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8"),
            rfc3164_parsed(Some("su"), Some("2026-10-11T22:14:15Z"), 34)
        );
        // Example 2 as sent (no PRI) and as a relay forwards it. The RFC
        // says the relayed message has no TAG.
        assert_eq!(p(b"Use the BFG!"), Parsed::UNKNOWN);
        assert_eq!(
            p(b"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!"),
            rfc3164_parsed(None, Some("2026-02-05T17:32:18Z"), 13)
        );
        // Example 3: "CST" sits where the hostname goes, "1987" is no tag.
        assert_eq!(
            p(b"<165>Aug 24 05:34:00 CST 1987 mymachine myproc[10]: %% It's time to make the do-nuts.  %%  Ingredients: Mix=OK, Jelly=OK # Devices: Mixer=OK, Jelly_Injector=OK, Frier=OK # Transport: Conveyer1=OK, Conveyer2=OK # %%"),
            rfc3164_parsed(None, Some("2026-08-24T05:34:00Z"), 165)
        );
        // Example 4 as sent (not a 3164 timestamp) and as relayed.
        assert_eq!(
            p(b"<0>1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org 10.1.2.3 sched[0]: That's All Folks!"),
            Parsed::UNKNOWN
        );
        assert_eq!(
            p(b"<0>Oct 22 10:52:12 scapegoat 1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org 10.1.2.3 sched[0]: That's All Folks!"),
            rfc3164_parsed(None, Some("2026-10-22T10:52:12Z"), 0)
        );
    }
}
