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

use sluice_record::{BatchEncoder, Record, Ulid};

use crate::{
    SegmentCache, StorageError,
    block_segment::{
        BlockCursor, BlockLayout, BlockWriter, Cancel, HEADER_LEN, RecordFilter, is_block_segment,
    },
    fs::{Fs, ReadFile},
    segment::SegmentWriter,
    workers::WorkerPool,
};

pub use crate::cursor::{BatchCursor, MemoryCursor, RecordCursor};

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
    /// blocks of [`BlockLayout::InOrder`] for a block file.
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

/// Writes one store segment from records pushed in increasing id order.
pub struct StoreSegmentWriter<'fs> {
    fs: &'fs dyn Fs,
    dir: PathBuf,
    tmp: PathBuf,
    writer: KindWriter,
    last: Option<Ulid>,
    first: Option<Ulid>,
    duplicates: u64,
}

enum KindWriter {
    Batches {
        writer: SegmentWriter,
        encoder: BatchEncoder,
        batch_first: Option<Ulid>,
    },
    Blocks(BlockWriter),
}

impl<'fs> StoreSegmentWriter<'fs> {
    /// A writer of a batch file, as the consumer writes.
    pub fn batches(fs: &'fs dyn Fs, dir: &Path) -> Result<Self, StorageError> {
        let tmp = Self::tmp_path(fs, dir)?;
        let writer = KindWriter::Batches {
            writer: SegmentWriter::create(fs, &tmp)?,
            encoder: BatchEncoder::new(),
            batch_first: None,
        };
        Ok(Self::with_writer(fs, dir, tmp, writer))
    }

    /// A writer of a block file of `layout`, as compaction writes, whose
    /// blocks are built on `workers`.
    pub fn blocks(
        fs: &'fs dyn Fs,
        dir: &Path,
        layout: BlockLayout,
        workers: Arc<WorkerPool>,
    ) -> Result<Self, StorageError> {
        let tmp = Self::tmp_path(fs, dir)?;
        let file = fs
            .create_new(&tmp)
            .map_err(StorageError::io("create segment", &tmp))?;
        let writer = KindWriter::Blocks(
            BlockWriter::new(file, workers)
                .map_err(StorageError::io("write segment", &tmp))?
                .with_layout(layout),
        );
        Ok(Self::with_writer(fs, dir, tmp, writer))
    }

    /// Keep each block this writer builds in `cache`, decoded (see
    /// [`BlockWriter::keeping_blocks_in`]); a batch file writer has none.
    pub fn keeping_blocks_in(mut self, cache: Arc<crate::BlockCache>) -> Self {
        self.writer = match self.writer {
            KindWriter::Blocks(writer) => KindWriter::Blocks(writer.keeping_blocks_in(cache)),
            batches => batches,
        };
        self
    }

    /// A writer of `kind`; block files are [`BlockLayout::Sorted`].
    pub fn create(
        fs: &'fs dyn Fs,
        dir: &Path,
        kind: SegmentKind,
        workers: Arc<WorkerPool>,
    ) -> Result<Self, StorageError> {
        match kind {
            SegmentKind::Batches => Self::batches(fs, dir),
            SegmentKind::Blocks => Self::blocks(fs, dir, BlockLayout::Sorted, workers),
        }
    }

    /// A new temp path in `dir/tmp`, which is created if missing.
    fn tmp_path(fs: &dyn Fs, dir: &Path) -> Result<PathBuf, StorageError> {
        let tmp_dir = dir.join(TMP_DIR);
        fs.create_dir_all(&tmp_dir)
            .map_err(StorageError::io("create tmp dir", &tmp_dir))?;
        Ok(tmp_dir.join(format!("{}.tmp", Ulid::new())))
    }

    fn with_writer(fs: &'fs dyn Fs, dir: &Path, tmp: PathBuf, writer: KindWriter) -> Self {
        StoreSegmentWriter {
            fs,
            dir: dir.to_path_buf(),
            tmp,
            writer,
            last: None,
            first: None,
            duplicates: 0,
        }
    }

    /// Records pushed so far, without duplicates.
    pub fn records(&self) -> u64 {
        match &self.writer {
            KindWriter::Batches {
                writer, encoder, ..
            } => writer.records() + encoder.count() as u64,
            KindWriter::Blocks(writer) => writer.records(),
        }
    }

