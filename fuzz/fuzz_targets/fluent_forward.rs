//! The fluent forward decoder (port 24224) on arbitrary bytes: framing fed
//! in arbitrary pieces through a resumable scanner must agree with the
//! stateless `frame_len`, never panic, never report a frame over the limit,
//! and every decoded event must be one line of JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_fluent::{FrameScanner, Limits, Scratch, decode_ack, decode_frame, frame_len};

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
    let mut start = 0;
    let mut end = 0;
    while end < data.len() {
        end = (end + split).min(data.len());
        loop {
            let buf = &data[start..end];
            match scanner.scan(buf, &limits) {
                Ok(Some(n)) => {
                    assert!(n > 0 && n <= buf.len() && n <= limits.max_frame_bytes);
                    assert_eq!(frame_len(buf, &limits), Ok(Some(n)));
                    let frame = &buf[..n];
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
                    return;
                }
            }
        }
    }
});
