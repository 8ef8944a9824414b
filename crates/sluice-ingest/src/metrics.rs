//! Telemetry of the ingest crate, declared in one place.
//!
//! Counters are added once per read buffer, never per record.

use metrics::{counter, gauge};

use crate::listener::Mode;

pub(crate) fn connection_opened(mode: Mode) {
    counter!("sluice_ingest_connections_total", "protocol" => mode.name()).increment(1);
    gauge!("sluice_ingest_connections_active", "protocol" => mode.name()).increment(1.0);
}

pub(crate) fn connection_closed(mode: Mode) {
    gauge!("sluice_ingest_connections_active", "protocol" => mode.name()).decrement(1.0);
}

pub(crate) fn connection_rejected(mode: Mode, reason: &'static str) {
    counter!("sluice_ingest_connections_rejected_total", "protocol" => mode.name(), "reason" => reason)
        .increment(1);
}

pub(crate) fn buffer_ingested(mode: Mode, records: u64, bytes: u64, truncated: u64) {
    counter!("sluice_ingest_records_total", "protocol" => mode.name()).increment(records);
    counter!("sluice_ingest_bytes_total", "protocol" => mode.name()).increment(bytes);
    if truncated > 0 {
        counter!("sluice_ingest_lines_truncated_total", "protocol" => mode.name())
            .increment(truncated);
    }
}

pub(crate) fn records_dropped(reason: &'static str, records: u64) {
    counter!("sluice_ingest_records_dropped_total", "reason" => reason).increment(records);
}

pub(crate) fn write_error(reason: &'static str) {
    counter!("sluice_ingest_write_errors_total", "reason" => reason).increment(1);
}

pub(crate) fn segment_flushed(bytes: u64) {
    counter!("sluice_ingest_segments_flushed_total").increment(1);
    counter!("sluice_ingest_segment_bytes_flushed_total").increment(bytes);
}

pub(crate) fn segments_waiting(flushed: usize, pending: usize) {
    gauge!("sluice_ingest_segments_flushed").set(flushed as f64);
    gauge!("sluice_ingest_segments_pending").set(pending as f64);
}

pub(crate) fn lend(outcome: &'static str) {
    counter!("sluice_ingest_segments_lent_total", "outcome" => outcome).increment(1);
}

pub(crate) fn torn_tail(bytes: u64) {
    counter!("sluice_ingest_recovered_torn_tails_total").increment(1);
    counter!("sluice_ingest_recovered_torn_bytes_total").increment(bytes);
}

pub(crate) fn syslog_frames(unparsed: u64, multiline: u64, incomplete: u64) {
    if unparsed > 0 {
        counter!("sluice_ingest_syslog_unparsed_total").increment(unparsed);
    }
    if multiline > 0 {
        counter!("sluice_ingest_syslog_multiline_total").increment(multiline);
    }
    if incomplete > 0 {
        counter!("sluice_ingest_records_dropped_total", "reason" => "syslog_incomplete_frame")
            .increment(incomplete);
    }
}

pub(crate) fn fluent_error(kind: &'static str) {
    counter!("sluice_ingest_fluent_errors_total", "reason" => kind).increment(1);
}

pub(crate) fn batch_error(kind: &'static str) {
    counter!("sluice_ingest_batch_errors_total", "reason" => kind).increment(1);
}