    /// Bytes written so far, plus what is buffered (in a block file's open
    /// block, uncompressed).
    pub fn bytes(&self) -> u64 {
        match &self.writer {
            KindWriter::Batches {
                writer, encoder, ..
            } => writer.bytes() + encoder.len() as u64,
            KindWriter::Blocks(writer) => writer.bytes(),
        }
    }

    /// Bytes of the records pushed, uncompressed: a batch file's size, or a
    /// block file's text (payloads and newlines). Compaction cuts outputs
    /// by this.
    pub fn record_bytes(&self) -> u64 {
        match &self.writer {
            KindWriter::Batches { .. } => self.bytes(),
            KindWriter::Blocks(writer) => writer.text_bytes(),
        }
    }

    /// Records skipped because their id equalled the previous one.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Append a record. Ids must not decrease; an id equal to the previous
    /// one is a duplicate and is skipped.
    pub fn push(&mut self, record: Record<'_>) -> Result<(), StorageError> {
        if let Some(last) = self.last {
            assert!(
                record.id >= last,
                "store segment records must be pushed in id order"
            );
            if record.id == last {
                self.duplicates += 1;
                return Ok(());
            }
        }
        match &mut self.writer {
            KindWriter::Batches {
                writer,
                encoder,
                batch_first,
            } => {
                if encoder.is_empty() {
                    encoder.begin();
                    *batch_first = Some(record.id);
                }
                encoder.push(record);
                if encoder.len() >= TARGET_BATCH_BYTES {
                    let first = batch_first.take().expect("a batch has a first id");
                    let count = encoder.count();
                    writer.append(encoder.finish(), count, first, record.id)?;
                    encoder.begin();
                }
            }
            KindWriter::Blocks(writer) => writer
                .push(record)
                .map_err(StorageError::io("write segment", &self.tmp))?,
        }
        self.first.get_or_insert(record.id);
        self.last = Some(record.id);
        Ok(())
    }

    /// Append a block copied whole from a block file
    /// ([`crate::block_segment::BlockSegment::raw_block`]); this writer must
    /// write a block file and every id pushed so far be below the block's.
    pub fn push_raw_block(
        &mut self,
        raw: &crate::block_segment::RawBlock<'_>,
    ) -> Result<(), StorageError> {
        assert!(
            self.last.is_none_or(|last| last < raw.entry.min),
            "store segment blocks must be pushed in id order"
        );
        let KindWriter::Blocks(writer) = &mut self.writer else {
            panic!("raw blocks go to block file writers only");
        };
        writer
            .append_raw(raw)
            .map_err(StorageError::io("write segment", &self.tmp))?;
        self.first.get_or_insert(raw.entry.min);
        self.last = Some(raw.entry.max);
        Ok(())
    }

    /// Make the segment durable under its final name. Returns `None` (and
    /// removes the temp file) when no record was pushed.
    pub fn finish(self) -> Result<Option<SegmentMeta>, StorageError> {
        let tmp = self.tmp;
        let (Some(min), Some(max)) = (self.first, self.last) else {
            drop(self.writer);
            self.fs
                .remove_file(&tmp)
                .map_err(StorageError::io("remove empty segment", &tmp))?;
            return Ok(None);
        };
        let bytes = match self.writer {
            KindWriter::Batches {
                mut writer,
                mut encoder,
                batch_first,
            } => {
                if let Some(first) = batch_first {
                    let count = encoder.count();
                    writer.append(encoder.finish(), count, first, max)?;
                }
                writer.sync()?;
                writer.bytes()
            }
            KindWriter::Blocks(writer) => {
                let (mut file, bytes) = writer
                    .finish()
                    .map_err(StorageError::io("write segment", &tmp))?;
                file.sync_data()
                    .map_err(StorageError::io("fsync segment", &tmp))?;
                bytes
            }
        };
        let meta = place(self.fs, &self.dir, &tmp, min, max, bytes)?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(StorageError::io("fsync store dir", &self.dir))?;
        Ok(Some(meta))
    }

