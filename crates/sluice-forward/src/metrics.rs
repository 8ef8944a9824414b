//! Telemetry of the forwarder, declared in one place: [`describe`] gives
//! every metric its help text and unit, and one function per event below
//! adds to them (per batch or per connection, never per line).
//!
//! The counters mirror the accounting the forwarder prints on exit:
//! `read = acked + dropped + queued + spooled + in_flight`.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

/// Register the help text and unit of every forwarder metric; the binary
/// calls it once, after installing the recorder.
pub fn describe() {
    describe_counter!(
        "sluice_forward_records_read_total",
        Unit::Count,
        "Lines (records) read from the input: stdin, followed files or the agent's listeners."
    );
    describe_counter!(
        "sluice_forward_records_sent_total",
        Unit::Count,
        "Records sent to an ingester, re-sends and replays from the spool included."
    );
    describe_counter!(
        "sluice_forward_records_acked_total",
        Unit::Count,
        "Records an ingester acknowledged at the requested guarantee."
    );
    describe_counter!(
        "sluice_forward_records_resent_total",
        Unit::Count,
        "Records sent again because their connection failed before the ack."
    );
    describe_counter!(
        "sluice_forward_records_spooled_total",
        Unit::Count,
        "Records held only on the disk spool because the memory queue was full."
    );
    describe_counter!(
        "sluice_forward_records_replayed_total",
        Unit::Count,
        "Records read back from the disk spool to be sent."
    );
    describe_counter!(
        "sluice_forward_records_dropped_total",
        Unit::Count,
        "Records dropped, by reason: queue or spool full (--on-full drop-oldest or drop-newest), refused by the ingester, unreadable in the spool."
    );
    describe_counter!(
        "sluice_forward_spool_errors_total",
        Unit::Count,
        "Batches the spool could not take (they stay in memory only)."
    );
    describe_gauge!(
        "sluice_forward_queue_bytes",
        Unit::Bytes,
        "Bytes of batches waiting in the memory queue (at most --queue-max)."
    );
    describe_gauge!(
        "sluice_forward_spool_bytes",
        Unit::Bytes,
        "Bytes of the disk spool not yet acknowledged (at most --spool-max)."
    );
    describe_gauge!(
        "sluice_forward_queue_blocked",
        Unit::Count,
        "1 while --on-full block holds the input because the queue is full, else 0."
    );
    describe_counter!(
        "sluice_forward_connect_errors_total",
        Unit::Count,
        "Failed attempts to connect to an ingester."
    );
    describe_counter!(
        "sluice_forward_reconnects_total",
        Unit::Count,
        "Connections that failed with batches unacknowledged (they are sent again)."
    );
    describe_counter!(
        "sluice_forward_lines_read_total",
        Unit::Count,
        "Lines read for a plain tcp:// destination."
    );
    describe_counter!(
        "sluice_forward_sent_bytes_total",
        Unit::Bytes,
        "Bytes sent to a plain tcp:// destination."
    );
    describe_counter!(
        "sluice_forward_listen_connections_total",
        Unit::Count,
        "Connections the agent accepted, by listener (fluent, syslog)."
    );
    describe_counter!(
        "sluice_forward_listen_refused_total",
        Unit::Count,
        "Connections the agent refused, by listener and reason."
    );
    describe_counter!(
        "sluice_forward_listen_errors_total",
        Unit::Count,
        "Agent connections or frames that failed, by listener and reason."
    );
    describe_counter!(
        "sluice_forward_listen_chunks_acked_total",
        Unit::Count,
        "Fluent chunks the agent acknowledged, once durable in the spool or acked upstream."
    );
    describe_counter!(
        "sluice_forward_listen_syslog_unparsed_total",
        Unit::Count,
        "syslog frames whose header did not parse (kept raw, under the topic syslog)."
    );
}

/// Records read from the input.
pub(crate) fn records_read(records: u64) {
    counter!("sluice_forward_records_read_total").increment(records);
}

/// A batch was sent (or sent again, or replayed).
pub(crate) fn records_sent(records: u64) {
    counter!("sluice_forward_records_sent_total").increment(records);
}

/// A batch was acknowledged.
pub(crate) fn records_acked(records: u64) {
    counter!("sluice_forward_records_acked_total").increment(records);
}

/// A batch goes back to the queue to be sent again.
pub(crate) fn records_resent(records: u64) {
    counter!("sluice_forward_records_resent_total").increment(records);
}

/// A batch is held only on the spool.
pub(crate) fn records_spooled(records: u64) {
    counter!("sluice_forward_records_spooled_total").increment(records);
}

/// A batch was read back from the spool.
pub(crate) fn records_replayed(records: u64) {
    counter!("sluice_forward_records_replayed_total").increment(records);
}

/// Records dropped, by `reason`.
pub(crate) fn records_dropped(reason: &'static str, records: u64) {
    counter!("sluice_forward_records_dropped_total", "reason" => reason).increment(records);
}

/// The spool refused a batch.
pub(crate) fn spool_error() {
    counter!("sluice_forward_spool_errors_total").increment(1);
}

/// Bytes waiting in the memory queue.
pub(crate) fn queue_bytes(bytes: usize) {
    gauge!("sluice_forward_queue_bytes").set(bytes as f64);
}

/// Bytes of the spool not yet acknowledged.
pub(crate) fn spool_bytes(bytes: u64) {
    gauge!("sluice_forward_spool_bytes").set(bytes as f64);
}

/// Whether `--on-full block` holds the input now.
pub(crate) fn queue_blocked(blocked: bool) {
    gauge!("sluice_forward_queue_blocked").set(if blocked { 1.0 } else { 0.0 });
}

/// A connection to an ingester could not be made.
pub(crate) fn connect_error() {
    counter!("sluice_forward_connect_errors_total").increment(1);
}

/// A connection failed with batches unacknowledged.
pub(crate) fn reconnect() {
    counter!("sluice_forward_reconnects_total").increment(1);
}

/// Lines read for a `tcp://` destination.
pub(crate) fn lines_read(lines: u64) {
    counter!("sluice_forward_lines_read_total").increment(lines);
}

/// Bytes sent to a `tcp://` destination.
pub(crate) fn sent_bytes(bytes: u64) {
    counter!("sluice_forward_sent_bytes_total").increment(bytes);
}

/// The agent accepted a connection on `listener`.
pub(crate) fn listen_connection(listener: &'static str) {
    counter!("sluice_forward_listen_connections_total", "listener" => listener).increment(1);
}

/// The agent refused a connection on `listener`, for `reason`.
pub(crate) fn listen_refused(listener: &'static str, reason: &'static str) {
    counter!("sluice_forward_listen_refused_total", "listener" => listener, "reason" => reason)
        .increment(1);
}

/// `n` connections or frames of `listener` failed, for `reason`.
pub(crate) fn listen_errors(listener: &'static str, reason: &'static str, n: u64) {
    counter!("sluice_forward_listen_errors_total", "listener" => listener, "reason" => reason)
        .increment(n);
}

/// The agent acknowledged a fluent chunk.
pub(crate) fn listen_chunk_acked() {
    counter!("sluice_forward_listen_chunks_acked_total").increment(1);
}

/// syslog frames whose header did not parse.
pub(crate) fn listen_syslog_unparsed(frames: u64) {
    counter!("sluice_forward_listen_syslog_unparsed_total").increment(frames);
}
