//! `/query`: stream matching records in id order (newest first with
//! `direction=backward`).
//!
//! Parameters (all optional):
//!
//! | name     | meaning                                                   | default |
//! |----------|-----------------------------------------------------------|---------|
//! | `from`   | start: duration ago (`5m`), RFC 3339, Unix ms, or `now`   | `1h`    |
//! | `to`     | end, same forms                                           | `now`   |
//! | `q`      | text to find; empty matches every record                  | empty   |
//! | `regex`  | `true`: `q` is a regular expression                       | `false` |
//! | `i`      | `true`: ignore case                                       | `false` |
//! | `topic`  | only records of this topic                                | all     |
//! | `limit`  | stop after this many records                              | none    |
//! | `direction` | `forward`: oldest first; `backward`: the newest `limit` records (1 to `sluice_query::newest::MAX_BACKWARD_LIMIT`), in descending id order, reading only the newest segments and blocks it needs | `forward` |
//! | `after`  | resume cursor: only records with a larger ULID            | none    |
//! | `stats`  | `true`: run the query, return only the plan and counts    | `false` |
//! | `format` | `raw`: `<ulid> <topic> <payload>\n`; `json`: one object per line; `frames`: the framed answer of `sluice_query::frames` (records, progress, stats); `ids`: frames of ids and topics, no payloads | `raw` |
//! | `consistency` | `partial` or `strict`: what a node that cannot answer does to the query | `partial` |
//! | `node_timeout` | how long to wait for a silent node, e.g. `10s` | the node's `--node-timeout` |
//! | `scope` | `local`: this node's store and ingest segments only | the whole cluster |
//!
//! Records are sent as they are found, in chunks of about 224 KiB (sooner
//! when matches are sparse), through a channel of 8 chunks: memory stays
//! bounded whatever the result size. `HEAD` returns the plan (segments,
//! bytes) in `X-Sluice-*` headers without scanning.
//!
//! Bad parameters, and a time range the query cannot run over (more than
//! `sluice_query::exec::MAX_PLAN_SEGMENTS` segments), are answered 400 with
//! a message before anything is streamed; a failure of the store, 500.
//!
//! A query (`GET`, streamed or `stats`) is admitted by the node's
//! [`QueryGate`](crate::admission::QueryGate): when every slot is taken and
//! the line is full, it is refused with 503 and `Retry-After`. A client
//! that goes away cancels its scan, which stops at the next block or batch.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{Query as QueryParamsExtractor, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use sluice_query::{
    Direction, Matcher, Query, QueryError, QueryStats, Scan, Sources, parse_time_ms,
    time::format_ms,
};
use sluice_record::Record;
use tokio_stream::{Stream, wrappers::ReceiverStream};

use crate::{
    ApiState,
    admission::{Busy, Client},
    error, metrics,
};

/// Bytes of an answer's chunk (and of a records frame) before it is sent:
/// each send wakes the HTTP task and costs its writes, and the client its
/// reads; 256 KiB rather than 64 sped a scan that sends 27 MB by a tenth.
/// A little less than that, so that a chunk's buffer ([`CHUNK_BUFFER_BYTES`])
/// stays under the node's mmap threshold.
const CHUNK_BYTES: usize = 224 << 10;

/// The buffer an answer's chunk is written into: a chunk (224 KiB), and
/// room for the record that takes it past that (a larger record grows it).
/// The node maps allocations of 256 KiB and more on their own
/// (`src/cmd/node/memory.rs`): a chunk buffer that size was mapped, faulted
/// in a page at a time, and unmapped for each chunk sent, about 1,500 page
/// faults for a query that sends 11 MB (BENCHMARKS.md, "2026-12-04,
/// afternoon").
pub const CHUNK_BUFFER_BYTES: usize = sluice_query::frames::frame_capacity(CHUNK_BYTES);
const CHUNKS_IN_FLIGHT: usize = 8;
/// Send a partial chunk when it has waited this long, so sparse matches
/// reach the client before the scan ends.
const CHUNK_LINGER: Duration = Duration::from_millis(50);
/// Records between two reads of the clock for [`CHUNK_LINGER`].
const LINGER_CHECK_EVERY: u32 = 64;
/// What a refused query is told to wait before it asks again, in seconds.
const RETRY_AFTER_SECS: u64 = 1;