    /// Give up: remove the temp file.
    pub fn abort(self) {
        drop(self.writer);
        let _ = self.fs.remove_file(&self.tmp);
    }
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
    /// not take one that looks around, so the caller still checks what it
    /// gets.
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
    if let Some(literal) = &options.literal {
        cursor = cursor.with_literal(literal.clone());
    }
    if let Some(text) = &options.text {
        cursor = cursor.with_text_matcher(text.clone());
    }
    if let Some(cancel) = &options.cancel {
        cursor = cursor.with_cancel(cancel.clone());
    }
    Ok(Box::new(cursor))
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
mod tests {
    use super::*;
    use crate::{MemFs, segment_cache::SharedBatchFile};
    use std::sync::atomic::Ordering;

    #[test]
    fn names_parse_strictly() {
        let a = Ulid::from_parts(1, 1);
        let b = Ulid::from_parts(2, 1);
        assert!(SegmentMeta::parse(&format!("{a}-{b}.seg"), 0).is_ok());
        assert!(SegmentMeta::parse(&format!("{a}-{b}.3.seg"), 0).is_ok());
        assert!(SegmentMeta::parse(&format!("{b}-{a}.seg"), 0).is_err());
        assert!(SegmentMeta::parse(&format!("{a}-{b}.x.seg"), 0).is_err());
        assert!(SegmentMeta::parse("notes.txt", 0).is_err());
    }

    #[test]
    fn written_segments_read_back_in_order_without_duplicates() {
        for format in [SegmentKind::Batches, SegmentKind::Blocks] {
            written_segment_reads_back(format);
        }
    }

    fn written_segment_reads_back(format: SegmentKind) {
        let fs = MemFs::new();
        let dir = Path::new("/store");
        fs.create_dir_all(dir).unwrap();
        let mut w = StoreSegmentWriter::create(&fs, dir, format, WorkerPool::inline()).unwrap();
        let payload = vec![b'p'; 5000];
        for i in 0..1000u128 {
            let r = Record {
                id: Ulid(i / 2 + 7),
                flags: 0,
                topic: b"t",
                payload: &payload,
            };
            w.push(r).unwrap();
        }
        assert_eq!(w.duplicates(), 500);
        let meta = w.finish().unwrap().unwrap();
        assert_eq!((meta.min, meta.max), (Ulid(7), Ulid(506)));
        let (segments, strangers) = list_segments(&fs, dir).unwrap();
        assert_eq!(segments, vec![meta.clone()]);
        assert!(strangers.is_empty());
        let mut cursor = open_cursor(
            &fs,
            &dir.join(&meta.name),
            &ScanOptions::new(WorkerPool::inline()),
        )
        .unwrap();
        let mut ids = Vec::new();
        while cursor.advance().unwrap() {
            ids.push(cursor.record().id.0);
        }
        assert_eq!(ids, (7..507).collect::<Vec<_>>());
        match format {
            SegmentKind::Batches => assert_eq!(cursor.bytes_read(), meta.bytes),
            SegmentKind::Blocks => {
                assert!(cursor.bytes_read() > 0 && cursor.bytes_read() < meta.bytes)
            }
        }
    }

    /// A batch file of `payloads` (ids from 1) in `dir`.
    fn batch_file(fs: &MemFs, dir: &Path, payloads: &[impl AsRef<str>]) -> SegmentMeta {
        let mut w = StoreSegmentWriter::batches(fs, dir).unwrap();
        for (i, payload) in payloads.iter().enumerate() {
            let id = Ulid(i as u128 + 1);
            let record = Record {
                id,
                flags: 0,
                topic: b"t",
                payload: payload.as_ref().as_bytes(),
            };
            w.push(record).unwrap();
        }
        w.finish().unwrap().unwrap()
    }

