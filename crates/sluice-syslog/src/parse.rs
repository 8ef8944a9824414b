//! Header parsing for RFC 5424 and RFC 3164 syslog messages.
//!
//! [`parse`] borrows one frame (as handed out by
//! [`SyslogFramer`](crate::SyslogFramer)) and reads only what sluice needs
//! from its header: a topic, an origin time, and the priority. It never
//! allocates, never panics, and never rejects a frame: anything it does not
//! recognise is [`Format::Unknown`] with no topic and no time, and the caller
//! stores the frame as it is. The payload sluice stores is always the
//! original frame; nothing here rewrites it.
//!
//! Rules:
//! - **PRI**: `<` 1–3 digits `>`, value at most 191. Without it the frame is
//!   `Unknown`.
//! - **RFC 5424**: `<PRI>1 SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP
//!   MSGID SP STRUCTURED-DATA [SP MSG]`. Each header field is one or more
//!   bytes other than space, `-` being NILVALUE; field lengths are not
//!   enforced. TIMESTAMP is `-` (no time) or RFC 3339
//!   (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, any number of fraction digits,
//!   leap second 60 read as 59), converted to UTC milliseconds; a timestamp
//!   that is not a valid instant makes the frame `Unknown`.
//!   STRUCTURED-DATA must be `-` or well-formed `[id name="value" ...]`
//!   elements (values may hold `\"`, `\\`, `\]`), followed by the end of the
//!   frame or a space. The topic is APP-NAME (`-` is none).
//! - **RFC 3164**: `<PRI>TIMESTAMP SP [HOSTNAME SP] TAG[PID]: MSG`.
//!   TIMESTAMP is `Mmm dd hh:mm:ss`: month names in any case, the day
//!   space-padded (`Nov  5`), zero-padded (`Nov 05`) or bare (`Nov 5`), and an
//!   optional `.fraction` after the seconds (ignored). It has no year and no
//!   zone: it is read as UTC, in the latest of the years after, of, and before
//!   `now` that puts it at most one day after `now` (so `Dec 31` received on
//!   `Jan 1` is last year's, and `Jan 1` received late on `Dec 31` from a
//!   clock running ahead is next year's). In-range fields that make no date in
//!   those years (`Feb 30`, or `Feb 29` far from a leap year) leave the time
//!   unset. An RFC 3339 timestamp is accepted in its place (rsyslog's
//!   `RSYSLOG_ForwardFormat`).
//! - **TAG**: 1–255 bytes of ASCII letters, digits and `-_./`, followed by
//!   `:` or by `[PID]` with an optional `:`, then a space or the end of the
//!   frame. A word not of that shape is not a tag: in RFC 3164's own example
//!   `<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!` there is no tag, and taking
//!   the first word of free text as a topic would create a topic per
//!   message. The word after the timestamp is tried as the tag first (the
//!   hostname-less form `logger` and local senders use,
//!   `<13>Nov 21 10:00:00 myapp[123]: hello`); if it is not a tag it is the
//!   hostname and the next word is tried. A 3164 frame without a tag has
//!   `topic = None` but is still `Rfc3164`.
//! - **Topic**: always valid under sluice's topic rule
//!   ([`sluice_record::is_valid_topic`]: 1–255 printable ASCII bytes, no
//!   spaces); an APP-NAME that is not gives `topic = None`.
//!   [`Parsed::topic_or_default`] gives [`DEFAULT_TOPIC`] when there is none.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;
use memchr::memchr;
use sluice_record::{MAX_TOPIC_BYTES, is_valid_topic};

/// Topic of a syslog frame that names none.
pub const DEFAULT_TOPIC: &str = "syslog";
/// Largest PRI value: facility 23, severity 7.
pub const MAX_PRI: u8 = 191;
/// Longest HOSTNAME looked past when searching for an RFC 3164 tag.
const MAX_HOSTNAME: usize = 255;
/// Longest PID inside `TAG[PID]`.
const MAX_PID: usize = 128;
const DAY_MS: i64 = 86_400_000;

