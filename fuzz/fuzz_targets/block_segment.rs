//! The block file reader (footer, block meta, sliced filter and zstd
//! data, and the raw blocks compaction copies), which reads files from
//! disk that may be damaged: never panics on any input, and every record
//! it returns lies within its block's range.
#![no_main]

use std::{path::Path, sync::Arc};

use libfuzzer_sys::fuzz_target;
use sluice_storage::{
    Mapped, RecordCursor, WorkerPool,
    block_segment::{BlockCursor, BlockSegment},
};

fuzz_target!(|data: &[u8]| {
    let Ok(segment) = BlockSegment::from_bytes(Path::new("fuzz.seg"), Mapped::owned(data.to_vec()))
    else {
        return;
    };
    // The path compaction copies blocks by: checked without decompressing.
    for (i, entry) in segment.blocks().iter().enumerate() {
        if let Ok(raw) = segment.raw_block(i) {
            assert_eq!(raw.entry, *entry);
            assert!(raw.text_len as usize <= sluice_storage::block_segment::MAX_BLOCK_TEXT);
        }
    }
    let cursor = BlockCursor::new(segment, WorkerPool::inline());
    let finder = Arc::new(memchr::memmem::Finder::new(b"abcdefgh").into_owned());
    let mut cursor = cursor.with_literal(finder);
    let mut last = None;
    while let Ok(true) = cursor.advance() {
        let id = cursor.record().id;
        assert!(last.is_none_or(|l| id > l), "ids increase");
        last = Some(id);
    }
});
