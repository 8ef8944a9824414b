//! The segment lending endpoints (see `sluice_store::consumer` for the
//! protocol).

use std::time::Duration;

use axum::{
    body::Body,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde::Deserialize;
use sluice_ingest::{LogError, log::parse_id};
use tokio_stream::wrappers::ReceiverStream;

use crate::{ApiState, error};

/// Longest `next` long-poll: 10 s.
const MAX_WAIT: Duration = Duration::from_secs(10);
const READ_CHUNK_BYTES: usize = 1 << 20;

#[derive(Deserialize)]
pub(crate) struct NextParams {
    #[serde(default)]
    wait_ms: u64,
}

#[derive(Deserialize)]
pub(crate) struct IdParams {
    id: String,
}

fn no_ingest_role() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "this node does not run the ingest role",
    )
}

fn log_error(err: LogError) -> Response {
    match err {
        LogError::BadId(_) => error(StatusCode::BAD_REQUEST, err.to_string()),
        LogError::NotPending(_) => error(StatusCode::NOT_FOUND, err.to_string()),
        LogError::Storage(_) => error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    }
}

pub(crate) async fn next(
    State(state): State<ApiState>,
    Query(params): Query<NextParams>,
) -> Response {
    let Some(log) = state.ingest.clone() else {
        return no_ingest_role();
    };
    let wait = Duration::from_millis(params.wait_ms).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match log.next() {
            Ok(Some(id)) => return (StatusCode::OK, id.to_string()).into_response(),
            Ok(None) => {}
            Err(err) => return log_error(err),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return StatusCode::NO_CONTENT.into_response();
        }
        log.wait_flushed(deadline - now).await;
    }
}

pub(crate) async fn read(
    State(state): State<ApiState>,
    Query(params): Query<IdParams>,
) -> Response {
    let Some(log) = state.ingest.clone() else {
        return no_ingest_role();
    };
    let path = match parse_id(&params.id).and_then(|id| log.pending_path(id)) {
        Ok(path) => path,
        Err(err) => return log_error(err),
    };
    let file = match log.fs().open_read(&path) {
        Ok(file) => file,
        Err(err) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("open {}: {err}", path.display()),
            );
        }
    };
    let len = match file.len() {
        Ok(len) => len,
        Err(err) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("stat {}: {err}", path.display()),
            );
        }
    };
    // A pending segment is immutable, so its length is final.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut offset = 0u64;
        while offset < len {
            let mut buf = vec![0u8; READ_CHUNK_BYTES.min((len - offset) as usize)];
            let chunk = file
                .read_exact_at(&mut buf, offset)
                .map(|_| Bytes::from(buf));
            let failed = chunk.is_err();
            if tx.blocking_send(chunk).is_err() || failed {
                return;
            }
            offset += READ_CHUNK_BYTES as u64;
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .expect("static headers are valid")
}

pub(crate) async fn commit(
    State(state): State<ApiState>,
    Query(params): Query<IdParams>,
) -> Response {
    let Some(log) = state.ingest.clone() else {
        return no_ingest_role();
    };
    match parse_id(&params.id).and_then(|id| log.commit(id)) {
        Ok(()) => (StatusCode::OK, "committed\n").into_response(),
        Err(err) => log_error(err),
    }
}

pub(crate) async fn failed(
    State(state): State<ApiState>,
    Query(params): Query<IdParams>,
) -> Response {
    let Some(log) = state.ingest.clone() else {
        return no_ingest_role();
    };
    match parse_id(&params.id).and_then(|id| log.failed(id)) {
        Ok(()) => (StatusCode::OK, "returned\n").into_response(),
        Err(err) => log_error(err),
    }
}
