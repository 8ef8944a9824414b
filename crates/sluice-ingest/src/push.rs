//! The ingest side of the HTTP push inputs (Loki push, Elasticsearch
//! `_bulk`): active segments the requests write themselves, one per
//! source.
//!
//! HTTP requests are short and many; a segment per request would make
//! thousands of tiny segments. So a request's records are laid out in a
//! [`PushBatch`] where the request is decoded (from
//! [`PushWriter::batch`]), and [`PushWriter::write`] encodes them into one
//! segment batch and writes it with one `write` through the same
//! `SegmentSink` every other protocol uses, under a lock: `Ok` means what
//! the batch protocol's `write` guarantee means (in the segment file, in
//! the page cache; not fsynced; a store takes it from there). A thread
//! seals segments by size and age like any other, and all at shutdown.
//!
//! **Lanes.** Every other protocol has a segment per connection, whose ids
//! increase, so a store adopts it as it is. A push request names its
//! source (its connection's peer address) and gets that source's lane:
//! its own segment and its own id generator, which continues from the
//! source's previous request. Loki entries are stamped in time order
//! ([`PushBatch::stamp`]), so a shipper that sends in time order (as
//! Alloy, Promtail and Vector do) fills a segment that needs no sort at
//! the store; sorting a shared segment of interleaved requests was a third
//! of the node's work in `bench/bench.py loki-push`. Up to [`MAX_LANES`]
//! sources have lanes; the rest share one, which a store sorts.
//!
//! Memory is bounded by the caller: the HTTP side admits a bounded number
//! of requests at once, each within its body limit.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
};

use sluice_record::{IdGenerator, Record, Ulid, Unstamped};

use crate::{
    listener::{IngestConfig, POLL_INTERVAL},
    log::IngestLog,
    metrics,
    sink::SegmentSink,
};

/// Which input a batch came from, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushProtocol {
    /// `POST /loki/api/v1/push`.
    Loki,
    /// Elasticsearch `_bulk`.
    Elasticsearch,
}

impl PushProtocol {
    /// The `protocol` label of its metrics: `loki`, `elasticsearch`.
    pub fn name(self) -> &'static str {
        match self {
            PushProtocol::Loki => "loki",
            PushProtocol::Elasticsearch => "elasticsearch",
        }
    }
}

/// One request's records, stamped, in one buffer.
#[derive(Debug)]
pub struct PushBatch {
    protocol: PushProtocol,
    /// Where it came from (its connection), for its lane and generator.
    source: Option<u64>,
    ids: IdGenerator,
    /// Every topic and payload, back to back.
    bytes: Vec<u8>,
    /// Per record, in the order it is written.
    records: Vec<Entry>,
    /// Whether records were added by [`PushBatch::push_unstamped`] and
    /// wait for [`PushBatch::stamp`].
    unstamped: bool,
    /// Bytes received for it, for metrics.
    received: u64,
    truncated: u64,
}

/// A record of a [`PushBatch`]: its id (0 until stamped), its time, and
/// where its topic and payload are in the batch's bytes.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: Ulid,
    time_ms: u64,
    flags: u8,
    start: u32,
    topic_end: u32,
    end: u32,
}

impl PushBatch {
    /// An empty batch of `protocol`; `received` is the request's body size.
    /// Its ids come from a generator of its own; [`PushWriter::batch`]
    /// gives one that continues its source's.
    pub fn new(protocol: PushProtocol, received: u64) -> PushBatch {
        PushBatch {
            protocol,
            source: None,
            ids: IdGenerator::new(),
            bytes: Vec::new(),
            records: Vec::new(),
            unstamped: false,
            received,
            truncated: 0,
        }
    }

    fn add(&mut self, id: Ulid, record: Unstamped<'_>) {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(record.topic);
        let topic_end = self.bytes.len() as u32;
        self.bytes.extend_from_slice(record.payload);
        self.records.push(Entry {
            id,
            time_ms: record.time_ms,
            flags: record.flags,
            start,
            topic_end,
            end: self.bytes.len() as u32,
        });
        self.truncated += u64::from(record.is_truncated());
    }

