//! The Loki read API, on any node and across the cluster, so Grafana's
//! Loki data source and logcli work with sluice unchanged
//! (`docs/query-loki.md` is the user's page):
//!
//! ```text
//! GET|POST /loki/api/v1/query_range        streams or a matrix (read)
//! GET|POST /loki/api/v1/query              an instant vector or scalar (read)
//! GET|POST /loki/api/v1/labels             label names of the streams in range (meta)
//! GET|POST /loki/api/v1/label/{name}/values
//! GET|POST /loki/api/v1/series             label sets matching match[] / match
//! GET|POST /loki/api/v1/index/stats        {"streams","chunks","bytes","entries"}
//! GET|POST /loki/api/v1/index/volume       records per label set, a vector
//! GET      /loki/api/v1/status/buildinfo
//! GET      /loki/api/v1/tail               WebSocket live tail (tail)
//! 404      detected_labels, detected_fields, detected_field/…, patterns,
//!          index/volume_range, /loki/api/v2alpha/tail
//! ```
//!
//! A stream is a topic; its labels are `Labels::from_topic` (a plain topic
//! `t` is `{topic="t"}`). A query first lists the topics of its range
//! (`/topics`, cluster-wide, from block metadata where it can) and keeps
//! those its selector matches; it then runs as a `/query` of the whole
//! cluster (the coordinator, the newest-first path for `backward`) with
//! those topics and its line filters, which every node applies in its
//! scan. A topic first written after the listing is not in that query.
//!
//! `X-Scope-OrgID` is accepted and ignored: sluice has one tenant.
//! Errors are plain text with a 4xx/5xx status, as Loki's.

mod meta;
mod params;
mod read;
mod tail;

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{any, get},
};
use serde_json::Value;
use sluice_query::logql::select::Selector;

use crate::{ApiState, counts::CountParams, error};

pub(crate) use params::Form;

/// The Loki read routes.
pub(crate) fn routes() -> Router<ApiState> {
    let v1 = "/loki/api/v1";
    let not_found = || any(|| async { error(StatusCode::NOT_FOUND, "not supported by sluice") });
    Router::new()
        .route(
            &format!("{v1}/query_range"),
            get(read::query_range).post(read::query_range),
        )
        .route(&format!("{v1}/query"), get(read::query).post(read::query))
        .route(
            &format!("{v1}/labels"),
            get(meta::labels).post(meta::labels),
        )
        .route(
            &format!("{v1}/label/{{name}}/values"),
            get(meta::label_values).post(meta::label_values),
        )
        .route(
            &format!("{v1}/series"),
            get(meta::series).post(meta::series),
        )
        .route(
            &format!("{v1}/index/stats"),
            get(meta::stats).post(meta::stats),
        )
        .route(
            &format!("{v1}/index/volume"),
            get(meta::volume).post(meta::volume),
        )
        .route(&format!("{v1}/status/buildinfo"), get(meta::buildinfo))
        .route(&format!("{v1}/tail"), get(tail::tail))
        .route(&format!("{v1}/detected_labels"), not_found())
        .route(&format!("{v1}/detected_fields"), not_found())
        .route(&format!("{v1}/detected_field/{{*rest}}"), not_found())
        .route(&format!("{v1}/patterns"), not_found())
        .route(&format!("{v1}/index/volume_range"), not_found())
        .route("/loki/api/v2alpha/tail", not_found())
}

/// The topics with records in `[from_ms, to_ms]` (cluster-wide), and their
/// record counts.
pub(crate) async fn topics_in(
    state: &ApiState,
    from_ms: u64,
    to_ms: u64,
) -> Result<Vec<(String, u64)>, Response> {
    let params = CountParams {
        from: Some(from_ms.to_string()),
        to: Some(to_ms.to_string()),
        names_only: true,
        ..CountParams::default()
    };
    let response = crate::counts::topics(State(state.clone()), axum::extract::Query(params)).await;
    if !response.status().is_success() {
        return Err(response);
    }
    let body = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the topic listing failed: {e}"),
            )
        })?;
    let answer: Value = serde_json::from_slice(&body).map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the topic listing is no JSON: {e}"),
        )
    })?;
    Ok(answer["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["topic"].as_str()?.to_string(), t["records"].as_u64()?)))
        .collect())
}

/// The topics in range that `selector` matches, with their record counts.
pub(crate) async fn select_topics(
    state: &ApiState,
    from_ms: u64,
    to_ms: u64,
    selector: &Selector,
) -> Result<Vec<(String, u64)>, Response> {
    let mut topics = topics_in(state, from_ms, to_ms).await?;
    topics.retain(|(topic, _)| selector.matches_topic(topic.as_bytes()));
    Ok(topics)
}

pub(crate) use crate::query::run_coordinated as run_query;

/// A JSON response.
pub(crate) fn json(body: String) -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// A 400 for a query outside the subset or malformed.
pub(crate) fn bad_query(message: impl std::fmt::Display) -> Response {
    error(StatusCode::BAD_REQUEST, message.to_string())
}
