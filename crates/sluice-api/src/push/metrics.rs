//! Telemetry of the push inputs (Loki push, Elasticsearch `_bulk`). What
//! was written is counted by the ingest crate (`sluice_ingest_records_total`
//! with `protocol="loki"` or `"elasticsearch"`); these count what the
//! decoders refused, changed or dropped, once per request.

use metrics::{Unit, counter, describe_counter};
use sluice_ingest::PushProtocol;
use sluice_push::{PushStats, elastic::BulkItem};

/// Register the help text and unit of every push metric.
pub fn describe() {
    describe_counter!(
        "sluice_push_requests_refused_total",
        Unit::Count,
        "Loki push and Elasticsearch _bulk requests refused before anything was written, by protocol and reason (body_too_large, decompressed_too_large, too_many_entries, too_many_metadata, too_many_labels, bad_labels, bad_json, bad_protobuf, bad_compression, unsupported_encoding, bad_timestamp, bad_bulk: 400/413; busy: 429)."
    );
    describe_counter!(
        "sluice_push_structured_metadata_dropped_total",
        Unit::Count,
        "Structured metadata pairs on pushed Loki entries, dropped (sluice keeps the line and the stream labels only)."
    );
    describe_counter!(
        "sluice_push_structured_metadata_entries_total",
        Unit::Count,
        "Pushed Loki entries that carried structured metadata (dropped)."
    );
    describe_counter!(
        "sluice_push_multiline_total",
        Unit::Count,
        "Pushed lines whose inner line feeds became spaces, by protocol."
    );
    describe_counter!(
        "sluice_push_bulk_item_errors_total",
        Unit::Count,
        "Elasticsearch _bulk items answered with an error (the request's other items were written), by type."
    );
}

pub(crate) fn refused(protocol: PushProtocol, reason: &'static str) {
    counter!("sluice_push_requests_refused_total", "protocol" => protocol.name(), "reason" => reason)
        .increment(1);
}

pub(crate) fn decoded(protocol: PushProtocol, stats: &PushStats) {
    if stats.metadata_pairs > 0 {
        counter!("sluice_push_structured_metadata_dropped_total").increment(stats.metadata_pairs);
        counter!("sluice_push_structured_metadata_entries_total").increment(stats.metadata_entries);
    }
    if stats.multiline > 0 {
        counter!("sluice_push_multiline_total", "protocol" => protocol.name())
            .increment(stats.multiline);
    }
}

pub(crate) fn bulk_items(items: &[BulkItem]) {
    // Added once per request and error type, not per item.
    let mut kinds: Vec<(&'static str, u64)> = Vec::new();
    for err in items.iter().filter_map(|item| item.outcome.as_ref().err()) {
        match kinds.iter_mut().find(|(kind, _)| *kind == err.kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((err.kind, 1)),
        }
    }
    for (kind, n) in kinds {
        counter!("sluice_push_bulk_item_errors_total", "type" => kind).increment(n);
    }
}
