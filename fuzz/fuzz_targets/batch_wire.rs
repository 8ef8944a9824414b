//! The batch protocol decoder (port 7653) on arbitrary bytes, fed in
//! arbitrary pieces: it must never panic, and its buffer must stay bounded
//! by the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_record::wire::{Event, WireDecoder, WireLimits, parse_section};

fuzz_target!(|data: &[u8]| {
    let limits = WireLimits { max_batch_bytes: 4096, max_batch_records: 64 };
    let mut decoder = WireDecoder::new(limits, 64);
    let split = data.first().copied().unwrap_or(1).max(1) as usize;
    for piece in data.chunks(split) {
        let spare = decoder.spare();
        let n = piece.len().min(spare.len());
        spare[..n].copy_from_slice(&piece[..n]);
        decoder.filled(n);
        while let Some(event) = decoder.next_event() {
            if let Event::Batch { header, section } = event {
                assert!(section.len() <= limits.max_batch_bytes);
                let _ = parse_section(section, header.count, |_, payload| {
                    assert!(!payload.contains(&b'\n'));
                });
            }
        }
        assert!(decoder.pending() <= limits.max_batch_bytes + 1024 + 256);
    }
});