    /// Add a record with an id at its origin time, now; returns the id
    /// (Elasticsearch answers each document's).
    pub fn push(&mut self, record: Unstamped<'_>) -> Ulid {
        let id = self.ids.at_origin(record.time_ms);
        self.add(id, record);
        id
    }

    /// Add a record to be stamped by [`PushBatch::stamp`], in time order
    /// with the rest of the batch.
    pub fn push_unstamped(&mut self, record: Unstamped<'_>) {
        self.unstamped = true;
        self.add(Ulid(0), record);
    }

    /// Stamp the records added by [`PushBatch::push_unstamped`]: first put
    /// the batch in time order (stably; a Loki request holds one run of
    /// entries per stream, each in time order), then give each an id at
    /// its time. A shipper that sends in time order so gets ids that
    /// increase across its requests, and its lane's segment needs no sort
    /// at the store.
    pub fn stamp(&mut self) {
        if !std::mem::take(&mut self.unstamped) {
            return;
        }
        if !self.records.is_sorted_by_key(|e| e.time_ms) {
            self.records.sort_by_key(|e| e.time_ms);
        }
        for entry in &mut self.records {
            if entry.id.0 == 0 {
                entry.id = self.ids.at_origin(entry.time_ms);
            }
        }
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Bytes of its topics and payloads.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn each(&self, mut f: impl FnMut(Record<'_>)) {
        for entry in &self.records {
            let (start, topic_end, end) = (
                entry.start as usize,
                entry.topic_end as usize,
                entry.end as usize,
            );
            f(Record {
                id: entry.id,
                flags: entry.flags,
                topic: &self.bytes[start..topic_end],
                payload: &self.bytes[topic_end..end],
            });
        }
    }
}

/// Why a batch was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The writer has stopped: the node is shutting down (HTTP 503).
    #[error("ingest is shutting down")]
    Closed,
    /// The write failed; nothing of the batch is acknowledged (HTTP 503).
    #[error("cannot write: {0}")]
    Write(String),
}

/// Sources (connections) whose id generators are kept between requests;
/// past this, one is forgotten to make room for a new one (its next
/// request starts a fresh generator: ids stay unique, its segment may need
/// a sort).
pub const MAX_SOURCES: usize = 1024;
/// Sources that get an active segment of their own; the requests of
/// any more share one.
pub const MAX_LANES: usize = 32;

/// Id generators of sources between their requests. A connection sends
/// one request at a time, so its generator is taken out while a request
/// of it is decoded and put back once that is written: ids never repeat
/// (a second request of the same source meanwhile gets a fresh one).
type Generators = Arc<Mutex<HashMap<u64, IdGenerator>>>;

/// The push inputs' active segments, written by the requests themselves
/// ([`PushWriter::write`]) and sealed by size and age by a thread of
/// their own. Dropping it does not stop the thread; [`PushWriter::start`]'s
/// `shutdown` flag does.
pub struct PushWriter {
    lanes: Arc<Mutex<Lanes>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    running: Arc<AtomicUsize>,
    generators: Generators,
}

impl PushWriter {
    /// Start the sealing thread on `log`; once `shutdown` is set it seals
    /// every segment, refuses further writes and exits.
    pub fn start(
        log: Arc<IngestLog>,
        config: &IngestConfig,
        shutdown: Arc<AtomicBool>,
    ) -> std::io::Result<PushWriter> {
        let running = Arc::new(AtomicUsize::new(1));
        let running_thread = running.clone();
        let generators: Generators = Arc::default();
        let lanes = Arc::new(Mutex::new(Lanes {
            log,
            config: config.clone(),
            sinks: HashMap::new(),
            closed: false,
        }));
        let sealer = lanes.clone();
        let thread = std::thread::Builder::new()
            .name("ingest-push".into())
            .spawn(move || {
                while !shutdown.load(Ordering::Relaxed) {
                    std::thread::sleep(POLL_INTERVAL);
                    let due = lock(&sealer).take_due(false);
                    seal(due);
                }
                let due = {
                    let mut lanes = lock(&sealer);
                    lanes.closed = true;
                    lanes.take_due(true)
                };
                seal(due);
                running_thread.store(0, Ordering::Relaxed);
            })?;
        Ok(PushWriter {
            lanes,
            thread: Mutex::new(Some(thread)),
            running,
            generators,
        })
    }

