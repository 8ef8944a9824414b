//! The pull loop: gather → verify → merge → write → commit, over the
//! ingesters' lending API (`next`, `read`, `commit`, `failed`; OK Log's
//! shape). The protocol, its guarantees and limits are specified in
//! `docs/protocol-lending.md`.
//!
//! One cycle: lend up to `max_gather_segments` / `max_gather_bytes` from the
//! ingesters, take each into `tmp/` (downloaded; in an ingeststore, a hard
//! link to its own ingester's file, see [`LocalIngester`]) and verify every
//! checksum (and sort it if its ids are out of order), adopt each as a batch file when no two
//! overlap or else merge them by id into one, make the result durable, then
//! commit each input. On any failure before the store segments are
//! durable, every input is returned with `failed`. A failed commit leaves
//! the segment pending; it is consumed again after the timeout, and the
//! duplicate ids it brings are removed at query time.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rand::SeedableRng;
use sluice_ingest::IngestLog;
use sluice_record::Ulid;
use sluice_storage::StorageError;

pub mod files;
mod lending;

use self::files::{Downloaded, store_inputs};
use crate::{
    Store,
    lane::{Lease, pick, too_few_stores},
    metrics,
    replicate::{ReplicateError, Replication},
};

/// Bytes of a downloaded segment gathered before each write (see
/// `Consumer::download`).
const DOWNLOAD_WRITE_BYTES: usize = 4 << 20;

/// Why a consume cycle failed. Whatever the cause, the cycle's segments
/// go back to their ingesters (`failed`, or else the pending timeout) and
/// are consumed again later.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// A request to an ingester failed: no connection, a timeout, or a
    /// body cut off.
    #[error("ingester {base}: {what}: {source}")]
    Http {
        /// The ingester's base URL.
        base: String,
        /// The endpoint: `next`, `read`, `commit` or `failed`.
        what: &'static str,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// An ingester answered with a status the protocol does not allow, or
    /// `next` answered with something that is not a ULID.
    #[error("ingester {base}: {what}: unexpected status {status}")]
    Status {
        /// The ingester's base URL.
        base: String,
        /// The endpoint, or what was wrong with its answer.
        what: &'static str,
        /// The HTTP status received.
        status: u16,
    },
    /// This process's own ingester no longer lends the segment (its lease
    /// ran out meanwhile, say).
    #[error("local ingester: segment {id}: {source}")]
    Local {
        /// The segment.
        id: Ulid,
        /// Why the log refused it.
        #[source]
        source: sluice_ingest::LogError,
    },
    /// A download ended before its `Content-Length`.
    #[error("ingester {base}: segment {id}: body ended after {got} of {expected} bytes")]
    ShortBody {
        /// The ingester's base URL.
        base: String,
        /// The segment being read.
        id: Ulid,
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// A download failed its checks (corrupt), or writing the store
    /// segment failed (a full disk, say).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A downloaded segment holds a payload with a newline, which block
    /// files cannot store.
    #[error(
        "segment {path}: record {id} has a newline in its payload, which the record model \
         forbids; the segment is refused (the ingester that wrote it is broken)"
    )]
    NewlineInPayload {
        /// The downloaded file, in the store's `tmp/`.
        path: PathBuf,
        /// The record whose payload holds the newline.
        id: Ulid,
    },
    /// Merging the downloads failed: an input could not be read or held no
    /// record, or a blocking task that verifies or merges them panicked.
    #[error("merge failed: {0}")]
    Merge(String),
    /// A store segment reached fewer than RF−1 other stores: the cycle's
    /// segments go back, and the local copy becomes a harmless duplicate.
    #[error(transparent)]
    Replicate(#[from] ReplicateError),
    /// The cycle held its segments past half their lease (a slow disk or
    /// network): it gave them back rather than race the ingester lending
    /// them again.
    #[error("held lent segments for {held:?}, past half their lease of {lease:?}; gave them back")]
    LeaseLapsed {
        /// How long the first segment was held.
        held: Duration,
        /// The shortest lease among the segments.
        lease: Duration,
    },
}

/// A reason for a lane to lend nothing, logged and published (the gauge
/// `sluice_store_gather_blocked{reason}`) once per change, not per pause.
struct Gate {
    reason: &'static str,
    closed: bool,
}

impl Gate {
    fn new(reason: &'static str) -> Gate {
        Gate {
            reason,
            closed: false,
        }
    }