/// The query string of `/query`, as the table in the module docs describes.
#[derive(Debug, Clone, Deserialize, serde::Serialize, Default)]
pub(crate) struct QueryParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub q: Option<String>,
    #[serde(default)]
    pub regex: bool,
    #[serde(default)]
    pub i: bool,
    pub topic: Option<String>,
    pub limit: Option<u64>,
    /// Resume cursor: only records after this ULID.
    pub after: Option<String>,
    /// `forward` (the default) or `backward`: newest first.
    pub direction: Option<String>,
    #[serde(default)]
    pub stats: bool,
    pub format: Option<String>,
    /// `strict` or `partial` (the default): what a failed node does to the
    /// query.
    pub consistency: Option<String>,
    /// How long to wait for a node's next frame, e.g. `10s`.
    pub node_timeout: Option<String>,
    /// `local`: answer from this node alone (what a coordinator asks of
    /// each node); otherwise this node coordinates the whole cluster.
    pub scope: Option<String>,
    /// LogQL line filters (`|= "a" != "b"`), ANDed with `q`: what the Loki
    /// API's coordinator sends every node (see `loki`).
    pub filters: Option<String>,
    /// A JSON array of topics: only records of these (what a LogQL
    /// selector chose from the topics in the range).
    pub topics: Option<String>,
}

/// How results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `<ulid> <topic> <payload>\n`
    Raw,
    /// One JSON object per record.
    Json,
    /// The framed protocol of `sluice_query::frames`, ending with stats.
    Frames,
    /// Frames whose records carry their id and topic, no payload:
    /// what a coordinator asks for when it only counts (`stats=true`).
    Ids,
}

impl Format {
    /// Whether the answer is framed.
    pub(crate) fn framed(self) -> bool {
        matches!(self, Format::Frames | Format::Ids)
    }
}

/// A `/query` parameter that cannot be used (answered 400).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ParamError {
    #[error("from: {0}")]
    From(#[source] sluice_query::TimeError),
    #[error("to: {0}")]
    To(#[source] sluice_query::TimeError),
    #[error("empty time range: from ({from}) is after to ({to}); swap them")]
    EmptyRange { from: String, to: String },
    #[error(transparent)]
    Matcher(#[from] sluice_query::MatcherError),
    #[error("after: {0:?} is not a ULID; pass the id of the last record you read")]
    After(String),
    #[error("unknown format {0:?}: use raw, json, frames or ids")]
    Format(String),
    #[error("unknown direction {0:?}: use forward or backward")]
    Direction(String),
    #[error(transparent)]
    Query(sluice_query::QueryError),
    #[error("filters: {0}")]
    Filters(String),
    #[error("topics: {0}")]
    Topics(String),
}

pub(crate) fn parse(params: &QueryParams) -> Result<(Query, Format), ParamError> {
    let now = sluice_query::time::now_ms();
    let from_ms = parse_time_ms(
        params
            .from
            .as_deref()
            .unwrap_or(sluice_query::time::DEFAULT_FROM),
        now,
    )
    .map_err(ParamError::From)?;
    let to_ms = parse_time_ms(
        params
            .to
            .as_deref()
            .unwrap_or(sluice_query::time::DEFAULT_TO),
        now,
    )
    .map_err(ParamError::To)?;
    if from_ms > to_ms {
        return Err(ParamError::EmptyRange {
            from: format_ms(from_ms),
            to: format_ms(to_ms),
        });
    }
    let mut matcher = Matcher::new(params.q.as_deref().unwrap_or(""), params.regex, params.i)?;
    if let Some(text) = params.filters.as_deref() {
        let stages = sluice_query::logql::parse_pipeline(text)
            .map_err(|e| ParamError::Filters(e.to_string()))?;
        let filters = sluice_query::logql::select::line_matcher(&stages)?;
        matcher = Matcher::chain(vec![matcher, filters], Vec::new());
    }
    let topics = match params.topics.as_deref() {
        None => None,
        Some(text) => {
            let mut list: Vec<String> = serde_json::from_str(text).map_err(|e| {
                ParamError::Topics(format!("{text:.80?} is not a JSON array of strings: {e}"))
            })?;
            list.sort();
            list.dedup();
            Some(list.into_iter().map(String::into_bytes).collect())
        }
    };
    let after = match params.after.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            sluice_record::Ulid::from_string(text)
                .map_err(|_| ParamError::After(text.to_string()))?,
        ),
    };
    let format = match params.format.as_deref() {
        None | Some("raw") => Format::Raw,
        Some("json") => Format::Json,
        Some("frames") => Format::Frames,
        Some("ids") => Format::Ids,
        Some(other) => return Err(ParamError::Format(other.to_string())),
    };
    let direction = match params.direction.as_deref() {
        None | Some("") | Some("forward") => Direction::Forward,
        Some("backward") => Direction::Backward,
        Some(other) => return Err(ParamError::Direction(other.to_string())),
    };
    let max = sluice_query::newest::MAX_BACKWARD_LIMIT;
    if direction.is_backward() && !params.limit.is_some_and(|l| (1..=max).contains(&l)) {
        return Err(ParamError::Query(sluice_query::QueryError::BackwardLimit {
            limit: params.limit,
            max,
        }));
    }
    Ok((
        Query {
            from_ms,
            to_ms,
            matcher,
            topic: params.topic.as_ref().map(|t| t.as_bytes().to_vec()),
            topics,
            limit: params.limit,
            after,
            direction,
            ids: None,
        },
        format,
    ))
}

