//! A probe of framing and header parsing together: a million frames of
//! about 200 bytes (half octet-counted RFC 5424, half LF-framed RFC 3164),
//! fed in 64 KiB reads. Not a test (it asserts only that every frame came
//! out and parsed); it prints frames per second and MB per second.
//!
//! ```sh
//! cargo bench -p sluice-syslog --bench throughput
//! ```

use std::time::Instant;

use sluice_syslog::{Format, SyslogFramer, parse};

/// Frames in the stream.
const MESSAGES: usize = 1_000_000;
/// Bytes per read, and the framer's read chunk.
const READ_BYTES: usize = 64 << 10;

/// `messages` frames of about 200 bytes, alternating an octet-counted
/// RFC 5424 frame and an LF-framed RFC 3164 one.
fn stream(messages: usize) -> Vec<u8> {
    let pad = "x".repeat(120);
    let mut out = Vec::new();
    for i in 0..messages {
        if i % 2 == 0 {
            let msg = format!(
                "<13>1 2026-11-21T10:00:{:02}.123456+00:00 host-{} app 123 - - {pad} {i}\n",
                i % 60,
                i % 7
            );
            out.extend_from_slice(format!("{} ", msg.len()).as_bytes());
            out.extend_from_slice(msg.as_bytes());
        } else {
            out.extend_from_slice(
                format!(
                    "<13>Nov 21 10:00:{:02} host-{} myapp[123]: {pad} {i} padding..\n",
                    i % 60,
                    i % 7
                )
                .as_bytes(),
            );
        }
    }
    out
}

fn main() {
    // `cargo bench` adds `--bench`; the probe takes no arguments.
    let input = stream(MESSAGES);
    let now_ms = 1_795_000_000_000;
    let start = Instant::now();
    let mut framer = SyslogFramer::new(1 << 20, READ_BYTES);
    let (mut frames, mut bytes, mut unknown) = (0u64, 0usize, 0u64);
    let mut consume = |frame: &[u8]| {
        let parsed = parse(frame, now_ms);
        // Use what was parsed, so that the parse is not optimised away.
        bytes += parsed.topic_or_default().len();
        if parsed.format == Format::Unknown {
            unknown += 1;
        }
        frames += 1;
    };
    for chunk in input.chunks(READ_BYTES) {
        framer.spare()[..chunk.len()].copy_from_slice(chunk);
        framer.filled(chunk.len());
        framer.drain(|f| consume(f.bytes));
    }
    framer.finish(|f| consume(f.bytes));
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(frames, MESSAGES as u64);
    assert_eq!(unknown, 0);
    assert!(bytes > 0);
    println!(
        "{MESSAGES} frames of ~{} bytes in {secs:.3} s: {:.2} M frames/s, {:.0} MB/s",
        input.len() / MESSAGES,
        MESSAGES as f64 / secs / 1e6,
        input.len() as f64 / secs / 1e6
    );
}
