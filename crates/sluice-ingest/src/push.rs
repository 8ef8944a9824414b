//! The ingest side of the HTTP push inputs (Loki push, Elasticsearch
//! `_bulk`): one writer thread that owns one active segment for all of
//! them, fed by a bounded queue.
//!
//! HTTP requests are short and many; a segment per request would make
//! thousands of tiny segments, and a lock around a shared segment would
//! put file writes on the async runtime. So a request's records are
//! stamped with ids and laid out in a [`PushBatch`] where the request is
//! decoded, then handed to the [`PushWriter`] with
//! [`try_submit`](PushWriter::try_submit). Its thread takes every batch
//! waiting (up to [`GROUP_BYTES`]), encodes them into one segment batch,
//! writes it with one `write` through the same `SegmentSink` every
//! other protocol uses, and only then answers each request: the answer
//! means what the batch protocol's `write` guarantee means (in the
//! segment file, in the page cache; not fsynced; a store takes it from
//! there). The segment is sealed by size and age like any other, and at
//! shutdown.
//!
//! The queue holds [`QUEUE_BATCHES`] batches; when it is full,
//! `try_submit` refuses at once ([`Refused::Busy`]) so the HTTP side can
//! answer 429 and the shipper retries later. Memory is bounded by the
//! queue times the caller's request limit.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
    thread::JoinHandle,
};

use sluice_record::{IdGenerator, Record, Ulid, Unstamped};
use tokio::sync::oneshot;

use crate::{
    listener::{IngestConfig, POLL_INTERVAL},
    log::IngestLog,
    metrics,
    sink::SegmentSink,
};

/// Batches waiting for the writer before [`PushWriter::try_submit`]
/// refuses.
pub const QUEUE_BATCHES: usize = 64;
/// The writer groups waiting batches into one segment write up to this
/// many payload bytes.
pub const GROUP_BYTES: usize = 8 << 20;

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
    ids: IdGenerator,
    /// Every topic and payload, back to back.
    bytes: Vec<u8>,
    /// Per record: id, flags, topic end, payload end (offsets into
    /// `bytes`, each record starting where the previous one ended).
    records: Vec<(Ulid, u8, u32, u32)>,
    /// Bytes received for it, for metrics.
    received: u64,
    truncated: u64,
}

impl PushBatch {
    /// An empty batch of `protocol`; `received` is the request's body size.
    pub fn new(protocol: PushProtocol, received: u64) -> PushBatch {
        PushBatch {
            protocol,
            ids: IdGenerator::new(),
            bytes: Vec::new(),
            records: Vec::new(),
            received,
            truncated: 0,
        }
    }

    /// Add a record, with an id at its origin time; returns the id.
    pub fn push(&mut self, record: Unstamped<'_>) -> Ulid {
        let id = self.ids.at_origin(record.time_ms);
        self.bytes.extend_from_slice(record.topic);
        let topic_end = self.bytes.len() as u32;
        self.bytes.extend_from_slice(record.payload);
        self.records
            .push((id, record.flags, topic_end, self.bytes.len() as u32));
        self.truncated += u64::from(record.is_truncated());
        id
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn each(&self, mut f: impl FnMut(Record<'_>)) {
        let mut start = 0usize;
        for &(id, flags, topic_end, end) in &self.records {
            let (topic_end, end) = (topic_end as usize, end as usize);
            f(Record {
                id,
                flags,
                topic: &self.bytes[start..topic_end],
                payload: &self.bytes[topic_end..end],
            });
            start = end;
        }
    }
}

/// Why a batch was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The queue is full: try again shortly (HTTP 429).
    #[error("ingest is busy: {QUEUE_BATCHES} requests are waiting to be written; retry shortly")]
    Busy,
    /// The writer has stopped: the node is shutting down (HTTP 503).
    #[error("ingest is shutting down")]
    Closed,
    /// The write failed; nothing of the batch is acknowledged (HTTP 503).
    #[error("cannot write: {0}")]
    Write(String),
}

struct Job {
    batch: PushBatch,
    done: oneshot::Sender<Result<(), Refused>>,
}

/// The writer thread and its queue. Dropping it does not stop the thread;
/// [`PushWriter::start`]'s `shutdown` flag does.
pub struct PushWriter {
    queue: mpsc::SyncSender<Job>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    running: Arc<AtomicUsize>,
}

impl PushWriter {
    /// Start the writer thread on `log`; it seals its segment and exits
    /// once `shutdown` is set and the queue is empty.
    pub fn start(
        log: Arc<IngestLog>,
        config: &IngestConfig,
        shutdown: Arc<AtomicBool>,
    ) -> std::io::Result<PushWriter> {
        let (queue, jobs) = mpsc::sync_channel(QUEUE_BATCHES);
        let sink = SegmentSink::new(log, config);
        let running = Arc::new(AtomicUsize::new(1));
        let running_thread = running.clone();
        let thread = std::thread::Builder::new()
            .name("ingest-push".into())
            .spawn(move || {
                write_loop(sink, jobs, &shutdown);
                running_thread.store(0, Ordering::Relaxed);
            })?;
        Ok(PushWriter {
            queue,
            thread: std::sync::Mutex::new(Some(thread)),
            running,
        })
    }

