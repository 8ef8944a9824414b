//! Live tail: `GET /stream` on any node.
//!
//! Parameters: `q`, `regex`, `i`, `topic` as on `/query`; `format` =
//! `raw` (the default: `<ulid> <topic> <payload>` lines), `json` (one
//! object per line) or `frames` (what `sluice stream` reads); `after=ULID`
//! to first read everything after that id; `window` (a duration, default
//! [`DEFAULT_WINDOW`]) for the reorder window.
//!
//! The coordinator subscribes to every live ingester in the view
//! (`/ingest/tail`, [`source`]), re-reads the view every second and
//! reconnects lost sources with backoff. Records go through a reorder
//! window ([`window`]) that puts them in id order and drops ids already
//! shown. A reader that fell behind an ingester's ring gets a marker:
//! `# lagged N` (raw), `{"lagged":N}` (json) or a lagged frame.
//!
//! With `after`, the sources are subscribed first and then the cluster
//! query `after..now` runs; its records are shown, then the tail's, minus
//! every id the query showed: no gap and no duplicate at the seam.
//!
//! Memory is bounded: the window holds at most
//! [`window::WINDOW_BYTES`] (while the history is shown, a full window
//! stops taking records and the ingesters' rings take the lag), each
//! source's frames wait in a small channel, the ids shown are remembered
//! up to [`window::SEEN_CAPACITY`], and at most [`MAX_STREAM_CLIENTS`]
//! clients are served at once.

pub(crate) mod ingester;
mod source;
pub(crate) mod window;

use std::{
    collections::HashMap,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{Query as QueryParamsExtractor, State},
    http::{StatusCode, header},
    response::Response,
};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use sluice_cluster::Health;
use sluice_query::{
    Matcher,
    frames::{Frame, FrameDecoder, FrameWriter},
};
use sluice_record::{Record, Ulid};
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_stream::wrappers::ReceiverStream;

use self::{source::SourceEvent, window::ReorderWindow};
use crate::{
    ApiState, error,
    query::{FRAMES_CONTENT_TYPE, QueryParams, write_json, write_raw},
};

/// The reorder window's default length.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(250);
/// The longest reorder window a client may ask for.
const MAX_WINDOW: Duration = Duration::from_secs(10);
/// How often the view is read again for ingesters that came or went.
const VIEW_EVERY: Duration = Duration::from_secs(1);
/// A `json` or `frames` stream says it is alive this often when idle.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long `after` waits for every source to subscribe before it reads
/// the history anyway (a source that never answers is not waited for).
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(5);
/// Source frames waiting for the coordinator.
const SOURCE_FRAMES: usize = 64;
/// Chunks in flight to the client.
const CHUNKS_IN_FLIGHT: usize = 8;
/// Output is sent when it reaches this size or nothing more is due.
const CHUNK_BYTES: usize = 64 << 10;

/// `/stream` clients served at once; more are refused with 503. Each
/// holds at most a full window and its set of ids shown (about 60 MiB at
/// worst).
pub const MAX_STREAM_CLIENTS: usize = 64;
static STREAM_CLIENTS: AtomicUsize = AtomicUsize::new(0);

/// Counts a `/stream` client while it is served.
struct ClientSlot;

