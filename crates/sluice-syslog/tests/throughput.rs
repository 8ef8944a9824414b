//! Framing + parsing throughput. Ignored by default; run with
//! `cargo test --release -p sluice-syslog --test throughput -- --ignored --nocapture`.

use std::time::Instant;

use sluice_syslog::{Format, SyslogFramer, parse};

/// About 200 bytes per message, half octet-counted RFC 5424, half LF RFC 3164.
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

#[test]
#[ignore]
fn throughput() {
    let messages = 1_000_000;
    let input = stream(messages);
    let now_ms = 1_795_000_000_000;
    let start = Instant::now();
    let mut framer = SyslogFramer::new(1 << 20, 64 << 10);
    let (mut frames, mut bytes, mut unknown) = (0u64, 0usize, 0u64);
    let mut consume = |bytes_in: &[u8]| {
        let parsed = parse(bytes_in, now_ms);
        bytes += parsed.topic_or_default().len();
        if parsed.format == Format::Unknown {
            unknown += 1;
        }
        frames += 1;
    };
    for chunk in input.chunks(64 << 10) {
        framer.spare()[..chunk.len()].copy_from_slice(chunk);
        framer.filled(chunk.len());
        framer.drain(|f| consume(f.bytes));
    }
    framer.finish(|f| consume(f.bytes));
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(frames, messages as u64);
    assert_eq!(unknown, 0);
    assert!(bytes > 0);
    println!(
        "{messages} frames of ~{} bytes in {secs:.3} s: {:.2} M frames/s, {:.0} MB/s",
        input.len() / messages,
        messages as f64 / secs / 1e6,
        input.len() as f64 / secs / 1e6
    );
}