/// Which header a frame carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Rfc5424,
    Rfc3164,
    /// No recognisable header: no topic, no time.
    Unknown,
}

/// What [`parse`] read from a frame's header. Borrows the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub format: Format,
    /// APP-NAME (RFC 5424) or TAG (RFC 3164), when present and a valid
    /// sluice topic.
    pub topic: Option<&'a str>,
    /// Origin time, UTC milliseconds since the Unix epoch.
    pub time_ms: Option<i64>,
    /// Priority: `facility * 8 + severity`, at most [`MAX_PRI`].
    pub pri: Option<u8>,
}

impl<'a> Parsed<'a> {
    /// The result for a frame without a recognisable header.
    pub const UNKNOWN: Parsed<'static> = Parsed {
        format: Format::Unknown,
        topic: None,
        time_ms: None,
        pri: None,
    };

    /// The topic, or [`DEFAULT_TOPIC`] when the frame names none.
    pub fn topic_or_default(&self) -> &'a str {
        self.topic.unwrap_or(DEFAULT_TOPIC)
    }

    /// Facility (`pri / 8`), 0..=23.
    pub fn facility(&self) -> Option<u8> {
        self.pri.map(|p| p >> 3)
    }

    /// Severity (`pri % 8`), 0 (emergency) ..= 7 (debug).
    pub fn severity(&self) -> Option<u8> {
        self.pri.map(|p| p & 7)
    }
}

/// The topic of a parsed frame, or [`DEFAULT_TOPIC`] when it names none.
pub fn topic_or_default<'a>(parsed: &Parsed<'a>) -> &'a str {
    parsed.topic_or_default()
}

/// Read the header of one syslog frame. `now_ms` (UTC milliseconds) supplies
/// the year RFC 3164 timestamps lack.
pub fn parse(frame: &[u8], now_ms: i64) -> Parsed<'_> {
    let Some((pri, rest)) = pri(frame) else {
        return Parsed::UNKNOWN;
    };
    let header = match rest.strip_prefix(b"1 ") {
        Some(rest) => rfc5424(rest).map(|(topic, time_ms)| (Format::Rfc5424, topic, time_ms)),
        None => rfc3164(rest, now_ms).map(|(topic, time_ms)| (Format::Rfc3164, topic, time_ms)),
    };
    match header {
        Some((format, topic, time_ms)) => Parsed {
            format,
            topic,
            time_ms,
            pri: Some(pri),
        },
        None => Parsed::UNKNOWN,
    }
}

type Header<'a> = (Option<&'a str>, Option<i64>);

/// `<PRI>`: the value and what follows.
fn pri(b: &[u8]) -> Option<(u8, &[u8])> {
    let rest = b.strip_prefix(b"<")?;
    let digits = rest
        .iter()
        .take(4)
        .take_while(|c| c.is_ascii_digit())
        .count();
    if !(1..=3).contains(&digits) || rest.get(digits) != Some(&b'>') {
        return None;
    }
    let value = num(&rest[..digits])?;
    if value > u32::from(MAX_PRI) {
        return None;
    }
    Some((value as u8, &rest[digits + 1..]))
}

/// Everything after `<PRI>1 `.
fn rfc5424(b: &[u8]) -> Option<Header<'_>> {
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

/// Everything after `<PRI>` when it is not RFC 5424.
fn rfc3164(b: &[u8], now_ms: i64) -> Option<Header<'_>> {
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

