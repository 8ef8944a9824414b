//! The HTTP push inputs an ingest node serves on its API port, so shippers
//! write to sluice unchanged:
//!
//! ```text
//! POST /loki/api/v1/push        Loki push: JSON or protobuf+snappy; 204, 400, 413, 429, 503
//! GET|HEAD /                    Elasticsearch: the cluster info Beats and Vector probe
//! GET  /_cluster/health         Elasticsearch: green
//! GET  /_license                Elasticsearch: an active basic license
//! *    /_ilm/… /_index_template/… /_ingest/… /_nodes…   200 {}
//! POST|PUT [/<index>]/_bulk     Elasticsearch bulk: 200 with one item per action
//! ```
//!
//! Each input is on only on a node with the ingest role and can be turned
//! off (`--no-loki-push`, `--no-elasticsearch`); otherwise its paths answer
//! 404. Every Elasticsearch response carries `X-Elastic-Product:
//! Elasticsearch` (Elastic's clients refuse a 2xx without it).
//!
//! A request goes: body length checked against the limit from its
//! `Content-Length` (413 without reading); a decode slot taken
//! ([`PushConfig::max_in_flight`], waited for at most
//! [`SLOT_WAIT`], else 429 with `Retry-After`); the body read within the
//! limit; decoded ([`sluice_push`]; on the request's task up to
//! 256 KiB, else on a blocking thread) into a [`PushBatch`] from the
//! request's connection; written by the node's [`PushWriter`] into that
//! connection's ingest segment and answered once written (a failed write
//! or a stopping node: 503). Shippers retry 429 and 5xx and
//! drop other 4xx, so only what cannot succeed gets a 4xx. `X-Scope-OrgID`
//! is accepted and ignored: sluice has one tenant.

mod elastic;
mod loki;
mod metrics;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::{Body, Bytes},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, get, post},
};
use sluice_ingest::{PushBatch, PushProtocol, PushWriter, Refused};
use sluice_push::{Limits, PushError, PushStats, elastic::BulkConfig};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use self::metrics::describe as describe_metrics;
use crate::ApiState;

/// How long a request waits for a decode slot before it is answered 429.
pub const SLOT_WAIT: Duration = Duration::from_secs(2);
/// The default number of push requests decoded at once
/// (`--push-max-in-flight`): each holds at most a body and its inflated
/// form in memory.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 8;

/// What the push inputs accept.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// Serve `POST /loki/api/v1/push`.
    pub loki: bool,
    /// Serve the Elasticsearch probes and `_bulk`.
    pub elasticsearch: bool,
    /// Limits per request.
    pub limits: Limits,
    /// Which `_bulk` document fields are the line and the time.
    pub bulk: BulkConfig,
    /// Requests decoded at once; more wait up to [`SLOT_WAIT`], then get 429.
    pub max_in_flight: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            loki: true,
            elasticsearch: true,
            limits: Limits::default(),
            bulk: BulkConfig::default(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// The push inputs of an ingest node: their settings and the writer they
/// share.
pub struct PushState {
    config: PushConfig,
    writer: Arc<PushWriter>,
    slots: Arc<Semaphore>,
}

impl PushState {
    /// Serve `config`'s inputs, writing through `writer`.
    pub fn new(config: PushConfig, writer: Arc<PushWriter>) -> PushState {
        let slots = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
        PushState {
            config,
            writer,
            slots,
        }
    }
}

/// The push routes `state` turns on (none without the ingest role).
pub(crate) fn routes(state: &ApiState) -> Router<ApiState> {
    let mut router = Router::new();
    let Some(push) = &state.push else {
        return router;
    };
    if push.config.loki {
        router = router.route("/loki/api/v1/push", post(loki::push));
    }
    if push.config.elasticsearch {
        let es = Router::new()
            .route("/", get(elastic::info))
            .route("/_cluster/health", get(elastic::health))
            .route("/_license", get(elastic::license))
            .route("/_bulk", post(elastic::bulk).put(elastic::bulk))
            .route(
                "/{index}/_bulk",
                post(elastic::bulk_index).put(elastic::bulk_index),
            );
        let es = ["/_ilm", "/_index_template", "/_ingest", "/_nodes"]
            .into_iter()
            .fold(es, |es, path| {
                es.route(path, any(elastic::empty))
                    .route(&format!("{path}/{{*rest}}"), any(elastic::empty))
            })
            .layer(axum::middleware::map_response(elastic::product_header));
        router = router.merge(es);
    }
    router
}

/// Why a request got no 2xx: its status and text.
pub(crate) struct Failure {
    status: StatusCode,
    message: String,
    /// Seconds a shipper should wait (429, 503).
    retry_after: Option<u64>,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn retry(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            retry_after: Some(1),
            ..Failure::new(status, message)
        }
    }

    fn from_push(err: &PushError) -> Failure {
        let status = if err.too_large() {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        Failure::new(status, err.to_string())
    }

    fn from_refused(err: &Refused) -> Failure {
        match err {
            Refused::Closed | Refused::Write(_) => {
                Failure::retry(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
            }
        }
    }

    /// As plain text (Loki's errors are).
    fn text(self) -> Response {
        let mut response = crate::error(self.status, self.message);
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// A request admitted to decoding: its slot, its body and where it came
/// from.
struct Admitted {
    _slot: OwnedSemaphorePermit,
    push: Arc<PushState>,
    body: Bytes,
    /// A key of the request's connection (its peer address), when the
    /// server knows it: a shipper's requests share an id generator and an
    /// ingest segment (see [`sluice_ingest::PushWriter::batch`]).
    source: Option<u64>,
}

/// The request's connection, when the server was started with
/// connection info (the node is; a router in a test may not be).
pub(crate) type Peer = Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

/// A key for the connection `peer` names.
fn source_key(peer: &Peer) -> Option<u64> {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    peer.as_ref()
        .map(|axum::Extension(axum::extract::ConnectInfo(addr))| {
            BuildHasherDefault::<DefaultHasher>::default().hash_one(addr)
        })
}

/// Check the declared length, take a decode slot, and read the body
/// within the limit.
async fn admit(
    state: &ApiState,
    protocol: PushProtocol,
    peer: &Peer,
    headers: &HeaderMap,
    body: Body,
) -> Result<Admitted, Failure> {
    let Some(push) = state.push.clone() else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "this node does not run the ingest role",
        ));
    };
    let limit = push.config.limits.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > limit as u64
    {
        metrics::refused(protocol, "body_too_large");
        return Err(Failure::from_push(&PushError::BodyTooLarge {
            len: usize::try_from(len).unwrap_or(usize::MAX),
            limit,
        }));
    }
    let slot = match tokio::time::timeout(SLOT_WAIT, push.slots.clone().acquire_owned()).await {
        Ok(Ok(slot)) => slot,
        _ => {
            metrics::refused(protocol, "busy");
            return Err(Failure::retry(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{} push requests are being decoded; retry shortly (--push-max-in-flight)",
                    push.config.max_in_flight
                ),
            ));
        }
    };
    let body = read_body(body, limit, declared)
        .await
        .inspect_err(|failure| {
            if failure.status == StatusCode::PAYLOAD_TOO_LARGE {
                metrics::refused(protocol, "body_too_large");
            }
        })?;
    Ok(Admitted {
        _slot: slot,
        push,
        body,
        source: source_key(peer),
    })
}

