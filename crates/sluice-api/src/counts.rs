//! `/histogram` and `/topics`: matching records counted per time bucket
//! and per topic, for the whole cluster or (`scope=local`) this node.
//!
//! `GET /histogram?from&to&q&regex&i&topic&buckets&consistency&node_timeout&scope`
//! (`buckets` 1 to `sluice_query::count::MAX_BUCKETS`, default
//! `sluice_query::count::DEFAULT_BUCKETS`) answers
//!
//! ```json
//! {"from":"…","to":"…","from_ms":1,"to_ms":2,"step_ms":60000,
//!  "buckets":[{"start_ms":1,"time":"…","count":12}, …],
//!  "total":1234,"nodes_queried":3,"nodes_failed":[],"complete":true}
//! ```
//!
//! and `GET /topics?from&to&consistency&node_timeout&scope`
//! `{"topics":[{"topic":"a","records":12}, …],"nodes_queried":…,"nodes_failed":[…],"complete":…}`,
//! sorted by topic. Parameters mean what they mean on `/query`.
//!
//! Each node counts its own part ([`sluice_query::count`]: from block
//! metadata where no text is matched, else by the ordinary scan); no
//! record crosses the network. The coordinator resolves the range to Unix
//! ms once, so every node buckets alike, asks the ingesters, then the
//! stores (so a segment committed in between is counted, perhaps twice,
//! never missed), and sums their answers. Which nodes it asks, the failure
//! reasons (`dead`, `not_ready`, `unreachable`, `timeout`, `error`) and
//! `complete` are `/query`'s (`nodes`, `coordinate`). A node's part
//! streams a space every 500 ms while it counts, then its JSON (or
//! `{"error": …}`), so `node_timeout` bounds silence, not the count's
//! length, as it does for `/query`'s frames.

use std::{collections::BTreeMap, time::Duration};

use axum::{
    body::Body,
    extract::{Query as Params, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_query::{
    Query, Sources,
    count::{CountStats, DEFAULT_BUCKETS, Histogram, MAX_BUCKETS, Tally, TopicCounts},
    gather::{QueriedNode, verdict},
    time::format_ms,
};
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    ApiState,
    coordinate::is_alone,
    error,
    nodes::{Target, down_up_front, node_timeout_from, strict_from, targets, view_rf},
    query::{QueryParams, busy, local_scan, local_sources, no_data_role, parse, report_corruption},
};

/// The query string of `/histogram` and `/topics`.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub(crate) struct CountParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub q: Option<String>,
    #[serde(default)]
    pub regex: bool,
    #[serde(default)]
    pub i: bool,
    pub topic: Option<String>,
    pub buckets: Option<u32>,
    pub consistency: Option<String>,
    pub node_timeout: Option<String>,
    pub scope: Option<String>,
    /// Only the topics' names matter (the Loki API's topic listing): sum
    /// the nodes' counts even where copies would be counted twice, rather
    /// than stream every id to drop copies.
    #[serde(default)]
    pub names_only: bool,
}

impl CountParams {
    /// `consistency` (strict or not) and `node_timeout`, as `/query` reads them.
    fn consistency(&self, state: &ApiState) -> Result<(bool, std::time::Duration), Response> {
        Ok((
            strict_from(self.consistency.as_deref())?,
            node_timeout_from(state, self.node_timeout.as_deref())?,
        ))
    }

    /// The query counted (its range resolved now), and the bucket count.
    fn parse(&self) -> Result<(Query, u32), Response> {
        let params = QueryParams {
            from: self.from.clone(),
            to: self.to.clone(),
            q: self.q.clone(),
            regex: self.regex,
            i: self.i,
            topic: self.topic.clone(),
            ..QueryParams::default()
        };
        let (query, _) =
            parse(&params).map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
        let buckets = self.buckets.unwrap_or(DEFAULT_BUCKETS);
        if !(1..=MAX_BUCKETS).contains(&buckets) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("buckets {buckets} is out of range: ask for 1 to {MAX_BUCKETS}"),
            ));
        }
        Ok((query, buckets))
    }

    /// What this node asks each node: the same count over the range in
    /// Unix ms, for this node alone.
    fn local(&self, query: &Query) -> CountParams {
        CountParams {
            from: Some(query.from_ms.to_string()),
            to: Some(query.to_ms.to_string()),
            scope: Some("local".into()),
            consistency: None,
            node_timeout: None,
            ..self.clone()
        }
    }
}

/// A count of this node alone, with the cluster fields of a cluster of
/// one.
fn alone(mut out: Value) -> Value {
    out["nodes_queried"] = json!(1);
    out["nodes_failed"] = json!([]);
    out["complete"] = json!(true);
    out
}

