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
//! `complete` are `/query`'s (`nodes`, `coordinate`); a node's whole answer must
//! arrive within the node timeout.

use std::{collections::BTreeMap, time::Duration};

use axum::{
    extract::{Query as Params, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_query::{
    Query, Sources,
    count::{CountStats, DEFAULT_BUCKETS, Histogram, MAX_BUCKETS, Tally, TopicCounts},
    gather::{QueriedNode, verdict},
    time::format_ms,
};

use crate::{
    ApiState,
    coordinate::is_alone,
    error,
    nodes::{Target, node_timeout_from, strict_from, targets, view_rf},
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
}

impl CountParams {
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

/// Count `query` on this node into `tally`, on the blocking pool.
async fn count_here<T: Tally + Send + 'static>(
    state: &ApiState,
    query: Query,
    mut tally: T,
    scanning: crate::admission::Scanning,
) -> Result<T, Response> {
    if state.store.is_none() && state.ingest.is_none() {
        return Err(no_data_role());
    }
    let state = state.clone();
    let counted = tokio::task::spawn_blocking(move || {
        let scan = local_scan(&state, &scanning);
        let result = local_sources(&state)
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))
            .and_then(|(fs, ingest_files)| {
                let sources = Sources {
                    store: state.store.as_ref().map(|s| s.dir()),
                    ingest: &ingest_files,
                    ..Sources::default()
                };
                sluice_query::count::count(&*fs, sources, &query, &scan, &mut tally)
                    .map_err(|e| crate::query::query_error(&e))
            });
        if let (Ok(stats), Some(store)) = (&result, &state.store) {
            report(store, stats);
        }
        scanning.end();
        result.map(|_| tally)
    })
    .await;
    counted.unwrap_or_else(|e| Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())))
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
    Fut: std::future::Future<Output = Result<Value, Response>>,
{
    let view = state.cluster.membership.view();
    let targets = targets(&view);
    let down: Vec<String> = targets
        .iter()
        .filter_map(|t| Some(format!("{} ({})", t.id, t.failed_up_front?)))
        .collect();
    if strict && !down.is_empty() {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "consistency strict: {} node(s) cannot answer: {}; retry when they are back, \
                 or ask with consistency=partial",
                down.len(),
                down.join(", ")
            ),
        ));
    }
    let ask = |t: &Target| {
        let t = t.clone();
        let http = state.cluster.http.clone();
        let own = &own;
        async move {
            if let Some(reason) = t.failed_up_front {
                return Err((reason, format!("the view says {reason}")));
            }
            if t.is_self {
                return own().await.map_err(|response| {
                    ("error", format!("this node answered {}", response.status()))
                });
            }
            let api = t.api.clone().unwrap_or_default();
            let sent = http
                .get(format!("http://{api}{path}"))
                .query(local)
                .timeout(timeout)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(e) if e.is_timeout() => {
                    return Err(("timeout", format!("no answer from {api} in {timeout:?}")));
                }
                Err(e) => return Err(("unreachable", format!("{api}: {e}"))),
            };
            let status = response.status();
            let body = match response.bytes().await {
                Ok(body) => body,
                Err(e) if e.is_timeout() => {
                    return Err(("timeout", format!("{api} sent nothing for {timeout:?}")));
                }
                Err(e) => return Err(("truncated", format!("{api}: {e}"))),
            };
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body);
                return Err(("error", format!("{api} answered {status}: {}", text.trim())));
            }
            serde_json::from_slice(&body)
                .map_err(|e| ("error", format!("{api} answered no JSON: {e}")))
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
    let (strict, timeout) = match (
        strict_from(params.consistency.as_deref()),
        node_timeout_from(&state, params.node_timeout.as_deref()),
    ) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    let (scanning, client) = match state.queries.enter().await {
        Ok(admitted) => admitted,
        Err(refused) => return busy(refused),
    };
    let empty = Histogram::new(query.from_ms, query.to_ms, buckets);
    let local = params.scope.as_deref() == Some("local");
    if local || is_alone(&state) {
        let counted = count_here(&state, query, empty, scanning).await;
        drop(client);
        return match counted {
            Ok(h) => {
                let mut out = histogram_json(&h);
                out["nodes_queried"] = json!(1);
                out["nodes_failed"] = json!([]);
                out["complete"] = json!(true);
                json_ok(&out)
            }
            Err(response) => response,
        };
    }
    let asked = params.local(&query);
    let own = || {
        let state = state.clone();
        let (query, empty) = (query.clone(), empty.clone());
        async move {
            let scanning = crate::admission::Scanning::unadmitted();
            let h = count_here(&state, query, empty, scanning).await?;
            Ok(histogram_json(&h))
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
    let (strict, timeout) = match (
        strict_from(params.consistency.as_deref()),
        node_timeout_from(&state, params.node_timeout.as_deref()),
    ) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    let (scanning, client) = match state.queries.enter().await {
        Ok(admitted) => admitted,
        Err(refused) => return busy(refused),
    };
    let local = params.scope.as_deref() == Some("local");
    if local || is_alone(&state) {
        let counted = count_here(&state, query, TopicCounts::default(), scanning).await;
        drop(client);
        return match counted {
            Ok(counts) => {
                let mut out = topics_json(&topic_map(&counts));
                out["nodes_queried"] = json!(1);
                out["nodes_failed"] = json!([]);
                out["complete"] = json!(true);
                json_ok(&out)
            }
            Err(response) => response,
        };
    }
    let asked = params.local(&query);
    let own = || {
        let state = state.clone();
        let query = query.clone();
        async move {
            let scanning = crate::admission::Scanning::unadmitted();
            let counts = count_here(&state, query, TopicCounts::default(), scanning).await?;
            Ok(topics_json(&topic_map(&counts)))
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
