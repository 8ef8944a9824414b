//! Store segments: immutable files named by their ULID range.
//!
//! Name: `<min ulid>-<max ulid>.seg`, or `<min>-<max>.<n>.seg` when a
//! segment with the same range already exists (a re-consumed ingest segment
//! yields the same range; both copies are kept and query dedupes them).
//!
//! Two kinds of file ([`SegmentKind`]), told apart by their first bytes
//! ([`open_cursor`] reads either):
//!
//! - **batch files**: the checksummed batches of [`crate::segment`]
//!   (records sorted by id, no id repeated, batches of about
//!   [`TARGET_BATCH_BYTES`]), uncompressed. The store's consumer writes
//!   these, so what it pulls from the ingesters is queryable at once.
//! - **block files**: [`crate::block_segment`] (zstd blocks with checksums
//!   and time and term filters). Compaction alone writes these.
//!
//! Write rule: write to `tmp/<random>.tmp`, fsync, rename to the final name,
//! fsync the directory. [`adopt`] does the same for a verified batch file
//! that is already sorted (a downloaded ingest segment that overlaps no
//! other). A segment under its final name is therefore whole.
//! Recovery rule: files in `tmp/` are unfinished writes whose inputs were
//! never committed upstream, so they are removed at startup. Files in the
//! segment directory whose names do not parse are reported and left alone:
//! nothing is deleted because its name looks odd.
//!
//! Reads go through [`RecordCursor`], the one reader abstraction the query
//! engine and the store use, opened by [`open_cursor`] for either kind.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use memchr::memmem;

use sluice_record::Ulid;

use crate::{
    SegmentCache, StorageError,
    block_segment::{BlockCursor, Cancel, HEADER_LEN, RecordFilter, is_block_segment},
    fs::{Fs, ReadFile},
    workers::WorkerPool,
};

pub use crate::cursor::{BatchCursor, MemoryCursor, RecordCursor, Selected};
pub use writer::StoreSegmentWriter;

mod writer;

/// The batches of a batch file hold about this many bytes: 1 MiB.
pub const TARGET_BATCH_BYTES: usize = 1 << 20;

/// What a store segment file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    /// Checksummed batches of [`crate::segment`], uncompressed: what the
    /// consumer writes.
    Batches,
    /// Compressed blocks of [`crate::block_segment`]: what compaction
    /// writes.
    Blocks,
}
/// The suffix of every store segment's file name.
pub const SEGMENT_SUFFIX: &str = ".seg";
/// Where segments are written before they are renamed into the store
/// directory; what is left there at startup is removed ([`clean_tmp`]).
pub const TMP_DIR: &str = "tmp";
/// Where corrupt segments are moved, under their own names; never read
/// again and never deleted by sluice.
pub const QUARANTINE_DIR: &str = "quarantine";

/// Serialises [`place`]: the consumer and compaction both name new segments,
/// and picking a free name then renaming onto it must not race (a rename
/// replaces its target).
static PLACING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A store segment's identity and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    /// The file name in the store directory, such as `<min>-<max>.seg`.
    pub name: String,
    /// The smallest id the segment holds.
    pub min: Ulid,
    /// The largest id the segment holds.
    pub max: Ulid,
    /// Its size on disk in bytes.
    pub bytes: u64,
}