impl ClientSlot {
    fn take() -> Option<ClientSlot> {
        let taken = STREAM_CLIENTS.fetch_add(1, Ordering::Relaxed);
        if taken >= MAX_STREAM_CLIENTS {
            STREAM_CLIENTS.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        crate::metrics::stream_clients(1);
        Some(ClientSlot)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        STREAM_CLIENTS.fetch_sub(1, Ordering::Relaxed);
        crate::metrics::stream_clients(-1);
    }
}

/// The query string of `/stream` and `/ingest/tail`.
#[derive(Debug, Clone, Deserialize, Default)]
pub(crate) struct StreamParams {
    pub q: Option<String>,
    #[serde(default)]
    pub regex: bool,
    #[serde(default)]
    pub i: bool,
    pub topic: Option<String>,
    pub format: Option<String>,
    pub after: Option<String>,
    pub window: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Raw,
    Json,
    Frames,
}

/// `GET /stream`.
pub(crate) async fn stream(
    State(state): State<ApiState>,
    QueryParamsExtractor(params): QueryParamsExtractor<StreamParams>,
) -> Response {
    let format = match params.format.as_deref() {
        None | Some("raw") => Format::Raw,
        Some("json") => Format::Json,
        Some("frames") => Format::Frames,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown format {other:?}: use raw, json or frames"),
            );
        }
    };
    if let Err(e) = Matcher::new(params.q.as_deref().unwrap_or(""), params.regex, params.i) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    let window = match params.window.as_deref() {
        None | Some("") => DEFAULT_WINDOW,
        Some(text) => match humantime::parse_duration(text) {
            Ok(w) if w <= MAX_WINDOW => w,
            Ok(w) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("window {w:?} is longer than the limit of {MAX_WINDOW:?}"),
                );
            }
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("window {text:?} is not a duration like 250ms: {e}"),
                );
            }
        },
    };
    let after = match params.after.as_deref() {
        None | Some("") => None,
        Some(text) => match Ulid::from_string(text) {
            Ok(id) => Some(id),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("after: {text:?} is not a ULID; pass the id of the last record shown"),
                );
            }
        },
    };
    let Some(slot) = ClientSlot::take() else {
        let mut response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "this node already serves {MAX_STREAM_CLIENTS} live tails; try another node or later"
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        return response;
    };
    let (events_tx, events) = mpsc::channel(SOURCE_FRAMES);
    let mut tail = Tail {
        state: state.clone(),
        params: params.clone(),
        format,
        window: ReorderWindow::new(window),
        sources: HashMap::new(),
        events_tx,
        events,
        writer: FrameWriter::new(),
        out: Vec::new(),
        last_sent: Instant::now(),
    };
    tail.refresh_sources();
    // With `after`, the history's answer starts before the response does,
    // so a query that cannot run is a plain error status.
    let history = match after {
        None => None,
        Some(after) => {
            tail.wait_subscribed().await;
            match history(&state, &params, after).await {
                Ok(body) => Some(body),
                Err(response) => return response,
            }
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_IN_FLIGHT);
    tokio::spawn(async move {
        tail.run(history, tx).await;
        drop(slot);
    });
    let content_type = match format {
        Format::Raw => "text/plain; charset=utf-8",
        Format::Json => "application/x-ndjson",
        Format::Frames => FRAMES_CONTENT_TYPE,
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .expect("static headers are valid")
}

/// Start the cluster query `after..now` and return its framed body.
async fn history(state: &ApiState, params: &StreamParams, after: Ulid) -> Result<Body, Response> {
    let now = sluice_query::time::now_ms();
    let query = QueryParams {
        // From the cursor's millisecond to well past now: ids a little
        // ahead of this node's clock are still in it.
        from: Some(after.timestamp_ms().to_string()),
        to: Some((now + 3_600_000).to_string()),
        q: params.q.clone(),
        regex: params.regex,
        i: params.i,
        topic: params.topic.clone(),
        after: Some(after.to_string()),
        format: Some("frames".to_string()),
        ..QueryParams::default()
    };
    let response = crate::query::query(State(state.clone()), QueryParamsExtractor(query)).await;
    if !response.status().is_success() {
        return Err(response);
    }
    Ok(response.into_body())
}

struct Source {
    task: JoinHandle<()>,
    /// It sent a frame since it last (re)connected.
    subscribed: bool,
}

/// Append `record` to `out` in `format`.
fn render(format: Format, writer: &mut FrameWriter, out: &mut Vec<u8>, record: &Record<'_>) {
    match format {
        Format::Raw => write_raw(out, record),
        Format::Json => write_json(out, record),
        Format::Frames => {
            if let Ok(Some(bytes)) = writer.push(record) {
                out.extend_from_slice(&bytes);
            }
        }
    }
}

/// One `/stream` client's tail.
struct Tail {
    state: ApiState,
    params: StreamParams,
    format: Format,
    window: ReorderWindow,
    sources: HashMap<String, Source>,
    events_tx: mpsc::Sender<SourceEvent>,
    events: mpsc::Receiver<SourceEvent>,
    writer: FrameWriter,
    out: Vec<u8>,
    last_sent: Instant,
}

impl Drop for Tail {
    fn drop(&mut self) {
        for source in self.sources.values() {
            source.task.abort();
        }
    }
}

impl Tail {
    /// Subscribe to every live ingester in the view not yet followed, and
    /// stop following those that left it.
    fn refresh_sources(&mut self) {
        let view = self.state.cluster.membership.view();
        let mut wanted = HashMap::new();
        for node in &view.nodes {
            let Some(roles) = node.roles else { continue };
            let usable = node.live
                && roles.ingest
                && matches!(
                    node.health,
                    Some(Health::Ready | Health::Draining | Health::Readonly)
                );
            if let (true, Some(api)) = (usable, &node.api) {
                wanted.insert(node.id.clone(), api.to_string());
            }
        }
        self.sources.retain(|id, source| {
            let keep = wanted.contains_key(id);
            if !keep {
                source.task.abort();
            }
            keep
        });
        let gone: Vec<String> = self
            .window_sources()
            .into_iter()
            .filter(|id| !wanted.contains_key(id))
            .collect();
        for id in gone {
            self.window.disconnect(&id);
        }
        for (id, api) in wanted {
            if self.sources.contains_key(&id) {
                continue;
            }
            let task = tokio::spawn(source::follow(
                self.state.cluster.http.clone(),
                id.clone(),
                api,
                self.params.clone(),
                self.events_tx.clone(),
            ));
            self.sources.insert(
                id,
                Source {
                    task,
                    subscribed: false,
                },
            );
        }
    }

    fn window_sources(&self) -> Vec<String> {
        self.sources.keys().cloned().collect()
    }

    /// Wait (a bounded time) until every source has subscribed, keeping
    /// what they send meanwhile.
    async fn wait_subscribed(&mut self) {
        let deadline = tokio::time::Instant::now() + SUBSCRIBE_WAIT;
        while self.sources.values().any(|s| !s.subscribed) {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.on_event(event),
                Ok(None) | Err(_) => break,
            }
        }
    }

    fn on_event(&mut self, event: SourceEvent) {
        match event {
            SourceEvent::Frame(node, frame) => {
                let Some(source) = self.sources.get_mut(&node) else {
                    return;
                };
                if !source.subscribed {
                    source.subscribed = true;
                    self.window.connect(&node);
                }
                let now = Instant::now();
                match frame {
                    Frame::Records(records) => {
                        for record in records.iter() {
                            self.window.push(&node, record.to_owned_record(), now);
                        }
                    }
                    Frame::Progress(mark) => self.window.mark(&node, mark),
                    Frame::Lagged(missed) => self.lagged(missed),
                    Frame::Stats(_) | Frame::Error(_) => {}
                }
            }
            SourceEvent::Lost(node, why) => {
                tracing::debug!(node = %node, why = %why, "tail source lost; reconnecting");
                if let Some(source) = self.sources.get_mut(&node) {
                    source.subscribed = false;
                }
                self.window.disconnect(&node);
            }
        }
    }

    fn lagged(&mut self, missed: u64) {
        match self.format {
            Format::Raw => self
                .out
                .extend_from_slice(format!("# lagged {missed}\n").as_bytes()),
            Format::Json => self
                .out
                .extend_from_slice(format!("{{\"lagged\":{missed}}}\n").as_bytes()),
            Format::Frames => {
                let bytes = self.writer.lagged(missed);
                self.out.extend_from_slice(&bytes);
            }
        }
    }

    fn show(&mut self, record: &Record<'_>) {
        render(self.format, &mut self.writer, &mut self.out, record);
    }

    /// Move what is due out of the window, and send what is written.
    async fn flush(&mut self, tx: &mpsc::Sender<Result<Bytes, std::io::Error>>) -> Result<(), ()> {
        let (format, writer, out) = (self.format, &mut self.writer, &mut self.out);
        self.window.release(Instant::now(), |record| {
            render(format, writer, out, &record.as_record())
        });
        if self.format == Format::Frames
            && let Some(bytes) = self.writer.flush()
        {
            self.out.extend_from_slice(&bytes);
        }
        self.send(tx).await
    }

    async fn send(&mut self, tx: &mpsc::Sender<Result<Bytes, std::io::Error>>) -> Result<(), ()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.out));
        self.last_sent = Instant::now();
        tx.send(Ok(chunk)).await.map_err(|_| ())
    }

    fn heartbeat(&mut self) {
        match self.format {
            Format::Raw => {}
            Format::Json => {
                let now = sluice_query::time::format_ms(sluice_query::time::now_ms());
                self.out
                    .extend_from_slice(format!("{{\"heartbeat\":\"{now}\"}}\n").as_bytes());
            }
            Format::Frames => {
                let mark = Ulid::from_parts(sluice_query::time::now_ms(), 0);
                let bytes = self.writer.progress(mark);
                self.out.extend_from_slice(&bytes);
            }
        }
    }

    /// Show the history, then the tail, until the client goes away.
    async fn run(mut self, history: Option<Body>, tx: mpsc::Sender<Result<Bytes, std::io::Error>>) {
        if let Some(body) = history
            && self.show_history(body, &tx).await.is_err()
        {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut view = tokio::time::interval(VIEW_EVERY);
        view.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.events.recv() => {
                    let Some(event) = event else { return };
                    self.on_event(event);
                    // Take whatever else is queued before releasing, so a
                    // burst is released (and sent) together.
                    while let Ok(event) = self.events.try_recv() {
                        self.on_event(event);
                        if self.out.len() >= CHUNK_BYTES {
                            break;
                        }
                    }
                }
                _ = tick.tick() => {
                    if self.last_sent.elapsed() >= HEARTBEAT_EVERY {
                        self.heartbeat();
                    }
                }
                _ = view.tick() => self.refresh_sources(),
                _ = tx.closed() => return,
            }
            if self.flush(&tx).await.is_err() {
                return;
            }
        }
    }

    /// Show the query's records (remembering their ids), while the
    /// sources' records wait in the window.
    async fn show_history(
        &mut self,
        body: Body,
        tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    ) -> Result<(), ()> {
        let mut chunks = body.into_data_stream();
        let mut decoder = FrameDecoder::new();
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    tokio::select! {
                        chunk = chunks.next() => match chunk {
                            Some(Ok(chunk)) => decoder.push(&chunk),
                            Some(Err(e)) => {
                                self.history_failed(&format!("reading it failed: {e}"));
                                break;
                            }
                            None => decoder.finish(),
                        },
                        // Keep the sources' frames moving meanwhile, so
                        // their rings do not lag; the window holds them,
                        // up to its limit.
                        event = self.events.recv(), if !self.window.is_full() => {
                            if let Some(event) = event {
                                self.on_event(event);
                            }
                        }
                    }
                    continue;
                }
                Err(e) => {
                    self.history_failed(&e.to_string());
                    break;
                }
            };
            match frame {
                Frame::Records(records) => {
                    for record in records.iter() {
                        self.window.shown(record.id);
                        self.show(&record);
                    }
                    if self.format == Format::Frames
                        && let Some(bytes) = self.writer.flush()
                    {
                        self.out.extend_from_slice(&bytes);
                    }
                    self.send(tx).await?;
                }
                Frame::Progress(_) | Frame::Lagged(_) => {}
                Frame::Stats(stats) => {
                    if stats.get("complete").and_then(|c| c.as_bool()) == Some(false) {
                        let failed = stats
                            .get("nodes_failed")
                            .map(|f| f.to_string())
                            .unwrap_or_default();
                        self.history_failed(&format!("incomplete: nodes failed {failed}"));
                    }
                    break;
                }
                Frame::Error(message) => {
                    self.history_failed(&message);
                    break;
                }
            }
        }
        self.send(tx).await
    }

    /// Say in the stream that the history before the tail is not whole.
    fn history_failed(&mut self, why: &str) {
        tracing::warn!(why, "stream history incomplete");
        match self.format {
            Format::Raw => self
                .out
                .extend_from_slice(format!("# history incomplete: {why}\n").as_bytes()),
            Format::Json => {
                let line = serde_json::json!({ "history_incomplete": why });
                self.out.extend_from_slice(format!("{line}\n").as_bytes());
            }
            Format::Frames => {
                // An error frame would end the stream; the CLI learns it
                // from the node's log instead, and the tail goes on.
            }
        }
    }
}