pub(crate) fn no_data_role() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "this node runs neither the ingest nor the store role",
    )
}

/// A query that could not run: 400 when the query is at fault (its range),
/// 500 when the store is.
pub(crate) fn query_error(e: &QueryError) -> Response {
    let status = match e.is_the_query() {
        true => StatusCode::BAD_REQUEST,
        false => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

/// 503 for a query refused by the gate.
pub(crate) fn busy(busy: Busy) -> Response {
    let message = format!(
        "too many queries: {} running and {} waiting, the node's limits \
         (--max-queries, --query-queue); retry after {RETRY_AFTER_SECS} s\n",
        busy.running, busy.queued
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())],
        message,
    )
        .into_response()
}

/// The JSON object `GET /query?stats=true` returns for one node (a
/// cluster of one adds the cluster fields to it).
pub(crate) fn stats_json(stats: &QueryStats) -> serde_json::Value {
    serde_json::json!({
        "segments": stats.segments,
        "bytes": stats.bytes,
        "segments_read": stats.segments_read,
        "bytes_read": stats.bytes_read,
        "records_scanned": stats.records_scanned,
        "records_matched": stats.records_matched,
        "duplicates_removed": stats.duplicates_removed,
        "failed_segments": stats.failed_segments,
        "corrupt_segments": stats.corrupt_segments,
        "corrupt_blocks": stats.corrupt_blocks,
        "elapsed_ms": stats.elapsed_ms,
    })
}

/// `HEAD /query`: the plan, without scanning; for the whole cluster
/// unless `scope=local`.
pub(crate) async fn plan(
    State(state): State<ApiState>,
    QueryParamsExtractor(params): QueryParamsExtractor<QueryParams>,
) -> Response {
    let (query, _) = match parse(&params) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if params.scope.as_deref() != Some("local") && !crate::coordinate::is_alone(&state) {
        return crate::coordinate::plan(state, params).await;
    }
    match local_plan(&state, query).await {
        Ok((segments, bytes)) => (
            StatusCode::OK,
            [
                ("x-sluice-nodes", "1".to_string()),
                ("x-sluice-segments", segments.to_string()),
                ("x-sluice-bytes", bytes.to_string()),
            ],
        )
            .into_response(),
        Err(response) => response,
    }
}

