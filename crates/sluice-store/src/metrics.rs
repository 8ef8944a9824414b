//! Telemetry of the store crate, declared in one place: [`describe`] gives
//! every metric its help text and unit, and one function per event below
//! adds to them (per segment or per pass, never per record).

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

/// Register the help text and unit of every store metric; the binary calls
/// it once, after installing the recorder.
pub fn describe() {
    describe_gauge!(
        "sluice_store_manifest_entries",
        Unit::Count,
        "Entries in this store's batch manifest (batches it holds, as written)."
    );
    describe_counter!(
        "sluice_store_manifest_recovered_total",
        Unit::Count,
        "Manifest repairs at open, by what was found (torn_tail, bad_header)."
    );
    describe_counter!(
        "sluice_store_manifest_errors_total",
        Unit::Count,
        "Manifest operations that failed, by stage (append, exchange, prune)."
    );
    describe_counter!(
        "sluice_store_repair_copies_total",
        Unit::Count,
        "Copies of batches (or id ranges) repair made on another store, by trigger (holder_dead, walk)."
    );
    describe_counter!(
        "sluice_store_repair_records_total",
        Unit::Count,
        "Records repair copied to other stores."
    );
    describe_counter!(
        "sluice_store_repair_failures_total",
        Unit::Count,
        "Repair copies that failed, by reason (read, replicate)."
    );
    describe_gauge!(
        "sluice_store_repair_under_replicated",
        Unit::Count,
        "Batches this store holds that its last repair pass found on fewer than RF live stores."
    );
    describe_counter!(
        "sluice_store_replicas_sent_total",
        Unit::Count,
        "Store segments this store's lanes replicated to another store, by target node."
    );
    describe_counter!(
        "sluice_store_replica_bytes_sent_total",
        Unit::Bytes,
        "Bytes of store segments replicated to other stores, by target node."
    );
    describe_histogram!(
        "sluice_store_replica_seconds",
        Unit::Seconds,
        "Time to replicate one store segment to one other store, by target node."
    );
    describe_counter!(
        "sluice_store_replication_failures_total",
        Unit::Count,
        "Failed replicas, by reason (timeout, unreachable, refused, disk_full, io, too_few_stores)."
    );
    describe_gauge!(
        "sluice_store_gather_blocked",
        Unit::Count,
        "1 while the lanes lend nothing, by reason (too_few_stores: fewer than RF stores ready; disk_full: this store is over --max-disk)."
    );
    describe_gauge!(
        "sluice_store_lanes_busy",
        Unit::Count,
        "Consumer lanes in a consume cycle now (the rest wait for an ingester)."
    );
    describe_counter!(
        "sluice_store_leases_lapsed_total",
        Unit::Count,
        "Consume cycles that held their lent segments past half the lease and gave them back."
    );
    describe_counter!(
        "sluice_store_segments_written_total",
        Unit::Count,
        "Store segments the consumer made durable."
    );
    describe_counter!(
        "sluice_store_records_written_total",
        Unit::Count,
        "Records the consumer wrote to store segments."
    );
    describe_counter!(
        "sluice_store_written_bytes_total",
        Unit::Bytes,
        "Bytes of store segments the consumer wrote."
    );
    describe_counter!(
        "sluice_store_segments_consumed_total",
        Unit::Count,
        "Ingest segments consumed (downloaded, verified and stored)."
    );
    describe_counter!(
        "sluice_store_duplicates_dropped_total",
        Unit::Count,
        "Records dropped because their id was already stored (at-least-once delivery)."
    );
    describe_counter!(
        "sluice_store_consume_errors_total",
        Unit::Count,
        "Failed consume cycles, by stage (download, merge, commit); the segments are retried."
    );
    describe_histogram!(
        "sluice_store_consume_cycle_seconds",
        Unit::Seconds,
        "Time of one gather, verify, write and commit cycle that consumed segments."
    );
    describe_counter!(
        "sluice_store_compactions_total",
        Unit::Count,
        "Compactions run, by the layout of the blocks written (in_order merges, sorted upgrades)."
    );
    describe_counter!(
        "sluice_store_compaction_input_segments_total",
        Unit::Count,
        "Segments read by compactions."
    );
    describe_counter!(
        "sluice_store_compaction_input_bytes_total",
        Unit::Bytes,
        "Bytes on disk of the segments compactions read."
    );
    describe_counter!(
        "sluice_store_compaction_output_bytes_total",
        Unit::Bytes,
        "Bytes on disk of the block files compactions wrote."
    );
    describe_counter!(
        "sluice_store_compaction_records_total",
        Unit::Count,
        "Records compactions wrote."
    );
    describe_counter!(
        "sluice_store_compaction_copied_blocks_total",
        Unit::Count,
        "Blocks compactions moved whole, neither decompressed nor compressed again."
    );
    describe_counter!(
        "sluice_store_quarantined_segments_total",
        Unit::Count,
        "Corrupt segments moved to store/quarantine/ after their readable records were kept."
    );
    describe_counter!(
        "sluice_store_corrupt_blocks_dropped_total",
        Unit::Count,
        "Corrupt blocks compaction passed over."
    );
    describe_histogram!(
        "sluice_store_compaction_seconds",
        Unit::Seconds,
        "Time of one compaction."
    );
    describe_counter!(
        "sluice_store_maintenance_errors_total",
        Unit::Count,
        "Maintenance passes that failed, by stage (retention, compaction)."
    );
    describe_counter!(
        "sluice_store_purged_segments_total",
        Unit::Count,
        "Segments retention removed, by reason (age, disk)."
    );
    describe_counter!(
        "sluice_store_purged_bytes_total",
        Unit::Bytes,
        "Bytes retention removed, by reason (age, disk)."
    );
    describe_gauge!(
        "sluice_store_segments",
        Unit::Count,
        "Store segments on disk."
    );
    describe_gauge!(
        "sluice_store_bytes",
        Unit::Bytes,
        "Bytes of store segments on disk."
    );
    describe_counter!(
        "sluice_store_replicas_received_total",
        Unit::Count,
        "Replicas other stores sent here, by outcome (created: made durable; already_held: a retry, nothing written)."
    );
    describe_counter!(
        "sluice_store_replica_bytes_received_total",
        Unit::Bytes,
        "Bytes of the replicas made durable here."
    );
    describe_counter!(
        "sluice_store_replicas_refused_total",
        Unit::Count,
        "Replicas refused, by reason (bad_name, too_large, corrupt, disk_full, in_progress, io); the sender tries another store."
    );
    describe_counter!(
        "sluice_store_taken_segments_total",
        Unit::Count,
        "Lent segments taken into the store, by how: link (a hard link to this ingeststore's own ingest segment) or download (over HTTP)."
    );
    describe_counter!(
        "sluice_store_taken_bytes_total",
        Unit::Bytes,
        "Bytes of lent segments taken into the store, by how: link or download."
    );
    describe_gauge!(
        "sluice_store_unsorted_blocks",
        Unit::Count,
        "Blocks (and batch files) whose lines are not yet sorted: work for idle maintenance passes."
    );
}

