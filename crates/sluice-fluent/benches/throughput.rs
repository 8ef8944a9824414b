//! A probe of the decoder's hot path: Forward-mode frames of 10,000 events
//! of 170-byte lines (about 200 bytes of JSON each), decoded 100 times.
//! Not a test (it asserts only that every event came out); it prints events
//! per second and MB of JSON per second.
//!
//! ```sh
//! cargo bench -p sluice-fluent --bench throughput
//! ```

use std::time::Instant;

use sluice_fluent::{ForwardEncoder, Limits, Scratch, decode_frame};

/// Event time of the first event: 2023-11-14, in Unix nanoseconds.
const T_NS: i64 = 1_700_000_000_000_000_000;
/// Events in the frame.
const EVENTS: u64 = 10_000;
/// Times the frame is decoded.
const ROUNDS: u64 = 100;

fn main() {
    // `cargo bench` adds `--bench`; the probe takes no arguments.
    let mut enc = ForwardEncoder::new("bench");
    let line = "x".repeat(170);
    for i in 0..EVENTS {
        enc.push(T_NS + i as i64, line.as_bytes());
    }
    let frame = enc.seal("c");
    let mut scratch = Scratch::new();
    let mut total = 0u64;
    let start = Instant::now();
    for _ in 0..ROUNDS {
        let info = decode_frame(&frame, &Limits::default(), &mut scratch, |e| {
            total += e.payload.len() as u64
        })
        .expect("the encoder's frame decodes");
        assert_eq!(info.events, EVENTS);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{:.2} M events/s, {:.0} MB/s of JSON",
        (EVENTS * ROUNDS) as f64 / secs / 1e6,
        total as f64 / secs / 1e6
    );
}
