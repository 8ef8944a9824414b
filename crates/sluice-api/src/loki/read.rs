//! `query_range` and `query`: log queries answer streams, metric queries a
//! matrix (range) or a vector or scalar (instant), in Loki's JSON shapes
//! (`resultType` before `result`, stream times as ns strings, sample
//! times as seconds numbers, values as strings).

use std::collections::BTreeMap;

use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    http::HeaderMap,
    response::Response,
};
use serde_json::{Value, json};
use sluice_query::logql::{
    Expr, LogExpr, MetricExpr,
    eval::{RangeCounter, Series, Steps, Value as Sample, evaluate, format_value},
    parse,
    select::{Selector, pipeline_text},
};

use super::{
    Form, bad_query, json,
    params::{ms_range, now_ns},
    run_query, select_topics,
};
use crate::{ApiState, query::QueryParams};

/// What a log query returns at most at once (the newest-first path's
/// bound); clients page for more.
pub(crate) const MAX_LIMIT: u64 = sluice_query::newest::MAX_BACKWARD_LIMIT;

/// The query text, parsed; a 400 for anything outside the subset.
pub(crate) fn parse_query(form: &Form) -> Result<Expr, Response> {
    let Some(text) = form.get("query") else {
        return Err(bad_query("query: the query parameter is required"));
    };
    parse(text).map_err(bad_query)
}

/// `GET|POST /loki/api/v1/query_range`.
pub(crate) async fn query_range(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match range_answer(&state, raw.as_deref(), &headers, &body).await {
        Ok(response) | Err(response) => response,
    }
}