pub(crate) fn segment_written(records: u64, bytes: u64, duplicates: u64, inputs: usize) {
    counter!("sluice_store_segments_written_total").increment(1);
    counter!("sluice_store_records_written_total").increment(records);
    counter!("sluice_store_written_bytes_total").increment(bytes);
    counter!("sluice_store_segments_consumed_total").increment(inputs as u64);
    if duplicates > 0 {
        counter!("sluice_store_duplicates_dropped_total").increment(duplicates);
    }
}

/// A lent segment taken into the store, by `link` (this process's own
/// ingester) or `download`.
pub(crate) fn taken(via: &'static str, bytes: u64) {
    counter!("sluice_store_taken_segments_total", "via" => via).increment(1);
    counter!("sluice_store_taken_bytes_total", "via" => via).increment(bytes);
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

/// A lane started (+1) or ended (-1) a cycle.
pub(crate) fn lane_busy(delta: f64) {
    gauge!("sluice_store_lanes_busy").increment(delta);
}

/// A cycle gave its segments back because it passed half their lease.
pub(crate) fn lease_lapsed() {
    counter!("sluice_store_leases_lapsed_total").increment(1);
}

pub(crate) fn replicated(target: &str, bytes: u64, elapsed: Duration) {
    let target = target.to_string();
    counter!("sluice_store_replicas_sent_total", "target" => target.clone()).increment(1);
    counter!("sluice_store_replica_bytes_sent_total", "target" => target.clone()).increment(bytes);
    histogram!("sluice_store_replica_seconds", "target" => target).record(elapsed.as_secs_f64());
}

pub(crate) fn replication_failed(reason: &'static str) {
    counter!("sluice_store_replication_failures_total", "reason" => reason).increment(1);
}

pub(crate) fn gather_blocked(reason: &'static str, blocked: bool) {
    gauge!("sluice_store_gather_blocked", "reason" => reason).set(if blocked { 1.0 } else { 0.0 });
}

/// A replica was received: `outcome` is `created` (with its bytes) or
/// `already_held` (nothing written).
pub(crate) fn replica_received(outcome: &'static str, bytes: u64) {
    counter!("sluice_store_replicas_received_total", "outcome" => outcome).increment(1);
    if bytes > 0 {
        counter!("sluice_store_replica_bytes_received_total").increment(bytes);
    }
}

/// A replica was refused, by reason (see `ReplicaError::reason`).
pub(crate) fn replica_refused(reason: &'static str) {
    counter!("sluice_store_replicas_refused_total", "reason" => reason).increment(1);
}

pub(crate) fn manifest_entries(entries: u64) {
    gauge!("sluice_store_manifest_entries").set(entries as f64);
}

pub(crate) fn manifest_recovered(what: &'static str) {
    counter!("sluice_store_manifest_recovered_total", "what" => what).increment(1);
}

pub(crate) fn manifest_error(stage: &'static str) {
    counter!("sluice_store_manifest_errors_total", "stage" => stage).increment(1);
}

pub(crate) fn repair_copied(trigger: &'static str, records: u64) {
    counter!("sluice_store_repair_copies_total", "trigger" => trigger).increment(1);
    counter!("sluice_store_repair_records_total").increment(records);
}

pub(crate) fn repair_failed(reason: &'static str) {
    counter!("sluice_store_repair_failures_total", "reason" => reason).increment(1);
}

pub(crate) fn under_replicated(batches: usize) {
    gauge!("sluice_store_repair_under_replicated").set(batches as f64);
}
