//! The segment lending endpoints (see `sluice_store::consumer` for the
//! protocol).
//!
//! Every call into the [`IngestLog`] renames or opens files under its lock,
//! so it runs on a blocking thread ([`on_log`]), never on the async
//! runtime's workers; only the long-poll's wait for a flushed segment is
//! async.

use std::time::Duration;

use axum::{
    body::Body,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde::Deserialize;
use sluice_ingest::{IngestLog, LogError, log::parse_id};
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

#[derive(Deserialize)]
pub(crate) struct CommitParams {
    id: String,
    /// The node ids of the stores that hold the segment's records,
    /// comma-separated; absent: the committing store alone.
    replicas: Option<String>,
}

fn no_ingest_role() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "this node does not run the ingest role",
    )
}

/// Run `work` on the ingest log on a blocking thread.
async fn on_log<T: Send + 'static>(
    log: &std::sync::Arc<IngestLog>,
    work: impl FnOnce(&IngestLog) -> Result<T, LogError> + Send + 'static,
) -> Result<T, Response> {
    let log = log.clone();
    match tokio::task::spawn_blocking(move || work(&log)).await {
        Ok(done) => done.map_err(log_error),
        Err(err) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("ingest log task failed: {err}"),
        )),
    }
}

fn log_error(err: LogError) -> Response {
    match err {
        LogError::BadId(_) => error(StatusCode::BAD_REQUEST, err.to_string()),
        LogError::NotPending(_) => error(StatusCode::NOT_FOUND, err.to_string()),
        LogError::TooFewReplicas { .. } => error(StatusCode::CONFLICT, err.to_string()),
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
        match on_log(&log, |log| log.next()).await {
            Ok(Some(id)) => {
                let lease = log.pending_timeout().as_millis().to_string();
                return (
                    StatusCode::OK,
                    [(sluice_store::consumer::LEASE_HEADER, lease)],
                    id.to_string(),
                )
                    .into_response();
            }
            Ok(None) => {}
            Err(response) => return response,
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
    let id = match parse_id(&params.id) {
        Ok(id) => id,
        Err(err) => return log_error(err),
    };
    let opened = on_log(&log, move |log| {
        let path = log.pending_path(id)?;
        let file = match log.fs().open_read(&path) {
            Ok(file) => file,
            Err(err) => {
                let why = format!("open {}: {err}", path.display());
                return Ok(Err((StatusCode::NOT_FOUND, why)));
            }
        };
        Ok(match file.len() {
            Ok(len) => Ok((file, len)),
            Err(err) => {
                let why = format!("stat {}: {err}", path.display());
                Err((StatusCode::INTERNAL_SERVER_ERROR, why))
            }
        })
    })
    .await;
    let (file, len) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err((status, why))) => return error(status, why),
        Err(response) => return response,
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
    Query(params): Query<CommitParams>,
) -> Response {
    let Some(log) = state.ingest.clone() else {
        return no_ingest_role();
    };
    let id = match parse_id(&params.id) {
        Ok(id) => id,
        Err(err) => return log_error(err),
    };
    // The commit rule (fewer distinct replicas than RF: 409, the segment
    // stays lent) is the log's, so the deterministic simulation runs the
    // same rule.
    let committed = on_log(&log, move |log| {
        Ok(log.commit_replicated(id, params.replicas.as_deref()))
    })
    .await;
    match committed {
        Ok(Ok(replicas)) => {
            crate::metrics::committed(replicas);
            (StatusCode::OK, "committed\n").into_response()
        }
        Ok(Err(err)) => {
            if matches!(err, LogError::TooFewReplicas { .. }) {
                crate::metrics::commit_refused();
            }
            log_error(err)
        }
        Err(response) => response,
    }
}

pub(crate) async fn failed(
    State(state): State<ApiState>,
    Query(params): Query<IdParams>,
) -> Response {
    let Some(log) = state.ingest.clone() else {
        return no_ingest_role();
    };
    let id = match parse_id(&params.id) {
        Ok(id) => id,
        Err(err) => return log_error(err),
    };
    match on_log(&log, move |log| log.failed(id)).await {
        Ok(()) => (StatusCode::OK, "returned\n").into_response(),
        Err(response) => response,
    }
}
