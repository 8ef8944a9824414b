//! The segment batch decoder, which reads bytes downloaded from ingesters
//! and read back from disk: never panics on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_record::BatchDecoder;

fuzz_target!(|data: &[u8]| {
    let mut decoder = BatchDecoder::new(data);
    let _ = decoder.for_each_record(|record| {
        assert!(!record.topic.is_empty());
    });
    assert!(decoder.offset() <= data.len());
});
