//! `GET /loki/api/v1/tail`: Loki's WebSocket live tail over sluice's own
//! (`/stream`: every live ingester, the reorder window, no gap and no
//! duplicate at the seam with the history).
//!
//! Parameters: `query` (a log query), `limit` (default 100: the newest
//! lines of `[start, now)` sent first), `start` (default an hour ago),
//! `delay_for` (seconds, at most 5: the reorder window). A bad parameter
//! is a 400 before the upgrade. Then each batch of matching lines is one
//! text message `{"streams":[{"stream":{…},"values":[["<ns>","line"]]}]}`
//! (oldest first), a Ping goes out every second, a client's Close ends
//! it, and a failure closes with 1011 and the reason.
//!
//! Records are matched here, not by the ingesters: the selector is
//! evaluated once per topic (remembered, up to [`TOPIC_CACHE`] topics), the
//! line filters per line.

use std::{collections::HashMap, time::Duration};

use axum::{
    body::Bytes,
    extract::{
        Query as QueryExtractor, RawQuery, State,
        ws::{
            CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
        },
    },
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sluice_query::{
    Matcher,
    frames::{Frame, FrameDecoder},
    logql::{
        Expr,
        select::{Selector, line_matcher},
    },
};
use sluice_record::{Record, Ulid};

use super::{
    Form, bad_query,
    params::{now_ns, parse_time_ns},
    read::{MAX_LIMIT, labels_json, log_params, ns_to_ms},
    run_query, select_topics,
};
use crate::{ApiState, query::QueryParams, stream::StreamParams};

/// Topics whose verdict is remembered.
const TOPIC_CACHE: usize = 10_000;
/// The longest `delay_for`, seconds (Loki's limit).
const MAX_DELAY_FOR_S: u64 = 5;
/// How often a Ping goes out.
const PING_EVERY: Duration = Duration::from_secs(1);

/// What a tail matches.
struct Filter {
    selector: Selector,
    matcher: Matcher,
    topics: HashMap<Vec<u8>, bool>,
}

impl Filter {
    fn keeps(&mut self, record: &Record<'_>) -> bool {
        let topic_ok = match self.topics.get(record.topic) {
            Some(ok) => *ok,
            None => {
                if self.topics.len() >= TOPIC_CACHE {
                    self.topics.clear();
                }
                let ok = self.selector.matches_topic(record.topic);
                self.topics.insert(record.topic.to_vec(), ok);
                ok
            }
        };
        topic_ok && self.matcher.is_match(record.payload)
    }
}

/// `GET /loki/api/v1/tail`.
pub(crate) async fn tail(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let form = match Form::read(raw.as_deref(), &headers, b"") {
        Ok(form) => form,
        Err(response) => return response,
    };
    let log = match super::read::parse_query(&form) {
        Ok(Expr::Log(log)) => log,
        Ok(Expr::Metric(_)) => return bad_query("tail takes a log query, not a metric query"),
        Err(response) => return response,
    };
    let limit = match form.limit(MAX_LIMIT) {
        Ok(limit) => limit,
        Err(response) => return response,
    };
    let start = match form.get("start").map(parse_time_ns) {
        None => now_ns().saturating_sub(3_600 * 1_000_000_000),
        Some(Ok(ns)) => ns,
        Some(Err(message)) => return bad_query(format!("start: {message}")),
    };
    let delay_for = match form.get("delay_for").map(str::parse::<u64>) {
        None => 0,
        Some(Ok(s)) if s <= MAX_DELAY_FOR_S => s,
        _ => {
            return bad_query(format!(
                "delay_for can't be greater than {MAX_DELAY_FOR_S} seconds"
            ));
        }
    };
    let (selector, matcher) = match (Selector::new(&log.selector), line_matcher(&log.pipeline)) {
        (Ok(s), Ok(m)) => (s, m),
        (Err(e), _) => return bad_query(e),
        (_, Err(e)) => return bad_query(e),
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let filter = Filter {
        selector,
        matcher,
        topics: HashMap::new(),
    };
    upgrade.on_upgrade(move |socket| async move {
        let mut socket = socket;
        let ended = follow(&state, &mut socket, &log, filter, (start, limit, delay_for)).await;
        if let Err(reason) = ended {
            tracing::debug!(%reason, "loki tail ended");
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: 1011,
                    reason: reason.chars().take(120).collect::<String>().into(),
                })))
                .await;
        }
    })
}

