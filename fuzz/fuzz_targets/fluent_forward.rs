//! The fluent forward decoder (port 24224) on arbitrary bytes: framing fed
//! in arbitrary pieces through a resumable scanner must agree with the
//! stateless `frame_len`, never panic, never report a frame over the limit,
//! and every decoded event must be one line of JSON. The connection's
//! framer (`FluentFramer`, on its read buffer) must hand out the same
//! frames, and the event → record mapping must give valid topics and one
//! line no longer than the line limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_fluent::{
    FluentError, FluentFramer, FrameScanner, Limits, Scratch, decode_ack, decode_frame, frame_len,
};

const MAX_LINE: usize = 64;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_frame_bytes: 4096,
        max_decompressed_bytes: 16 * 1024,
        max_entries_per_frame: 256,
        max_depth: 12,
    };
    let mut scratch = Scratch::new();
    let split = data.first().copied().unwrap_or(1).max(1) as usize;
    let mut scanner = FrameScanner::new();
    let mut frames = Vec::new();
    let mut start = 0;
    let mut end = 0;
    'read: while end < data.len() {
        end = (end + split).min(data.len());
        loop {
            let buf = &data[start..end];
            match scanner.scan(buf, &limits) {
                Ok(Some(n)) => {
                    assert!(n > 0 && n <= buf.len() && n <= limits.max_frame_bytes);
                    assert_eq!(frame_len(buf, &limits), Ok(Some(n)));
                    let frame = &buf[..n];
                    frames.push(frame.to_vec());
                    let mut events = 0u64;
                    if let Ok(info) = decode_frame(frame, &limits, &mut scratch, |e| {
                        events += 1;
                        assert!(!e.payload.contains(&b'\n'));
                        assert!(e.payload.starts_with(b"{") && e.payload.ends_with(b"}"));
                        assert!(std::str::from_utf8(e.payload).is_ok());
                    }) {
                        assert_eq!(info.events, events);
                        if let Some(chunk) = info.chunk_bytes(frame) {
                            let mut ack = Vec::new();
                            sluice_fluent::encode_ack(chunk, &mut ack);
                            assert_eq!(decode_ack(&ack), Ok(Some((ack.len(), chunk))));
                        }
                    }
                    start += n;
                }
                Ok(None) => {
                    assert_eq!(frame_len(buf, &limits), Ok(None));
                    break;
                }
                Err(e) => {
                    assert_eq!(frame_len(buf, &limits), Err(e));
                    break 'read;
                }
            }
        }
    }

    // The same bytes through a connection's framer, in the same pieces.
    let now_ms = 1_795_000_000_000;
    let mut framer = FluentFramer::new(limits, MAX_LINE, split);
    let mut framed = Vec::new();
    for piece in data.chunks(split) {
        let spare = framer.spare();
        spare[..piece.len()].copy_from_slice(piece);
        framer.filled(piece.len());
        let drained = framer.drain::<FluentError>(|mut frame| {
            framed.push(frame.bytes().to_vec());
            let _ = frame.records(now_ms, |r| {
                assert!(sluice_record::is_valid_topic(r.topic));
                assert!(r.payload.len() <= MAX_LINE && !r.payload.contains(&b'\n'));
                assert!(r.time_ms <= now_ms + sluice_record::MAX_FUTURE_MS);
            });
            Ok(())
        });
        if drained.is_err() {
            break;
        }
        assert!(framer.pending() <= limits.max_frame_bytes);
    }
    assert_eq!(framed, frames);
});