    /// A query's segment cache maps a sealed batch file once for every
    /// query, and notes once one query verified all of it; it maps it
    /// again (not verified) once a file of other content took its name,
    /// and lets the mapping go when the file leaves the listing.
    #[test]
    fn a_batch_file_is_mapped_once_until_replaced_or_removed() {
        let fs = MemFs::new();
        let dir = Path::new("/store");
        fs.create_dir_all(dir).unwrap();
        let meta = batch_file(&fs, dir, &["a ERROR", "b", "c ERROR"]);
        let path = dir.join(&meta.name);
        let cache = Arc::new(SegmentCache::new());
        let options = ScanOptions {
            cache: Some(cache.clone()),
            literal: Some(Arc::new(memmem::Finder::new(b"ERROR").into_owned())),
            ..ScanOptions::new(WorkerPool::inline())
        };
        let payloads = || {
            let mut cursor = open_cursor(&fs, &path, &options).unwrap();
            let mut out = Vec::new();
            while cursor.advance().unwrap() {
                out.push(String::from_utf8(cursor.record().payload.to_vec()).unwrap());
            }
            out
        };
        let mapping = || {
            let file = fs.open_read(&path).unwrap();
            cache.map_batches(&fs, &path, &*file).unwrap()
        };
        let verified = |shared: &SharedBatchFile| shared.verified.load(Ordering::Acquire);
        assert!(!verified(&mapping()));
        // A read of every record, cut short, verifies only part of it.
        let every_record = ScanOptions {
            cache: Some(cache.clone()),
            ..ScanOptions::new(WorkerPool::inline())
        };
        let mut cursor = open_cursor(&fs, &path, &every_record).unwrap();
        assert!(cursor.advance().unwrap());
        drop(cursor);
        assert!(!verified(&mapping()));
        assert_eq!(payloads(), ["a ERROR", "c ERROR"]);
        let first = mapping();
        assert!(verified(&first), "a whole search verified it");
        assert_eq!(payloads(), ["a ERROR", "c ERROR"]);
        assert!(Arc::ptr_eq(&first.mapped, &mapping().mapped), "mapped once");
        // Another file under the same name (of the same ids' range).
        let other = Path::new("/other");
        fs.create_dir_all(other).unwrap();
        let replacement = batch_file(&fs, other, &["x ERROR", "y", "z"]);
        fs.rename(&other.join(&replacement.name), &path).unwrap();
        let again = mapping();
        assert!(!Arc::ptr_eq(&first.mapped, &again.mapped), "mapped again");
        assert!(!verified(&again), "not verified yet");
        // A read of every record, to the end, verifies it too.
        let mut cursor = open_cursor(&fs, &path, &every_record).unwrap();
        while cursor.advance().unwrap() {}
        drop(cursor);
        assert!(verified(&mapping()), "a whole read verified it");
        assert_eq!(payloads(), ["x ERROR"]);
        drop(again);
        let now = mapping().mapped;
        cache.retain_listed(&[]);
        assert_eq!(Arc::strong_count(&now), 1, "let go once not listed");
    }

    /// The first search of a shared batch file indexes its batches'
    /// records, and the searches after it, which walk from that index,
    /// select the same records as a search without the cache.
    #[test]
    fn a_batch_files_record_index_is_built_once_and_selects_the_same() {
        let fs = MemFs::new();
        let dir = Path::new("/store");
        fs.create_dir_all(dir).unwrap();
        let payloads: Vec<String> = (0..5_000)
            .map(|i| match i % 37 {
                0 => format!("{i} an ERROR here"),
                5 => format!("{i} ERRO"),
                _ => format!("{i} fine"),
            })
            .collect();
        let meta = batch_file(&fs, dir, &payloads);
        let path = dir.join(&meta.name);
        let cache = Arc::new(SegmentCache::new());
        let search = |cache: Option<Arc<SegmentCache>>| {
            let options = ScanOptions {
                cache,
                literal: Some(Arc::new(memmem::Finder::new(b"ERROR").into_owned())),
                ..ScanOptions::new(WorkerPool::new(2).unwrap())
            };
            let mut cursor = open_cursor(&fs, &path, &options).unwrap();
            let mut out = Vec::new();
            while cursor.advance().unwrap() {
                out.push(String::from_utf8(cursor.record().payload.to_vec()).unwrap());
            }
            out
        };
        let want: Vec<String> = payloads
            .iter()
            .filter(|p| p.contains("ERROR"))
            .cloned()
            .collect();
        assert_eq!(search(None), want);
        let indexed = || {
            let file = fs.open_read(&path).unwrap();
            let shared = cache.map_batches(&fs, &path, &*file).unwrap();
            let batches = batch_offsets(&fs, &path);
            batches
                .iter()
                .filter(|&&at| shared.record_indexes.get(at).is_some())
                .count()
        };
        assert_eq!(indexed(), 0);
        assert_eq!(search(Some(cache.clone())), want, "the search that indexes");
        assert_eq!(
            indexed(),
            batch_offsets(&fs, &path).len(),
            "every batch indexed"
        );
        assert_eq!(search(Some(cache.clone())), want, "a search from the index");
    }

