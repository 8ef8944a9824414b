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
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use sluice_record::{OwnedRecord, RecordIter, Ulid};
use sluice_storage::{
    Fs, RecordCursor, SegmentScanner, SegmentWriter, StorageError, StoreSegmentWriter, WorkerPool,
    merge::{Merge, Verdict},
    store_segment::{self, ScanOptions, TMP_DIR},
};

use crate::{Store, metrics};

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
}

/// Where the consumer pulls from and how much it gathers per cycle.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Base URLs of the ingesters' APIs, e.g. `http://127.0.0.1:7650`.
    pub ingesters: Vec<String>,
    /// Segments gathered into one store segment at most.
    pub max_gather_segments: usize,
    /// Bytes gathered into one store segment at most (one segment may pass it).
    pub max_gather_bytes: u64,
    /// How long `next` may wait for a segment to be flushed.
    pub poll_wait: Duration,
    /// Pause after a failed cycle.
    pub retry_backoff: Duration,
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
/// The pause after an empty cycle over several ingesters (one ingester is
/// long-polled instead).
const IDLE_PAUSE: Duration = Duration::from_millis(100);
/// How long connecting to an ingester may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one request to an ingester may take, a segment's download
/// included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            ingesters: Vec::new(),
            max_gather_segments: MAX_GATHER_SEGMENTS,
            max_gather_bytes: MAX_GATHER_BYTES,
            poll_wait: POLL_WAIT,
            retry_backoff: RETRY_BACKOFF,
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
    ingester: usize,
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

    /// Run cycles until `shutdown` is set. The cycle under way is finished.
    pub async fn run(self, shutdown: Arc<AtomicBool>) {
        while !shutdown.load(Ordering::Relaxed) {
            let started = Instant::now();
            match self.cycle().await {
                Ok(0) => {
                    if self.config.ingesters.len() != 1 {
                        tokio::time::sleep(IDLE_PAUSE).await;
                    }
                }
                Ok(_) => metrics::cycle(started.elapsed()),
                Err(err) => {
                    tracing::warn!(error = %err, "store consume cycle failed; the segments go back to their ingesters and will be retried");
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
            }
        }
    }

    /// One gather → merge → write → commit cycle. Returns the number of
    /// segments consumed.
    pub async fn cycle(&self) -> Result<usize, ConsumeError> {
        let mut inputs: Vec<Input> = Vec::new();
        let gathered = self.gather(&mut inputs).await;
        if let Err(err) = gathered {
            self.give_back(&inputs).await;
            return Err(err);
        }
        if inputs.is_empty() {
            return Ok(0);
        }
        let fs = self.store.fs().clone();
        let dir = self.store.dir().to_path_buf();
        let ranges: Vec<Downloaded> = inputs
            .iter()
            .map(|i| Downloaded {
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
        if let Err(err) = written {
            metrics::consume_error("merge");
            self.give_back(&inputs).await;
            return Err(err);
        }
        for input in &inputs {
            let base = &self.config.ingesters[input.ingester];
            if let Err(err) = self.post(base, "commit", input.id).await {
                metrics::consume_error("commit");
                tracing::warn!(error = %err, segment = %input.id, "commit failed; the segment will be consumed again and deduplicated");
            }
        }
        self.remove_inputs(&inputs);
        Ok(inputs.len())
    }

    async fn gather(&self, inputs: &mut Vec<Input>) -> Result<(), ConsumeError> {
        let mut bytes = 0u64;
        let single = self.config.ingesters.len() == 1;
        for (ingester, base) in self.config.ingesters.iter().enumerate() {
            while inputs.len() < self.config.max_gather_segments
                && bytes < self.config.max_gather_bytes
            {
                let wait = if single && inputs.is_empty() {
                    self.config.poll_wait
                } else {
                    Duration::ZERO
                };
                let Some(id) = self.next(base, wait).await? else {
                    break;
                };
                match self.download(base, id).await {
                    Ok((path, len, (min, max, records))) => {
                        bytes += len;
                        inputs.push(Input {
                            ingester,
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

    async fn next(&self, base: &str, wait: Duration) -> Result<Option<Ulid>, ConsumeError> {
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
                let text = response.text().await.map_err(http)?;
                Ulid::from_string(text.trim())
                    .map(Some)
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
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(http)?;
            file.write_all(&chunk)
                .map_err(StorageError::io("write download", &path))?;
            got += chunk.len() as u64;
        }
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
            let base = &self.config.ingesters[input.ingester];
            if let Err(err) = self.post(base, "failed", input.id).await {
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

/// Verify every checksum of a downloaded segment, and that no payload
/// holds a newline: this is where data crosses from ingest to store, and
/// block files end each line at its newline. Ingest segments are sorted
/// by id per connection; one that is not (clock games, or a future protocol
/// with origin times) is rewritten sorted, which is bounded by the segment
/// size. Returns the smallest and largest id and the record count.
fn verify_and_sort(fs: &dyn Fs, path: &Path) -> Result<(Ulid, Ulid, u64), ConsumeError> {
    let mut scanner = SegmentScanner::open(fs, path)?;
    let mut sorted = true;
    let mut last: Option<Ulid> = None;
    let mut min: Option<Ulid> = None;
    let mut max: Option<Ulid> = None;
    let mut records = 0u64;
    while let Some((header, body)) = scanner.next_batch()? {
        for record in RecordIter::new(body, header.count) {
            let record = record.map_err(|source| StorageError::Corrupt {
                path: path.to_path_buf(),
                offset: 0,
                source,
            })?;
            if memchr::memchr(b'\n', record.payload).is_some() {
                return Err(ConsumeError::NewlineInPayload {
                    path: path.to_path_buf(),
                    id: record.id,
                });
            }
            if last.is_some_and(|l| record.id <= l) {
                sorted = false;
            }
            last = Some(record.id);
            min = Some(min.map_or(record.id, |m| m.min(record.id)));
            max = Some(max.map_or(record.id, |m| m.max(record.id)));
            records += 1;
        }
    }
    let (Some(min), Some(max)) = (min, max) else {
        return Err(ConsumeError::Merge(format!(
            "segment {} holds no record",
            path.display()
        )));
    };
    if !sorted {
        sort_segment(fs, path)?;
    }
    Ok((min, max, records))
}

fn sort_segment(fs: &dyn Fs, path: &Path) -> Result<(), ConsumeError> {
    let mut records: Vec<OwnedRecord> = Vec::new();
    let mut scanner = SegmentScanner::open(fs, path)?;
    while let Some((header, body)) = scanner.next_batch()? {
        for record in RecordIter::new(body, header.count).flatten() {
            records.push(record.to_owned_record());
        }
    }
    records.sort_by_key(|r| r.id);
    let sorted_path = path.with_extension("sorted");
    let _ = fs.remove_file(&sorted_path);
    let mut writer = SegmentWriter::create(fs, &sorted_path)?;
    let mut encoder = sluice_record::BatchEncoder::new();
    for chunk in records.chunks(4096) {
        encoder.begin();
        for r in chunk {
            encoder.push(r.as_record());
        }
        let (first, last) = (chunk[0].id, chunk[chunk.len() - 1].id);
        writer.append(encoder.finish(), chunk.len() as u32, first, last)?;
    }
    drop(writer);
    fs.rename(&sorted_path, path)
        .map_err(StorageError::io("replace unsorted download", path))?;
    Ok(())
}

/// A verified download, as the blocking write step needs it.
struct Downloaded {
    path: PathBuf,
    min: Ulid,
    max: Ulid,
    records: u64,
}

/// Make downloaded inputs durable store segments, as batch files (so they
/// are queryable at once; compaction makes block files of them later).
/// Inputs whose id ranges overlap no other (one connection's consecutive
/// segments) are adopted as they are; otherwise they are merged by id into
/// one new batch file.
fn store_inputs(fs: &dyn Fs, dir: &Path, mut inputs: Vec<Downloaded>) -> Result<(), ConsumeError> {
    inputs.sort_by_key(|d| d.min);
    let disjoint = inputs.windows(2).all(|w| w[0].max < w[1].min);
    if disjoint {
        for input in &inputs {
            let meta = store_segment::adopt(fs, dir, &input.path, input.min, input.max)?;
            metrics::segment_written(input.records, meta.bytes, 0, 1);
        }
        fs.sync_dir(dir)
            .map_err(StorageError::io("fsync store dir", dir))?;
        return Ok(());
    }
    merge_inputs(fs, dir, inputs)
}

/// Merge downloaded inputs, sorted by smallest id, into one durable batch
/// file.
fn merge_inputs(fs: &dyn Fs, dir: &Path, inputs: Vec<Downloaded>) -> Result<(), ConsumeError> {
    let mins: Vec<Ulid> = inputs.iter().map(|d| d.min).collect();
    // Downloads are batch files: there are no blocks to decode.
    let options = ScanOptions::new(WorkerPool::inline());
    let mut open = |i: usize| -> Result<Box<dyn RecordCursor>, StorageError> {
        store_segment::open_cursor(fs, &inputs[i].path, &options)
    };
    let keep_all = |_: &sluice_record::Record<'_>| Verdict::Keep;
    let mut writer = StoreSegmentWriter::batches(fs, dir)?;
    let mut merge = Merge::new(&mins, &mut open, &keep_all);
    let written = merge.run_fallible(|record| writer.push(*record));
    let stats = merge.stats;
    if let Err(err) = written {
        writer.abort();
        return Err(err.into());
    }
    if let Some((idx, err)) = stats.failed.first() {
        writer.abort();
        return Err(ConsumeError::Merge(format!(
            "{}: {err}",
            inputs[*idx].path.display()
        )));
    }
    let records = writer.records();
    let duplicates = writer.duplicates() + stats.duplicates_removed;
    if let Some(meta) = writer.finish()? {
        metrics::segment_written(records, meta.bytes, duplicates, inputs.len());
        tracing::debug!(segment = %meta.name, records, inputs = inputs.len(), "store segment written");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::MemFs;

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
}
