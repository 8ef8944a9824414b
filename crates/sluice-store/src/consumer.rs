//! The pull loop: gather → verify → merge → write → commit, over the
//! ingesters' lending API (`next`, `read`, `commit`, `failed`; OK Log's
//! shape). The protocol, its guarantees and limits are specified in
//! `docs/protocol-lending.md`.
//!
//! One cycle: lend up to `max_gather_segments` / `max_gather_bytes` from the
//! ingesters, download each into `tmp/` and verify every checksum (and sort
//! it if its ids are out of order), adopt each as a batch file when no two
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

use futures_util::StreamExt;
use rand::SeedableRng;
use sluice_record::Ulid;
use sluice_storage::{StorageError, store_segment::TMP_DIR};

pub mod files;

use self::files::{Downloaded, store_inputs, verify_and_sort};
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

    /// Lend the next segment: its id and lease.
    async fn next(
        &self,
        base: &str,
        wait: Duration,
    ) -> Result<Option<(Ulid, Duration)>, ConsumeError> {
        let http = |source| ConsumeError::Http {
            base: base.to_string(),
            what: "next",
            source,
        };
        let response = self
            .client
            .post(format!("{base}/ingest/next?wait_ms={}", wait.as_millis()))
            .send()
            .await
            .map_err(http)?;
        match response.status().as_u16() {
            204 => Ok(None),
            200 => {
                let lease = response
                    .headers()
                    .get(LEASE_HEADER)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .map(Duration::from_millis)
                    .unwrap_or(DEFAULT_LEASE);
                let text = response.text().await.map_err(http)?;
                Ulid::from_string(text.trim())
                    .map(|id| Some((id, lease)))
                    .map_err(|_| ConsumeError::Status {
                        base: base.to_string(),
                        what: "next returned a bad id",
                        status: 200,
                    })
            }
            status => Err(ConsumeError::Status {
                base: base.to_string(),
                what: "next",
                status,
            }),
        }
    }

    /// Download a lent segment into `tmp/`, verify it, and sort it if needed.
    /// Returns its path, size and id range.
    async fn download(
        &self,
        base: &str,
        id: Ulid,
    ) -> Result<(PathBuf, u64, (Ulid, Ulid, u64)), ConsumeError> {
        let http = |source| ConsumeError::Http {
            base: base.to_string(),
            what: "read",
            source,
        };
        let response = self
            .client
            .get(format!("{base}/ingest/read?id={id}"))
            .send()
            .await
            .map_err(http)?;
        if response.status().as_u16() != 200 {
            return Err(ConsumeError::Status {
                base: base.to_string(),
                what: "read",
                status: response.status().as_u16(),
            });
        }
        let expected = response.content_length();
        let fs = self.store.fs().clone();
        let path = self
            .store
            .dir()
            .join(TMP_DIR)
            .join(format!("{id}.ingest.tmp"));
        let _ = fs.remove_file(&path);
        let mut file = fs
            .create_new(&path)
            .map_err(StorageError::io("create download", &path))?;
        let mut got = 0u64;
        let mut body = response.bytes_stream();
        // The body's chunks are gathered into writes of DOWNLOAD_WRITE_BYTES:
        // the page cache then holds the file in large folios, which a
        // query's mapping faults in 15 times fewer pages at a time than
        // the small folios of 16-64 KiB writes (BENCHMARKS.md, "Design
        // measurements").
        let mut pending = Vec::with_capacity(DOWNLOAD_WRITE_BYTES);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(http)?;
            got += chunk.len() as u64;
            pending.extend_from_slice(&chunk);
            if pending.len() >= DOWNLOAD_WRITE_BYTES {
                file.write_all(&pending)
                    .map_err(StorageError::io("write download", &path))?;
                pending.clear();
            }
        }
        file.write_all(&pending)
            .map_err(StorageError::io("write download", &path))?;
        drop(file);
        if let Some(expected) = expected
            && expected != got
        {
            return Err(ConsumeError::ShortBody {
                base: base.to_string(),
                id,
                got,
                expected,
            });
        }
        let verify_path = path.clone();
        let range = tokio::task::spawn_blocking(move || verify_and_sort(&*fs, &verify_path))
            .await
            .map_err(|e| ConsumeError::Merge(e.to_string()))??;
        Ok((path, got, range))
    }

    /// Commit a segment, naming the stores that hold its records (none:
    /// an ingester without replication counts this store alone).
    async fn commit(&self, base: &str, id: Ulid, replicas: &[String]) -> Result<(), ConsumeError> {
        let mut url = format!("{base}/ingest/commit?id={id}");
        if !replicas.is_empty() {
            url.push_str("&replicas=");
            url.push_str(&replicas.join(","));
        }
        let response = self
            .client
            .post(url)
            .send()
            .await
            .map_err(|source| ConsumeError::Http {
                base: base.to_string(),
                what: "commit",
                source,
            })?;
        match response.status().as_u16() {
            200 => Ok(()),
            status => Err(ConsumeError::Status {
                base: base.to_string(),
                what: "commit",
                status,
            }),
        }
    }

    async fn post(&self, base: &str, what: &'static str, id: Ulid) -> Result<(), ConsumeError> {
        let response = self
            .client
            .post(format!("{base}/ingest/{what}?id={id}"))
            .send()
            .await
            .map_err(|source| ConsumeError::Http {
                base: base.to_string(),
                what,
                source,
            })?;
        match response.status().as_u16() {
            200 => Ok(()),
            status => Err(ConsumeError::Status {
                base: base.to_string(),
                what,
                status,
            }),
        }
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
mod tests {
    use super::*;
    use sluice_storage::{Fs, MemFs, SegmentWriter};
    use std::path::Path;

    /// A batch of one record, built by hand: the encoder refuses (in debug
    /// builds) the newline this test needs.
    fn one_record_batch(id: Ulid, payload: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&id.0.to_be_bytes());
        body.extend_from_slice(&[0, 1]);
        body.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        body.push(b't');
        body.extend_from_slice(payload);
        let mut batch = b"SLB1".to_vec();
        batch.extend_from_slice(&(body.len() as u32).to_le_bytes());
        batch.extend_from_slice(&1u32.to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&batch[4..12]);
        crc.update(&body);
        batch.extend_from_slice(&crc.finalize().to_le_bytes());
        batch.extend_from_slice(&body);
        batch
    }

    /// A downloaded segment whose record holds a newline is refused where
    /// it crosses into the store, naming the record; a good one passes.
    #[test]
    fn a_payload_with_a_newline_is_refused_at_verify() {
        let fs = MemFs::new();
        Fs::create_dir_all(&fs, Path::new("/d")).unwrap();
        let id = Ulid::from_parts(1_000, 7);
        for (name, payload, refused) in [
            ("good", &b"one line"[..], false),
            ("bad", &b"two\nlines"[..], true),
        ] {
            let path = Path::new("/d").join(name);
            let mut writer = SegmentWriter::create(&fs, &path).unwrap();
            writer
                .append(&one_record_batch(id, payload), 1, id, id)
                .unwrap();
            drop(writer);
            match verify_and_sort(&fs, &path) {
                Ok(range) => {
                    assert!(!refused, "{name}: accepted");
                    assert_eq!(range, (id, id, 1));
                }
                Err(err) => {
                    assert!(refused, "{name}: {err}");
                    assert!(
                        matches!(err, ConsumeError::NewlineInPayload { id: got, .. } if got == id),
                        "{err}"
                    );
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// A download whose records are out of id order (an HTTP push's
        /// shared lane) is rewritten sorted: the same records, each whole,
        /// in id order, whatever the batches.
        #[test]
        fn an_unsorted_download_is_rewritten_sorted(
            records in proptest::collection::vec(
                (0u64..50, 0u64..1_000_000, "[a-z]{1,8}", "[ -~]{0,40}"),
                1..200,
            ),
            batch_size in 1usize..50,
        ) {
            let fs = MemFs::new();
            Fs::create_dir_all(&fs, Path::new("/d")).unwrap();
            let path = Path::new("/d/seg");
            let mut want = Vec::new();
            let mut writer = SegmentWriter::create(&fs, path).unwrap();
            for (i, chunk) in records.chunks(batch_size).enumerate() {
                let mut encoder = sluice_record::BatchEncoder::new();
                encoder.begin();
                let (mut first, mut last) = (Ulid(u128::MAX), Ulid(0));
                for (j, (ms, random, topic, payload)) in chunk.iter().enumerate() {
                    // Unique ids, in no order.
                    let id = Ulid::from_parts(*ms, u128::from(*random) << 16 | (i * 64 + j) as u128);
                    first = first.min(id);
                    last = last.max(id);
                    encoder.push(sluice_record::Record {
                        id,
                        flags: 0,
                        topic: topic.as_bytes(),
                        payload: payload.as_bytes(),
                    });
                    want.push((id, topic.clone(), payload.clone()));
                }
                writer.append(encoder.finish(), chunk.len() as u32, first, last).unwrap();
            }
            drop(writer);
            let (min, max, count) = verify_and_sort(&fs, path).unwrap();
            want.sort();
            proptest::prop_assert_eq!((min, max, count), (want[0].0, want[want.len() - 1].0, want.len() as u64));
            let mut got = Vec::new();
            let mut scanner = sluice_storage::SegmentScanner::open(&fs, path).unwrap();
            while let Some((header, body)) = scanner.next_batch().unwrap() {
                for record in sluice_record::RecordIter::new(body, header.count) {
                    let record = record.unwrap();
                    got.push((
                        record.id,
                        String::from_utf8(record.topic.to_vec()).unwrap(),
                        String::from_utf8(record.payload.to_vec()).unwrap(),
                    ));
                }
            }
            proptest::prop_assert_eq!(got, want);
        }
    }
}