/// Why a count failed: the status to answer and the message.
type Failure = (StatusCode, String);

/// Count `query` on this node into `tally`, on the blocking pool.
async fn count_here<T: Tally + Send + 'static>(
    state: &ApiState,
    query: Query,
    mut tally: T,
    scanning: crate::admission::Scanning,
) -> Result<T, Failure> {
    let state = state.clone();
    let counted = tokio::task::spawn_blocking(move || {
        let scan = local_scan(&state, &scanning);
        let result = local_sources(&state)
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))
            .and_then(|(fs, ingest_files)| {
                let sources = Sources {
                    store: state.store.as_ref().map(|s| s.dir()),
                    ingest: &ingest_files,
                    ..Sources::default()
                };
                sluice_query::count::count(&*fs, sources, &query, &scan, &mut tally).map_err(|e| {
                    match e.is_the_query() {
                        true => (StatusCode::BAD_REQUEST, e.to_string()),
                        false => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    }
                })
            });
        if let (Ok(stats), Some(store)) = (&result, &state.store) {
            report(store, stats);
        }
        scanning.end();
        result.map(|_| tally)
    })
    .await;
    counted.unwrap_or_else(|e| Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())))
}

/// How often a node's part of a count says it is alive while it counts
/// (a space, which JSON ignores before a value).
const ALIVE_EVERY: Duration = Duration::from_millis(500);

/// The most bytes of one node's answer a coordinator reads.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Answer a count of this node alone. To a coordinator (`scope=local`)
/// the answer streams: a space every [`ALIVE_EVERY`] while the count runs,
/// then the JSON (`{"error": ...}` if the count failed), so the
/// coordinator tells a slow node from a silent one as `/query` does, and
/// a coordinator that goes away cancels the count. Otherwise it is one
/// JSON object, with the cluster fields of a cluster of one, or an error
/// status.
async fn answer_here<T, F>(
    state: &ApiState,
    query: Query,
    tally: T,
    admitted: (crate::admission::Scanning, crate::admission::Client),
    local: bool,
    to_json: F,
) -> Response
where
    T: Tally + Send + 'static,
    F: FnOnce(&T) -> Value + Send + 'static,
{
    let (scanning, client) = admitted;
    if state.store.is_none() && state.ingest.is_none() {
        scanning.end();
        return no_data_role();
    }
    if !local {
        // `client` is held across the wait: a client that goes away
        // cancels the count.
        let counted = count_here(state, query, tally, scanning).await;
        drop(client);
        return match counted {
            Ok(tally) => json_ok(&alone(to_json(&tally))),
            Err((status, message)) => error(status, message),
        };
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let state = state.clone();
    tokio::spawn(async move {
        let mut counting = std::pin::pin!(count_here(&state, query, tally, scanning));
        let answer = loop {
            tokio::select! {
                counted = &mut counting => break counted,
                _ = tokio::time::sleep(ALIVE_EVERY) => {
                    if tx.send(Ok(Bytes::from_static(b" "))).await.is_err() {
                        return;
                    }
                }
            }
        };
        let body = match answer {
            Ok(tally) => format!("{}\n", alone(to_json(&tally))),
            Err((_, message)) => format!("{}\n", json!({ "error": message })),
        };
        let _ = tx.send(Ok(Bytes::from(body))).await;
    });
    let body = crate::query::WithClient {
        _client: client,
        chunks: ReceiverStream::new(rx),
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .expect("static headers are valid")
}

/// Hand corruption a count met to the store's maintenance.
fn report(store: &sluice_store::Store, stats: &CountStats) {
    if !stats.failed_segments.is_empty() {
        tracing::warn!(failed = ?stats.failed_segments, "a count skipped unreadable segments");
    }
    let as_query = sluice_query::QueryStats {
        corrupt_segments: stats.corrupt_segments.clone(),
        ..Default::default()
    };
    report_corruption(store, &as_query);
}

/// A JSON answer.
fn json_ok(value: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{value}\n"),
    )
        .into_response()
}

/// What the nodes answered: per node, its answer or why it failed.
struct Gathered {
    answers: Vec<Value>,
    failed: Vec<Value>,
    nodes_queried: usize,
    complete: bool,
}

impl Gathered {
    /// The cluster fields, added to `out`.
    fn add_fields(self, out: &mut Value) {
        out["nodes_queried"] = json!(self.nodes_queried);
        out["nodes_failed"] = Value::Array(self.failed);
        out["complete"] = json!(self.complete);
    }
}

/// Ask every node with data for its part (`path` with `local` as the
/// query string; this node's part by `own`), ingesters first, and gather
/// the answers; `Err` is the response for a strict request that cannot be
/// complete.
async fn ask_all<F, Fut>(
    state: &ApiState,
    path: &str,
    local: &CountParams,
    strict: bool,
    timeout: Duration,
    own: F,
) -> Result<Gathered, Response>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Value, Failure>>,
{
    let view = state.cluster.membership.view();
    let targets = targets(&view);
    down_up_front(&targets, strict)?;
    let ask = |t: &Target| {
        let t = t.clone();
        let http = state.cluster.http.clone();
        let own = &own;
        async move {
            if let Some(reason) = t.failed_up_front {
                return Err((reason, format!("the view says {reason}")));
            }
            if t.is_self {
                return own()
                    .await
                    .map_err(|(status, why)| ("error", format!("this node: {status}: {why}")));
            }
            let api = t.api.clone().unwrap_or_default();
            read_answer(&http, &api, path, local, timeout).await
        }
    };
    let first_store = targets
        .iter()
        .position(|t| !t.role.is_ingest())
        .unwrap_or(targets.len());
    let mut results = futures_util::future::join_all(targets[..first_store].iter().map(ask)).await;
    results.extend(futures_util::future::join_all(targets[first_store..].iter().map(ask)).await);
    let mut gathered = Gathered {
        answers: Vec::new(),
        failed: Vec::new(),
        nodes_queried: targets.len(),
        complete: true,
    };
    let mut queried = Vec::new();
    for (target, result) in targets.iter().zip(results) {
        match result {
            Ok(answer) => gathered.answers.push(answer),
            Err((reason, detail)) => {
                crate::metrics::query_node_failed(reason);
                tracing::warn!(node = %target.id, reason, %detail, "a node failed to answer a count");
                gathered.failed.push(json!({
                    "node": target.id,
                    "api": target.api,
                    "role": target.role.as_str(),
                    "reason": reason,
                    "detail": detail,
                }));
            }
        }
        queried.push(QueriedNode {
            role: target.role,
            failed: gathered
                .failed
                .last()
                .is_some_and(|f| f["node"] == target.id.as_str()),
        });
    }
    gathered.complete = verdict(queried, view_rf(&view));
    if strict && !gathered.complete {
        let names: Vec<String> = gathered
            .failed
            .iter()
            .map(|f| {
                format!(
                    "{} ({})",
                    f["node"].as_str().unwrap_or("?"),
                    f["reason"].as_str().unwrap_or("?")
                )
            })
            .collect();
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "consistency strict: the count is incomplete: {}",
                names.join(", ")
            ),
        ));
    }
    Ok(gathered)
}