/// `Mmm dd hh:mm:ss[.frac]`: the time, if it names a real date, and the rest.
fn bsd_timestamp(b: &[u8], now_ms: i64) -> Option<(Option<i64>, &[u8])> {
    let [m1, m2, m3, b' ', rest @ ..] = b else {
        return None;
    };
    let month = month([*m1, *m2, *m3])?;
    let (day, rest) = match rest {
        [b' ', d @ b'1'..=b'9', b' ', rest @ ..] | [d @ b'1'..=b'9', b' ', rest @ ..] => {
            (d - b'0', rest)
        }
        [d1 @ b'0'..=b'3', d2 @ b'0'..=b'9', b' ', rest @ ..] => {
            ((d1 - b'0') * 10 + d2 - b'0', rest)
        }
        _ => return None,
    };
    let [h1, h2, b':', n1, n2, b':', s1, s2, rest @ ..] = rest else {
        return None;
    };
    let hour = num(&[*h1, *h2])?;
    let minute = num(&[*n1, *n2])?;
    let second = num(&[*s1, *s2])?;
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let rest = match rest.strip_prefix(b".") {
        Some(frac) => {
            let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            &frac[n..]
        }
        None => rest,
    };
    let time = guess_year_ms(
        month,
        day as i8,
        hour as i8,
        minute as i8,
        second as i8,
        now_ms,
    );
    Some((time, rest))
}

fn month(m: [u8; 3]) -> Option<i8> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let m = m.map(|c| c.to_ascii_lowercase());
    MONTHS
        .iter()
        .position(|name| **name == m)
        .map(|i| i as i8 + 1)
}

/// UTC milliseconds of a yearless timestamp: the latest of `now`'s year + 1,
/// its year, and year - 1 that is at most a day after `now`.
fn guess_year_ms(month: i8, day: i8, hour: i8, minute: i8, second: i8, now_ms: i64) -> Option<i64> {
    let now = Timestamp::from_millisecond(now_ms).ok()?;
    let year = Offset::UTC.to_datetime(now).year();
    let latest = now_ms.saturating_add(DAY_MS);
    let second = second.min(59);
    for y in [year + 1, year, year - 1] {
        let Ok(dt) = DateTime::new(y, month, day, hour, minute, second, 0) else {
            continue;
        };
        let Ok(ts) = Offset::UTC.to_timestamp(dt) else {
            continue;
        };
        if ts.as_millisecond() <= latest {
            return Some(ts.as_millisecond());
        }
    }
    None
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

/// The bytes as a topic, if they are a valid sluice topic.
fn topic(b: &[u8]) -> Option<&str> {
    if is_valid_topic(b) {
        std::str::from_utf8(b).ok()
    } else {
        None
    }
}

/// RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) to UTC milliseconds.
fn rfc3339_ms(b: &[u8]) -> Option<i64> {
    let [
        y1,
        y2,
        y3,
        y4,
        b'-',
        mo1,
        mo2,
        b'-',
        d1,
        d2,
        b'T' | b't',
        h1,
        h2,
        b':',
        mi1,
        mi2,
        b':',
        s1,
        s2,
        rest @ ..,
    ] = b
    else {
        return None;
    };
    let year = num(&[*y1, *y2, *y3, *y4])?;
    let month = num(&[*mo1, *mo2])?;
    let day = num(&[*d1, *d2])?;
    let hour = num(&[*h1, *h2])?;
    let minute = num(&[*mi1, *mi2])?;
    // A leap second is read as the second before it.
    let second = match num(&[*s1, *s2])? {
        60 => 59,
        s => s,
    };
    let mut nanos: i32 = 0;
    let rest = match rest.strip_prefix(b".") {
        Some(frac) => {
            let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            for i in 0..9 {
                nanos = nanos * 10
                    + frac
                        .get(i)
                        .filter(|_| i < n)
                        .map_or(0, |&c| i32::from(c - b'0'));
            }
            &frac[n..]
        }
        None => rest,
    };
    let offset = match rest {
        [b'Z' | b'z'] => Offset::UTC,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = num(&[*h1, *h2])?;
            let m = num(&[*m1, *m2])?;
            if h > 23 || m > 59 {
                return None;
            }
            let secs = (h * 3600 + m * 60) as i32;
            Offset::from_seconds(if *sign == b'-' { -secs } else { secs }).ok()?
        }
        _ => return None,
    };
    let dt = DateTime::new(
        year as i16,
        month as i8,
        day as i8,
        hour as i8,
        minute as i8,
        second as i8,
        nanos,
    )
    .ok()?;
    Some(offset.to_timestamp(dt).ok()?.as_millisecond())
}

