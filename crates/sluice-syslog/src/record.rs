//! A syslog frame as a record: the one mapping that the ingester's syslog
//! listener and the forwarder's agent (`--listen syslog://`) share.
//!
//! - **topic**: the APP-NAME (RFC 5424) or TAG (RFC 3164), else
//!   [`DEFAULT_TOPIC`] (`syslog`); always a valid sluice topic;
//! - **time**: the header's timestamp where it parses, clamped to
//!   [`MAX_FUTURE_MS`](sluice_record::MAX_FUTURE_MS) ahead of now; else (or
//!   if it is not after the epoch) the arrival time;
//! - **payload**: the message exactly as the sender framed it, with one
//!   change: a multi-line octet-counted message has its inner line feeds
//!   turned into spaces, since a payload is one line (counted in
//!   [`RecordCounts::multiline`]);
//! - **flags**: [`FLAG_TRUNCATED`] when the framer cut the frame at its
//!   limit.
//!
//! A frame whose header does not parse is kept whole under `syslog` and
//! counted in [`RecordCounts::unparsed`]; no frame is dropped for its
//! header.

use sluice_record::{FLAG_TRUNCATED, Unstamped, clamp_time_ms};

use crate::{DEFAULT_TOPIC, Format, Frame, FrameCounts, SyslogFramer, parse};

/// What one [`SyslogFramer::drain_records`] or
/// [`SyslogFramer::finish_records`] handed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    /// The framing counts: records (one per frame), truncated, incomplete.
    pub frames: FrameCounts,
    /// Frames whose header did not parse.
    pub unparsed: u64,
    /// Multi-line frames made one line.
    pub multiline: u64,
}

impl SyslogFramer {
    /// [`drain`](Self::drain), each frame made a record at `now_ms` (the
    /// arrival time, UTC milliseconds).
    pub fn drain_records(&mut self, now_ms: u64, emit: impl FnMut(Unstamped<'_>)) -> RecordCounts {
        self.records(now_ms, emit, |framer, lend| framer.drain_lending(lend))
    }

    /// [`finish`](Self::finish), each frame made a record at `now_ms`.
    pub fn finish_records(&mut self, now_ms: u64, emit: impl FnMut(Unstamped<'_>)) -> RecordCounts {
        self.records(now_ms, emit, |framer, lend| framer.finish_lending(lend))
    }

    /// Run `lend` (draining or finishing), making each frame a record.
    fn records(
        &mut self,
        now_ms: u64,
        mut emit: impl FnMut(Unstamped<'_>),
        lend: impl FnOnce(&mut Self, &mut dyn FnMut(Frame<'_>, &mut Vec<u8>)) -> FrameCounts,
    ) -> RecordCounts {
        let (mut unparsed, mut multiline) = (0, 0);
        let frames = lend(self, &mut |frame, line| {
            emit(record(frame, now_ms, line, &mut unparsed, &mut multiline));
        });
        RecordCounts {
            frames,
            unparsed,
            multiline,
        }
    }
}

/// One frame as a record; `line` is scratch for a frame made one line.
fn record<'a>(
    frame: Frame<'a>,
    now_ms: u64,
    line: &'a mut Vec<u8>,
    unparsed: &mut u64,
    multiline: &mut u64,
) -> Unstamped<'a> {
    let parsed = parse(frame.bytes, now_ms as i64);
    *unparsed += u64::from(parsed.format == Format::Unknown);
    let time_ms = parsed
        .time_ms
        .filter(|t| *t > 0)
        .map_or(now_ms, |t| clamp_time_ms(t as u64, now_ms));
    let (payload, changed) = one_line(frame.bytes, line);
    *multiline += u64::from(changed);
    Unstamped {
        topic: parsed.topic.unwrap_or(DEFAULT_TOPIC).as_bytes(),
        time_ms,
        flags: if frame.truncated { FLAG_TRUNCATED } else { 0 },
        payload,
    }
}

/// A frame as one line: a multi-line octet-counted message has its inner
/// line feeds turned into spaces (a payload is one line), using `scratch`.
/// Returns the line and whether it was changed.
fn one_line<'a>(frame: &'a [u8], scratch: &'a mut Vec<u8>) -> (&'a [u8], bool) {
    if memchr::memchr(b'\n', frame).is_none() {
        return (frame, false);
    }
    scratch.clear();
    scratch.extend(frame.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
    (&scratch[..], true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_record::MAX_FUTURE_MS;

    #[test]
    fn one_line_replaces_only_line_feeds() {
        let mut scratch = Vec::new();
        assert_eq!(one_line(b"a b", &mut scratch), (&b"a b"[..], false));
        assert_eq!(
            one_line(b"Exception\n\tat x\n", &mut scratch),
            (&b"Exception \tat x "[..], true)
        );
    }

    /// A record as (topic, time, flags, payload).
    type Got = (String, u64, u8, Vec<u8>);

    /// Feed `input` whole, then end it; collect the records and the counts.
    fn records(input: &[u8], max_frame: usize, now_ms: u64) -> (Vec<Got>, RecordCounts) {
        let mut framer = SyslogFramer::new(max_frame, 4096);
        framer.spare()[..input.len()].copy_from_slice(input);
        framer.filled(input.len());
        let mut out = Vec::new();
        let mut push = |r: Unstamped<'_>| {
            out.push((
                String::from_utf8(r.topic.to_vec()).unwrap(),
                r.time_ms,
                r.flags,
                r.payload.to_vec(),
            ))
        };
        let mut counts = framer.drain_records(now_ms, &mut push);
        let end = framer.finish_records(now_ms, &mut push);
        counts.frames += end.frames;
        counts.unparsed += end.unparsed;
        counts.multiline += end.multiline;
        (out, counts)
    }

    #[test]
    fn topic_time_line_and_flags() {
        // 2026-11-21T10:00:00Z
        let at = 1_795_255_200_000;
        let now = at + 5_000;
        let counted = b"<13>1 2026-11-21T10:00:00.000Z host svc 1 - - a\nb\n";
        let mut input = format!("{} ", counted.len()).into_bytes();
        input.extend_from_slice(counted);
        input.extend_from_slice(b"<13>Nov 21 10:00:00 host app[1]: hi\n");
        input.extend_from_slice(b"no header at all\n");
        // An hour ahead of now: clamped to a minute ahead.
        input.extend_from_slice(b"<13>1 2026-11-21T11:00:05Z h late - - - x\n");
        input.extend_from_slice(
            b"<13>Nov 21 10:00:00 host cut: 0123456789012345678901234567890123456789",
        );
        let (out, counts) = records(&input, 60, now);
        assert_eq!(
            out,
            vec![
                (
                    "svc".into(),
                    at,
                    0,
                    b"<13>1 2026-11-21T10:00:00.000Z host svc 1 - - a b".to_vec()
                ),
                (
                    "app".into(),
                    at,
                    0,
                    b"<13>Nov 21 10:00:00 host app[1]: hi".to_vec()
                ),
                ("syslog".into(), now, 0, b"no header at all".to_vec()),
                (
                    "late".into(),
                    now + MAX_FUTURE_MS,
                    0,
                    b"<13>1 2026-11-21T11:00:05Z h late - - - x".to_vec()
                ),
                (
                    "cut".into(),
                    at,
                    FLAG_TRUNCATED,
                    b"<13>Nov 21 10:00:00 host cut: 012345678901234567890123456789".to_vec()
                ),
            ]
        );
        assert_eq!(counts.frames.frames, 5);
        assert_eq!(counts.frames.truncated, 1);
        assert_eq!((counts.unparsed, counts.multiline), (1, 1));
    }
}