    /// An empty batch of `protocol` from `source` (a key of the request's
    /// connection, if known): its ids continue that source's last request's,
    /// so a shipper's records stay in id order in its own segment.
    pub fn batch(&self, protocol: PushProtocol, received: u64, source: Option<u64>) -> PushBatch {
        let mut batch = PushBatch::new(protocol, received);
        if let Some(key) = source {
            batch.source = Some(key);
            if let Some(ids) = lock(&self.generators).remove(&key) {
                batch.ids = ids;
            }
        }
        batch
    }

    /// Stamp `batch` and write it to its source's segment, with one write
    /// (no fsync); `Ok` means what the batch protocol's `write` guarantee
    /// means. This blocks on the file write: the caller runs it where
    /// blocking is allowed.
    pub fn write(&self, mut batch: PushBatch) -> Result<(), Refused> {
        if batch.is_empty() {
            self.give_back(batch);
            return Ok(());
        }
        batch.stamp();
        let result = lock(&self.lanes).write(&batch);
        match &result {
            Ok(()) => metrics::push_ingested(
                batch.protocol.name(),
                batch.records.len() as u64,
                batch.received,
                batch.truncated,
            ),
            Err(Refused::Closed) => {}
            Err(Refused::Write(_)) => metrics::push_refused(batch.protocol.name(), "write_error"),
        }
        self.give_back(batch);
        result
    }

    /// Give a batch's generator back to its source.
    fn give_back(&self, batch: PushBatch) {
        if let Some(key) = batch.source {
            let mut generators = lock(&self.generators);
            // Full (sources come and go; none says it left): make room by
            // forgetting one, so a new source still keeps its generator.
            if generators.len() >= MAX_SOURCES
                && !generators.contains_key(&key)
                && let Some(&old) = generators.keys().next()
            {
                generators.remove(&old);
            }
            generators.insert(key, batch.ids);
        }
    }

    /// 1 while the sealing thread runs, 0 once it has sealed every segment
    /// and exited (for the node's drain).
    pub fn running(&self) -> Arc<AtomicUsize> {
        self.running.clone()
    }

