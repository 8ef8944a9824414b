//! The HTTP API of a sluice node.
//!
//! ```text
//! GET  /health                 200 while the process runs
//! GET  /ready                  200 once listeners and storage are open, else 503
//! GET  /metrics                Prometheus text format
//! POST /ingest/next            lend a flushed segment   (ingest role; see sluice_store::consumer)
//! GET  /ingest/read?id=        a lent segment's bytes
//! POST /ingest/commit?id=      the store has it
//! POST /ingest/failed?id=      lend it again
//! PUT  /store/replicate?batch= receive a replica of another store's batch file (store
//!                              role; see `replicate`): 201 durable, 200 held already
//! GET  /store/manifest?since=  the batches this store holds, from a cursor (see `repair`)
//! POST /store/repair/copy?...  copy an id range of this store to named stores
//! GET  /query?...              stream matching records from the whole cluster (see
//!                              [`query`] and `coordinate`); `scope=local`: this node's
//!                              store and ingest segments only; 503 + Retry-After when
//!                              too many queries run and wait
//! HEAD /query?...              the plan only, in X-Sluice-* headers
//! GET  /stream?...             live records from every ingester in the view (see `stream`)
//! GET  /ingest/tail?...        this ingester's live records, framed (for `/stream`)
//! GET  /histogram?...          matching records per time bucket, cluster-wide (see `counts`)
//! GET  /topics?from=&to=       records per topic, cluster-wide (see `counts`)
//! GET  /cluster                the membership view (see [`cluster`])
//! POST /cluster/forget?node=   drop a dead node from the view
//! POST /loki/api/v1/push       Loki push; GET|HEAD /, POST|PUT [/<index>]/_bulk and the
//!                              Elasticsearch probes (ingest role; see [`push`])
//! GET  /ui/                    the web UI, embedded in the binary (see `ui`); /ui → /ui/
//! GET  /loki/api/v1/...        the Loki read API: query_range, query, labels, series,
//!                              index/stats, index/volume, tail (see `loki`)
//! ```
//!
//! Handlers stay short on the async runtime: file I/O (the lending
//! endpoints' renames and reads) and scans run on blocking threads, and
//! scans are admitted by [`admission::QueryGate`].
//!
//! Architecture invariant: only this crate serves HTTP, and it alone
//! defines the JSON shapes. Its clients are the CLI, the store's consumer
//! (the lending endpoints) and `sluice-client`'s `Scanner` (`/query`); the
//! storage and query crates know no HTTP.

// Helpers return the response a failed request gets as their error; it is
// built once, on a cold path, so its size does not matter.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod cluster;
mod coordinate;
mod counts;
mod ingest;
mod loki;
mod metrics;
mod nodes;
pub mod push;
pub mod query;
mod repair;
mod replicate;
mod stream;
mod ui;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    middleware,
    response::IntoResponse,
    routing::{get, post, put},
};
use metrics_exporter_prometheus::PrometheusHandle;
use sluice_ingest::IngestLog;
use sluice_store::Store;

use crate::admission::QueryGate;
pub use crate::metrics::describe as describe_metrics;

/// The default address of a node's HTTP API (OK Log's port).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7650";

/// What the API serves. Roles that a node does not run are `None`, and
/// their endpoints answer 404.
#[derive(Clone)]
pub struct ApiState {
    /// The ingest log the lending endpoints (`/ingest/*`) serve.
    pub ingest: Option<Arc<IngestLog>>,
    /// The store `/query` reads.
    pub store: Option<Store>,
    /// The node's worker pool, where queries decode blocks.
    pub workers: Arc<sluice_storage::WorkerPool>,
    /// What `/metrics` renders; `None` answers 404.
    pub metrics: Option<PrometheusHandle>,
    /// Raised once listeners and storage are open: `/ready` answers 200
    /// from then on, 503 before.
    pub ready: Arc<AtomicBool>,
    /// Admits queries: at most so many run, so many more wait.
    pub queries: Arc<QueryGate>,
    /// The cluster: its view, and the client that reaches other nodes.
    pub cluster: Arc<cluster::Cluster>,
    /// The store's repairer, on a store with RF above 1: serves
    /// `POST /store/repair/copy`.
    pub repair: Option<Arc<sluice_store::repair::Repairer>>,
    /// The HTTP push inputs (Loki push, Elasticsearch `_bulk`), on a node
    /// with the ingest role.
    pub push: Option<Arc<push::PushState>>,
}

/// The router with every endpoint and the RED middleware.
pub fn router(state: ApiState) -> Router {
    let push_routes = push::routes(&state);
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .route("/ingest/next", post(ingest::next))
        .route("/ingest/read", get(ingest::read))
        .route("/ingest/commit", post(ingest::commit))
        .route("/ingest/failed", post(ingest::failed))
        .route("/store/replicate", put(replicate::put))
        .route("/store/manifest", get(repair::manifest))
        .route("/store/repair/copy", post(repair::copy))
        .route("/query", get(query::query).head(query::plan))
        .route("/ingest/tail", get(stream::ingester::tail))
        .route("/stream", get(stream::stream))
        .route("/histogram", get(counts::histogram))
        .route("/topics", get(counts::topics))
        .route("/cluster", get(cluster::view))
        .route("/cluster/forget", post(cluster::forget))
        .route("/ui", get(ui::redirect))
        .route("/ui/", get(ui::index))
        .route("/ui/{*path}", get(ui::asset))
        .merge(loki::routes())
        .merge(push_routes)
        .layer(middleware::from_fn(metrics::red))
        .with_state(state)
}

async fn ready(State(state): State<ApiState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn render_metrics(State(state): State<ApiState>) -> impl IntoResponse {
    state.queries.publish();
    metrics::workers(&state.workers);
    if let Some(blocks) = state
        .store
        .as_ref()
        .and_then(|s| s.segment_cache().block_cache())
    {
        metrics::block_cache(&blocks.stats());
    }
    match &state.metrics {
        Some(handle) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response(),
    }
}

/// A plain-text error response: lowercase, says what failed.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> axum::response::Response {
    let mut message = message.into();
    message.push('\n');
    (status, message).into_response()
}
