//! Telemetry of the API crate, declared in one place: RED metrics for
//! every endpoint (rate, errors, duration), the queries running, waiting,
//! refused and cancelled, and the worker pool's use.

use std::time::Instant;

use axum::{extract::MatchedPath, extract::Request, middleware::Next, response::Response};
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use sluice_storage::WorkerPool;

/// Register the help text and unit of every API metric; the binary calls
/// it once, after installing the recorder.
pub fn describe() {
    crate::push::describe_metrics();
    describe_counter!(
        "sluice_ingest_commits_total",
        Unit::Count,
        "Segments committed by a store, by the number of distinct stores the commit named (replicas)."
    );
    describe_counter!(
        "sluice_ingest_commits_refused_total",
        Unit::Count,
        "Commits refused (409) because they named fewer distinct stores than this ingester's --replication-factor."
    );
    describe_gauge!(
        "sluice_stream_clients",
        Unit::Count,
        "Live-tail (/stream) clients this node serves now."
    );
    describe_counter!(
        "sluice_query_nodes_failed_total",
        Unit::Count,
        "Nodes that failed to answer a coordinated query, by reason (dead, not_ready, unreachable, timeout, truncated, error)."
    );
    describe_counter!(
        "sluice_http_requests_total",
        Unit::Count,
        "HTTP requests answered, by endpoint, method and status class."
    );
    describe_counter!(
        "sluice_http_errors_total",
        Unit::Count,
        "HTTP requests answered with a 5xx status, by endpoint."
    );
    describe_histogram!(
        "sluice_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request (to its headers, for a streamed body), by endpoint."
    );
    describe_gauge!(
        "sluice_queries_running",
        Unit::Count,
        "Queries scanning now (at most --max-queries)."
    );
    describe_gauge!(
        "sluice_queries_queued",
        Unit::Count,
        "Queries waiting for a slot (at most --query-queue)."
    );
    describe_counter!(
        "sluice_queries_rejected_total",
        Unit::Count,
        "Queries refused with 503 because every slot was taken and the line was full, by reason."
    );
    describe_counter!(
        "sluice_queries_cancelled_total",
        Unit::Count,
        "Queries whose client went away before their scan ended; the scan stopped."
    );
    describe_counter!(
        "sluice_query_corrupt_blocks_total",
        Unit::Count,
        "Corrupt blocks queries passed over (their segments are quarantined by the next maintenance pass)."
    );
    describe_gauge!(
        "sluice_workers",
        Unit::Count,
        "Threads of the worker pool that decodes and builds blocks (--workers)."
    );
    describe_gauge!(
        "sluice_worker_jobs_queued",
        Unit::Count,
        "Block jobs waiting for a worker."
    );
    describe_gauge!(
        "sluice_worker_jobs_running",
        Unit::Count,
        "Block jobs running on the workers."
    );
    describe_counter!(
        "sluice_worker_jobs_submitted_total",
        Unit::Count,
        "Jobs given to the worker pool, queries' and compaction's (each wakes a worker unless all are busy)."
    );
    describe_counter!(
        "sluice_compaction_yields_total",
        Unit::Count,
        "Times a compaction job was held back, or paused between its frames, while a query scanned (at most 250 ms before a job, and over a job)."
    );
    describe_gauge!(
        "sluice_block_cache_bytes",
        Unit::Bytes,
        "Bytes of decoded blocks kept for later queries (--block-cache bounds it)."
    );
    describe_gauge!(
        "sluice_block_cache_capacity_bytes",
        Unit::Bytes,
        "The bound of the decoded-block cache (--block-cache)."
    );
    describe_gauge!(
        "sluice_block_cache_blocks",
        Unit::Count,
        "Decoded blocks kept for later queries."
    );
    describe_counter!(
        "sluice_block_cache_lookups_total",
        Unit::Count,
        "Lookups of a decoded block by a query, by result (hit: searched without decompressing, miss)."
    );
    describe_gauge!(
        "sluice_block_cache_parts",
        Unit::Count,
        "Of the blocks kept, those kept in part: the frames a query read, with every record's id, topic and flags."
    );
    describe_counter!(
        "sluice_block_cache_record_lookups_total",
        Unit::Count,
        "Lookups of a block's decoded records by a query reading it in part, by result (hit: no ids decoded, miss)."
    );
    describe_counter!(
        "sluice_block_cache_written_total",
        Unit::Count,
        "Blocks kept as compaction wrote them, so that queries of data just compacted do not decompress it."
    );
    describe_counter!(
        "sluice_block_cache_evictions_total",
        Unit::Count,
        "Decoded blocks dropped to make room for others."
    );
}