/// One message of entries, oldest first.
fn message(entries: &[(Vec<u8>, u64, String)]) -> Message {
    let mut streams: Vec<(Vec<u8>, Vec<Value>)> = Vec::new();
    for (topic, ms, line) in entries {
        let value = json!([(u128::from(*ms) * 1_000_000).to_string(), line]);
        match streams.iter_mut().find(|(t, _)| t == topic) {
            Some((_, values)) => values.push(value),
            None => streams.push((topic.clone(), vec![value])),
        }
    }
    let streams: Vec<Value> = streams
        .into_iter()
        .map(|(topic, values)| json!({"stream": labels_json(&topic), "values": values}))
        .collect();
    Message::Text(json!({ "streams": streams }).to_string().into())
}

/// Send the catch-up, then follow the live tail until the client goes or
/// something fails (the reason).
async fn follow(
    state: &ApiState,
    socket: &mut WebSocket,
    log: &sluice_query::logql::LogExpr,
    mut filter: Filter,
    (start, limit, delay_for): (u128, u64, u64),
) -> Result<(), String> {
    let now_ms = ns_to_ms(now_ns());
    // The catch-up reads up to the last whole ms; the tail starts after it.
    let seam = now_ms.saturating_sub(1);
    let from_ms = ns_to_ms(start);
    let mut catch_up = Vec::new();
    if from_ms <= seam {
        let topics = select_topics(state, from_ms, seam, &filter.selector)
            .await
            .map_err(|_| "the catch-up's topic listing failed".to_string())?;
        if !topics.is_empty() {
            let params = QueryParams {
                from: Some(from_ms.to_string()),
                to: Some(seam.to_string()),
                limit: Some(limit),
                direction: Some("backward".into()),
                format: Some("frames".into()),
                ..log_params(log, &topics)
            };
            run_query(state, params, |r| {
                catch_up.push((
                    r.topic.to_vec(),
                    r.time_ms(),
                    String::from_utf8_lossy(r.payload).into_owned(),
                ));
                true
            })
            .await
            .map_err(|_| "the catch-up query failed".to_string())?;
        }
    }
    catch_up.reverse();
    if !catch_up.is_empty() {
        socket
            .send(message(&catch_up))
            .await
            .map_err(|e| e.to_string())?;
    }
    let after = Ulid::from_parts(seam, u128::MAX);
    let params = StreamParams {
        format: Some("frames".into()),
        after: Some(after.to_string()),
        window: (delay_for > 0).then(|| format!("{delay_for}s")),
        ..StreamParams::default()
    };
    let response = crate::stream::stream(State(state.clone()), QueryExtractor(params)).await;
    if !response.status().is_success() {
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap_or_default();
        return Err(String::from_utf8_lossy(&body).trim().to_string());
    }
    let mut chunks = response.into_body().into_data_stream();
    let mut decoder = FrameDecoder::new();
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            chunk = chunks.next() => {
                let chunk: Bytes = match chunk {
                    Some(Ok(chunk)) => chunk,
                    Some(Err(e)) => return Err(format!("the live tail failed: {e}")),
                    None => return Err("the live tail ended".into()),
                };
                decoder.push(&chunk);
                let mut entries = Vec::new();
                loop {
                    match decoder.next_frame() {
                        Ok(Some(Frame::Records(records))) => {
                            for record in records.iter() {
                                if filter.keeps(&record) {
                                    entries.push((
                                        record.topic.to_vec(),
                                        record.time_ms(),
                                        String::from_utf8_lossy(record.payload).into_owned(),
                                    ));
                                }
                            }
                        }
                        Ok(Some(Frame::Error(message))) => return Err(message),
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => return Err(format!("the live tail's frames are broken: {e}")),
                    }
                }
                if !entries.is_empty() {
                    socket.send(message(&entries)).await.map_err(|e| e.to_string())?;
                }
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    return Ok(());
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
}