    /// Close or open the gate; `why` says why it closes. Returns whether it
    /// is closed.
    fn set(&mut self, closed: bool, why: impl FnOnce() -> String) -> bool {
        if closed != self.closed {
            self.closed = closed;
            metrics::gather_blocked(self.reason, closed);
            if closed {
                tracing::warn!(reason = self.reason, "{}", why());
            } else {
                tracing::info!(reason = self.reason, "the lane lends again");
            }
        }
        closed
    }
}

/// Record a written store segment in the store's manifest.
fn note_batch(store: &Store, name: &str, holders: &[String]) {
    match sluice_storage::SegmentMeta::parse(name, 0) {
        Ok(meta) => store.note_batch(&meta, holders),
        Err(err) => {
            tracing::warn!(segment = name, error = %err, "a written segment's name does not parse; not recorded in the manifest")
        }
    }
}

/// One ingester a lane may consume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingester {
    /// The base URL of its API, e.g. `http://127.0.0.1:7650`.
    pub base: String,
    /// How much it has waiting, as a weight for picking it (its gossiped
    /// backlog bucket plus one), so that lanes do not all herd onto one.
    pub weight: u32,
}

/// Where the consumer finds ingesters: a fixed list, or the cluster view,
/// read again before every cycle.
pub trait IngesterSource: Send + Sync {
    /// The live ingesters to consume from now.
    fn ingesters(&self) -> Vec<Ingester>;
}

impl IngesterSource for Vec<String> {
    fn ingesters(&self) -> Vec<Ingester> {
        self.iter()
            .map(|base| Ingester {
                base: base.clone(),
                weight: 1,
            })
            .collect()
    }
}

/// Where the consumer pulls from and how much it gathers per cycle.
#[derive(Clone)]
pub struct ConsumerConfig {
    /// The ingesters, read again before every cycle.
    pub ingesters: Arc<dyn IngesterSource>,
    /// Lanes that consume at once, each one cycle at a time from one
    /// ingester (`--consume-lanes`).
    pub lanes: usize,
    /// The source address of connections to ingesters (`--bind`); `None`:
    /// the system's choice.
    pub local_address: Option<std::net::IpAddr>,
    /// Segments gathered into one store segment at most.
    pub max_gather_segments: usize,
    /// Bytes gathered into one store segment at most (one segment may pass it).
    pub max_gather_bytes: u64,
    /// How long `next` may wait for a segment to be flushed.
    pub poll_wait: Duration,
    /// Pause after a failed cycle.
    pub retry_backoff: Duration,
    /// Replicate each store segment to RF−1 other stores before committing
    /// (`None`: RF 1, commit at once).
    pub replication: Option<Replication>,
    /// The ingester of this same process, if any (`sluice ingeststore`).
    pub local: Option<LocalIngester>,
}

/// The ingester of this same process (`sluice ingeststore`). A segment it
/// lends is taken into `tmp/` as a hard link to its file rather than
/// downloaded: the lending protocol (`next`, `commit`, `failed`) is the
/// same HTTP one a separate store speaks, but the bytes skip the loopback
/// copy, which took half a core or more at 150 MB/s (BENCHMARKS.md,
/// "Design measurements"). A lent segment is sealed, so its file never
/// changes again: the ingester only renames and removes it, and the store
/// only renames its own name or writes a new file. Where no link can be
/// made (the two directories on different filesystems), the segment is
/// downloaded as from any other ingester.
#[derive(Clone)]
pub struct LocalIngester {
    /// The base URL the ingester source names it by, e.g.
    /// `http://127.0.0.1:7650`.
    pub base: String,
    /// Its log.
    pub log: Arc<IngestLog>,
}

/// Segments gathered into one store segment at most.
pub const MAX_GATHER_SEGMENTS: usize = 32;
/// Bytes gathered into one store segment at most: 64 MiB (one segment may
/// pass it).
pub const MAX_GATHER_BYTES: u64 = 64 << 20;
/// How long a `next` may wait for a segment (with one ingester).
pub const POLL_WAIT: Duration = Duration::from_millis(500);
/// The pause after a failed cycle.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// Lanes per store (`--consume-lanes`).
pub const DEFAULT_LANES: usize = 2;
/// The lease assumed when an ingester does not say (an older node).
const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// The header of a `next` reply that carries the lease, in milliseconds.
pub const LEASE_HEADER: &str = "x-sluice-lease-ms";
/// The pause of a lane while the view lists no ingester (with one, the
/// lane long-polls it instead).
const IDLE_PAUSE: Duration = Duration::from_millis(100);
/// How long connecting to an ingester may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one request to an ingester may take, a segment's download
/// included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            ingesters: Arc::new(Vec::<String>::new()),
            lanes: DEFAULT_LANES,
            local_address: None,
            max_gather_segments: MAX_GATHER_SEGMENTS,
            max_gather_bytes: MAX_GATHER_BYTES,
            poll_wait: POLL_WAIT,
            retry_backoff: RETRY_BACKOFF,
            replication: None,
            local: None,
        }
    }
}