/// Decimal digits to a number (at most 4 digits are ever passed).
fn num(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
    }

    /// The receiver's clock in most tests: 2026-11-21T12:00:00Z.
    fn now() -> i64 {
        ms("2026-11-21T12:00:00Z")
    }

    fn p(frame: &[u8]) -> Parsed<'_> {
        parse(frame, now())
    }

    fn rfc5424(topic: Option<&str>, time: Option<&str>, pri: u8) -> Parsed<'static> {
        Parsed {
            format: Format::Rfc5424,
            topic: topic.map(|t| Box::leak(t.to_owned().into_boxed_str()) as &str),
            time_ms: time.map(ms),
            pri: Some(pri),
        }
    }

    fn rfc3164(topic: Option<&str>, time: Option<&str>, pri: u8) -> Parsed<'static> {
        Parsed {
            format: Format::Rfc3164,
            ..rfc5424(topic, time, pri)
        }
    }

    #[test]
    fn rfc5424_section_6_5_examples() {
        // Example 1: no STRUCTURED-DATA, a BOM before the message.
        assert_eq!(
            p(b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8"),
            rfc5424(Some("su"), Some("2003-10-11T22:14:15.003Z"), 34)
        );
        // Example 2: microseconds and a negative offset.
        assert_eq!(
            p(b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts."),
            rfc5424(Some("myproc"), Some("2003-08-24T12:14:15Z"), 165)
        );
        // Example 3: STRUCTURED-DATA and a message.
        assert_eq!(
            p(b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \xEF\xBB\xBFAn application event log entry..."),
            rfc5424(Some("evntslog"), Some("2003-10-11T22:14:15.003Z"), 165)
        );
        // Example 4: STRUCTURED-DATA only, two elements.
        assert_eq!(
            p(b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"]"),
            rfc5424(Some("evntslog"), Some("2003-10-11T22:14:15.003Z"), 165)
        );
    }

    #[test]
    fn rfc3164_section_5_4_examples() {
        // Example 1. Oct 11 is before Nov 21: this year.
        assert_eq!(
            p(b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8"),
            rfc3164(Some("su"), Some("2026-10-11T22:14:15Z"), 34)
        );
        // Example 2 as sent (no PRI) and as a relay forwards it. The RFC
        // says the relayed message has no TAG.
        assert_eq!(p(b"Use the BFG!"), Parsed::UNKNOWN);
        assert_eq!(
            p(b"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!"),
            rfc3164(None, Some("2026-02-05T17:32:18Z"), 13)
        );
        // Example 3: "CST" sits where the hostname goes, "1987" is no tag.
        assert_eq!(
            p(b"<165>Aug 24 05:34:00 CST 1987 mymachine myproc[10]: %% It's time to make the do-nuts.  %%  Ingredients: Mix=OK, Jelly=OK # Devices: Mixer=OK, Jelly_Injector=OK, Frier=OK # Transport: Conveyer1=OK, Conveyer2=OK # %%"),
            rfc3164(None, Some("2026-08-24T05:34:00Z"), 165)
        );
        // Example 4 as sent (not a 3164 timestamp) and as relayed.
        assert_eq!(
            p(b"<0>1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org 10.1.2.3 sched[0]: That's All Folks!"),
            Parsed::UNKNOWN
        );
        assert_eq!(
            p(b"<0>Oct 22 10:52:12 scapegoat 1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org 10.1.2.3 sched[0]: That's All Folks!"),
            rfc3164(None, Some("2026-10-22T10:52:12Z"), 0)
        );
    }

    #[test]
    fn rsyslog_templates() {
        // RSYSLOG_SyslogProtocol23Format (its trailing "\n" is trimmed by the framer).
        assert_eq!(
            p(b"<13>1 2026-11-21T10:00:00.123456+00:00 host app 123 - - msg"),
            rfc5424(Some("app"), Some("2026-11-21T10:00:00.123Z"), 13)
        );
        // RSYSLOG_TraditionalForwardFormat.
        assert_eq!(
            p(b"<13>Nov 21 10:00:00 myhost myapp[123]: hello"),
            rfc3164(Some("myapp"), Some("2026-11-21T10:00:00Z"), 13)
        );
        // RSYSLOG_ForwardFormat: RFC 3339 time in a 3164 header.
        assert_eq!(
            p(b"<13>2026-11-21T10:00:00.123456+00:00 host tag: msg"),
            rfc3164(Some("tag"), Some("2026-11-21T10:00:00.123Z"), 13)
        );
        assert_eq!(
            p(b"<86>2026-11-21T10:00:00.999999-05:30 web-1 sshd[4242]: Accepted publickey"),
            rfc3164(Some("sshd"), Some("2026-11-21T15:30:00.999Z"), 86)
        );
        // Typical system tags.
        for (frame, tag) in [
            (
                &b"<22>Nov 21 10:00:00 mx postfix/smtpd[123]: connect from x"[..],
                "postfix/smtpd",
            ),
            (
                b"<6>Nov 21 10:00:00 host kernel: [ 0.000000] Linux version",
                "kernel",
            ),
            (
                b"<30>Nov 21 10:00:00 host systemd-resolved[1]: ok",
                "systemd-resolved",
            ),
            (
                b"<30>Nov 21 10:00:00 host com.apple.xpc.launchd[1] (x) y",
                "com.apple.xpc.launchd",
            ),
            (b"<30>Nov 21 10:00:00 host my_app.v2[pid-7]:", "my_app.v2"),
        ] {
            assert_eq!(
                p(frame).topic,
                Some(tag),
                "{}",
                String::from_utf8_lossy(frame)
            );
        }
    }

    #[test]
    fn logger_outputs() {
        // logger --rfc3164 -n host (hostname included).
        assert_eq!(
            p(b"<13>Nov 21 10:00:00 myhost alice: hello"),
            rfc3164(Some("alice"), Some("2026-11-21T10:00:00Z"), 13)
        );
        // logger to a local socket: no hostname, with and without a pid.
        assert_eq!(
            p(b"<13>Nov 21 10:00:00 alice: hello"),
            rfc3164(Some("alice"), Some("2026-11-21T10:00:00Z"), 13)
        );
        assert_eq!(
            p(b"<13>Nov  5 10:00:00 myapp[123]: hello"),
            rfc3164(Some("myapp"), Some("2026-11-05T10:00:00Z"), 13)
        );
        // logger --rfc5424 (the default over TCP), with its timeQuality SD.
        assert_eq!(
            p(b"<13>1 2026-11-21T11:00:00.123456+01:00 myhost alice - - [timeQuality tzKnown=\"1\" isSynced=\"1\" syncAccuracy=\"187500\"] hello"),
            rfc5424(Some("alice"), Some("2026-11-21T10:00:00.123Z"), 13)
        );
        // logger --rfc5424=notq,notime --id=42.
        assert_eq!(
            p(b"<13>1 - myhost alice 42 - - hello"),
            rfc5424(Some("alice"), None, 13)
        );
    }

    #[test]
    fn syslog_ng_drivers() {
        // syslog() driver: RFC 5424, with syslog-ng's meta SD.
        assert_eq!(
            p(b"<13>1 2026-11-21T10:00:00+00:00 host app 1 - [meta sequenceId=\"1\"] msg"),
            rfc5424(Some("app"), Some("2026-11-21T10:00:00Z"), 13)
        );
        // network() driver: 3164-like.
        assert_eq!(
            p(b"<13>Nov 21 10:00:00 host app[1]: msg"),
            rfc3164(Some("app"), Some("2026-11-21T10:00:00Z"), 13)
        );
    }

    #[test]
    fn rfc3164_year_is_guessed_from_now() {
        let new_year = ms("2027-01-01T00:00:30Z");
        assert_eq!(
            parse(b"<13>Dec 31 23:59:59 h a: x", new_year).time_ms,
            Some(ms("2026-12-31T23:59:59Z"))
        );
        // A sender a little ahead of the new year.
        let new_years_eve = ms("2026-12-31T23:59:00Z");
        assert_eq!(
            parse(b"<13>Jan  1 00:00:05 h a: x", new_years_eve).time_ms,
            Some(ms("2027-01-01T00:00:05Z"))
        );
        // Up to a day ahead stays in this year; more goes back a year.
        assert_eq!(
            p(b"<13>Nov 22 11:00:00 h a: x").time_ms,
            Some(ms("2026-11-22T11:00:00Z"))
        );
        assert_eq!(
            p(b"<13>Nov 22 13:00:00 h a: x").time_ms,
            Some(ms("2025-11-22T13:00:00Z"))
        );
        // Feb 29: the nearest leap year if it is next to now, else no time.
        let spring_2029 = ms("2029-03-01T00:00:00Z");
        assert_eq!(
            parse(b"<13>Feb 29 12:00:00 h a: x", spring_2029).time_ms,
            Some(ms("2028-02-29T12:00:00Z"))
        );
        assert_eq!(
            p(b"<13>Feb 29 12:00:00 h a: x"),
            rfc3164(Some("a"), None, 13)
        );
        assert_eq!(p(b"<13>Feb 30 12:00:00 h a: x").time_ms, None);
        // Month names in any case, a bare day, fractional seconds, a leap second.
        assert_eq!(
            p(b"<13>NOV 5 10:00:00 h a: x").time_ms,
            Some(ms("2026-11-05T10:00:00Z"))
        );
        assert_eq!(
            p(b"<13>nov 05 10:00:00.123 h a: x").time_ms,
            Some(ms("2026-11-05T10:00:00Z"))
        );
        assert_eq!(
            p(b"<13>Jun 30 23:59:60 h a: x").time_ms,
            Some(ms("2026-06-30T23:59:59Z"))
        );
        // Just a timestamp.
        assert_eq!(
            p(b"<13>Nov 21 10:00:00"),
            rfc3164(None, Some("2026-11-21T10:00:00Z"), 13)
        );
    }

    #[test]
    fn timestamps_that_are_not_timestamps() {
        for frame in [
            &b"<13>Nov 21 24:00:00 h a: x"[..],
            b"<13>Nov 32 10:00:00 h a: x",
            b"<13>Nov 00 10:00:00 h a: x",
            b"<13>Nov 21 10:60:00 h a: x",
            b"<13>Nov 21 10:00:61 h a: x",
            b"<13>Nov 21 10:00 h a: x",
            b"<13>Now 21 10:00:00 h a: x",
            b"<13>Nov  21 10:00:00 h a: x",
            b"<13>Nov 21 10:00:00. h a: x",
            b"<13>Nov 21 10:00:00:h a: x",
            b"<13>myapp: no timestamp",
            b"<13>2026-11-31T10:00:00Z h a: x",
            b"<13>2026-11-21 10:00:00Z h a: x",
            b"<13>1 2026-11-21T10:00:00 h a - - - no zone",
            b"<13>1 2026-11-21T10:00:00+0100 h a - - - bad zone",
            b"<13>1 2026-11-21T10:00:00+24:00 h a - - - bad zone",
            b"<13>1 2026-11-21T10:00:00.Z h a - - - empty fraction",
            b"<13>1 2026-02-29T10:00:00Z h a - - - not a leap year",
            b"<13>1 26-11-21T10:00:00Z h a - - - short year",
        ] {
            assert_eq!(
                p(frame),
                Parsed::UNKNOWN,
                "{}",
                String::from_utf8_lossy(frame)
            );
        }
        // Valid edge cases.
        assert_eq!(
            p(b"<13>1 2026-11-21t10:00:00.1234567891234z h a - - -").time_ms,
            Some(ms("2026-11-21T10:00:00.123Z"))
        );
        assert_eq!(
            p(b"<13>1 2016-12-31T23:59:60Z h a - - -").time_ms,
            Some(ms("2016-12-31T23:59:59Z"))
        );
        assert_eq!(
            p(b"<13>1 0001-01-01T00:00:00+23:59 h a - - -").time_ms,
            Some(ms("0000-12-31T00:01:00Z"))
        );
    }

    #[test]
    fn pri_rules() {
        assert_eq!(p(b"<0>1 - - - - - -").pri, Some(0));
        assert_eq!(p(b"<191>1 - - - - - -").pri, Some(191));
        assert_eq!(p(b"<007>1 - - - - - -").pri, Some(7));
        for frame in [
            &b"<192>1 - - - - - -"[..],
            b"<999>1 - - - - - -",
            b"<1000>1 - - - - - -",
            b"<>1 - - - - - -",
            b"<13 1 - - - - - -",
            b"<13",
            b"<",
            b"",
            b" <13>1 - - - - - -",
            b"13>1 - - - - - -",
        ] {
            assert_eq!(
                p(frame),
                Parsed::UNKNOWN,
                "{}",
                String::from_utf8_lossy(frame)
            );
        }
        let parsed = p(b"<165>1 - - - - - -");
        assert_eq!((parsed.facility(), parsed.severity()), (Some(20), Some(5)));
    }

    #[test]
    fn rfc5424_nil_values_and_structure() {
        assert_eq!(p(b"<13>1 - - - - - -"), rfc5424(None, None, 13));
        assert_eq!(
            p(b"<13>1 - - app - - - msg"),
            rfc5424(Some("app"), None, 13)
        );
        // SD values may hold escaped quotes, backslashes and brackets, and
        // unescaped brackets and spaces.
        assert_eq!(
            p(br#"<13>1 - h app - - [a@1 x="q\"b\\s\]" y="] [ =" z=""][b c="1"] m"#),
            rfc5424(Some("app"), None, 13)
        );
        // Non-ASCII hostnames and ids are tolerated.
        assert_eq!(
            p("<13>1 - hôte app prøc - -".as_bytes()),
            rfc5424(Some("app"), None, 13)
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

    #[test]
    fn topics_are_valid_sluice_topics_or_none() {
        let app = "a".repeat(255);
        let frame = format!("<13>1 - h {app} - - -");
        assert_eq!(p(frame.as_bytes()).topic, Some(app.as_str()));
        let frame = format!("<13>1 - h {app}b - - -");
        assert_eq!(p(frame.as_bytes()), rfc5424(None, None, 13));
        assert_eq!(p(frame.as_bytes()).topic_or_default(), "syslog");
        // A 5424 APP-NAME may hold any printable ASCII.
        assert_eq!(p(b"<13>1 - h a@b:c - - -").topic, Some("a@b:c"));
        assert_eq!(p("<13>1 - h äpp - - -".as_bytes()).topic, None);

        let frame = format!("<13>Nov 21 10:00:00 h {app}: x");
        assert_eq!(p(frame.as_bytes()).topic, Some(app.as_str()));
        let frame = format!("<13>Nov 21 10:00:00 h {app}b: x");
        assert_eq!(p(frame.as_bytes()).topic, None);
        // Words that are not tags.
        for frame in [
            &b"<13>Nov 21 10:00:00 h a@b: x"[..],
            b"<13>Nov 21 10:00:00 h app x",
            b"<13>Nov 21 10:00:00 h app:x",
            b"<13>Nov 21 10:00:00 h app[1",
            b"<13>Nov 21 10:00:00 h app[1]x",
            b"<13>Nov 21 10:00:00 h app[1 2]: x",
            b"<13>Nov 21 10:00:00 h :x",
            b"<13>Nov 21 10:00:00 h [1]: x",
            b"<13>Nov 21 10:00:00 h  app: x",
            b"<13>Nov 21 10:00:00 fe80::1 x",
            b"<13>Nov 21 10:00:00  app: x",
            b"<13>Nov 21 10:00:00 ",
        ] {
            let parsed = p(frame);
            assert_eq!(
                parsed.format,
                Format::Rfc3164,
                "{}",
                String::from_utf8_lossy(frame)
            );
            assert_eq!(parsed.topic, None, "{}", String::from_utf8_lossy(frame));
            assert_eq!(parsed.topic_or_default(), DEFAULT_TOPIC);
            assert_eq!(topic_or_default(&parsed), "syslog");
        }
        // An IPv6 hostname is skipped like any other.
        assert_eq!(p(b"<13>Nov 21 10:00:00 fe80::1 app: x").topic, Some("app"));
        assert_eq!(p(b"<13>Nov 21 10:00:00 h app: x").topic_or_default(), "app");
    }

    #[test]
    fn frames_through_the_framer_parse() {
        use crate::SyslogFramer;
        let msg = b"<13>1 2026-11-21T10:00:00.123456+00:00 host app 123 - - msg\n";
        let mut input = format!("{} ", msg.len()).into_bytes();
        input.extend_from_slice(msg);
        input.extend_from_slice(b"<13>Nov 21 10:00:00 host tag[1]: lf\r\nplain text\n");
        let mut framer = SyslogFramer::new(1024, 4096);
        framer.spare()[..input.len()].copy_from_slice(&input);
        framer.filled(input.len());
        let mut got = Vec::new();
        framer.drain(|f| {
            let parsed = parse(f.bytes, now());
            got.push((
                parsed.format,
                parsed.topic_or_default().to_owned(),
                parsed.time_ms,
            ));
        });
        assert_eq!(
            got,
            vec![
                (
                    Format::Rfc5424,
                    "app".to_owned(),
                    Some(ms("2026-11-21T10:00:00.123Z"))
                ),
                (
                    Format::Rfc3164,
                    "tag".to_owned(),
                    Some(ms("2026-11-21T10:00:00Z"))
                ),
                (Format::Unknown, "syslog".to_owned(), None),
            ]
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_and_topics_are_valid(
            frame in proptest::collection::vec(any::<u8>(), 0..200),
            now_ms in any::<i64>(),
        ) {
            let parsed = parse(&frame, now_ms);
            if let Some(topic) = parsed.topic {
                prop_assert!(is_valid_topic(topic.as_bytes()));
            }
            if parsed.format == Format::Unknown {
                prop_assert_eq!(parsed, Parsed::UNKNOWN);
            }
        }

        #[test]
        fn header_like_bytes_never_panic(
            head in prop_oneof![
                Just(&b"<13>1 "[..]), Just(&b"<13>Nov 21 10:00:00 "[..]), Just(&b"<13>"[..]),
                Just(&b"<13>2026-11-21T10:00:00Z "[..]), Just(&b"<191>1 - h a - - ["[..]),
            ],
            tail in proptest::collection::vec(prop_oneof![
                Just(b' '), Just(b'-'), Just(b'['), Just(b']'), Just(b'"'), Just(b'\\'),
                Just(b'='), Just(b':'), b'0'..=b'9', b'a'..=b'z', any::<u8>(),
            ], 0..80),
        ) {
            let mut frame = head.to_vec();
            frame.extend_from_slice(&tail);
            let parsed = parse(&frame, now());
            if let Some(topic) = parsed.topic {
                prop_assert!(is_valid_topic(topic.as_bytes()));
            }
        }

        #[test]
        fn rfc3339_agrees_with_jiff(
            (y, mo, d) in (0i16..=9999, 1i8..=12, 1i8..=31),
            (h, mi, s) in (0i8..24, 0i8..60, 0i8..60),
            frac in proptest::option::of(proptest::collection::vec(b'0'..=b'9', 1..10)),
            offset in proptest::option::of((any::<bool>(), 0u32..24, 0u32..60)),
        ) {
            let mut text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
            if let Some(frac) = &frac {
                text.push('.');
                text.push_str(std::str::from_utf8(frac).unwrap());
            }
            match offset {
                None => text.push('Z'),
                Some((neg, oh, om)) => text.push_str(&format!("{}{oh:02}:{om:02}", if neg { '-' } else { '+' })),
            }
            let jiff = text.parse::<Timestamp>().ok().map(|t| t.as_millisecond());
            prop_assert_eq!(rfc3339_ms(text.as_bytes()), jiff, "{}", text);
        }
    }
}