    /// Where each batch's body starts in the file at `path`.
    fn batch_offsets(fs: &MemFs, path: &Path) -> Vec<usize> {
        let mut scanner = crate::SegmentScanner::open(fs, path).unwrap();
        let mut starts = Vec::new();
        while let Some((_, body)) = scanner.next_batch().unwrap() {
            let len = body.len();
            starts.push(scanner.offset() as usize - len);
        }
        starts
    }

    /// A batch file with a corrupt batch is never noted as verified: every
    /// query through the cache meets the corruption again.
    #[test]
    fn a_corrupt_batch_file_is_verified_by_every_query() {
        let fs = MemFs::new();
        let dir = Path::new("/store");
        fs.create_dir_all(dir).unwrap();
        let payload = format!("needle {}", "x".repeat(200));
        let meta = batch_file(&fs, dir, &vec![payload.as_str(); 20_000]);
        let path = dir.join(&meta.name);
        let mut bytes = fs.read_all(&path).unwrap();
        let at = bytes.len() * 3 / 4;
        bytes[at] ^= 0x40;
        fs.write_all_synced(&path, &bytes);
        let cache = Arc::new(SegmentCache::new());
        let searching = ScanOptions {
            cache: Some(cache.clone()),
            literal: Some(Arc::new(memmem::Finder::new(b"needle").into_owned())),
            ..ScanOptions::new(WorkerPool::inline())
        };
        let reading_all = ScanOptions {
            cache: Some(cache.clone()),
            ..ScanOptions::new(WorkerPool::inline())
        };
        for options in [&searching, &reading_all, &searching] {
            let mut cursor = open_cursor(&fs, &path, options).unwrap();
            let failed = loop {
                match cursor.advance() {
                    Ok(true) => continue,
                    Ok(false) => break false,
                    Err(err) => break matches!(err, StorageError::Corrupt { .. }),
                }
            };
            assert!(failed, "the corruption is met");
            let file = fs.open_read(&path).unwrap();
            let shared = cache.map_batches(&fs, &path, &*file).unwrap();
            assert!(!shared.verified.load(Ordering::Acquire));
        }
    }

    /// A sealed batch file's cursor told to read ahead starts searching on
    /// the workers before its first advance, and returns the same records
    /// as one that was not told; a growing file's cursor reads nothing
    /// ahead.
    #[test]
    fn a_batch_file_read_ahead_searches_before_the_first_advance() {
        let fs = MemFs::new();
        let dir = Path::new("/store");
        fs.create_dir_all(dir).unwrap();
        let payloads: Vec<String> = (0..20_000)
            .map(|i| {
                let word = if i % 7 == 0 { "needle" } else { "hay" };
                format!("line {i} {word} {}", "x".repeat(180))
            })
            .collect();
        let meta = batch_file(&fs, dir, &payloads);
        let path = dir.join(&meta.name);
        let finder = Arc::new(memmem::Finder::new(b"needle").into_owned());
        let options = ScanOptions {
            literal: Some(finder.clone()),
            ..ScanOptions::new(WorkerPool::new(2).unwrap())
        };
        let read = |ahead: bool| {
            let mut cursor = open_cursor(&fs, &path, &options).unwrap();
            assert_eq!(cursor.bytes_read(), 0);
            if ahead {
                cursor.read_ahead();
                assert!(
                    cursor.bytes_read() > 0,
                    "read ahead before the first advance"
                );
            }
            let mut ids = Vec::new();
            while cursor.advance().unwrap() {
                ids.push(cursor.record().id);
            }
            ids
        };
        let (plain, ahead) = (read(false), read(true));
        assert_eq!(plain.len(), 20_000usize.div_ceil(7));
        assert_eq!(plain, ahead);
        let mut growing = BatchCursor::open_growing(&fs, &path)
            .unwrap()
            .with_literal(finder);
        growing.read_ahead();
        assert_eq!(growing.bytes_read(), 0, "a growing file is read in turn");
    }