    /// Wait for the sealing thread to end (after shutdown was set).
    pub fn join(&self) {
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// A poisoned lock only means a thread panicked holding it; what it
/// guards (segments between writes, generators, a join handle) is whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The active segments: one per source, as every other protocol has one
/// per connection, so a source's segment stays sorted by id when it sends
/// in time order; sources past [`MAX_LANES`] and requests of no known
/// source share [`SHARED_LANE`].
struct Lanes {
    log: Arc<IngestLog>,
    config: IngestConfig,
    sinks: HashMap<u64, SegmentSink>,
    /// Set at shutdown, once every segment is sealed.
    closed: bool,
}

/// Seal `sinks` (each due, or idle).
fn seal(sinks: Vec<SegmentSink>) {
    for mut sink in sinks {
        if let Err(err) = sink.maybe_seal(true) {
            tracing::error!(error = %err, "cannot seal a push segment");
        }
    }
}

/// The lane of requests without one of their own.
const SHARED_LANE: u64 = u64::MAX;

impl Lanes {
    fn write(&mut self, batch: &PushBatch) -> Result<(), Refused> {
        if self.closed {
            return Err(Refused::Closed);
        }
        let lane = match batch.source {
            Some(key)
                if key != SHARED_LANE
                    && (self.sinks.contains_key(&key) || self.sinks.len() < MAX_LANES) =>
            {
                key
            }
            _ => SHARED_LANE,
        };
        let (log, config) = (&self.log, &self.config);
        let sink = self
            .sinks
            .entry(lane)
            .or_insert_with(|| SegmentSink::new(log.clone(), config));
        sink.begin();
        batch.each(|record| sink.push(record));
        sink.write(false).map(|_| ()).map_err(|err| {
            Refused::Write(if err.is_disk_full() {
                "disk full".into()
            } else {
                err.to_string()
            })
        })
    }

    /// Take out the lanes whose segment is due (all with `force`), to be
    /// sealed outside the lock: sealing fsyncs, and requests write under
    /// it. Lanes left without a segment are forgotten. A request of a taken
    /// lane meanwhile starts a new segment; its ids still continue the
    /// source's.
    fn take_due(&mut self, force: bool) -> Vec<SegmentSink> {
        let lanes: Vec<u64> = self
            .sinks
            .iter()
            .filter(|(_, sink)| sink.is_due(force) || sink.is_idle())
            .map(|(lane, _)| *lane)
            .collect();
        lanes
            .into_iter()
            .filter_map(|lane| self.sinks.remove(&lane))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::IngestLog;

    /// A writer on a fresh ingest log in a temporary directory (kept alive
    /// by the returned guard), and its shutdown flag.
    fn started() -> (
        tempfile::TempDir,
        Arc<IngestLog>,
        Arc<AtomicBool>,
        PushWriter,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let fs: Arc<dyn sluice_storage::Fs> = Arc::new(sluice_storage::RealFs);
        let (log, _) = IngestLog::open(fs, dir.path(), std::time::Duration::from_secs(30)).unwrap();
        let log = Arc::new(log);
        let shutdown = Arc::new(AtomicBool::new(false));
        let writer =
            PushWriter::start(log.clone(), &IngestConfig::default(), shutdown.clone()).unwrap();
        (dir, log, shutdown, writer)
    }

    /// Batches are in the segment file when `write` returns; shutdown seals
    /// it and refuses further writes.
    #[test]
    fn batches_are_written_then_sealed_at_shutdown() {
        let (_dir, log, shutdown, writer) = started();
        for i in 0..3u64 {
            let mut batch = PushBatch::new(PushProtocol::Loki, 10);
            for j in 0..2u64 {
                batch.push(Unstamped {
                    topic: b"{job=\"x\"}",
                    time_ms: 1_000 + i * 10 + j,
                    flags: 0,
                    payload: format!("line {i} {j}").as_bytes(),
                });
            }
            assert_eq!(writer.write(batch), Ok(()));
        }
        shutdown.store(true, Ordering::Relaxed);
        writer.join();
        assert_eq!(writer.running().load(Ordering::Relaxed), 0);
        let mut late = PushBatch::new(PushProtocol::Loki, 0);
        late.push(Unstamped {
            topic: b"t",
            time_ms: 1,
            flags: 0,
            payload: b"late",
        });
        assert_eq!(writer.write(late), Err(Refused::Closed));
        // Sealed: one flushed segment holding the six records.
        let (flushed, _) = log.counts();
        assert_eq!(flushed, 1);
    }

    /// Every record of every flushed segment of `log`, one list of ids per
    /// segment.
    fn segments(log: &IngestLog) -> Vec<Vec<Ulid>> {
        let mut out = Vec::new();
        while let Some(id) = log.next().unwrap() {
            let path = log.pending_path(id).unwrap();
            let mut scanner =
                sluice_storage::SegmentScanner::open(log.fs().as_ref(), &path).unwrap();
            let mut ids = Vec::new();
            while let Some((header, body)) = scanner.next_batch().unwrap() {
                for record in sluice_record::RecordIter::new(body, header.count) {
                    ids.push(record.unwrap().id);
                }
            }
            out.push(ids);
        }
        out
    }

    /// Two shippers whose requests interleave, each in time order, each
    /// request holding two streams (as Alloy sends them): each shipper's
    /// records land in a segment of its own, sorted by id, so the store
    /// takes it without a sort; and ids keep the entries' times.
    #[test]
    fn each_source_gets_a_sorted_segment_of_its_own() {
        let (_dir, log, shutdown, writer) = started();
        let mut times = Vec::new();
        for request in 0..20u64 {
            // Shipper 2 runs a few ms behind shipper 1: their records
            // interleave in time across requests.
            for source in [1u64, 2] {
                let mut batch = writer.batch(PushProtocol::Loki, 10, Some(source));
                let base = 1_000_000 + request * 10 - source * 3;
                for stream in [b"{job=\"a\"}".as_slice(), b"{job=\"b\"}"] {
                    for i in 0..5 {
                        batch.push_unstamped(Unstamped {
                            topic: stream,
                            time_ms: base + i,
                            flags: 0,
                            payload: b"line",
                        });
                        times.push(base + i);
                    }
                }
                assert_eq!(writer.write(batch), Ok(()));
            }
        }
        shutdown.store(true, Ordering::Relaxed);
        writer.join();
        let segments = segments(&log);
        assert_eq!(segments.len(), 2, "one segment per source");
        let mut got_times = Vec::new();
        for ids in &segments {
            assert_eq!(ids.len(), 200);
            assert!(ids.is_sorted(), "a source's segment is in id order");
            got_times.extend(ids.iter().map(|id| id.timestamp_ms()));
        }
        got_times.sort_unstable();
        times.sort_unstable();
        assert_eq!(got_times, times, "ids keep the entries' own times");
    }

    /// Requests of no known source share one segment, and ids stay unique
    /// when a source's generator is out with a request of it.
    #[test]
    fn unknown_and_concurrent_sources_share_a_lane_with_unique_ids() {
        let (_dir, log, shutdown, writer) = started();
        // Two batches of source 7 at once: the second gets a fresh
        // generator, not a copy of the first's.
        let mut first = writer.batch(PushProtocol::Loki, 10, Some(7));
        let mut second = writer.batch(PushProtocol::Loki, 10, Some(7));
        let mut unknown = writer.batch(PushProtocol::Elasticsearch, 10, None);
        for batch in [&mut first, &mut second, &mut unknown] {
            for i in 0..50 {
                batch.push(Unstamped {
                    topic: b"t",
                    time_ms: 5_000 + i / 10,
                    flags: 0,
                    payload: b"x",
                });
            }
        }
        for batch in [first, second, unknown] {
            assert_eq!(writer.write(batch), Ok(()));
        }
        shutdown.store(true, Ordering::Relaxed);
        writer.join();
        let segments = segments(&log);
        assert_eq!(segments.len(), 2, "source 7's lane and the shared one");
        let mut all: Vec<Ulid> = segments.concat();
        assert_eq!(all.len(), 150);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 150, "no id repeats");
    }

    /// More sources than are kept: the map stays bounded and the newest
    /// source still gets its generator back.
    #[test]
    fn a_full_generator_map_makes_room_for_a_new_source() {
        let (_dir, _log, shutdown, writer) = started();
        for key in 0..=MAX_SOURCES as u64 {
            let mut batch = writer.batch(PushProtocol::Loki, 1, Some(key));
            batch.push(Unstamped {
                topic: b"t",
                time_ms: 1_000,
                flags: 0,
                payload: b"x",
            });
            assert_eq!(writer.write(batch), Ok(()));
        }
        assert_eq!(lock(&writer.generators).len(), MAX_SOURCES);
        let newest = writer.batch(PushProtocol::Loki, 1, Some(MAX_SOURCES as u64));
        assert!(
            newest.ids.last().is_some(),
            "the newest source's generator is kept"
        );
        shutdown.store(true, Ordering::Relaxed);
        writer.join();
    }
}
