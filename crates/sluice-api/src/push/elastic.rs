//! The Elasticsearch endpoints: the startup probes Beats, Vector, Logstash
//! and Elastic's clients make, and `_bulk` (see [`sluice_push::elastic`]
//! for the decoding, the mapping to records and the response).

use std::time::Instant;

use axum::{
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use sluice_ingest::PushProtocol;
use sluice_push::{
    elastic::{self, REPORTED_VERSION},
    encoding::ContentEncoding,
};

use super::{Failure, Peer, admit, count, decode_on_pool, write};
use crate::ApiState;

const PROTOCOL: PushProtocol = PushProtocol::Elasticsearch;

/// Every Elasticsearch response says which product answered: Elastic's
/// clients refuse a success without it.
pub(crate) async fn product_header(mut response: Response) -> Response {
    response.headers_mut().insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    response
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /` (and `HEAD /`): the cluster info; Beats read `version.number`.
pub(crate) async fn info() -> Response {
    let body = serde_json::json!({
        "name": "sluice",
        "cluster_name": "sluice",
        "cluster_uuid": "sluice",
        "version": {
            "number": REPORTED_VERSION,
            "build_flavor": "default",
            "build_type": "sluice",
            "build_hash": "sluice",
            "build_date": "2024-12-11T00:00:00.000Z",
            "build_snapshot": false,
            "lucene_version": "9.12.0",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0"
        },
        "tagline": "You Know, for Search"
    });
    json(StatusCode::OK, body.to_string())
}

/// `GET /_cluster/health`: green (Vector's healthcheck wants a 200).
pub(crate) async fn health() -> Response {
    let body = serde_json::json!({
        "cluster_name": "sluice",
        "status": "green",
        "timed_out": false,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": 0,
        "active_shards": 0,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 0
    });
    json(StatusCode::OK, body.to_string())
}

/// `GET /_license`: an active basic license (Beats check it).
pub(crate) async fn license() -> Response {
    let body = serde_json::json!({
        "license": {
            "status": "active",
            "uid": "sluice",
            "type": "basic",
            "issue_date_in_millis": 0,
            "max_nodes": 1000,
            "issued_to": "sluice",
            "issuer": "sluice",
            "start_date_in_millis": -1
        }
    });
    json(StatusCode::OK, body.to_string())
}

/// The index template, ILM, ingest pipeline and nodes calls of Filebeat's
/// setup: accepted, nothing to do.
pub(crate) async fn empty() -> Response {
    json(StatusCode::OK, "{}".into())
}

/// An Elasticsearch-shaped error for a whole request.
fn es_error(failure: Failure) -> Response {
    let kind = match failure.status {
        StatusCode::PAYLOAD_TOO_LARGE => "content_too_long_exception",
        StatusCode::TOO_MANY_REQUESTS => "es_rejected_execution_exception",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable_shards_exception",
        _ => "illegal_argument_exception",
    };
    let body = serde_json::json!({
        "error": {"type": kind, "reason": failure.message.trim_end()},
        "status": failure.status.as_u16()
    });
    let mut response = json(failure.status, body.to_string());
    if let Some(secs) = failure.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, secs.into());
    }
    response
}

/// `POST|PUT /_bulk`.
pub(crate) async fn bulk(
    State(state): State<ApiState>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk_into(state, None, peer, headers, body).await
}

/// `POST|PUT /<index>/_bulk`.
pub(crate) async fn bulk_index(
    State(state): State<ApiState>,
    Path(index): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk_into(state, Some(index), peer, headers, body).await
}

async fn bulk_into(
    state: ApiState,
    index: Option<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match run_bulk(state, index, peer, headers, body).await {
        Ok(response) => response,
        Err(failure) => es_error(failure),
    }
}

async fn run_bulk(
    state: ApiState,
    index: Option<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let started = Instant::now();
    let encoding = ContentEncoding::parse(
        headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    )
    .map_err(|err| {
        super::metrics::refused(PROTOCOL, err.kind());
        Failure::new(StatusCode::BAD_REQUEST, err.to_string())
    })?;
    let admitted = admit(&state, PROTOCOL, &peer, &headers, body).await?;
    let limits = admitted.push.config.limits;
    let config = admitted.push.config.bulk.clone();
    let body = admitted.body.clone();
    let (batch, (items, stats)) = decode_on_pool(&admitted, PROTOCOL, move |batch| {
        let now = sluice_record::now_ms();
        elastic::decode(
            encoding,
            &body,
            index.as_deref(),
            &config,
            &limits,
            now,
            &mut |record| batch.push(record),
        )
    })
    .await?;
    count(PROTOCOL, &stats);
    super::metrics::bulk_items(&items);
    write(&admitted.push, batch).await?;
    let mut out = Vec::with_capacity(64 + items.len() * 110);
    elastic::write_response(started.elapsed().as_millis() as u64, &items, &mut out);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response())
}