/// The store's side of the lending protocol: pulls flushed segments from
/// the ingesters into [`Store`] (see the module docs).
pub struct Consumer {
    store: Store,
    client: reqwest::Client,
    config: ConsumerConfig,
}

/// A segment lent to this cycle and downloaded into `tmp/`.
struct Input {
    ingester: Arc<str>,
    id: Ulid,
    path: PathBuf,
    min: Ulid,
    max: Ulid,
    records: u64,
}

impl Consumer {
    /// A consumer writing into `store`, with an HTTP client that gives up
    /// connecting after 2 s and on any request after 120 s.
    pub fn new(store: Store, config: ConsumerConfig) -> Consumer {
        let client = reqwest::Client::builder()
            .local_address(config.local_address)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("an HTTP client with default TLS settings builds");
        Consumer {
            store,
            client,
            config,
        }
    }

    /// Run `lanes` lanes until `shutdown` is set; each finishes the cycle
    /// under way.
    pub async fn run(self, shutdown: Arc<AtomicBool>) {
        let this = Arc::new(self);
        let lanes: Vec<_> = (0..this.config.lanes.max(1))
            .map(|lane| {
                let this = this.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move { this.lane(lane, shutdown).await })
            })
            .collect();
        for lane in lanes {
            let _ = lane.await;
        }
    }

    /// One lane: pick an ingester (weighted by its backlog), consume from
    /// it, and again.
    async fn lane(&self, lane: usize, shutdown: Arc<AtomicBool>) {
        let mut rng = rand::rngs::SmallRng::from_os_rng();
        let mut too_few = Gate::new("too_few_stores");
        let mut full = Gate::new("disk_full");
        while !shutdown.load(Ordering::Relaxed) {
            // A store over --max-disk takes nothing new (it is `readonly`):
            // the segments stay with their ingesters for other stores.
            let over = matches!(self.store.over_max_disk(), Ok(Some(_)));
            let fewer = self.config.replication.as_ref().map(|replication| {
                let ready = replication.source.targets().len();
                (too_few_stores(ready, replication.rf), ready, replication.rf)
            });
            let stop_full = full.set(over, || {
                format!("lane {lane}: the store is over --max-disk; it lends nothing until retention frees room")
            });
            let stop_few = too_few.set(fewer.is_some_and(|f| f.0), || {
                let (_, ready, rf) = fewer.unwrap_or_default();
                format!(
                    "lane {lane}: {ready} other store(s) ready, RF {rf} needs {}; it lends nothing, and ingesters keep their data until enough stores are back",
                    rf.saturating_sub(1)
                )
            });
            if stop_full || stop_few {
                tokio::time::sleep(IDLE_PAUSE).await;
                continue;
            }
            let ingesters = self.config.ingesters.ingesters();
            let Some(picked) = pick(&ingesters, &mut rng) else {
                tokio::time::sleep(IDLE_PAUSE).await;
                continue;
            };
            let started = Instant::now();
            metrics::lane_busy(1.0);
            let cycled = self
                .cycle_over(std::slice::from_ref(&picked.base), true)
                .await;
            metrics::lane_busy(-1.0);
            match cycled {
                // The long poll waited already: no pause, no tick.
                Ok(0) => {}
                Ok(_) => metrics::cycle(started.elapsed()),
                Err(err) => {
                    tracing::warn!(lane, ingester = %picked.base, error = %err, "store consume cycle failed; the segments go back to their ingester and will be retried");
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
            }
        }
    }

    /// One gather → merge → write → commit cycle over every ingester the
    /// source lists now. Returns the number of segments consumed.
    pub async fn cycle(&self) -> Result<usize, ConsumeError> {
        let bases: Vec<String> = self
            .config
            .ingesters
            .ingesters()
            .into_iter()
            .map(|i| i.base)
            .collect();
        let alone = bases.len() == 1;
        self.cycle_over(&bases, alone).await
    }

    /// One cycle over `bases`; `long_poll`: wait for a first segment.
    async fn cycle_over(&self, bases: &[String], long_poll: bool) -> Result<usize, ConsumeError> {
        let mut inputs: Vec<Input> = Vec::new();
        let mut lease = Lease::new();
        let gathered = self.gather(bases, long_poll, &mut inputs, &mut lease).await;
        if let Err(err) = gathered {
            self.give_back(&inputs).await;
            return Err(err);
        }
        if inputs.is_empty() {
            return Ok(0);
        }
        if lease.past_half(Instant::now()) {
            metrics::lease_lapsed();
            self.give_back(&inputs).await;
            return Err(ConsumeError::LeaseLapsed {
                held: lease.held(Instant::now()),
                lease: lease.length(),
            });
        }
        let fs = self.store.fs().clone();
        let dir = self.store.dir().to_path_buf();
        let ranges: Vec<Downloaded> = inputs
            .iter()
            .map(|i| Downloaded {
                id: i.id,
                path: i.path.clone(),
                min: i.min,
                max: i.max,
                records: i.records,
            })
            .collect();
        let written = tokio::task::spawn_blocking(move || store_inputs(&*fs, &dir, ranges))
            .await
            .map_err(|e| ConsumeError::Merge(e.to_string()))
            .and_then(|r| r);
        let written = match written {
            Ok(written) => written,
            Err(err) => {
                metrics::consume_error("merge");
                self.give_back(&inputs).await;
                return Err(err);
            }
        };
        // Each ingest segment's commit names the stores that hold its
        // records: this one and the targets of the store segment it went
        // into.
        let mut replicas: HashMap<Ulid, Vec<String>> = HashMap::new();
        if let Some(replication) = &self.config.replication {
            for segment in &written {
                match replication
                    .send(
                        &self.client,
                        self.store.fs(),
                        self.store.dir(),
                        &segment.name,
                    )
                    .await
                {
                    Ok(targets) => {
                        let mut holders = vec![replication.source.self_id()];
                        holders.extend(targets);
                        note_batch(&self.store, &segment.name, &holders);
                        for id in &segment.inputs {
                            replicas.insert(*id, holders.clone());
                        }
                    }
                    Err(err) => {
                        metrics::consume_error("replicate");
                        self.give_back(&inputs).await;
                        return Err(err.into());
                    }
                }
            }
        }
        for input in &inputs {
            let holders = replicas.get(&input.id).map(Vec::as_slice).unwrap_or(&[]);
            if let Err(err) = self.commit(&input.ingester, input.id, holders).await {
                metrics::consume_error("commit");
                tracing::warn!(error = %err, segment = %input.id, "commit failed; the segment will be consumed again and deduplicated");
            }
        }
        self.remove_inputs(&inputs);
        Ok(inputs.len())
    }

    async fn gather(
        &self,
        bases: &[String],
        long_poll: bool,
        inputs: &mut Vec<Input>,
        lease: &mut Lease,
    ) -> Result<(), ConsumeError> {
        let mut bytes = 0u64;
        for base in bases {
            let ingester: Arc<str> = Arc::from(base.as_str());
            while inputs.len() < self.config.max_gather_segments
                && bytes < self.config.max_gather_bytes
                && !lease.past_quarter(Instant::now())
            {
                let wait = if long_poll && inputs.is_empty() {
                    self.config.poll_wait
                } else {
                    Duration::ZERO
                };
                let Some((id, length)) = self.next(base, wait).await? else {
                    break;
                };
                lease.lent(length, Instant::now());
                match self.download(base, id).await {
                    Ok((path, len, (min, max, records))) => {
                        bytes += len;
                        inputs.push(Input {
                            ingester: ingester.clone(),
                            id,
                            path,
                            min,
                            max,
                            records,
                        });
                    }
                    Err(err) => {
                        metrics::consume_error("download");
                        let _ = self.post(base, "failed", id).await;
                        return Err(err);
                    }
                }
            }
        }
        Ok(())
    }

    /// Return every input to its ingester and drop the downloads.
    async fn give_back(&self, inputs: &[Input]) {
        for input in inputs {
            if let Err(err) = self.post(&input.ingester, "failed", input.id).await {
                tracing::warn!(error = %err, segment = %input.id, "could not return a segment; its pending timeout will");
            }
        }
        self.remove_inputs(inputs);
    }

    fn remove_inputs(&self, inputs: &[Input]) {
        for input in inputs {
            let _ = self.store.fs().remove_file(&input.path);
        }
    }
}

#[cfg(test)]
mod tests;
