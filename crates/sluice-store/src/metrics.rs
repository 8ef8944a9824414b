//! Telemetry of the store crate, declared in one place.

use std::time::Duration;

use metrics::{counter, histogram};

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
