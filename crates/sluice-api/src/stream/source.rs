//! One ingester's tail, as a `/stream` coordinator reads it: connect to
//! its `/ingest/tail`, pass its frames on, and reconnect with backoff when
//! the connection fails, until the coordinator drops it.

use std::time::Duration;

use futures_util::StreamExt;
use sluice_query::frames::{Frame, FrameDecoder};
use tokio::sync::mpsc;

use super::StreamParams;

/// The first wait before a reconnect; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a source tells the coordinator.
#[derive(Debug)]
pub(crate) enum SourceEvent {
    /// A frame from the ingester (its first one means it is subscribed).
    Frame(String, Frame),
    /// The connection ended or failed; the source reconnects.
    Lost(String, String),
}

/// Read `api`'s tail into `events` until `events` closes.
pub(crate) async fn follow(
    http: reqwest::Client,
    node: String,
    api: String,
    params: StreamParams,
    events: mpsc::Sender<SourceEvent>,
) {
    let mut backoff = FIRST_BACKOFF;
    let query = [
        ("q", params.q.clone().unwrap_or_default()),
        ("regex", params.regex.to_string()),
        ("i", params.i.to_string()),
    ];
    loop {
        let mut request = http.get(format!("http://{api}/ingest/tail")).query(&query);
        if let Some(topic) = &params.topic {
            request = request.query(&[("topic", topic)]);
        }
        let why = match request.send().await {
            Err(e) => format!("{api}: {e}"),
            Ok(response) if !response.status().is_success() => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                format!("{api} answered {status}: {}", body.trim())
            }
            Ok(response) => {
                let mut chunks = response.bytes_stream();
                let mut decoder = FrameDecoder::new();
                let mut got_frame = false;
                let why = 'read: loop {
                    match chunks.next().await {
                        None => break 'read format!("{api} ended its tail"),
                        Some(Err(e)) => break 'read format!("{api}: {e}"),
                        Some(Ok(chunk)) => decoder.push(&chunk),
                    }
                    loop {
                        match decoder.next_frame() {
                            Ok(Some(frame)) => {
                                got_frame = true;
                                if events
                                    .send(SourceEvent::Frame(node.clone(), frame))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => break 'read format!("{api}: {e}"),
                        }
                    }
                };
                if got_frame {
                    backoff = FIRST_BACKOFF;
                }
                why
            }
        };
        if events
            .send(SourceEvent::Lost(node.clone(), why))
            .await
            .is_err()
        {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = events.closed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
