//! `GET /ingest/tail`: one ingester's live records, for a `/stream`
//! coordinator.
//!
//! The answer is frames (`sluice_query::frames`) that never end: records
//! frames with the matching records of each batch the ingester writes, a
//! lagged frame when this reader fell behind the ring, and a progress
//! frame at once and then every [`MARK_EVERY`] carrying the ingester's
//! clock, so the coordinator's reorder window need not wait for a quiet
//! ingester. Filtering happens here, so only matches cross the network.

use std::time::Duration;

use axum::{
    body::Body,
    extract::{Query as QueryParamsExtractor, State},
    http::{StatusCode, header},
    response::Response,
};
use bytes::Bytes;
use sluice_ingest::tail::TailItem;
use sluice_query::{Matcher, frames::FrameWriter};
use sluice_record::Ulid;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::StreamParams;
use crate::{ApiState, error, query::FRAMES_CONTENT_TYPE};

/// How often a tail answer carries the ingester's clock.
pub(crate) const MARK_EVERY: Duration = Duration::from_millis(100);
/// Frames waiting for the coordinator to read them; past this, the ring
/// reader stops reading and may lag.
const FRAMES_IN_FLIGHT: usize = 8;

/// `GET /ingest/tail?q&regex&i&topic`.
pub(crate) async fn tail(
    State(state): State<ApiState>,
    QueryParamsExtractor(params): QueryParamsExtractor<StreamParams>,
) -> Response {
    let Some(log) = state.ingest.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "this node has no ingest role: tail an ingest node",
        );
    };
    let matcher = match Matcher::new(params.q.as_deref().unwrap_or(""), params.regex, params.i) {
        Ok(m) => m,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let topic = params.topic.clone().map(String::into_bytes);
    let mut reader = log.tail().subscribe();
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(FRAMES_IN_FLIGHT);
    tokio::spawn(async move {
        let mut writer = FrameWriter::new();
        let mut marks = tokio::time::interval(MARK_EVERY);
        marks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let out = tokio::select! {
                item = reader.next() => match item {
                    TailItem::Batch(batch) => {
                        let mut out = Vec::new();
                        for record in batch.records() {
                            if topic.as_deref().is_some_and(|t| t != record.topic)
                                || !matcher.is_match(record.payload)
                            {
                                continue;
                            }
                            match writer.push(&record) {
                                Ok(Some(full)) => out.push(full),
                                Ok(None) => {}
                                // A record too large for a frame cannot be
                                // in a batch; skip it rather than stop.
                                Err(e) => tracing::warn!(error = %e, "tail record skipped"),
                            }
                        }
                        out.extend(writer.flush());
                        out
                    }
                    TailItem::Lagged(missed) => vec![writer.lagged(missed)],
                },
                _ = marks.tick() => {
                    vec![writer.progress(Ulid::from_parts(sluice_query::time::now_ms(), 0))]
                }
                _ = tx.closed() => return,
            };
            for bytes in out {
                if tx.send(Ok(bytes)).await.is_err() {
                    return;
                }
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, FRAMES_CONTENT_TYPE)
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .expect("static headers are valid")
}
