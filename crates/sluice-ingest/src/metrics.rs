//! Telemetry of the ingest crate, declared in one place: [`describe`] gives
//! every metric its help text and unit, and one function per event below
//! adds to them.
//!
//! Counters are added once per read buffer, never per record.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

/// Register the help text and unit of every ingest metric; the binary calls
/// it once, after installing the recorder.
pub fn describe() {
    describe_gauge!(
        "sluice_tail_readers",
        Unit::Count,
        "Live-tail readers subscribed to this ingester's ring now."
    );
    describe_gauge!(
        "sluice_tail_ring_bytes",
        Unit::Bytes,
        "Bytes of recent batches held for live-tail readers (at most --tail-buffer; 0 while nobody tails)."
    );
    describe_counter!(
        "sluice_tail_lagged_records_total",
        Unit::Count,
        "Records a live-tail reader missed because it fell behind the ring (each reader counts its own)."
    );
    describe_counter!(
        "sluice_ingest_connections_total",
        Unit::Count,
        "Ingest connections accepted, by protocol."
    );
    describe_gauge!(
        "sluice_ingest_connections_active",
        Unit::Count,
        "Ingest connections open now, by protocol (at most --max-connections each)."
    );
    describe_counter!(
        "sluice_ingest_connections_rejected_total",
        Unit::Count,
        "Ingest connections refused, by protocol and reason (too_many_connections, accept_error, thread_spawn)."
    );
    describe_counter!(
        "sluice_ingest_records_total",
        Unit::Count,
        "Records written to ingest segments, by protocol (fast, durable, batch, fluent, syslog, loki, elasticsearch)."
    );
    describe_counter!(
        "sluice_ingest_bytes_total",
        Unit::Bytes,
        "Bytes read from ingest connections, by protocol."
    );
    describe_counter!(
        "sluice_ingest_lines_truncated_total",
        Unit::Count,
        "Lines (or Fluentd events) cut at --max-line and flagged truncated, by protocol."
    );
    describe_counter!(
        "sluice_ingest_records_dropped_total",
        Unit::Count,
        "Records read but not kept, by reason (write_error, syslog_incomplete_frame)."
    );
    describe_counter!(
        "sluice_ingest_write_errors_total",
        Unit::Count,
        "Failed writes to ingest segments, by reason (disk_full, io)."
    );
    describe_counter!(
        "sluice_ingest_segments_flushed_total",
        Unit::Count,
        "Ingest segments sealed (fsynced) and handed to the lending queue."
    );
    describe_counter!(
        "sluice_ingest_flushed_bytes_total",
        Unit::Bytes,
        "Bytes of the ingest segments sealed."
    );
    describe_gauge!(
        "sluice_ingest_segments_flushed",
        Unit::Count,
        "Sealed ingest segments waiting for a store."
    );
    describe_gauge!(
        "sluice_ingest_segments_pending",
        Unit::Count,
        "Ingest segments lent to a store and not yet committed."
    );
    describe_counter!(
        "sluice_ingest_segments_lent_total",
        Unit::Count,
        "Lending events, by outcome (lent, committed, failed, timed_out, commit_not_pending)."
    );
    describe_counter!(
        "sluice_ingest_recovered_torn_tails_total",
        Unit::Count,
        "Torn segment tails cut at startup (moved to ingest/quarantine/)."
    );
    describe_counter!(
        "sluice_ingest_recovered_torn_bytes_total",
        Unit::Bytes,
        "Bytes of torn segment tails cut at startup."
    );
    describe_counter!(
        "sluice_ingest_syslog_unparsed_total",
        Unit::Count,
        "syslog frames whose header did not parse (kept raw, under the topic syslog)."
    );
    describe_counter!(
        "sluice_ingest_syslog_multiline_total",
        Unit::Count,
        "syslog messages whose inner line feeds became spaces."
    );
    describe_counter!(
        "sluice_ingest_fluent_errors_total",
        Unit::Count,
        "Fluentd connections closed for a bad frame, by reason."
    );
    describe_counter!(
        "sluice_ingest_batch_errors_total",
        Unit::Count,
        "Batches refused on the batch port (ERR replies), by reason."
    );
    describe_counter!(
        "sluice_ingest_push_refused_total",
        Unit::Count,
        "HTTP push requests (Loki push, Elasticsearch _bulk) decoded but not written, by protocol and reason (busy: the writer's queue was full, 429; write_error: 503)."
    );
    describe_counter!(
        "sluice_ingest_batch_unchecked_total",
        Unit::Count,
        "Batches sent without a checksum (crc written as -)."
    );
}

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
    counter!("sluice_ingest_flushed_bytes_total").increment(bytes);
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

/// A batch arrived without a checksum (`-`).
pub(crate) fn batch_unchecked() {
    counter!("sluice_ingest_batch_unchecked_total").increment(1);
}

pub(crate) fn batch_error(kind: &'static str) {
    counter!("sluice_ingest_batch_errors_total", "reason" => kind).increment(1);
}

pub(crate) fn tail_readers(readers: usize) {
    gauge!("sluice_tail_readers").set(readers as f64);
}

pub(crate) fn tail_ring_bytes(bytes: u64) {
    gauge!("sluice_tail_ring_bytes").set(bytes as f64);
}

pub(crate) fn tail_lagged(records: u64) {
    counter!("sluice_tail_lagged_records_total").increment(records);
}

/// An HTTP push request's records were written (`protocol` is `loki` or
/// `elasticsearch`); `bytes` is its body as received.
pub(crate) fn push_ingested(protocol: &'static str, records: u64, bytes: u64, truncated: u64) {
    counter!("sluice_ingest_records_total", "protocol" => protocol).increment(records);
    counter!("sluice_ingest_bytes_total", "protocol" => protocol).increment(bytes);
    if truncated > 0 {
        counter!("sluice_ingest_lines_truncated_total", "protocol" => protocol)
            .increment(truncated);
    }
}

pub(crate) fn push_refused(protocol: &'static str, reason: &'static str) {
    counter!("sluice_ingest_push_refused_total", "protocol" => protocol, "reason" => reason)
        .increment(1);
}