/// One node's answer to `path` with `local`: its JSON, or why it failed.
/// The node sends a space now and then while it counts; `timeout` bounds
/// the wait for its headers and then for each chunk, as `/query` bounds
/// the wait for a frame.
async fn read_answer(
    http: &reqwest::Client,
    api: &str,
    path: &str,
    local: &CountParams,
    timeout: Duration,
) -> Result<Value, (&'static str, String)> {
    let sent = tokio::time::timeout(
        timeout,
        http.get(format!("http://{api}{path}")).query(local).send(),
    )
    .await;
    let response = match sent {
        Err(_) => return Err(("timeout", format!("no answer from {api} in {timeout:?}"))),
        Ok(Err(e)) if e.is_timeout() => {
            return Err(("timeout", format!("no answer from {api} in {timeout:?}")));
        }
        Ok(Err(e)) => return Err(("unreachable", format!("{api}: {e}"))),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    let mut chunks = response.bytes_stream();
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout(timeout, chunks.next()).await {
            Err(_) => return Err(("timeout", format!("{api} sent nothing for {timeout:?}"))),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(("truncated", format!("{api}: {e}"))),
            Ok(Some(Ok(chunk))) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_ANSWER_BYTES {
                    return Err((
                        "error",
                        format!("{api} answered more than {MAX_ANSWER_BYTES} bytes"),
                    ));
                }
            }
        }
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(("error", format!("{api} answered {status}: {}", text.trim())));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err((
            "truncated",
            format!("{api} ended its answer before the count"),
        ));
    }
    let answer: Value = serde_json::from_slice(&body)
        .map_err(|e| ("error", format!("{api} answered no JSON: {e}")))?;
    if let Some(why) = answer.get("error") {
        return Err(("error", format!("{api}: {}", why.as_str().unwrap_or("?"))));
    }
    Ok(answer)
}