/// This node's plan: segments and bytes in its store and ingest log.
async fn local_plan(state: &ApiState, query: Query) -> Result<(u64, u64), Response> {
    if state.store.is_none() && state.ingest.is_none() {
        return Err(no_data_role());
    }
    let state = state.clone();
    let planned = tokio::task::spawn_blocking(move || {
        let (fs, ingest_files) =
            local_sources(&state).map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        let sources = Sources {
            store: state.store.as_ref().map(|s| s.dir()),
            ingest: &ingest_files,
            ..Sources::default()
        };
        sluice_query::plan_sources(&*fs, sources, &query)
            .map_err(|e| query_error(&e))
            .map(|segments| {
                (
                    segments.len() as u64,
                    segments.iter().map(|s| s.bytes).sum::<u64>(),
                )
            })
    })
    .await;
    match planned {
        Ok(result) => result,
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// `GET /query`: for the whole cluster, unless `scope=local` or this node
/// is a cluster of one.
pub(crate) async fn query(
    State(state): State<ApiState>,
    QueryParamsExtractor(params): QueryParamsExtractor<QueryParams>,
) -> Response {
    let (query, format) = match parse(&params) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let local = params.scope.as_deref() == Some("local");
    if !local && !crate::coordinate::is_alone(&state) {
        return crate::coordinate::query(state, params, query, format).await;
    }
    if state.store.is_none() && state.ingest.is_none() {
        return no_data_role();
    }
    let (scanning, client) = match state.queries.enter().await {
        Ok(admitted) => admitted,
        Err(refused) => return busy(refused),
    };
    if params.stats {
        // `client` is held across the wait: if the client goes away, the
        // request is dropped with it and the scan is cancelled.
        let ran = local_stats(&state, query, scanning).await;
        drop(client);
        return match ran {
            Ok(stats) => {
                let mut json = stats_json(&stats);
                if !local {
                    crate::coordinate::add_alone_fields(&mut json);
                }
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    format!("{json}\n"),
                )
                    .into_response()
            }
            Err(response) => response,
        };
    }
    let rx = match start_local(&state, query, format, scanning, !local).await {
        Ok(rx) => rx,
        Err(response) => return response,
    };
    let content_type = match format {
        Format::Raw => "text/plain; charset=utf-8",
        Format::Json => "application/x-ndjson",
        Format::Frames | Format::Ids => FRAMES_CONTENT_TYPE,
    };
    let body = WithClient {
        _client: client,
        chunks: ReceiverStream::new(rx),
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(body))
        .expect("static headers are valid")
}

/// The content type of a framed response.
pub(crate) const FRAMES_CONTENT_TYPE: &str = "application/x-sluice-frames";

/// How often a framed response says it is alive while its scan finds
/// nothing: well inside any sensible node timeout.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// The filesystem and the ingest segments (each with the names it may
/// have) a local query reads beside the store directory.
pub(crate) type LocalSources = (
    Arc<dyn sluice_storage::Fs>,
    Vec<sluice_storage::LiveSegment>,
);

/// What a node's local query reads: its store and its ingest segments.
pub(crate) fn local_sources(state: &ApiState) -> Result<LocalSources, String> {
    let ingest_files = match &state.ingest {
        Some(log) => log.query_segments().map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let fs = match (&state.store, &state.ingest) {
        (Some(store), _) => store.fs().clone(),
        (None, Some(log)) => log.fs().clone(),
        (None, None) => return Err("this node runs neither the ingest nor the store role".into()),
    };
    Ok((fs, ingest_files))
}

pub(crate) fn local_scan(state: &ApiState, scanning: &crate::admission::Scanning) -> Scan {
    Scan {
        workers: state.workers.clone(),
        cache: state.store.as_ref().map(|s| s.segment_cache().clone()),
        cancel: Some(scanning.cancel()),
    }
}

/// Run `query` on this node for its counts only.
async fn local_stats(
    state: &ApiState,
    query: Query,
    scanning: crate::admission::Scanning,
) -> Result<QueryStats, Response> {
    let state = state.clone();
    let ran = tokio::task::spawn_blocking(move || {
        let scan = local_scan(&state, &scanning);
        let (fs, ingest_files) = match local_sources(&state) {
            Ok(sources) => sources,
            Err(e) => {
                scanning.end();
                return Err(error(StatusCode::INTERNAL_SERVER_ERROR, e));
            }
        };
        let sources = Sources {
            store: state.store.as_ref().map(|s| s.dir()),
            ingest: &ingest_files,
            ..Sources::default()
        };
        let ran = sluice_query::prepare_sources(&*fs, sources, &query, &scan)
            .map(|prepared| prepared.run(&mut |_: &Record<'_>| true));
        if let (Ok(stats), Some(store)) = (&ran, &state.store) {
            report_corruption(store, stats);
        }
        scanning.end();
        ran.map_err(|e| query_error(&e))
    })
    .await;
    match ran {
        Ok(result) => result,
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// A response body that holds its query's [`Client`] guard: when the
/// server drops the body (the client went away), the scan is cancelled.
/// (The guard is dropped first, so the flag is up before the scan sees its
/// channel close.)
pub(crate) struct WithClient<S> {
    pub(crate) _client: Client,
    pub(crate) chunks: S,
}

impl<S: Stream + Unpin> Stream for WithClient<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        std::pin::Pin::new(&mut self.chunks).poll_next(cx)
    }
}

/// Hand segments in which the query met corruption to the store's
/// maintenance, which keeps their readable records and quarantines them.
pub(crate) fn report_corruption(store: &sluice_store::Store, stats: &QueryStats) {
    // Ingest segments are the ingest log's: its recovery cuts their
    // damage at the next start, and the store verifies them as it takes
    // them. Only store segments go to maintenance.
    let store_segments: Vec<&str> = stats
        .corrupt_segments
        .iter()
        .map(String::as_str)
        .filter(|name| !name.starts_with(sluice_query::exec::INGEST_PREFIX))
        .collect();
    if stats.corrupt_segments.is_empty() {
        return;
    }
    tracing::error!(segments = ?stats.corrupt_segments, blocks = stats.corrupt_blocks, "query met corrupt segments; store segments are quarantined by the next maintenance pass");
    metrics::query_corrupt_blocks(stats.corrupt_blocks);
    store.report_corrupt(store_segments);
}

/// `<ulid> <topic> <payload>\n`
pub(crate) fn write_raw(out: &mut Vec<u8>, record: &Record<'_>) {
    let mut id = [0u8; 26];
    out.extend_from_slice(record.id.array_to_str(&mut id).as_bytes());
    out.push(b' ');
    out.extend_from_slice(record.topic);
    out.push(b' ');
    out.extend_from_slice(record.payload);
    out.push(b'\n');
}

/// One JSON object per line. Invalid UTF-8 in a payload is replaced with
/// U+FFFD; the raw format keeps the exact bytes.
pub(crate) fn write_json(out: &mut Vec<u8>, record: &Record<'_>) {
    let mut object = serde_json::json!({
        "id": record.id.to_string(),
        "time": format_ms(record.time_ms()),
        "topic": String::from_utf8_lossy(record.topic),
        "payload": String::from_utf8_lossy(record.payload),
    });
    if record.is_truncated() {
        object["truncated"] = serde_json::Value::Bool(true);
    }
    serde_json::to_writer(&mut *out, &object).expect("writing JSON to a Vec cannot fail");
    out.push(b'\n');
}

mod local;
#[cfg(test)]
mod tests;

pub(crate) use local::start_local;

/// Run a `/query` of the whole cluster (`format` frames or ids) and give
/// each record to `each` (in the query's order) until it returns false.
/// Returns the query's stats frame (empty if `each` stopped it).
pub(crate) async fn run_coordinated(
    state: &ApiState,
    params: QueryParams,
    mut each: impl FnMut(&Record<'_>) -> bool,
) -> Result<serde_json::Map<String, serde_json::Value>, Response> {
    let response = query(State(state.clone()), axum::extract::Query(params)).await;
    if !response.status().is_success() {
        return Err(response);
    }
    let mut chunks = response.into_body().into_data_stream();
    let mut decoder = sluice_query::frames::FrameDecoder::new();
    loop {
        match decoder.next_frame() {
            Ok(Some(sluice_query::frames::Frame::Records(records))) => {
                for record in records.iter() {
                    if !each(&record) {
                        return Ok(serde_json::Map::new());
                    }
                }
            }
            Ok(Some(
                sluice_query::frames::Frame::Progress(_) | sluice_query::frames::Frame::Lagged(_),
            )) => {}
            Ok(Some(sluice_query::frames::Frame::Stats(stats))) => return Ok(stats),
            Ok(Some(sluice_query::frames::Frame::Error(message))) => {
                return Err(error(StatusCode::SERVICE_UNAVAILABLE, message));
            }
            Ok(None) => match futures_util::StreamExt::next(&mut chunks).await {
                Some(Ok(chunk)) => decoder.push(&chunk),
                Some(Err(e)) => {
                    return Err(error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("the query failed: {e}"),
                    ));
                }
                None => decoder.finish(),
            },
            Err(e) => {
                return Err(error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the query's answer is broken: {e}"),
                ));
            }
        }
    }
}