async fn range_answer(
    state: &ApiState,
    raw: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Response> {
    let form = Form::read(raw, headers, body)?;
    let expr = parse_query(&form)?;
    let (start, end) = form.range_ns(3_600_000)?;
    match expr {
        Expr::Log(log) => {
            let limit = form.limit(MAX_LIMIT)?;
            let backward = form.backward()?;
            let result = streams(state, &log, start, end, limit, backward).await?;
            Ok(envelope("streams", &result))
        }
        Expr::Metric(metric) => {
            let step_ms = form.step_ms(start, end)?;
            let (start_ms, end_ms) = (ns_to_ms(start), ns_to_ms(end));
            let steps = Steps::new(start_ms, end_ms, step_ms).map_err(bad_query)?;
            let value = metric_value(state, &metric, steps).await?;
            let series = match value {
                Sample::Vector(series) => series,
                Sample::Scalar(n) => vec![Series {
                    labels: BTreeMap::new(),
                    points: vec![Some(n); steps.count as usize],
                }],
            };
            let result: Vec<Value> = series
                .iter()
                .filter(|s| s.points.iter().any(Option::is_some))
                .map(|s| {
                    let values: Vec<Value> = s
                        .points
                        .iter()
                        .enumerate()
                        .filter_map(|(k, p)| {
                            let v = (*p)?;
                            Some(json!([seconds(steps.at(k as u64)), format_value(v)]))
                        })
                        .collect();
                    json!({"metric": s.labels, "values": values})
                })
                .collect();
            Ok(envelope("matrix", &Value::Array(result)))
        }
    }
}

/// `GET|POST /loki/api/v1/query`: an instant query (metric queries only,
/// as Loki's).
pub(crate) async fn query(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match instant_answer(&state, raw.as_deref(), &headers, &body).await {
        Ok(response) | Err(response) => response,
    }
}

async fn instant_answer(
    state: &ApiState,
    raw: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Response> {
    let form = Form::read(raw, headers, body)?;
    let expr = parse_query(&form)?;
    let time = form.time_ns("time")?.unwrap_or_else(now_ns);
    // Checked as query_range checks them, though only metric queries run.
    form.backward()?;
    let Expr::Metric(metric) = expr else {
        return Err(bad_query(
            "log queries are not supported as an instant query type, please change your query to a range query type",
        ));
    };
    let t = ns_to_ms(time);
    // One step; a step as long as the longest range makes each window one
    // bucket of the grid.
    let step = metric
        .ranges()
        .iter()
        .map(|r| r.range_ms)
        .max()
        .unwrap_or(1_000);
    let steps = Steps::new(t, t, step).map_err(bad_query)?;
    match metric_value(state, &metric, steps).await? {
        Sample::Scalar(n) => Ok(envelope("scalar", &json!([seconds(t), format_value(n)]))),
        Sample::Vector(series) => {
            let result: Vec<Value> = series
                .iter()
                .filter_map(|s| {
                    let v = s.points.first().copied().flatten()?;
                    Some(json!({"metric": s.labels, "value": [seconds(t), format_value(v)]}))
                })
                .collect();
            Ok(envelope("vector", &Value::Array(result)))
        }
    }
}

/// `{"status":"success","data":{"resultType":…,"result":…,"stats":{}}}`,
/// written by hand so `resultType` comes before `result` (serde_json's
/// maps sort their keys) for the older Grafana converters that need it.
pub(crate) fn envelope(kind: &str, result: &Value) -> Response {
    json(format!(
        r#"{{"status":"success","data":{{"resultType":"{kind}","result":{result},"stats":{{}}}}}}"#
    ))
}

/// Unix ns to ms, rounded down.
pub(crate) fn ns_to_ms(ns: u128) -> u64 {
    u64::try_from(ns / 1_000_000).unwrap_or(u64::MAX)
}

/// A sample time: Unix seconds as a JSON number (with ms, if any).
pub(crate) fn seconds(ms: u64) -> Value {
    if ms.is_multiple_of(1000) {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

/// The stream's labels as a JSON object.
pub(crate) fn labels_json(topic: &[u8]) -> Value {
    let labels = sluice_record::labels::Labels::from_topic(topic);
    let map: BTreeMap<&str, &str> = labels.iter().collect();
    json!(map)
}

/// The `/query` parameters that read what `log` selects from `topics`.
pub(crate) fn log_params(log: &LogExpr, topics: &[(String, u64)]) -> QueryParams {
    let names: Vec<&str> = topics.iter().map(|(t, _)| t.as_str()).collect();
    let filters = pipeline_text(&log.pipeline);
    QueryParams {
        filters: (!filters.is_empty()).then_some(filters),
        topics: Some(serde_json::to_string(&names).unwrap_or_default()),
        ..QueryParams::default()
    }
}

/// The streams of a log query: the newest `limit` matches in
/// `[start, end)` (backward, newest first in each stream), or the oldest
/// (forward).
async fn streams(
    state: &ApiState,
    log: &LogExpr,
    start: u128,
    end: u128,
    limit: u64,
    backward: bool,
) -> Result<Value, Response> {
    let Some((from_ms, to_ms)) = ms_range(start, end) else {
        return Ok(json!([]));
    };
    let selector = Selector::new(&log.selector).map_err(bad_query)?;
    let topics = select_topics(state, from_ms, to_ms, &selector).await?;
    if topics.is_empty() {
        return Ok(json!([]));
    }
    let params = QueryParams {
        from: Some(from_ms.to_string()),
        to: Some(to_ms.to_string()),
        limit: Some(limit),
        direction: Some(if backward { "backward" } else { "forward" }.into()),
        format: Some("frames".into()),
        ..log_params(log, &topics)
    };
    // Streams in the order their first entry came, entries in the query's.
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut by_topic: BTreeMap<Vec<u8>, Vec<Value>> = BTreeMap::new();
    run_query(state, params, |record| {
        let ns = u128::from(record.time_ms()) * 1_000_000;
        let entry = json!([ns.to_string(), String::from_utf8_lossy(record.payload)]);
        match by_topic.get_mut(record.topic) {
            Some(values) => values.push(entry),
            None => {
                order.push(record.topic.to_vec());
                by_topic.insert(record.topic.to_vec(), vec![entry]);
            }
        }
        true
    })
    .await?;
    let result: Vec<Value> = order
        .into_iter()
        .map(|topic| {
            let values = by_topic.remove(&topic).unwrap_or_default();
            json!({"stream": labels_json(&topic), "values": values})
        })
        .collect();
    Ok(Value::Array(result))
}

/// Evaluate a metric query at `steps`: each range aggregation counts the
/// records the cluster's query gives it (ids and topics only, unless it
/// needs the lines' bytes or levels).
async fn metric_value(
    state: &ApiState,
    metric: &MetricExpr,
    steps: Steps,
) -> Result<Sample, Response> {
    let with_level = metric.groups_by(sluice_query::logql::eval::DETECTED_LEVEL);
    let mut results = Vec::new();
    for range in metric.ranges() {
        let mut counter = RangeCounter::new(range, steps, with_level);
        let (from_ms, to_ms) = counter.scan_range_ms();
        let selector = Selector::new(&range.log.selector).map_err(bad_query)?;
        let topics = select_topics(state, from_ms, to_ms, &selector).await?;
        if !topics.is_empty() {
            let lines = with_level || range.op.counts_bytes();
            let params = QueryParams {
                from: Some(from_ms.to_string()),
                to: Some(to_ms.to_string()),
                format: Some(if lines { "frames" } else { "ids" }.into()),
                ..log_params(&range.log, &topics)
            };
            let mut failed = None;
            run_query(state, params, |record| {
                match counter.add(record.time_ms(), record.topic, record.payload) {
                    Ok(()) => true,
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                }
            })
            .await?;
            if let Some(e) = failed {
                return Err(bad_query(e));
            }
        }
        results.push(counter.finish());
    }
    evaluate(metric, steps, &mut results.into_iter()).map_err(bad_query)
}