/// The JSON of a histogram (without the cluster fields).
fn histogram_json(h: &Histogram) -> Value {
    let buckets: Vec<Value> = h
        .counts
        .iter()
        .enumerate()
        .map(|(k, count)| {
            let start = h.start_ms(k);
            json!({"start_ms": start, "time": format_ms(start), "count": count})
        })
        .collect();
    json!({
        "from": format_ms(h.from_ms),
        "to": format_ms(h.to_ms),
        "from_ms": h.from_ms,
        "to_ms": h.to_ms,
        "step_ms": h.step_ms,
        "buckets": buckets,
        "total": h.total(),
    })
}

/// `GET /histogram`.
pub(crate) async fn histogram(
    State(state): State<ApiState>,
    Params(params): Params<CountParams>,
) -> Response {
    let (query, buckets) = match params.parse() {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let (strict, timeout) = match params.consistency(&state) {
        Ok(rules) => rules,
        Err(response) => return response,
    };
    let empty = Histogram::new(query.from_ms, query.to_ms, buckets);
    if copies_on_several_stores(&state, &params) {
        let mut counted = empty;
        let deduped = count_deduped(&state, &params, &query, |record| {
            counted.add(record.id.timestamp_ms(), 1);
        })
        .await;
        return match deduped {
            Ok(fields) => {
                let mut out = histogram_json(&counted);
                add_cluster_fields(&mut out, &fields);
                json_ok(&out)
            }
            Err(response) => response,
        };
    }
    let (scanning, client) = match state.queries.enter().await {
        Ok(admitted) => admitted,
        Err(refused) => return busy(refused),
    };
    let local = params.scope.as_deref() == Some("local");
    if local || is_alone(&state) {
        let admitted = (scanning, client);
        return answer_here(&state, query, empty, admitted, local, histogram_json).await;
    }
    let asked = params.local(&query);
    let own = || {
        let state = state.clone();
        let (query, empty) = (query.clone(), empty.clone());
        async move {
            let scanning = crate::admission::Scanning::unadmitted();
            let h = count_here(&state, query, empty, scanning).await?;
            Ok::<Value, Failure>(histogram_json(&h))
        }
    };
    let gathered = ask_all(&state, "/histogram", &asked, strict, timeout, own).await;
    scanning.end();
    drop(client);
    let mut gathered = match gathered {
        Ok(gathered) => gathered,
        Err(response) => return response,
    };
    let mut total = empty;
    for answer in std::mem::take(&mut gathered.answers) {
        let counts = answer["buckets"].as_array().map(|b| {
            b.iter()
                .map(|b| b["count"].as_u64().unwrap_or(0))
                .collect::<Vec<u64>>()
        });
        match counts {
            Some(counts) if counts.len() == total.counts.len() => {
                for (sum, add) in total.counts.iter_mut().zip(counts) {
                    *sum += add;
                }
            }
            _ => tracing::warn!(%answer, "a node's histogram has other buckets; left out"),
        }
    }
    let mut out = histogram_json(&total);
    gathered.add_fields(&mut out);
    json_ok(&out)
}

/// The JSON of topic counts (without the cluster fields).
fn topics_json(counts: &BTreeMap<String, u64>) -> Value {
    let topics: Vec<Value> = counts
        .iter()
        .map(|(topic, records)| json!({"topic": topic, "records": records}))
        .collect();
    json!({ "topics": topics })
}

fn topic_map(counts: &TopicCounts) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (topic, n) in &counts.topics {
        *out.entry(String::from_utf8_lossy(topic).into_owned())
            .or_insert(0) += n;
    }
    out
}

