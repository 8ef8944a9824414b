//! The line framer of the fast and durable ports: never panics, never
//! emits a line over the limit or one containing a newline.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_record::LineFramer;

fuzz_target!(|data: &[u8]| {
    let max_line = 16;
    let mut framer = LineFramer::new(max_line, 7);
    let check = |line: sluice_record::FramedLine<'_>| {
        assert!(line.bytes.len() <= max_line);
        assert!(!line.bytes.contains(&b'\n'));
    };
    for piece in data.chunks(5) {
        let spare = framer.spare();
        spare[..piece.len()].copy_from_slice(piece);
        framer.filled(piece.len());
        framer.drain(check);
        assert!(framer.pending() <= max_line + 1);
    }
    framer.finish(check);
});
