//! Queries across the cluster: this node asks every store and every
//! ingester in the view, merges their framed answers by id, drops copies,
//! and says which nodes failed.
//!
//! Each node answers `GET /query?...&scope=local&format=frames` (this node
//! runs its own part in-process) in the frames of `sluice_query::frames`.
//! Ingesters are asked first and the stores only once every ingester has
//! opened its segments: a segment a store commits in between is then on
//! the store before the store plans, so no record falls between the two.
//!
//! A framed answer (`format=frames`, what the CLI reads) carries the
//! coordinator's own progress frames too: while it waits on nodes, every
//! 500 ms, how far the merge got ([`NodeMerge::decided`]).
//!
//! Memory stays bounded however many nodes answer and however large the
//! result: each node's frames wait in a channel of [`FRAMES_PER_NODE`], and
//! the merge reads only from the nodes it is waiting on
//! ([`NodeMerge::needs`]); the others wait on their channel, and their TCP
//! windows push back on their scans.
//!
//! A node counts as failed when it is dead in the view (`dead`), not ready
//! (`not_ready`), cannot be reached (`unreachable`), sends nothing for the
//! node timeout (`timeout`), ends without its stats frame (`truncated`),
//! or answers an error (`error`). `partial` goes on and says so in the
//! stats; `strict` fails the query: before the first byte when it is known
//! up front, otherwise by cutting the stream (an error frame in `frames`).

use std::time::{Duration, Instant};

