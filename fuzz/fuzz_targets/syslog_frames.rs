//! The syslog listener's codec (port 5140) on arbitrary bytes: the framer,
//! fed in arbitrary pieces, must never panic, keep its buffer bounded, never
//! hand out a frame over the limit, and frame the same way whatever the
//! pieces; every frame must parse without panicking into a valid topic, and
//! the frame → record mapping must make each frame one record of one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_record::{FLAG_TRUNCATED, Unstamped};
use sluice_syslog::{Format, Frame, Framing, MAX_COUNT_DIGITS, Parsed, SyslogFramer, parse};

type Out = Vec<(Vec<u8>, bool, Framing)>;

fn run(data: &[u8], max_frame: usize, piece: usize) -> (Out, u64) {
    let mut framer = SyslogFramer::new(max_frame, piece);
    let mut out = Vec::new();
    let mut incomplete = 0;
    let mut check = |frame: Frame<'_>| {
        assert!(!frame.bytes.is_empty() && frame.bytes.len() <= max_frame);
        if frame.framing == Framing::NonTransparent {
            assert!(!frame.bytes.contains(&b'\n'));
        }
        out.push((frame.bytes.to_vec(), frame.truncated, frame.framing));
    };
    for chunk in data.chunks(piece) {
        let spare = framer.spare();
        spare[..chunk.len()].copy_from_slice(chunk);
        framer.filled(chunk.len());
        incomplete += framer.drain(&mut check).incomplete;
        assert!(framer.pending() <= (max_frame + 1).max(MAX_COUNT_DIGITS));
    }
    incomplete += framer.finish(&mut check).incomplete;
    assert_eq!(framer.pending(), 0);
    (out, incomplete)
}

/// The same input through the record mapping: (topic, payload, flags).
fn records(data: &[u8], max_frame: usize, piece: usize, now_ms: u64) -> Vec<(Vec<u8>, Vec<u8>, u8)> {
    let mut framer = SyslogFramer::new(max_frame, piece);
    let mut out = Vec::new();
    let mut check = |r: Unstamped<'_>| {
        assert!(sluice_record::is_valid_topic(r.topic));
        assert!(!r.payload.contains(&b'\n'));
        assert!(r.time_ms <= now_ms + sluice_record::MAX_FUTURE_MS);
        out.push((r.topic.to_vec(), r.payload.to_vec(), r.flags));
    };
    for chunk in data.chunks(piece) {
        let spare = framer.spare();
        spare[..chunk.len()].copy_from_slice(chunk);
        framer.filled(chunk.len());
        framer.drain_records(now_ms, &mut check);
    }
    framer.finish_records(now_ms, &mut check);
    out
}

fuzz_target!(|data: &[u8]| {
    let (max_frame, piece, data) = match data {
        [a, b, rest @ ..] => (usize::from(*a % 64) + 1, usize::from(*b % 32) + 1, rest),
        _ => (16, 7, data),
    };
    let (frames, incomplete) = run(data, max_frame, piece);
    let whole = run(data, max_frame, data.len().max(1));
    assert_eq!((&frames, incomplete), (&whole.0, whole.1));

    let now_ms = 1_795_000_000_000 + i64::from(data.first().copied().unwrap_or(0)) * 86_400_000;
    for (bytes, _, _) in &frames {
        let parsed = parse(bytes, now_ms);
        if let Some(topic) = parsed.topic {
            assert!(sluice_record::is_valid_topic(topic.as_bytes()));
        }
        if parsed.format == Format::Unknown {
            assert_eq!(parsed, Parsed::UNKNOWN);
        }
    }

    let records = records(data, max_frame, piece, now_ms as u64);
    assert_eq!(records.len(), frames.len());
    for ((bytes, truncated, _), (topic, payload, flags)) in frames.iter().zip(&records) {
        let line: Vec<u8> = bytes.iter().map(|&b| if b == b'\n' { b' ' } else { b }).collect();
        assert_eq!(payload, &line);
        assert_eq!(*flags == FLAG_TRUNCATED, *truncated);
        assert_eq!(&topic[..], parse(bytes, now_ms).topic_or_default().as_bytes());
    }
});