/// The decoded-block cache's use, as a scrape sees it.
pub(crate) fn block_cache(stats: &sluice_storage::BlockCacheStats) {
    gauge!("sluice_block_cache_bytes").set(stats.used as f64);
    gauge!("sluice_block_cache_capacity_bytes").set(stats.capacity as f64);
    gauge!("sluice_block_cache_blocks").set(stats.blocks as f64);
    counter!("sluice_block_cache_lookups_total", "result" => "hit").absolute(stats.hits);
    counter!("sluice_block_cache_lookups_total", "result" => "miss").absolute(stats.misses);
    gauge!("sluice_block_cache_parts").set(stats.parts as f64);
    counter!("sluice_block_cache_record_lookups_total", "result" => "hit")
        .absolute(stats.record_hits);
    counter!("sluice_block_cache_record_lookups_total", "result" => "miss")
        .absolute(stats.record_misses);
    counter!("sluice_block_cache_written_total").absolute(stats.written);
    counter!("sluice_block_cache_evictions_total").absolute(stats.evictions);
}

/// Queries running, and waiting in line for a slot.
pub(crate) fn queries(running: usize, queued: usize) {
    gauge!("sluice_queries_running").set(running as f64);
    gauge!("sluice_queries_queued").set(queued as f64);
}

/// A query refused because every slot was taken and the line was full.
pub(crate) fn query_rejected() {
    counter!("sluice_queries_rejected_total", "reason" => "busy").increment(1);
}

/// A query stopped because its client went away.
pub(crate) fn query_cancelled() {
    counter!("sluice_queries_cancelled_total").increment(1);
}

/// Corrupt blocks a query passed over.
pub(crate) fn query_corrupt_blocks(blocks: u64) {
    counter!("sluice_query_corrupt_blocks_total").increment(blocks);
}

/// The worker pool's size and what it is doing, as a scrape sees it.
pub(crate) fn workers(pool: &WorkerPool) {
    gauge!("sluice_workers").set(pool.workers() as f64);
    gauge!("sluice_worker_jobs_queued").set(pool.queued() as f64);
    gauge!("sluice_worker_jobs_running").set(pool.busy() as f64);
    counter!("sluice_worker_jobs_submitted_total").absolute(pool.submitted() as u64);
    counter!("sluice_compaction_yields_total").absolute(pool.background_yields() as u64);
}

pub(crate) async fn red(request: Request, next: Next) -> Response {
    // The matched route, not the raw path, keeps the label set bounded.
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let class = match status.as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    counter!("sluice_http_requests_total", "endpoint" => endpoint.clone(), "method" => method, "status" => class)
        .increment(1);
    if status.is_server_error() {
        counter!("sluice_http_errors_total", "endpoint" => endpoint.clone()).increment(1);
    }
    histogram!("sluice_http_request_duration_seconds", "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A node failed to answer a query this node coordinated.
pub(crate) fn query_node_failed(reason: &'static str) {
    counter!("sluice_query_nodes_failed_total", "reason" => reason).increment(1);
}

pub(crate) fn stream_clients(change: i64) {
    gauge!("sluice_stream_clients").increment(change as f64);
}

pub(crate) fn committed(replicas: usize) {
    counter!("sluice_ingest_commits_total", "replicas" => replicas.to_string()).increment(1);
}

pub(crate) fn commit_refused() {
    counter!("sluice_ingest_commits_refused_total").increment(1);
}