use axum::{
    body::Body,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use sluice_query::{
    Query,
    frames::{Frame, FrameDecoder, FrameWriter},
    gather::{NodeMerge, QueriedNode, verdict},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    ApiState, error, metrics,
    nodes::{Target, down_up_front, node_timeout_from, strict_from, targets, view_rf},
    query::{FRAMES_CONTENT_TYPE, Format, QueryParams, busy, start_local, stats_json},
};

/// Frames of one node waiting for the merge.
const FRAMES_PER_NODE: usize = 4;
/// Results sent to the client in chunks of about this size.
const CHUNK_BYTES: usize = 64 << 10;
/// Chunks in flight to the client.
const CHUNKS_IN_FLIGHT: usize = 8;
/// How often a framed answer passes on how far the merge got (while it
/// waits on nodes), so a client can show progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Whether this node is a cluster of one: it answers from its own data,
/// as a single node always did.
pub(crate) fn is_alone(state: &ApiState) -> bool {
    let view = state.cluster.membership.view();
    view.nodes.iter().all(|n| n.id == view.self_id)
}

/// The cluster fields of a cluster of one's stats.
pub(crate) fn add_alone_fields(json: &mut Value) {
    json["nodes_queried"] = json!(1);
    json["nodes_failed"] = json!([]);
    json["complete"] = json!(true);
}

/// Whether the query must fail when a node does (`strict`).
fn strict(params: &QueryParams) -> Result<bool, Response> {
    strict_from(params.consistency.as_deref())
}

fn node_timeout(state: &ApiState, params: &QueryParams) -> Result<Duration, Response> {
    node_timeout_from(state, params.node_timeout.as_deref())
}

/// What the query found out about one node.
#[derive(Debug, Clone, Default)]
struct Outcome {
    failed: Option<(&'static str, String)>,
    stats: Option<Map<String, Value>>,
}

/// An event from one node's reader task.
enum Event {
    Frame(Frame),
    Failed(&'static str, String),
}

/// `HEAD /query` across the cluster: every node's plan, summed.
pub(crate) async fn plan(state: ApiState, params: QueryParams) -> Response {
    let view = state.cluster.membership.view();
    let targets = targets(&view);
    let mut local = params.clone();
    local.scope = Some("local".into());
    let mut segments = 0u64;
    let mut bytes = 0u64;
    let mut answered = 0u64;
    let mut failed = Vec::new();
    let asks = targets.iter().map(|t| {
        let http = state.cluster.http.clone();
        let local = local.clone();
        let timeout = state.cluster.node_timeout;
        async move {
            if let Some(reason) = t.failed_up_front {
                return Err(reason.to_string());
            }
            let Some(api) = &t.api else {
                return Err("no api address".to_string());
            };
            let response = http
                .head(format!("http://{api}/query"))
                .query(&local)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| format!("unreachable: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("error: status {}", response.status()));
            }
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            Ok((header("x-sluice-segments"), header("x-sluice-bytes")))
        }
    });
    let results = futures_util::future::join_all(asks).await;
    for (target, result) in targets.iter().zip(results) {
        match result {
            Ok((s, b)) => {
                segments += s;
                bytes += b;
                answered += 1;
            }
            Err(why) => failed.push(format!("{} ({why})", target.id)),
        }
    }
    let mut response = (
        StatusCode::OK,
        [
            ("x-sluice-nodes", answered.to_string()),
            ("x-sluice-nodes-queried", targets.len().to_string()),
            ("x-sluice-segments", segments.to_string()),
            ("x-sluice-bytes", bytes.to_string()),
        ],
    )
        .into_response();
    if !failed.is_empty()
        && let Ok(value) = failed.join(", ").parse()
    {
        response
            .headers_mut()
            .insert("x-sluice-nodes-failed", value);
    }
    response
}

/// `GET /query` across the cluster.
pub(crate) async fn query(
    state: ApiState,
    params: QueryParams,
    query: Query,
    format: Format,
) -> Response {
    let strict = match strict(&params) {
        Ok(s) => s,
        Err(response) => return response,
    };
    let timeout = match node_timeout(&state, &params) {
        Ok(t) => t,
        Err(response) => return response,
    };
    let view = state.cluster.membership.view();
    let targets = targets(&view);
    let down = match down_up_front(&targets, strict) {
        Ok(down) => down,
        Err(response) => return response,
    };
    let (scanning, client) = match state.queries.enter().await {
        Ok(admitted) => admitted,
        Err(refused) => return busy(refused),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_IN_FLIGHT);
    let stats_only = params.stats;
    let (stats_tx, stats_rx) = tokio::sync::oneshot::channel::<Result<Value, String>>();
    let gather = Gather {
        state: state.clone(),
        params,
        query,
        format,
        strict,
        timeout,
        targets,
        rf: view_rf(&view),
    };
    tokio::spawn(async move {
        let result = gather.run(if stats_only { None } else { Some(tx) }).await;
        scanning.end();
        let _ = stats_tx.send(result);
    });
    if stats_only {
        let result = stats_rx.await;
        drop(client);
        return match result {
            Ok(Ok(stats)) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                format!("{stats}\n"),
            )
                .into_response(),
            Ok(Err(message)) => error(StatusCode::SERVICE_UNAVAILABLE, message),
            Err(_) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the query's coordinator ended without an answer",
            ),
        };
    }
    let content_type = match format {
        Format::Raw => "text/plain; charset=utf-8",
        Format::Json => "application/x-ndjson",
        Format::Frames | Format::Ids => FRAMES_CONTENT_TYPE,
    };
    let mut builder = Response::builder().header(header::CONTENT_TYPE, content_type);
    if !down.is_empty() {
        builder = builder.header("x-sluice-nodes-failed", down.join(", "));
    }
    let body = crate::query::WithClient {
        _client: client,
        chunks: ReceiverStream::new(rx),
    };
    builder
        .body(Body::from_stream(body))
        .expect("static headers are valid")
}

/// One coordinated query.
struct Gather {
    state: ApiState,
    params: QueryParams,
    query: Query,
    format: Format,
    strict: bool,
    timeout: Duration,
    targets: Vec<Target>,
    rf: u32,
}

impl Gather {
    /// Ask every node, merge, and write the result to `out` (or only count
    /// it, for `stats`). Returns the stats, or why a strict query failed.
    async fn run(
        self,
        out: Option<mpsc::Sender<Result<Bytes, std::io::Error>>>,
    ) -> Result<Value, String> {
        let started = Instant::now();
        let n = self.targets.len();
        let mut outcomes = vec![Outcome::default(); n];
        let mut receivers: Vec<Option<mpsc::Receiver<Event>>> = (0..n).map(|_| None).collect();
        let mut merge = NodeMerge::with_direction(n, self.query.direction);
        let mut local_params = self.params.clone();
        local_params.scope = Some("local".into());
        // Counting needs the ids (to drop copies), not the records.
        let counting = out.is_none() || self.format == Format::Ids;
        local_params.format = Some(if counting { "ids" } else { "frames" }.into());
        local_params.stats = false;
        local_params.consistency = None;
        local_params.node_timeout = None;

        // Ingesters first, then stores (see the module docs).
        let first_store = self
            .targets
            .iter()
            .position(|t| !t.role.is_ingest())
            .unwrap_or(n);
        for phase in [0..first_store, first_store..n] {
            let mut started_rx = Vec::new();
            for i in phase {
                let target = &self.targets[i];
                if let Some(reason) = target.failed_up_front {
                    outcomes[i].failed = Some((reason, format!("the view says {reason}")));
                    merge.fail(i);
                    continue;
                }
                let (tx, rx) = mpsc::channel(FRAMES_PER_NODE);
                receivers[i] = Some(rx);
                let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
                started_rx.push(ready_rx);
                if target.is_self {
                    tokio::spawn(read_self(
                        self.state.clone(),
                        self.query.clone(),
                        if counting {
                            Format::Ids
                        } else {
                            Format::Frames
                        },
                        tx,
                        ready_tx,
                    ));
                } else {
                    tokio::spawn(read_node(
                        self.state.cluster.http.clone(),
                        target.api.clone().unwrap_or_default(),
                        local_params.clone(),
                        self.timeout,
                        tx,
                        ready_tx,
                    ));
                }
            }
            for ready in started_rx {
                let _ = ready.await;
            }
        }

        let limit = self.query.limit.unwrap_or(u64::MAX);
        let mut emitted = 0u64;
        // Since when the merge has waited on each node (a node it does not
        // wait on is held back by the merge, not slow).
        let mut waiting_since: Vec<Option<Instant>> = vec![None; n];
        let mut buffer: Vec<u8> = Vec::with_capacity(CHUNK_BYTES * 2);
        let mut frames = FrameWriter::new();
        let mut client_gone = false;
        let mut progress_sent = Instant::now();
        'gather: loop {
            while emitted < limit {
                let Some(record) = merge.pop() else { break };
                emitted += 1;
                if out.is_none() {
                    continue;
                }
                match self.format {
                    Format::Raw => crate::query::write_raw(&mut buffer, &record),
                    Format::Json => crate::query::write_json(&mut buffer, &record),
                    Format::Frames | Format::Ids => {
                        if let Ok(Some(frame)) = frames.push(&record) {
                            buffer.extend_from_slice(&frame);
                        }
                    }
                }
                if buffer.len() >= CHUNK_BYTES
                    && let Some(out) = &out
                {
                    let chunk = Bytes::from(std::mem::take(&mut buffer));
                    if out.send(Ok(chunk)).await.is_err() {
                        client_gone = true;
                        break 'gather;
                    }
                }
            }
            if emitted >= limit || merge.is_done() {
                break;
            }
            let needs: Vec<usize> = merge.needs().collect();
            if needs.is_empty() {
                break;
            }
            // Tell a framed client how far the merge got, now and then,
            // after the records it covers.
            if self.format.framed()
                && out.is_some()
                && progress_sent.elapsed() >= PROGRESS_EVERY
                && let Some(done) = merge.decided()
            {
                if let Some(frame) = frames.flush() {
                    buffer.extend_from_slice(&frame);
                }
                buffer.extend_from_slice(&frames.progress(done));
                progress_sent = Instant::now();
            }
            // Flush what is ready before waiting on slow nodes.
            if !buffer.is_empty()
                && let Some(out) = &out
            {
                if self.format.framed()
                    && let Some(frame) = frames.flush()
                {
                    buffer.extend_from_slice(&frame);
                }
                let chunk = Bytes::from(std::mem::take(&mut buffer));
                if out.send(Ok(chunk)).await.is_err() {
                    client_gone = true;
                    break;
                }
            }
            let now = Instant::now();
            for (i, since) in waiting_since.iter_mut().enumerate() {
                if !needs.contains(&i) {
                    *since = None;
                } else if since.is_none() {
                    *since = Some(now);
                }
            }
            let deadline = needs
                .iter()
                .filter_map(|&i| waiting_since[i])
                .min()
                .expect("needs is not empty")
                + self.timeout;
            let next = {
                let waits: Vec<_> = receivers
                    .iter_mut()
                    .enumerate()
                    .filter(|(i, _)| needs.contains(i))
                    .filter_map(|(i, rx)| {
                        let rx = rx.as_mut()?;
                        Some(Box::pin(async move { (i, rx.recv().await) }))
                    })
                    .collect();
                if waits.is_empty() {
                    None
                } else {
                    let waited = tokio::time::timeout_at(
                        deadline.into(),
                        futures_util::future::select_all(waits),
                    )
                    .await;
                    Some(waited.map(|(out, _, _)| out))
                }
            };
            let Some(next) = next else {
                // Nodes the merge waits on with no reader: failed already.
                for i in needs {
                    merge.fail(i);
                }
                continue;
            };
            let Ok((i, event)) = next else {
                let now = Instant::now();
                for &i in &needs {
                    if waiting_since[i].is_some_and(|since| since + self.timeout <= now) {
                        let why = format!("sent nothing for {:?}", self.timeout);
                        outcomes[i].failed = Some(("timeout", why));
                        receivers[i] = None;
                        merge.fail(i);
                    }
                }
                if self.strict {
                    break;
                }
                continue;
            };
            waiting_since[i] = Some(Instant::now());
            let failed = match event {
                Some(Event::Frame(Frame::Records(records))) => merge
                    .push_records(i, records)
                    .err()
                    .map(|e| ("error", e.to_string())),
                Some(Event::Frame(Frame::Progress(id))) => merge
                    .progress(i, id)
                    .err()
                    .map(|e| ("error", e.to_string())),
                Some(Event::Frame(Frame::Stats(stats))) => {
                    outcomes[i].stats = Some(stats);
                    receivers[i] = None;
                    merge.finish(i);
                    None
                }
                Some(Event::Frame(Frame::Error(message))) => Some(("error", message)),
                Some(Event::Frame(Frame::Lagged(_))) => Some((
                    "error",
                    "it sent a live-tail frame (lagged) in a query answer".to_string(),
                )),
                Some(Event::Failed(reason, why)) => Some((reason, why)),
                None => Some(("truncated", "its answer ended without stats".to_string())),
            };
            if let Some((reason, why)) = failed {
                outcomes[i].failed = Some((reason, why));
                receivers[i] = None;
                merge.fail(i);
                if self.strict {
                    break;
                }
            }
        }
        // Readers still running are dropped with their receivers: their
        // requests are cancelled.
        drop(receivers);

        let stats = self.stats(&outcomes, &merge, emitted, started);
        for (target, outcome) in self.targets.iter().zip(&outcomes) {
            if let Some((reason, _)) = &outcome.failed {
                metrics::query_node_failed(reason);
                tracing::warn!(node = %target.id, api = target.api.as_deref().unwrap_or(""), reason, "a node failed to answer a query");
            }
        }
        let complete = stats["complete"].as_bool() == Some(true);
        let strict_failure = (self.strict && !complete).then(|| {
            format!(
                "consistency strict: the query is incomplete: {}",
                failed_list(&self.targets, &outcomes)
            )
        });
        if let Some(out) = out {
            if client_gone {
                return Ok(stats);
            }
            if let Some(message) = &strict_failure {
                match self.format {
                    Format::Frames | Format::Ids => {
                        buffer.extend_from_slice(&frames.error(message));
                        let _ = out.send(Ok(Bytes::from(buffer))).await;
                    }
                    Format::Raw | Format::Json => {
                        // Cut the body: the client sees a failed transfer,
                        // not a short result that looks whole.
                        let _ = out.send(Ok(Bytes::from(buffer))).await;
                        let _ = out.send(Err(std::io::Error::other(message.clone()))).await;
                    }
                }
                return Err(message.clone());
            }
            if self.format.framed() {
                if let Some(frame) = frames.flush() {
                    buffer.extend_from_slice(&frame);
                }
                let object = match &stats {
                    Value::Object(map) => map.clone(),
                    _ => Map::new(),
                };
                match frames.stats(&object) {
                    Ok(frame) => buffer.extend_from_slice(&frame),
                    Err(e) => buffer.extend_from_slice(&frames.error(&e.to_string())),
                }
            }
            if !buffer.is_empty() {
                let _ = out.send(Ok(Bytes::from(buffer))).await;
            }
        }
        match strict_failure {
            Some(message) => Err(message),
            None => Ok(stats),
        }
    }

    /// The coordinator's stats: every node's counts summed, and the
    /// cluster fields.
    fn stats(
        &self,
        outcomes: &[Outcome],
        merge: &NodeMerge,
        emitted: u64,
        started: Instant,
    ) -> Value {
        let mut total = stats_json(&sluice_query::QueryStats::default());
        let mut per_node = Vec::new();
        let mut failed = Vec::new();
        for (target, outcome) in self.targets.iter().zip(outcomes) {
            if let Some(stats) = &outcome.stats {
                for (key, value) in stats {
                    match (total.get_mut(key), value) {
                        (Some(Value::Number(sum)), Value::Number(add)) => {
                            let added = sum.as_u64().unwrap_or(0) + add.as_u64().unwrap_or(0);
                            *sum = added.into();
                        }
                        (Some(Value::Array(all)), Value::Array(more)) => {
                            all.extend(more.iter().map(|v| {
                                json!(format!("{}: {}", target.id, v.as_str().unwrap_or("")))
                            }));
                        }
                        _ => {}
                    }
                }
                per_node.push(json!({
                    "node": target.id,
                    "role": target.role.as_str(),
                    "segments": stats.get("segments"),
                    "bytes": stats.get("bytes"),
                    "records_matched": stats.get("records_matched"),
                    "elapsed_ms": stats.get("elapsed_ms"),
                }));
            }
            if let Some((reason, why)) = &outcome.failed {
                failed.push(json!({
                    "node": target.id,
                    "api": target.api,
                    "role": target.role.as_str(),
                    "reason": reason,
                    "detail": why,
                }));
            }
        }
        let complete = verdict(
            self.targets.iter().zip(outcomes).map(|(t, o)| QueriedNode {
                role: t.role,
                failed: o.failed.is_some(),
            }),
            self.rf,
        );
        total["records_matched"] = json!(emitted);
        total["duplicates_removed"] =
            json!(total["duplicates_removed"].as_u64().unwrap_or(0) + merge.duplicates_dropped());
        total["elapsed_ms"] = json!(started.elapsed().as_millis() as u64);
        total["nodes_queried"] = json!(self.targets.len());
        total["nodes_failed"] = Value::Array(failed);
        total["complete"] = json!(complete);
        total["per_node"] = Value::Array(per_node);
        total
    }
}

