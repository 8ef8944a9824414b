//! Label and index endpoints, answered from the topics of the range (the
//! cluster's `/topics` listing): `labels`, `label/{name}/values`,
//! `series`, `index/stats`, `index/volume`, and `status/buildinfo`.
//!
//! sluice's block index keeps record counts per topic, not their sizes:
//! `index/stats` gives `entries` and `streams` and 0 for `bytes` and
//! `chunks`, and `index/volume` gives records where Loki gives bytes.

use std::collections::{BTreeMap, BTreeSet};

use axum::{
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::HeaderMap,
    response::Response,
};
use serde_json::{Value, json};
use sluice_query::logql::{Expr, parse_selector, select::Selector};
use sluice_record::labels::Labels;

use super::{
    Form, bad_query, json,
    params::ms_range,
    read::{ns_to_ms, seconds},
    topics_in,
};
use crate::ApiState;

/// Label queries look this far back by default (Loki's docs say 6 h).
const META_SINCE_MS: u64 = 6 * 3_600_000;

/// The topics in `[start, end)` and their labels, kept where the `query`
/// parameter's selector (if any) matches.
async fn streams_in(
    state: &ApiState,
    form: &Form,
    key: &str,
) -> Result<Vec<(Labels, u64)>, Response> {
    let (start, end) = form.range_ns(META_SINCE_MS)?;
    let Some((from_ms, to_ms)) = ms_range(start, end) else {
        return Ok(Vec::new());
    };
    let selectors: Vec<Selector> = form
        .all(key)
        .into_iter()
        .filter(|text| !text.is_empty())
        .map(selector_of)
        .collect::<Result<_, _>>()?;
    let topics = topics_in(state, from_ms, to_ms).await?;
    Ok(topics
        .into_iter()
        .map(|(topic, n)| (Labels::from_topic(topic.as_bytes()), n))
        .filter(|(labels, _)| selectors.is_empty() || selectors.iter().any(|s| s.matches(labels)))
        .collect())
}

/// A selector from a `query`/`match` parameter: a stream selector, or a
/// whole log query whose selector is taken.
fn selector_of(text: &str) -> Result<Selector, Response> {
    let matchers = match parse_selector(text) {
        Ok(matchers) => matchers,
        Err(e) => match sluice_query::logql::parse(text) {
            Ok(Expr::Log(log)) => log.selector,
            _ => return Err(bad_query(e)),
        },
    };
    Selector::new(&matchers).map_err(bad_query)
}

fn success(data: Value) -> Response {
    json(json!({"status": "success", "data": data}).to_string())
}

async fn read_form(raw: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<Form, Response> {
    Form::read(raw, headers, body)
}

/// `GET|POST /loki/api/v1/labels`.
pub(crate) async fn labels(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = async {
        let form = read_form(raw.as_deref(), &headers, &body).await?;
        let streams = streams_in(&state, &form, "query").await?;
        let names: BTreeSet<&str> = streams
            .iter()
            .flat_map(|(labels, _)| labels.iter().map(|(k, _)| k))
            .collect();
        Ok::<_, Response>(success(json!(names)))
    };
    answer.await.unwrap_or_else(|e| e)
}

/// `GET|POST /loki/api/v1/label/{name}/values`.
pub(crate) async fn label_values(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = async {
        let form = read_form(raw.as_deref(), &headers, &body).await?;
        let streams = streams_in(&state, &form, "query").await?;
        let values: BTreeSet<&str> = streams
            .iter()
            .filter_map(|(labels, _)| labels.get(&name))
            .collect();
        Ok::<_, Response>(success(json!(values)))
    };
    answer.await.unwrap_or_else(|e| e)
}

/// `GET|POST /loki/api/v1/series`: `match[]` (Grafana) or `match`
/// (logcli), each a selector; a stream matching any is listed.
pub(crate) async fn series(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = async {
        let form = read_form(raw.as_deref(), &headers, &body).await?;
        let key = if form.all("match[]").is_empty() {
            "match"
        } else {
            "match[]"
        };
        let streams = streams_in(&state, &form, key).await?;
        let data: Vec<BTreeMap<&str, &str>> = streams
            .iter()
            .map(|(labels, _)| labels.iter().collect())
            .collect();
        Ok::<_, Response>(success(json!(data)))
    };
    answer.await.unwrap_or_else(|e| e)
}

/// `GET|POST /loki/api/v1/index/stats`: a bare object, as Loki's.
pub(crate) async fn stats(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = async {
        let form = read_form(raw.as_deref(), &headers, &body).await?;
        let streams = streams_in(&state, &form, "query").await?;
        let entries: u64 = streams.iter().map(|(_, n)| n).sum();
        Ok::<_, Response>(json(
            json!({"streams": streams.len(), "chunks": 0, "bytes": 0, "entries": entries})
                .to_string(),
        ))
    };
    answer.await.unwrap_or_else(|e| e)
}

/// `GET|POST /loki/api/v1/index/volume`: records per label set (or per
/// `targetLabels`), largest first, at most `limit` (default 100).
pub(crate) async fn volume(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = async {
        let form = read_form(raw.as_deref(), &headers, &body).await?;
        let (_, end) = form.range_ns(META_SINCE_MS)?;
        let limit = form.limit(10_000)? as usize;
        let streams = streams_in(&state, &form, "query").await?;
        let targets: Option<Vec<&str>> = form.get("targetLabels").map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect()
        });
        let mut volumes: BTreeMap<BTreeMap<String, String>, u64> = BTreeMap::new();
        for (labels, n) in &streams {
            let key: BTreeMap<String, String> = labels
                .iter()
                .filter(|(k, _)| targets.as_ref().is_none_or(|t| t.contains(k)))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            *volumes.entry(key).or_insert(0) += n;
        }
        let mut sorted: Vec<(BTreeMap<String, String>, u64)> = volumes.into_iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        sorted.truncate(limit);
        let t = seconds(ns_to_ms(end) / 1000 * 1000);
        let result: Vec<Value> = sorted
            .into_iter()
            .map(|(metric, n)| json!({"metric": metric, "value": [t, n.to_string()]}))
            .collect();
        Ok::<_, Response>(json(format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":{}}}}}"#,
            Value::Array(result)
        )))
    };
    answer.await.unwrap_or_else(|e| e)
}

/// `GET /loki/api/v1/status/buildinfo`: a bare object, as Loki's.
pub(crate) async fn buildinfo() -> Response {
    json(
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "revision": "",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        })
        .to_string(),
    )
}