/// `GET /topics`.
pub(crate) async fn topics(
    State(state): State<ApiState>,
    Params(mut params): Params<CountParams>,
) -> Response {
    // Every record counts, whatever its text and topic.
    (
        params.q,
        params.regex,
        params.i,
        params.topic,
        params.buckets,
    ) = (None, false, false, None, None);
    let (query, _) = match params.parse() {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let (strict, timeout) = match params.consistency(&state) {
        Ok(rules) => rules,
        Err(response) => return response,
    };
    if copies_on_several_stores(&state, &params) {
        let mut counted: BTreeMap<String, u64> = BTreeMap::new();
        let deduped = count_deduped(&state, &params, &query, |record| {
            *counted
                .entry(String::from_utf8_lossy(record.topic).into_owned())
                .or_insert(0) += 1;
        })
        .await;
        return match deduped {
            Ok(fields) => {
                let mut out = topics_json(&counted);
                add_cluster_fields(&mut out, &fields);
                json_ok(&out)
            }
            Err(response) => response,
        };
    }
    let (scanning, client) = match state.queries.enter().await {
        Ok(admitted) => admitted,
        Err(refused) => return busy(refused),
    };
    let local = params.scope.as_deref() == Some("local");
    if local || is_alone(&state) {
        let admitted = (scanning, client);
        let to_json = |counts: &TopicCounts| topics_json(&topic_map(counts));
        return answer_here(
            &state,
            query,
            TopicCounts::default(),
            admitted,
            local,
            to_json,
        )
        .await;
    }
    let asked = params.local(&query);
    let own = || {
        let state = state.clone();
        let query = query.clone();
        async move {
            let scanning = crate::admission::Scanning::unadmitted();
            let counts = count_here(&state, query, TopicCounts::default(), scanning).await?;
            Ok::<Value, Failure>(topics_json(&topic_map(&counts)))
        }
    };
    let gathered = ask_all(&state, "/topics", &asked, strict, timeout, own).await;
    scanning.end();
    drop(client);
    let mut gathered = match gathered {
        Ok(gathered) => gathered,
        Err(response) => return response,
    };
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for answer in std::mem::take(&mut gathered.answers) {
        for topic in answer["topics"].as_array().into_iter().flatten() {
            if let Some(name) = topic["topic"].as_str() {
                *total.entry(name.to_string()).or_insert(0) +=
                    topic["records"].as_u64().unwrap_or(0);
            }
        }
    }
    let mut out = topics_json(&total);
    gathered.add_fields(&mut out);
    json_ok(&out)
}

/// Whether a count over the cluster must drop copies: with a replication
/// factor above 1 every record is on several stores, and summing each
/// node's count would count it once per copy.
fn copies_on_several_stores(state: &ApiState, params: &CountParams) -> bool {
    params.scope.as_deref() != Some("local")
        && !params.names_only
        && !is_alone(state)
        && view_rf(&state.cluster.membership.view()) > 1
}

/// Count through the coordinated query instead: every node sends the ids
/// and topics of its matches (`format=ids`, no payloads), the merge drops
/// copies by id, and `each` sees every record once. Returns the query's
/// stats (`nodes_queried`, `nodes_failed`, `complete`). This costs 16 bytes
/// and the topic per match on the network, where the sum costs one number
/// per bucket: exact, not cheap.
async fn count_deduped(
    state: &ApiState,
    params: &CountParams,
    query: &Query,
    mut each: impl FnMut(&sluice_record::Record<'_>),
) -> Result<serde_json::Map<String, Value>, Response> {
    let asked = QueryParams {
        from: Some(query.from_ms.to_string()),
        to: Some(query.to_ms.to_string()),
        q: params.q.clone(),
        regex: params.regex,
        i: params.i,
        topic: params.topic.clone(),
        format: Some("ids".into()),
        consistency: params.consistency.clone(),
        node_timeout: params.node_timeout.clone(),
        ..QueryParams::default()
    };
    crate::query::run_coordinated(state, asked, |record| {
        each(record);
        true
    })
    .await
}

/// Copy the cluster fields of a coordinated query's stats into `out`.
fn add_cluster_fields(out: &mut Value, stats: &serde_json::Map<String, Value>) {
    for key in ["nodes_queried", "nodes_failed", "complete"] {
        out[key] = stats.get(key).cloned().unwrap_or(Value::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_buckets_are_explained() {
        let p = CountParams {
            buckets: Some(0),
            ..Default::default()
        };
        let response = p.parse().unwrap_err();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let p = CountParams {
            buckets: Some(MAX_BUCKETS),
            from: Some("1000".into()),
            to: Some("61000".into()),
            ..Default::default()
        };
        let (query, buckets) = p.parse().unwrap();
        assert_eq!(
            (query.from_ms, query.to_ms, buckets),
            (1_000, 61_000, MAX_BUCKETS)
        );
        let local = p.local(&query);
        assert_eq!(local.scope.as_deref(), Some("local"));
        assert_eq!(local.from.as_deref(), Some("1000"));
    }

    #[test]
    fn the_histogram_json_is_the_contract_shape() {
        let mut h = Histogram::new(0, 120_000, 2);
        h.counts[1] = 3;
        let v = histogram_json(&h);
        assert_eq!(v["step_ms"], 60_000);
        assert_eq!(v["total"], 3);
        assert_eq!(v["buckets"][1]["start_ms"], 60_000);
        assert_eq!(v["buckets"][1]["time"], "1970-01-01T00:01:00.000Z");
        assert_eq!(v["buckets"][1]["count"], 3);
        assert_eq!(v["from"], "1970-01-01T00:00:00.000Z");
    }
}
