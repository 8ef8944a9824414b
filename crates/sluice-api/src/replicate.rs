//! `PUT /store/replicate?batch=NAME`: receive a replica of another store's
//! batch file (see `sluice_store::replica` and `docs/protocol-lending.md`).
//!
//! Answers: 201 once the replica is durable under its name, 200 when the
//! name is held already (the body is not read), 400 for a name that is not
//! a store segment's or a body that failed in transit, 409 while another
//! request receives the same name, 413 past
//! [`sluice_store::replica::MAX_REPLICA_BYTES`], 422 for a corrupt, unsorted
//! or mismatched file, 507 for a store over its `--max-disk` limit (or a
//! full disk), 404 on a node without the store role, 500 for other I/O
//! failures. Every refusal leaves nothing behind.
//!
//! Memory stays bounded: the body's chunks go through a channel of
//! [`CHUNKS_IN_FLIGHT`] to one blocking thread that writes them, so at most
//! that many chunks (hyper's, tens of KiB each) are held at a time.

use axum::{
    body::Body,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use sluice_store::replica::{Begun, Received, ReplicaError, ReplicaWriter};

use crate::{ApiState, error};

/// Chunks of the body queued for the writing thread.
const CHUNKS_IN_FLIGHT: usize = 16;

#[derive(Deserialize)]
pub(crate) struct ReplicateParams {
    batch: String,
    /// The sending store's node id (and any other holders, comma-separated),
    /// for this store's manifest.
    #[serde(default)]
    from: Option<String>,
}

/// What the request task sends the writing thread.
enum Chunk {
    Data(Bytes),
    /// The whole body arrived: verify and place the replica.
    End,
    /// The body failed: abort the writer, which removes the temp file.
    Abort(String),
}

pub(crate) async fn put(
    State(state): State<ApiState>,
    Query(params): Query<ReplicateParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(store) = state.store.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "this node does not run the store role",
        );
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let crc32 = headers
        .get(sluice_store::replicate::CRC32_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| u32::from_str_radix(v, 16).ok());
    let name = params.batch;
    let begun = {
        let name = name.clone();
        tokio::task::spawn_blocking(move || ReplicaWriter::begin(&store, &name, declared, crc32))
            .await
    };
    let writer = match begun {
        Ok(Ok(Begun::AlreadyHeld)) => return received(&name, Received::AlreadyHeld),
        Ok(Ok(Begun::Writing(mut writer))) => {
            let holders = params
                .from
                .as_deref()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(str::to_string)
                .collect();
            writer.set_holders(holders);
            writer
        }
        Ok(Err(err)) => return refused(err),
        Err(err) => return task_failed(err),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(CHUNKS_IN_FLIGHT);
    // Only an explicit `End` finishes the replica: if this request is
    // dropped (the sender went away), the channel closes without it and
    // the writer is aborted.
    let writing = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        loop {
            match rx.blocking_recv() {
                Some(Chunk::Data(bytes)) => writer.write(&bytes)?,
                Some(Chunk::End) => return writer.finish().map(Some),
                Some(Chunk::Abort(why)) => {
                    writer.abort(&why);
                    return Ok(None);
                }
                None => {
                    writer.abort("the request was dropped before its body ended");
                    return Ok(None);
                }
            }
        }
    });
    let mut stream = body.into_data_stream();
    let mut body_error = None;
    loop {
        let message = match stream.next().await {
            Some(Ok(bytes)) => Chunk::Data(bytes),
            Some(Err(err)) => {
                let why = err.to_string();
                body_error = Some(err);
                Chunk::Abort(why)
            }
            None => Chunk::End,
        };
        let last = !matches!(message, Chunk::Data(_));
        // A closed channel means the writer refused the replica; its
        // error is the answer.
        if tx.send(message).await.is_err() || last {
            break;
        }
    }
    drop(tx);
    match writing.await {
        Ok(Ok(Some(outcome))) => received(&name, outcome),
        Ok(Ok(None)) => error(
            StatusCode::BAD_REQUEST,
            format!(
                "reading the body of replica {name} failed: {}; send it again",
                body_error.map_or_else(|| "it ended early".to_string(), |e| e.to_string())
            ),
        ),
        Ok(Err(err)) => refused(err),
        Err(err) => task_failed(err),
    }
}

fn received(name: &str, outcome: Received) -> Response {
    match outcome {
        Received::Created => error(StatusCode::CREATED, format!("created replica {name}")),
        Received::AlreadyHeld => error(StatusCode::OK, format!("replica {name} is held already")),
    }
}

fn refused(err: ReplicaError) -> Response {
    let status = match &err {
        ReplicaError::BadName { .. } => StatusCode::BAD_REQUEST,
        ReplicaError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        ReplicaError::Corrupt { .. } | ReplicaError::Invalid { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ReplicaError::DiskFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
        ReplicaError::InProgress { .. } => StatusCode::CONFLICT,
        ReplicaError::Io(_) if err.reason() == "disk_full" => StatusCode::INSUFFICIENT_STORAGE,
        ReplicaError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, err.to_string())
}

fn task_failed(err: tokio::task::JoinError) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("replica write task failed: {err}; send the replica again"),
    )
}

#[cfg(test)]
mod tests;
