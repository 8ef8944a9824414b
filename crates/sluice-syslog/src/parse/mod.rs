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
//!
//! The submodules follow the formats: `rfc5424` and `rfc3164` read the two
//! headers, `time` their timestamps (RFC 3339 and the yearless BSD form).

use sluice_record::is_valid_topic;

mod rfc3164;
mod rfc5424;
#[cfg(test)]
mod tests;
mod time;

use rfc3164::rfc3164;
use rfc5424::rfc5424;

/// Topic of a syslog frame that names none.
pub const DEFAULT_TOPIC: &str = "syslog";
/// Largest PRI value: facility 23, severity 7.
pub const MAX_PRI: u8 = 191;

/// Which header a frame carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME ...`: the version is `1`.
    Rfc5424,
    /// `<PRI>Mmm dd hh:mm:ss ...` (BSD syslog; an RFC 3339 time may stand
    /// in for the timestamp), with or without a TAG.
    Rfc3164,
    /// No recognisable header: no topic, no time.
    Unknown,
}

/// What [`parse`] read from a frame's header. Borrows the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The header found; with [`Format::Unknown`] every other field is
    /// `None`.
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

/// What a header yields: the topic and the origin time.
pub(super) type Header<'a> = (Option<&'a str>, Option<i64>);

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

/// The bytes as a topic, if they are a valid sluice topic.
pub(super) fn topic(b: &[u8]) -> Option<&str> {
    if is_valid_topic(b) {
        std::str::from_utf8(b).ok()
    } else {
        None
    }
}

/// Decimal digits to a number (at most 4 digits are ever passed).
pub(super) fn num(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}