    /// A batch that fails its checksum stops a search of the file there,
    /// with a corruption error at that batch, whether its batches are
    /// searched on workers (a sealed file, read ahead before its first
    /// advance or not) or read in turn (a growing one); the records of the
    /// batches before it come first.
    #[test]
    fn a_corrupt_batch_ends_a_searched_file_with_an_error() {
        for (growing, header, ahead) in [
            (false, false, false),
            (true, false, false),
            (false, true, false),
            (true, true, false),
            (false, false, true),
            (false, true, true),
        ] {
            let fs = MemFs::new();
            let dir = Path::new("/store");
            fs.create_dir_all(dir).unwrap();
            let mut w =
                StoreSegmentWriter::create(&fs, dir, SegmentKind::Batches, WorkerPool::inline())
                    .unwrap();
            // 1 MiB batches: 4 MB of records make four.
            for i in 0..20_000u128 {
                let word = if i % 10 == 0 { "needle" } else { "hay" };
                let payload = format!("line {i} {word} {}", "x".repeat(180));
                w.push(Record {
                    id: Ulid(i + 1),
                    flags: 0,
                    topic: b"t",
                    payload: payload.as_bytes(),
                })
                .unwrap();
            }
            let meta = w.finish().unwrap().unwrap();
            let path = dir.join(&meta.name);
            let mut bytes = fs.read_all(&path).unwrap();
            // A byte of a body (its checksum fails), or the first byte of
            // the second batch's header (it does not parse).
            let at = match header {
                false => bytes.len() * 3 / 4,
                true => {
                    let mut scanner = crate::SegmentScanner::open(&fs, &path).unwrap();
                    scanner.next_batch().unwrap().unwrap();
                    scanner.offset() as usize
                }
            };
            bytes[at] ^= 0x40;
            fs.write_all_synced(&path, &bytes);
            let finder = Arc::new(memmem::Finder::new(b"needle").into_owned());
            let mut cursor: Box<dyn RecordCursor> = match growing {
                false => {
                    let options = ScanOptions {
                        literal: Some(finder),
                        ..ScanOptions::new(WorkerPool::inline())
                    };
                    open_cursor(&fs, &path, &options).unwrap()
                }
                true => Box::new(
                    BatchCursor::open_growing(&fs, &path)
                        .unwrap()
                        .with_literal(finder),
                ),
            };
            if ahead {
                cursor.read_ahead();
            }
            let mut seen = 0;
            let err = loop {
                match cursor.advance() {
                    Ok(true) => seen += 1,
                    Ok(false) => panic!(
                        "the corrupt batch was not noticed (growing {growing}, header {header}, \
                         read ahead {ahead})"
                    ),
                    Err(err) => break err,
                }
            };
            assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
            assert!(seen > 0 && seen < 2_000, "{seen} records before the error");
        }
    }

    proptest::proptest! {
        /// The literal prefilter returns exactly the records whose payload
        /// contains the literal, even when an occurrence spans two records.
        #[test]
        fn literal_prefilter_equals_a_per_record_search(
            payloads in proptest::collection::vec(proptest::collection::vec(proptest::sample::select(b"ab".to_vec()), 0..8), 1..300),
            needle in proptest::collection::vec(proptest::sample::select(b"ab".to_vec()), 1..4),
            blocks in proptest::bool::ANY,
        ) {
            let format = if blocks { SegmentKind::Blocks } else { SegmentKind::Batches };
            let fs = MemFs::new();
            let dir = Path::new("/store");
            fs.create_dir_all(dir).unwrap();
            let mut w = StoreSegmentWriter::create(&fs, dir, format, WorkerPool::inline()).unwrap();
            for (i, p) in payloads.iter().enumerate() {
                w.push(Record { id: Ulid(i as u128 + 1), flags: 0, topic: b"a", payload: p }).unwrap();
            }
            let meta = w.finish().unwrap().unwrap();
            let finder = Arc::new(memmem::Finder::new(&needle).into_owned());
            let options = ScanOptions { literal: Some(finder.clone()), ..ScanOptions::new(WorkerPool::inline()) };
            let mut cursor = open_cursor(&fs, &dir.join(&meta.name), &options).unwrap();
            // So a literal query does not test its records again.
            proptest::prop_assert!(cursor.holds_its_literal());
            let mut got = Vec::new();
            while cursor.advance().unwrap() {
                got.push(cursor.record().id.0 as usize - 1);
            }
            let want: Vec<usize> = payloads.iter().enumerate().filter(|(_, p)| finder.find(p).is_some()).map(|(i, _)| i).collect();
            proptest::prop_assert_eq!(cursor.records_skipped() as usize + got.len(), payloads.len());
            proptest::prop_assert_eq!(got, want);
        }
    }
}