    /// Queue `batch`; the receiver answers once it is written (or not).
    /// Refuses at once when the queue is full or the writer stopped.
    pub fn try_submit(
        &self,
        batch: PushBatch,
    ) -> Result<oneshot::Receiver<Result<(), Refused>>, Refused> {
        let (done, answer) = oneshot::channel();
        match self.queue.try_send(Job { batch, done }) {
            Ok(()) => Ok(answer),
            Err(mpsc::TrySendError::Full(job)) => {
                metrics::push_refused(job.batch.protocol.name(), "busy");
                Err(Refused::Busy)
            }
            Err(mpsc::TrySendError::Disconnected(_)) => Err(Refused::Closed),
        }
    }

    /// 1 while the writer thread runs, 0 once it has sealed and exited (for
    /// the node's drain).
    pub fn running(&self) -> Arc<AtomicUsize> {
        self.running.clone()
    }

    /// Wait for the writer thread to end (after shutdown was set).
    pub fn join(&self) {
        let thread = self.thread.lock().map(|mut t| t.take()).unwrap_or(None);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

fn write_loop(mut sink: SegmentSink, jobs: mpsc::Receiver<Job>, shutdown: &AtomicBool) {
    let mut group: Vec<Job> = Vec::new();
    loop {
        match jobs.recv_timeout(POLL_INTERVAL) {
            Ok(job) => {
                let mut bytes = job.batch.bytes.len();
                group.push(job);
                while bytes < GROUP_BYTES {
                    match jobs.try_recv() {
                        Ok(job) => {
                            bytes += job.batch.bytes.len();
                            group.push(job);
                        }
                        Err(_) => break,
                    }
                }
                write_group(&mut sink, &mut group);
                // Stop even while requests keep coming; those still queued
                // are answered 503 when the queue is dropped.
                if shutdown.load(Ordering::Relaxed) {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if shutdown.load(Ordering::Relaxed) {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let Err(err) = sink.maybe_seal(false) {
            tracing::error!(error = %err, "cannot seal the push segment");
        }
    }
    if let Err(err) = sink.maybe_seal(true) {
        tracing::error!(error = %err, "cannot seal the push segment at shutdown");
    }
}

/// Encode every batch of `group` into one segment batch, write it, and
/// answer each request.
fn write_group(sink: &mut SegmentSink, group: &mut Vec<Job>) {
    sink.begin();
    for job in group.iter() {
        job.batch.each(|record| sink.push(record));
    }
    let written = sink.write(false);
    for job in group.drain(..) {
        let batch = &job.batch;
        let answer = match &written {
            Ok(_) => {
                metrics::push_ingested(
                    batch.protocol.name(),
                    batch.records.len() as u64,
                    batch.received,
                    batch.truncated,
                );
                Ok(())
            }
            Err(err) => {
                metrics::push_refused(batch.protocol.name(), "write_error");
                Err(Refused::Write(if err.is_disk_full() {
                    "disk full".into()
                } else {
                    err.to_string()
                }))
            }
        };
        // The request may have gone away; its records are written anyway.
        let _ = job.done.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::IngestLog;

    #[test]
    fn batches_are_written_grouped_and_answered_after_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let fs: Arc<dyn sluice_storage::Fs> = Arc::new(sluice_storage::RealFs);
        let (log, _) = IngestLog::open(fs, dir.path(), std::time::Duration::from_secs(30)).unwrap();
        let log = Arc::new(log);
        let shutdown = Arc::new(AtomicBool::new(false));
        let writer =
            PushWriter::start(log.clone(), &IngestConfig::default(), shutdown.clone()).unwrap();
        let mut answers = Vec::new();
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
            answers.push(writer.try_submit(batch).unwrap());
        }
        for answer in answers {
            assert_eq!(answer.blocking_recv().unwrap(), Ok(()));
        }
        shutdown.store(true, Ordering::Relaxed);
        writer.join();
        assert_eq!(writer.running().load(Ordering::Relaxed), 0);
        assert_eq!(
            writer
                .try_submit(PushBatch::new(PushProtocol::Loki, 0))
                .unwrap_err(),
            Refused::Closed
        );
        // Sealed: one flushed segment holding the six records.
        let (flushed, _) = log.counts();
        assert_eq!(flushed, 1);
    }
}