/// The body, refused once it grows past `limit` (a chunked body has no
/// declared length to check first).
async fn read_body(body: Body, limit: usize, declared: Option<u64>) -> Result<Bytes, Failure> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut first: Option<Bytes> = None;
    let mut more: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {err}"),
            )
        })?;
        let held = first.as_ref().map_or(0, Bytes::len) + more.len();
        if held + chunk.len() > limit {
            return Err(Failure::from_push(&PushError::BodyTooLarge {
                len: held + chunk.len(),
                limit,
            }));
        }
        // One chunk (the usual case with a Content-Length) is kept as it
        // came; more are gathered into one buffer sized from the header.
        match first.take() {
            None if more.is_empty() => first = Some(chunk),
            held_first => {
                if more.is_empty() {
                    let hint = declared.map_or(0, |d| d as usize).min(limit);
                    more.reserve(hint);
                }
                if let Some(f) = held_first {
                    more.extend_from_slice(&f);
                }
                more.extend_from_slice(&chunk);
            }
        }
    }
    Ok(match first {
        Some(only) => only,
        None => Bytes::from(more),
    })
}

/// Bodies up to this many bytes (as received) are decoded on the
/// request's task rather than on the blocking pool.
const INLINE_DECODE_BYTES: usize = 256 << 10;

/// Run `decode` (on a blocking thread for a large body): it fills a
/// [`PushBatch`] of `protocol` from the request's `source`.
async fn decode_on_pool<T: Send + 'static>(
    admitted: &Admitted,
    protocol: PushProtocol,
    decode: impl FnOnce(&mut PushBatch) -> Result<T, PushError> + Send + 'static,
) -> Result<(PushBatch, T), Failure> {
    let received = admitted.body.len();
    let mut batch = admitted
        .push
        .writer
        .batch(protocol, received as u64, admitted.source);
    let run = move || decode(&mut batch).map(|out| (batch, out));
    // A shipper's usual request (a few hundred KiB, decoded in well under
    // a millisecond) is decoded on the request's own task: a hand-off to
    // the blocking pool and back cost more than the decoding. Larger
    // bodies go to the pool, so no runtime thread is held long.
    let decoded = if received <= INLINE_DECODE_BYTES {
        Ok(run())
    } else {
        tokio::task::spawn_blocking(run).await
    };
    match decoded {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(err)) => {
            metrics::refused(protocol, err.kind());
            tracing::debug!(protocol = protocol.name(), error = %err, "push refused");
            Err(Failure::from_push(&err))
        }
        Err(err) => Err(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("decode task failed: {err}"),
        )),
    }
}

/// Batches up to this many bytes of records are written on the request's
/// own task; larger ones in `block_in_place`, so a long write does not
/// hold a runtime thread's other tasks.
const INLINE_WRITE_BYTES: usize = 1 << 20;

/// Write `batch` to its ingest segment (see [`PushWriter::write`]).
///
/// A shipper's usual request is written on its own task: the write goes to
/// the page cache and takes well under a millisecond, and the hand-off to
/// a writer thread and back, or through `block_in_place`, cost more than
/// the write (`bench/bench.py loki-push`: 0.57x of the batch protocol with
/// `block_in_place`, 0.66x inline).
async fn write(push: &PushState, batch: PushBatch) -> Result<(), Failure> {
    let writer = &push.writer;
    let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread;
    // `block_in_place` needs a multi-threaded runtime (the node's is; a
    // test's may not be).
    let written = if batch.bytes() <= INLINE_WRITE_BYTES || !multi_thread {
        writer.write(batch)
    } else {
        tokio::task::block_in_place(|| writer.write(batch))
    };
    written.map_err(|err| Failure::from_refused(&err))
}

/// Count what a decoded request held.
fn count(protocol: PushProtocol, stats: &PushStats) {
    metrics::decoded(protocol, stats);
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        self.text()
    }
}