fn failed_list(targets: &[Target], outcomes: &[Outcome]) -> String {
    targets
        .iter()
        .zip(outcomes)
        .filter_map(|(t, o)| {
            let (reason, _) = o.failed.as_ref()?;
            Some(format!(
                "{} at {} ({reason})",
                t.id,
                t.api.as_deref().unwrap_or("?")
            ))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Feed decoded frames of a byte stream to `tx`.
async fn pump(
    mut chunks: impl futures_util::Stream<Item = Result<Bytes, String>> + Unpin,
    tx: mpsc::Sender<Event>,
) {
    let mut decoder = FrameDecoder::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(why) => {
                let _ = tx.send(Event::Failed("truncated", why)).await;
                return;
            }
        };
        decoder.push(&chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    let last = matches!(frame, Frame::Stats(_) | Frame::Error(_));
                    if tx.send(Event::Frame(frame)).await.is_err() || last {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Event::Failed("error", e.to_string())).await;
                    return;
                }
            }
        }
    }
    // Ended without stats: the receiver sees the channel close.
}

/// This node's own part, in-process (its query slot is the coordinator's).
async fn read_self(
    state: ApiState,
    query: Query,
    format: Format,
    tx: mpsc::Sender<Event>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let scanning = crate::admission::Scanning::unadmitted();
    let started = start_local(&state, query, format, scanning, false).await;
    let _ = ready.send(());
    match started {
        Ok(rx) => {
            let chunks = ReceiverStream::new(rx).map(|c| c.map_err(|e| e.to_string()));
            pump(chunks, tx).await;
        }
        Err(response) => {
            let status = response.status();
            let _ = tx
                .send(Event::Failed("error", format!("status {status}")))
                .await;
        }
    }
}

/// Another node's part, over HTTP.
async fn read_node(
    http: reqwest::Client,
    api: String,
    params: QueryParams,
    timeout: Duration,
    tx: mpsc::Sender<Event>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let sent = tokio::time::timeout(
        timeout,
        http.get(format!("http://{api}/query"))
            .query(&params)
            .send(),
    )
    .await;
    let _ = ready.send(());
    let response = match sent {
        Err(_) => {
            let why = format!("no answer from {api} in {timeout:?}");
            let _ = tx.send(Event::Failed("timeout", why)).await;
            return;
        }
        Ok(Err(e)) => {
            let reason = if e.is_timeout() {
                "timeout"
            } else {
                "unreachable"
            };
            let _ = tx.send(Event::Failed(reason, format!("{api}: {e}"))).await;
            return;
        }
        Ok(Ok(response)) => response,
    };
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let why = format!("{api} answered {status}: {}", body.trim());
        let _ = tx.send(Event::Failed("error", why)).await;
        return;
    }
    let chunks = response
        .bytes_stream()
        .map(|c| c.map_err(|e| e.to_string()));
    pump(chunks, tx).await;
}
