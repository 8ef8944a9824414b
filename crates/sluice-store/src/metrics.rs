//! Telemetry of the store crate, declared in one place.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

pub(crate) fn segment_written(records: u64, bytes: u64, duplicates: u64, inputs: usize) {
    counter!("sluice_store_segments_written_total").increment(1);
    counter!("sluice_store_records_written_total").increment(records);
    counter!("sluice_store_bytes_written_total").increment(bytes);
    counter!("sluice_store_segments_consumed_total").increment(inputs as u64);
    if duplicates > 0 {
        counter!("sluice_store_duplicates_dropped_total").increment(duplicates);
    }
}

pub(crate) fn consume_error(stage: &'static str) {
    counter!("sluice_store_consume_errors_total", "stage" => stage).increment(1);
}

pub(crate) fn cycle(elapsed: Duration) {
    histogram!("sluice_store_consume_cycle_seconds").record(elapsed.as_secs_f64());
}

pub(crate) fn compacted(done: &crate::compact::Compacted, elapsed: Duration) {
    let layout = match done.layout {
        sluice_storage::block_segment::BlockLayout::Sorted => "sorted",
        sluice_storage::block_segment::BlockLayout::InOrder => "in_order",
    };
    counter!("sluice_store_compactions_total", "layout" => layout).increment(1);
    counter!("sluice_store_compaction_input_segments_total").increment(done.inputs as u64);
    counter!("sluice_store_compaction_input_bytes_total").increment(done.input_bytes);
    counter!("sluice_store_compaction_output_bytes_total").increment(done.output_bytes());
    counter!("sluice_store_compaction_records_total").increment(done.records);
    // Blocks moved whole, neither decompressed nor compressed again.
    counter!("sluice_store_compaction_copied_blocks_total").increment(done.copied_blocks);
    if done.duplicates_removed > 0 {
        counter!("sluice_store_duplicates_dropped_total").increment(done.duplicates_removed);
    }
    if !done.quarantined.is_empty() {
        counter!("sluice_store_quarantined_segments_total")
            .increment(done.quarantined.len() as u64);
    }
    if done.corrupt_blocks > 0 {
        counter!("sluice_store_corrupt_blocks_dropped_total").increment(done.corrupt_blocks);
    }
    histogram!("sluice_store_compaction_seconds").record(elapsed.as_secs_f64());
}

pub(crate) fn maintenance_error(stage: &'static str) {
    counter!("sluice_store_maintenance_errors_total", "stage" => stage).increment(1);
}

pub(crate) fn purged(reason: &'static str, bytes: u64) {
    counter!("sluice_store_purged_segments_total", "reason" => reason).increment(1);
    counter!("sluice_store_purged_bytes_total", "reason" => reason).increment(bytes);
}

pub(crate) fn store_size(segments: usize, bytes: u64) {
    gauge!("sluice_store_segments").set(segments as f64);
    gauge!("sluice_store_bytes").set(bytes as f64);
}

/// Blocks (and batch files) whose lines are not yet sorted: the work that
/// waits for a pass with nothing to merge.
pub(crate) fn unsorted_blocks(blocks: u64) {
    gauge!("sluice_store_unsorted_blocks").set(blocks as f64);
}
