//! The store segment v2 reader (footer, block meta, term filter and zstd
//! data), which reads files from disk that may be damaged: never panics on
//! any input, and every record it returns lies within its block's range.
#![no_main]

use std::{path::Path, sync::Arc};

use libfuzzer_sys::fuzz_target;
use sluice_storage::{
    Mapped, RecordCursor,
    block_segment::{BlockCursor, BlockSegment},
};

fuzz_target!(|data: &[u8]| {
    let Ok(segment) = BlockSegment::from_bytes(Path::new("fuzz.seg"), Mapped::owned(data.to_vec()))
    else {
        return;
    };
    let Ok(cursor) = BlockCursor::new(segment) else {
        return;
    };
    let finder = Arc::new(memchr::memmem::Finder::new(b"abcdefgh").into_owned());
    let mut cursor = cursor.with_literal(finder);
    let mut last = None;
    while let Ok(true) = cursor.advance() {
        let id = cursor.record().id;
        assert!(last.is_none_or(|l| id > l), "ids increase");
        last = Some(id);
    }
});
