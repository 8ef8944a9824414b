//! The consumer's blocking file work: verify (and sort) a download, then
//! make the downloads durable store segments, adopted as they are or
//! merged by id into one. Public so that the simulation (`sluice-sim`)
//! writes its stores' local copies with this same code.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

use sluice_ingest::IngestLog;
use sluice_record::{Record, RecordIter, Ulid};
use sluice_storage::{
    Fs, RecordCursor, SegmentScanner, SegmentWriter, StorageError, StoreSegmentWriter, WorkerPool,
    merge::{Merge, Verdict},
    store_segment::{self, ScanOptions},
};

use super::ConsumeError;
use crate::metrics;

/// Verify every checksum of a downloaded segment, and that no payload
/// holds a newline: this is where data crosses from ingest to store, and
/// block files end each line at its newline. Ingest segments are sorted
/// by id per connection; one that is not (clock games, or a future protocol
/// with origin times) is rewritten sorted, which is bounded by the segment
/// size. Returns the smallest and largest id and the record count.
pub fn verify_and_sort(fs: &dyn Fs, path: &Path) -> Result<(Ulid, Ulid, u64), ConsumeError> {
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

/// Rewrite the (verified) segment at `path` sorted by id. Every batch body
/// is read into one buffer (a segment is bounded by its target size), the
/// records are sorted as views into it, and written out in batches: no
/// allocation per record, which made this the most expensive step of
/// consuming an HTTP push's segment.
fn sort_segment(fs: &dyn Fs, path: &Path) -> Result<(), ConsumeError> {
    let mut bodies: Vec<u8> = Vec::new();
    let mut batches: Vec<(usize, usize, u32)> = Vec::new();
    let mut scanner = SegmentScanner::open(fs, path)?;
    while let Some((header, body)) = scanner.next_batch()? {
        batches.push((bodies.len(), body.len(), header.count));
        bodies.extend_from_slice(body);
    }
    let mut records: Vec<Record<'_>> =
        Vec::with_capacity(batches.iter().map(|b| b.2 as usize).sum());
    for &(start, len, count) in &batches {
        records.extend(RecordIter::new(&bodies[start..start + len], count).flatten());
    }
    // Ids are unique, so an unstable sort gives the one order.
    records.sort_unstable_by_key(|r| r.id);
    let sorted_path = path.with_extension("sorted");
    let _ = fs.remove_file(&sorted_path);
    let mut writer = SegmentWriter::create(fs, &sorted_path)?;
    let mut encoder = sluice_record::BatchEncoder::new();
    for chunk in records.chunks(4096) {
        encoder.begin();
        for r in chunk {
            encoder.push(*r);
        }
        let (first, last) = (chunk[0].id, chunk[chunk.len() - 1].id);
        writer.append(encoder.finish(), chunk.len() as u32, first, last)?;
    }
    drop(writer);
    fs.rename(&sorted_path, path)
        .map_err(StorageError::io("replace unsorted download", path))?;
    Ok(())
}

/// Take segment `id`, lent by this process's own ingester, into `to` (in
/// the store's `tmp/`) as a hard link to its file. Returns its size, or
/// `None` when no link can be made there (another filesystem, or one
/// without links): the caller downloads it instead.
pub fn link_lent(
    log: &IngestLog,
    fs: &dyn Fs,
    id: Ulid,
    to: &Path,
) -> Result<Option<u64>, ConsumeError> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let from = log
        .pending_path(id)
        .map_err(|source| ConsumeError::Local { id, source })?;
    let _ = fs.remove_file(to);
    match fs.hard_link(&from, to) {
        Ok(()) => {}
        // The lease ran out and the segment went back (renamed): as lost a
        // lend as a 404 from a remote ingester.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(StorageError::io("link lent segment", &from)(err).into());
        }
        Err(err) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(from = %from.display(), to = %to.display(), error = %err,
                    "cannot hard-link this node's own ingest segments into the store; they are downloaded over loopback HTTP instead, which costs CPU (keep the ingest and store directories on one filesystem)");
            }
            return Ok(None);
        }
    }
    let bytes = fs
        .open_read(to)
        .and_then(|f| f.len())
        .map_err(StorageError::io("stat linked segment", to))?;
    Ok(Some(bytes))
}

/// A verified download, as the blocking write step needs it.
#[derive(Debug, Clone)]
pub struct Downloaded {
    /// The ingest segment it came from.
    pub id: Ulid,
    /// Where it was downloaded to, in the store's `tmp/`.
    pub path: PathBuf,
    /// Its smallest record id.
    pub min: Ulid,
    /// Its largest record id.
    pub max: Ulid,
    /// Its records.
    pub records: u64,
}

/// Make downloaded inputs durable store segments, as batch files (so they
/// are queryable at once; compaction makes block files of them later).
/// Inputs whose id ranges overlap no other (one connection's consecutive
/// segments) are adopted as they are; otherwise they are merged by id into
/// one new batch file.
pub fn store_inputs(
    fs: &dyn Fs,
    dir: &Path,
    mut inputs: Vec<Downloaded>,
) -> Result<Vec<Written>, ConsumeError> {
    inputs.sort_by_key(|d| d.min);
    let disjoint = inputs.windows(2).all(|w| w[0].max < w[1].min);
    if disjoint {
        let mut names = Vec::with_capacity(inputs.len());
        for input in &inputs {
            let meta = store_segment::adopt(fs, dir, &input.path, input.min, input.max)?;
            metrics::segment_written(input.records, meta.bytes, 0, 1);
            names.push(Written {
                name: meta.name,
                inputs: vec![input.id],
            });
        }
        fs.sync_dir(dir)
            .map_err(StorageError::io("fsync store dir", dir))?;
        return Ok(names);
    }
    merge_inputs(fs, dir, inputs)
}

/// Merge downloaded inputs, sorted by smallest id, into one durable batch
/// file.
fn merge_inputs(
    fs: &dyn Fs,
    dir: &Path,
    inputs: Vec<Downloaded>,
) -> Result<Vec<Written>, ConsumeError> {
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
    let Some(meta) = writer.finish()? else {
        return Ok(Vec::new());
    };
    metrics::segment_written(records, meta.bytes, duplicates, inputs.len());
    tracing::debug!(segment = %meta.name, records, inputs = inputs.len(), "store segment written");
    Ok(vec![Written {
        name: meta.name,
        inputs: inputs.iter().map(|d| d.id).collect(),
    }])
}

/// A store segment a cycle wrote, and the ingest segments it holds.
#[derive(Debug, Clone)]
pub struct Written {
    /// Its file name in the store directory.
    pub name: String,
    /// The ingest segments whose records it holds.
    pub inputs: Vec<Ulid>,
}
