//! The syslog listener's codec (port 5140) on arbitrary bytes: the framer,
//! fed in arbitrary pieces, must never panic, keep its buffer bounded, never
//! hand out a frame over the limit, and frame the same way whatever the
//! pieces; every frame must parse without panicking into a valid topic.
#![no_main]

use libfuzzer_sys::fuzz_target;
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
        assert!(framer.pending_len() <= (max_frame + 1).max(MAX_COUNT_DIGITS));
    }
    incomplete += framer.finish(&mut check).incomplete;
    assert_eq!(framer.pending_len(), 0);
    (out, incomplete)
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
});