impl SegmentMeta {
    /// Parse `<min>-<max>.seg` or `<min>-<max>.<n>.seg`.
    pub fn parse(name: &str, bytes: u64) -> Result<SegmentMeta, StorageError> {
        let bad = || StorageError::BadName {
            name: name.to_string(),
        };
        let stem = name.strip_suffix(SEGMENT_SUFFIX).ok_or_else(bad)?;
        let range = match stem.split_once('.') {
            Some((range, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => range,
            Some(_) => return Err(bad()),
            None => stem,
        };
        let (min, max) = range.split_once('-').ok_or_else(bad)?;
        let min = Ulid::from_string(min).map_err(|_| bad())?;
        let max = Ulid::from_string(max).map_err(|_| bad())?;
        if min > max {
            return Err(bad());
        }
        Ok(SegmentMeta {
            name: name.to_string(),
            min,
            max,
            bytes,
        })
    }

    /// Whether any record of this segment can have a time in `[from_ms, to_ms]`.
    pub fn overlaps_ms(&self, from_ms: u64, to_ms: u64) -> bool {
        self.min.timestamp_ms() <= to_ms && self.max.timestamp_ms() >= from_ms
    }
}

/// Every store segment in `dir`, sorted by `min`, and the names that were
/// not segments (reported by the caller, never deleted).
pub fn list_segments(
    fs: &dyn Fs,
    dir: &Path,
) -> Result<(Vec<SegmentMeta>, Vec<String>), StorageError> {
    let mut segments = Vec::new();
    let mut strangers = Vec::new();
    for entry in fs
        .read_dir(dir)
        .map_err(StorageError::io("list store dir", dir))?
    {
        if entry.is_dir {
            continue;
        }
        match SegmentMeta::parse(&entry.name, entry.len) {
            Ok(meta) => segments.push(meta),
            Err(_) => strangers.push(entry.name),
        }
    }
    segments.sort_by(|a, b| (a.min, a.max, &a.name).cmp(&(b.min, b.max, &b.name)));
    Ok((segments, strangers))
}

/// Remove unfinished writes from `dir/tmp` (see the module's recovery rule).
pub fn clean_tmp(fs: &dyn Fs, dir: &Path) -> Result<usize, StorageError> {
    let tmp = dir.join(TMP_DIR);
    fs.create_dir_all(&tmp)
        .map_err(StorageError::io("create tmp dir", &tmp))?;
    let mut removed = 0;
    for entry in fs
        .read_dir(&tmp)
        .map_err(StorageError::io("list tmp dir", &tmp))?
    {
        if !entry.is_dir && entry.name.ends_with(".tmp") {
            let path = tmp.join(&entry.name);
            fs.remove_file(&path)
                .map_err(StorageError::io("remove unfinished segment", &path))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Rename a durable segment file into `dir` under its range name, picking
/// `<min>-<max>.<n>.seg` if the plain name is taken. The caller fsyncs `dir`.
fn place(
    fs: &dyn Fs,
    dir: &Path,
    file: &Path,
    min: Ulid,
    max: Ulid,
    bytes: u64,
) -> Result<SegmentMeta, StorageError> {
    let _placing = PLACING.lock().unwrap_or_else(|p| p.into_inner());
    let mut name = format!("{min}-{max}{SEGMENT_SUFFIX}");
    let mut n = 1;
    while fs.exists(&dir.join(&name)) {
        name = format!("{min}-{max}.{n}{SEGMENT_SUFFIX}");
        n += 1;
    }
    let target = dir.join(&name);
    fs.rename(file, &target)
        .map_err(StorageError::io("rename segment", &target))?;
    Ok(SegmentMeta {
        name,
        min,
        max,
        bytes,
    })
}

/// Move a corrupt segment from `dir` to `dir/quarantine/` and make that
/// durable. Returns the new path.
pub fn quarantine(fs: &dyn Fs, dir: &Path, name: &str) -> Result<PathBuf, StorageError> {
    let aside = dir.join(QUARANTINE_DIR);
    fs.create_dir_all(&aside)
        .map_err(StorageError::io("create quarantine dir", &aside))?;
    let target = aside.join(name);
    fs.rename(&dir.join(name), &target)
        .map_err(StorageError::io("quarantine segment", &target))?;
    fs.sync_dir(&aside)
        .map_err(StorageError::io("fsync quarantine dir", &aside))?;
    fs.sync_dir(dir)
        .map_err(StorageError::io("fsync store dir", dir))?;
    Ok(target)
}

/// The block index of the segment at `path` (its footer, verified), or
/// `None` for a batch file, which has none. Opened through `cache` when
/// given, so a query that reads the file later maps it once.
pub fn open_block_index(
    fs: &dyn Fs,
    path: &Path,
    cache: Option<&SegmentCache>,
) -> Result<Option<Arc<crate::block_segment::BlockSegment>>, StorageError> {
    let (file, kind) = open_segment(fs, path)?;
    if kind == SegmentKind::Batches {
        return Ok(None);
    }
    Ok(Some(match cache {
        Some(cache) => cache.open(fs, path, &*file)?,
        None => Arc::new(crate::block_segment::BlockSegment::open(fs, path)?),
    }))
}

/// What kind of file a segment is, from its first bytes.
pub fn segment_kind(fs: &dyn Fs, path: &Path) -> Result<SegmentKind, StorageError> {
    Ok(open_segment(fs, path)?.1)
}

/// The segment file opened for reading, and its kind.
fn open_segment(
    fs: &dyn Fs,
    path: &Path,
) -> Result<(Box<dyn ReadFile>, SegmentKind), StorageError> {
    let mut head = [0u8; HEADER_LEN];
    let file = fs
        .open_read(path)
        .map_err(StorageError::io("open segment", path))?;
    let n = file
        .read_at(&mut head, 0)
        .map_err(StorageError::io("read segment", path))?;
    let kind = if is_block_segment(&head[..n]) {
        SegmentKind::Blocks
    } else {
        SegmentKind::Batches
    };
    Ok((file, kind))
}

/// What compaction plans with, of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSizes {
    /// A batch file or a block file.
    pub kind: SegmentKind,
    /// Bytes of its records, uncompressed (a batch file's size; a block
    /// file's text size, from its footer).
    pub record_bytes: u64,
    /// Its blocks whose lines are not sorted: 1 for a batch file, its
    /// blocks of [`InOrder`](crate::block_segment::BlockLayout::InOrder)
    /// layout for a block file.
    pub unsorted_blocks: u64,
}

/// A segment's [`SegmentSizes`]; `bytes` is its size on disk.
pub fn segment_sizes(fs: &dyn Fs, path: &Path, bytes: u64) -> Result<SegmentSizes, StorageError> {
    match segment_kind(fs, path)? {
        SegmentKind::Batches => Ok(SegmentSizes {
            kind: SegmentKind::Batches,
            record_bytes: bytes,
            unsorted_blocks: 1,
        }),
        SegmentKind::Blocks => {
            let segment = crate::block_segment::BlockSegment::open(fs, path)?;
            Ok(SegmentSizes {
                kind: SegmentKind::Blocks,
                record_bytes: segment.text_bytes(),
                unsorted_blocks: segment.unsorted_blocks() as u64,
            })
        }
    }
}

/// Adopt an existing batch file whose records are verified to be
/// sorted by id and to span `min..=max`: fsync it and rename it into `dir`.
/// The caller fsyncs `dir` once after adopting a group of files.
pub fn adopt(
    fs: &dyn Fs,
    dir: &Path,
    file: &Path,
    min: Ulid,
    max: Ulid,
) -> Result<SegmentMeta, StorageError> {
    let mut handle = fs
        .open_append(file)
        .map_err(StorageError::io("open segment to adopt", file))?;
    handle
        .sync_data()
        .map_err(StorageError::io("fsync segment to adopt", file))?;
    drop(handle);
    let bytes = fs
        .open_read(file)
        .and_then(|f| f.len())
        .map_err(StorageError::io("stat segment to adopt", file))?;
    place(fs, dir, file, min, max, bytes)
}

/// Place a durable segment file received under `name` (a segment name of
/// the range `min..=max`, perhaps numbered) in `dir`: under `name` when it
/// is free, else under the next free `<min>-<max>.<n>.seg`, with the same
/// naming lock as every other placement, so it never replaces a file. The
/// file must already be fsynced; the caller fsyncs `dir`.
pub fn place_as(
    fs: &dyn Fs,
    dir: &Path,
    file: &Path,
    name: &str,
    min: Ulid,
    max: Ulid,
) -> Result<SegmentMeta, StorageError> {
    let bytes = fs
        .open_read(file)
        .and_then(|f| f.len())
        .map_err(StorageError::io("stat segment to place", file))?;
    {
        let _placing = PLACING.lock().unwrap_or_else(|p| p.into_inner());
        let target = dir.join(name);
        if !fs.exists(&target) {
            fs.rename(file, &target)
                .map_err(StorageError::io("rename segment", &target))?;
            return Ok(SegmentMeta {
                name: name.to_string(),
                min,
                max,
                bytes,
            });
        }
    }
    place(fs, dir, file, min, max, bytes)
}

/// What a scan wants, so a cursor can skip what cannot match, and where it
/// decodes.
#[derive(Clone)]
pub struct ScanOptions {
    /// The pool that decodes a block file's blocks ([`WorkerPool::inline`]
    /// decodes them on the reading thread).
    pub workers: Arc<WorkerPool>,
    /// Stop, as if at the end of the segment, once this is raised: the
    /// query's client went away. A block file's cursor checks it before each
    /// block, a batch file's before each batch.
    pub cancel: Option<Cancel>,
    /// Only records whose payload holds this literal.
    pub literal: Option<Arc<memmem::Finder<'static>>>,
    /// Only records in this time range (inclusive, Unix ms); records of a
    /// block that overlaps it are returned, for the caller to filter.
    pub time_ms: Option<(u64, u64)>,
    /// Only records in this id range (inclusive): a block file's cursor
    /// skips blocks wholly outside it (a newest-first query reads its
    /// windows so); records of a block that overlaps it are returned, for
    /// the caller to filter.
    pub ids: Option<(Ulid, Ulid)>,
    /// In a block file, pass over a block that fails its checks (counted
    /// by the cursor) instead of ending the scan with an error. A batch
    /// file carries no index to resume from, so its cursor still stops
    /// there.
    pub skip_corrupt_blocks: bool,
    /// Only records whose payload this accepts. A block file's cursor
    /// applies it where blocks are decoded, in parallel; a batch file's
    /// cursor ignores it, so the caller still checks what it gets.
    pub filter: Option<RecordFilter>,
    /// Every wanted record holds one of these literals (a regex's literal
    /// set, built into a probe once per query): a block file's cursor
    /// skips blocks and frames whose filter rules out all of them. Records
    /// are still selected by `filter` or `text` (or by the caller).
    pub any_of: Option<Arc<crate::term_filter::AnyOfProbe>>,
    /// Open block files through this cache (queries share their mappings
    /// and verified filters); `None` opens each file afresh.
    pub cache: Option<Arc<SegmentCache>>,
    /// Select records by searching a block's decoded text, or a batch
    /// file's bodies, as a whole with this
    /// ([`crate::block_segment::TextMatcher`]). A batch file's cursor does
    /// not take one that looks around and has no required literal, so the
    /// caller checks what a cursor gets unless it was
    /// [selected](crate::RecordCursor::selected_by) by the matcher.
    pub text: Option<Arc<dyn crate::block_segment::TextMatcher>>,
}

impl ScanOptions {
    /// Every record of a segment, decoded on `workers`.
    pub fn new(workers: Arc<WorkerPool>) -> ScanOptions {
        ScanOptions {
            workers,
            cancel: None,
            literal: None,
            time_ms: None,
            ids: None,
            skip_corrupt_blocks: false,
            filter: None,
            any_of: None,
            cache: None,
            text: None,
        }
    }

    /// `cursor` selecting and stopping as these options say: by the
    /// literal and the text matcher, and at the cancel flag. What a store
    /// batch file and an ingest segment opened for a query share.
    pub fn matching(&self, mut cursor: BatchCursor) -> BatchCursor {
        if let Some(literal) = &self.literal {
            cursor = cursor.with_literal(literal.clone());
        }
        if let Some(text) = &self.text {
            cursor = cursor.with_text_matcher(text.clone());
        }
        if let Some(cancel) = &self.cancel {
            cursor = cursor.with_cancel(cancel.clone());
        }
        cursor
    }
}

impl std::fmt::Debug for ScanOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanOptions")
            .field("workers", &self.workers.workers())
            .field("cancel", &self.cancel)
            .field("literal", &self.literal.as_ref().map(|l| l.needle()))
            .field("time_ms", &self.time_ms)
            .field("ids", &self.ids)
            .field("skip_corrupt_blocks", &self.skip_corrupt_blocks)
            .field("filter", &self.filter.is_some())
            .field("any_of", &self.any_of.as_ref().map(|p| p.probes()))
            .field("cache", &self.cache.as_ref().map(|c| c.len()))
            .field("text", &self.text.is_some())
            .finish()
    }
}

/// A cursor over a segment of either kind.
pub fn open_cursor(
    fs: &dyn Fs,
    path: &Path,
    options: &ScanOptions,
) -> Result<Box<dyn RecordCursor>, StorageError> {
    let (file, kind) = open_segment(fs, path)?;
    if kind == SegmentKind::Blocks {
        let workers = options.workers.clone();
        let mut cursor = match &options.cache {
            Some(cache) => {
                let cursor = BlockCursor::shared(cache.open(fs, path, &*file)?, workers);
                match cache.block_cache() {
                    Some(blocks) => cursor.with_block_cache(blocks.clone()),
                    None => cursor,
                }
            }
            None => BlockCursor::open(fs, path, workers)?,
        };
        if let Some(cancel) = &options.cancel {
            cursor = cursor.with_cancel(cancel.clone());
        }
        if let Some((from, to)) = options.time_ms {
            cursor = cursor.with_time_range(from, to);
        }
        if let Some((min, max)) = options.ids {
            cursor = cursor.with_id_range(min, max);
        }
        if let Some(literal) = &options.literal {
            cursor = cursor.with_literal(literal.clone());
        }
        if let Some(probe) = &options.any_of {
            cursor = cursor.with_any_of_probe(probe.clone());
        }
        if options.skip_corrupt_blocks {
            cursor = cursor.skipping_corrupt_blocks();
        }
        if let Some(filter) = &options.filter {
            cursor = cursor.with_filter(filter.clone());
        }
        if let Some(text) = &options.text {
            cursor = cursor.with_text_matcher(text.clone());
        }
        return Ok(Box::new(cursor));
    }
    let cursor = match &options.cache {
        Some(cache) => {
            let shared = cache.map_batches(fs, path, &*file)?;
            BatchCursor::over_shared(file, path, shared)
        }
        None => BatchCursor::open(fs, path)?,
    };
    let mut cursor = cursor.with_workers(options.workers.clone());
    // A store's batch files hold ids that never decrease: batches wholly
    // outside the query's range are passed over.
    if let Some((min, max)) = id_range(options) {
        cursor = cursor.with_id_range(min, max);
    }
    Ok(Box::new(options.matching(cursor)))
}

/// The ids a scan wants: those of its time range and its id range, when
/// it has either.
fn id_range(options: &ScanOptions) -> Option<(Ulid, Ulid)> {
    let by_time = options.time_ms.map(|(from, to)| {
        // A ULID's time is 48 bits of Unix ms; the random part fills the
        // rest.
        let ms = |t: u64| u128::from(t.min((1 << 48) - 1)) << 80;
        (Ulid(ms(from)), Ulid(ms(to) | ((1 << 80) - 1)))
    });
    match (by_time, options.ids) {
        (Some((a, b)), Some((c, d))) => Some((a.max(c), b.min(d))),
        (one, other) => one.or(other),
    }
}

#[cfg(test)]
mod tests;
