//! The record cursors over files the store and the ingest log hold:
//! [`RecordCursor`], the one reader abstraction; [`BatchCursor`] over
//! batch files and ingest segments (growing ones too); [`MemoryCursor`]
//! over records sorted in memory. Block files have theirs in
//! [`crate::block_segment`].

use std::{
    collections::VecDeque,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use memchr::memmem;
use sluice_record::{BatchHeader, Record, Ulid, decode_record};

mod memory;
mod select;

pub use self::memory::MemoryCursor;
pub use self::select::RECORD_INDEX_STRIDE;
use self::select::{Selection, Selector, index_records};

use crate::{
    StorageError,
    block_segment::Cancel,
    fs::Fs,
    segment::SegmentScanner,
    workers::{Task, WorkerPool},
};

/// Whether `err` is a batch cut short by the end of the file.
fn is_cut_short(err: &StorageError) -> bool {
    matches!(
        err,
        StorageError::Corrupt {
            source: sluice_record::CodecError::Truncated { .. },
            ..
        }
    )
}

/// What selected the records a cursor returns, besides its id and time
/// range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selected {
    /// Nothing: they are every record, for the caller to test.
    Nothing,
    /// The literal it was given (`with_literal`): each holds it wholly
    /// inside its payload. (Where that literal is only what a text
    /// matcher requires, the caller still tests the matcher.)
    Literal,
    /// The text matcher it was given (`with_text_matcher`): each is a
    /// record the matcher matches on its payload alone.
    Text,
}

/// A forward cursor over the records of one segment, in id order.
///
/// This is the reader abstraction of the store: query execution and
/// compaction see segments only through it.
pub trait RecordCursor: Send {
    /// Move to the next record. Returns `false` at the end.
    fn advance(&mut self) -> Result<bool, StorageError>;
    /// The current record; only valid after `advance` returned `true`.
    fn record(&self) -> Record<'_>;
    /// Bytes of the segment read so far.
    fn bytes_read(&self) -> u64;
    /// Records passed over by a prefilter without being returned.
    fn records_skipped(&self) -> u64 {
        0
    }
    /// Blocks passed over because they failed their checks (see
    /// [`ScanOptions::skip_corrupt_blocks`](crate::store_segment::ScanOptions::skip_corrupt_blocks)).
    fn corrupt_blocks(&self) -> u64 {
        0
    }
    /// What the first corrupt block passed over was, if any.
    fn first_corruption(&self) -> Option<&str> {
        None
    }
    /// What selected the records the cursor returns (see [`Selected`]): a
    /// caller whose query is that literal, or that text matcher, need not
    /// test each record again.
    fn selected_by(&self) -> Selected {
        Selected::Nothing
    }
    /// Start reading ahead, before the first [`advance`](Self::advance):
    /// a merge calls it on the input it will open next while it reads the
    /// one before, so the workers are not left idle at the boundary
    /// between two files. Reading ahead never fails: an error it meets is
    /// met again, and returned, by `advance`.
    fn read_ahead(&mut self) {}
}

/// [`RecordCursor`] over a batch file (or any segment file with
/// sorted records, such as a sorted ingest segment).
///
/// With a literal ([`BatchCursor::with_literal`]) or a text matcher
/// ([`BatchCursor::with_text_matcher`]) each batch body is searched as a
/// whole (memchr's memmem, or the matcher), and only the records it selects
/// are decoded and returned; a batch without a match is skipped whole. The
/// records passed over are counted in
/// [`records_skipped`](RecordCursor::records_skipped). A sealed file is
/// mapped, and given a worker pool ([`BatchCursor::with_workers`]) its
/// batches are verified and searched there, [`BATCHES_AHEAD`] ahead of the
/// reader, as block files' blocks are: fresh data is searched on every core.
pub struct BatchCursor {
    scanner: SegmentScanner,
    /// Offset of the next record in the scanner's body (every record is
    /// returned: no literal and no matcher).
    next: usize,
    remaining_in_batch: u32,
    /// The current record, decoded once in `advance`.
    current: CurrentRecord,
    select: Option<Selector>,
    /// With a selector: where the selected records of the current body
    /// start, ascending, and the next one to return.
    selected: Vec<usize>,
    next_selected: usize,
    /// The selected records of the current batch, copied out by the
    /// worker that selected them (see [`Selection`]); `selected` then
    /// holds where each starts in it. `None`: they are read from the
    /// mapping.
    gathered: Option<Vec<u8>>,
    skipped: u64,
    cancel: Option<Cancel>,
    /// A file still being appended to: a short batch at its end is where
    /// the writer is, not corruption (see [`BatchCursor::open_growing`]).
    growing: bool,
    workers: Option<Arc<WorkerPool>>,
    /// Groups of batches being searched on the workers, in file order.
    in_flight: VecDeque<Searching>,
    /// Batches of the last group the workers finished, not yet read.
    searched: VecDeque<Searched>,
    /// Shared with the other cursors of the file: whether every batch's
    /// checksum was verified, by a search that read the whole file.
    verified: Option<Arc<AtomicBool>>,
    /// Shared with the other cursors of the file: its batch table, with
    /// the batches' record indexes, built by the first search of each.
    batches: Option<Arc<crate::segment::BatchTable>>,
    /// Only batches that can hold ids in this range are read (see
    /// [`BatchCursor::with_id_range`]), and whether the scan has been moved
    /// to the range's start yet.
    ids: Option<(u128, u128)>,
    range_entered: bool,
    /// Bytes of batches passed over below the id range: not read, so not
    /// in [`RecordCursor::bytes_read`].
    passed_over: u64,
    /// Where the batches above the id range start, once met: the scan
    /// ends there. Batches passed over either way were not verified, so
    /// such a scan does not mark the file verified.
    above_range_at: Option<u64>,
}

/// Groups of batches searched ahead of the one being read, on the worker
/// pool.
pub const BATCHES_AHEAD: usize = 4;
/// Bytes of batch bodies one worker job searches, at least. A job per
/// 1 MiB batch would spend more on waking threads than on the batch; 8 MiB
/// took 3% off a fresh search's CPU against 4 MiB, and 16 MiB (in that
/// measurement's 16 MiB batch files, one worker per file) no more, at a
/// slower median (BENCHMARKS.md, "2026-12-04, late night").
const GROUP_BYTES: usize = 8 << 20;

/// A batch as the scanner found it: its header, where its body lies in
/// the mapping, and its offset in the file.
#[derive(Clone)]
struct Frame {
    header: BatchHeader,
    body: std::ops::Range<usize>,
    offset: u64,
    /// Its place in the file's batch table, if it was found there.
    position: Option<usize>,
}

/// Consecutive batches given to a worker, and the task that verifies and
/// searches them.
struct Searching {
    frames: Vec<Frame>,
    task: Task<Vec<Result<Selection, sluice_record::CodecError>>>,
}

/// A batch a worker verified and searched: the records it selected, or
/// why it is corrupt.
struct Searched {
    frame: Frame,
    selected: Result<Selection, sluice_record::CodecError>,
}

#[derive(Default, Clone, Copy)]
struct CurrentRecord {
    id: Ulid,
    flags: u8,
    topic: (usize, usize),
    payload: (usize, usize),
}

/// Whether a batch's first id is above the id range `ids` (so, the ids
/// never decreasing, every batch from it on lies above it); only as
/// trustworthy as the body.
fn starts_above(ids: Option<(u128, u128)>, header: &BatchHeader, body: &[u8]) -> bool {
    ids.is_some_and(|(_, max)| {
        crate::segment::batch_first_id(header, body).is_some_and(|first| first > max)
    })
}

impl BatchCursor {
    /// A cursor over every record of the sealed batch file at `path`
    /// (mapped: see [`SegmentScanner::open_mapped`]).
    pub fn open(fs: &dyn Fs, path: &Path) -> Result<Self, StorageError> {
        Ok(Self::over(SegmentScanner::open_mapped(fs, path)?))
    }

    /// A cursor over every record of the sealed batch file `file` at
    /// `path`, as the store's queries share it (see
    /// [`crate::SegmentCache::map_batches`]): over its mapping, verifying
    /// its batches unless a cursor before did, and telling the cursors
    /// after once it did.
    pub fn over_shared(
        file: Box<dyn crate::fs::ReadFile>,
        path: &Path,
        shared: crate::segment_cache::SharedBatchFile,
    ) -> Self {
        let mut scanner = SegmentScanner::over_mapping(file, path, shared.mapped);
        if let Some(batches) = &shared.batches {
            scanner = scanner.with_table(batches.clone());
        }
        let mut cursor = Self::over(scanner);
        cursor.verified = Some(shared.verified);
        cursor.batches = shared.batches;
        cursor
    }

    fn over(scanner: SegmentScanner) -> Self {
        BatchCursor {
            scanner,
            next: 0,
            remaining_in_batch: 0,
            current: CurrentRecord::default(),
            select: None,
            selected: Vec::new(),
            next_selected: 0,
            gathered: None,
            skipped: 0,
            cancel: None,
            growing: false,
            workers: None,
            in_flight: VecDeque::new(),
            searched: VecDeque::new(),
            verified: None,
            batches: None,
            ids: None,
            range_entered: false,
            passed_over: 0,
            above_range_at: None,
        }
    }

    /// Read only the batches that can hold ids in `[min, max]`, in a
    /// sealed (mapped) file whose ids never decrease, as a store's batch
    /// files' do: the scan starts at the last batch whose first id is
    /// below `min` (read first, so a damaged first id there shows as that
    /// batch's checksum failure) and ends before the first batch whose
    /// first id is above `max` (verified before it is trusted). Records of
    /// the batches read are all returned (selected by the literal or
    /// matcher, if any); the caller filters them.
    pub fn with_id_range(mut self, min: Ulid, max: Ulid) -> Self {
        self.ids = Some((min.0, max.0));
        self
    }

    /// At the end of a scan that verified every batch of the file (or
    /// trusted them as verified): tell the file's other cursors, so that
    /// later queries search it without verifying it again. Batches passed
    /// over as outside the id range were not verified, so such a scan does
    /// not count.
    fn note_verified_whole(&self) {
        if let Some(verified) = &self.verified
            && self.passed_over == 0
            && self.above_range_at.is_none()
        {
            verified.store(true, Ordering::Release);
        }
    }

    /// Before the first batch: move past the batches below the id range.
    fn enter_range(&mut self) {
        if self.range_entered {
            return;
        }
        self.range_entered = true;
        if let Some((min, _)) = self.ids
            && !self.growing
        {
            let (records, bytes) = self.scanner.skip_batches_below(min);
            self.skipped += records;
            self.passed_over += bytes;
        }
    }

    /// Whether the batch at `offset` starts above the id range (see
    /// [`starts_above`]), for an unverified body: only once the batch
    /// verifies (a damaged id must not end the scan early).
    fn above_range(&self, frame: &crate::segment::FrameAt) -> bool {
        let Some((_, max)) = self.ids else {
            return false;
        };
        self.scanner
            .frame_first_id(frame)
            .is_some_and(|first| first > max)
            && self
                .scanner
                .mapping()
                .and_then(|mapped| mapped.get(frame.body.clone()))
                .is_some_and(|body| frame.header.verify(body).is_ok())
    }

    /// A cursor over the whole batches of a segment file that a connection
    /// may still be appending to (an active ingest segment): it reads the
    /// length the file had when opened and ends at the first batch cut
    /// short there, which is a write in progress rather than a torn tail.
    pub fn open_growing(fs: &dyn Fs, path: &Path) -> Result<Self, StorageError> {
        // Read, not mapped: the file grows while it is read.
        let mut cursor = Self::over(SegmentScanner::open(fs, path)?);
        cursor.growing = true;
        Ok(cursor)
    }

    /// The smallest id, whether the ids increase, and the record count, of
    /// the whole batches (see [`SegmentScanner::summarize_ids`]).
    pub fn summarize_ids(&self) -> Result<crate::IdSummary, StorageError> {
        self.scanner.summarize_ids()
    }

    /// Every record of the whole batches, sorted by id: for a file whose
    /// ids do not increase (origin times, client ids). Memory is the
    /// file's records; the caller bounds it.
    pub fn into_sorted(mut self) -> Result<MemoryCursor, StorageError> {
        // Read every record, not only those with the literal.
        self.select = None;
        let mut records = Vec::new();
        while self.advance()? {
            records.push(self.record().to_owned_record());
        }
        records.sort_by_key(|r| r.id);
        Ok(MemoryCursor::new(records, self.scanner.offset()))
    }

    /// The id of the file's first record, without moving the cursor:
    /// `None` when no whole batch is there yet or it holds no record.
    pub fn first_id(&self) -> Result<Option<Ulid>, StorageError> {
        self.scanner.first_id()
    }

    /// The file's length when it was opened: what the cursor reads.
    pub fn len(&self) -> u64 {
        self.scanner.len()
    }

    /// Whether the file was empty when it was opened.
    pub fn is_empty(&self) -> bool {
        self.scanner.is_empty()
    }

    /// Return only records whose payload contains `literal` (unless a text
    /// matcher was given).
    pub fn with_literal(mut self, literal: Arc<memmem::Finder<'static>>) -> Self {
        if !matches!(
            self.select,
            Some(Selector::Text(_) | Selector::LiteralThenPayload(_))
        ) {
            self.select = Some(Selector::Literal(literal));
        }
        self
    }

    /// Return only records whose payload `matcher` matches; it replaces the
    /// literal. With a [required
    /// literal](crate::block_segment::TextMatcher::required_literal), the
    /// bodies are searched for it and the records that hold it decided on
    /// their payload; else each body is searched as a whole, which a
    /// matcher that [looks
    /// around](crate::block_segment::TextMatcher::looks_around) cannot be:
    /// it is not taken then, and the cursor returns every record (or those
    /// with the literal), for the caller to check.
    pub fn with_text_matcher(
        mut self,
        matcher: Arc<dyn crate::block_segment::TextMatcher>,
    ) -> Self {
        if matcher.required_literal().is_some() {
            self.select = Some(Selector::LiteralThenPayload(matcher));
        } else if !matcher.looks_around() {
            self.select = Some(Selector::Text(matcher));
        }
        self
    }

    /// Verify and search a sealed file's batches on `workers`, a few ahead
    /// of the reader (a growing file, or one read without a selector, is
    /// read on the caller's thread).
    pub fn with_workers(mut self, workers: Arc<WorkerPool>) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Stop, as if at the end, once `cancel` is raised.
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = Some(cancel);
        self
    }

    fn corrupt(&self, source: sluice_record::CodecError) -> StorageError {
        StorageError::Corrupt {
            path: self.scanner.path().to_path_buf(),
            offset: self.scanner.offset(),
            source,
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Give the workers the next batches, in groups of about
    /// [`GROUP_BYTES`], until [`BATCHES_AHEAD`] groups are in flight or the
    /// file ends. A header that does not parse ends the scheduling: its
    /// error comes once the batches before it are read.
    fn schedule(
        &mut self,
        workers: &Arc<WorkerPool>,
        select: &Selector,
    ) -> Result<(), StorageError> {
        let mut bad_header = false;
        while self.in_flight.len() < BATCHES_AHEAD && !bad_header {
            let mut frames = Vec::new();
            let mut bytes = 0;
            while bytes < GROUP_BYTES && self.above_range_at.is_none() {
                let offset = self.scanner.offset();
                let next = match self.scanner.next_frame() {
                    Err(e) if frames.is_empty() && self.in_flight.is_empty() => return Err(e),
                    // The scanner stays at the bad header: a later
                    // schedule, with no batch before it left, meets it
                    // again and returns its error.
                    Err(_) => {
                        bad_header = true;
                        break;
                    }
                    Ok(next) => next,
                };
                let Some(frame) = next else {
                    break;
                };
                if self.above_range(&frame) {
                    // The rest of the file is above the range: end here.
                    self.above_range_at = Some(offset);
                    break;
                }
                bytes += frame.body.len();
                frames.push(Frame {
                    header: frame.header,
                    body: frame.body,
                    offset,
                    position: frame.position,
                });
            }
            if frames.is_empty() {
                break;
            }
            let mapped = self.scanner.mapping().expect("mapped").clone();
            let (select, group) = (select.clone(), frames.clone());
            let verify = !self
                .verified
                .as_ref()
                .is_some_and(|v| v.load(Ordering::Acquire));
            let batches = self.batches.clone();
            let task = workers.submit(move || {
                let mut selected = Vec::new();
                group
                    .iter()
                    .map(|frame| {
                        let body = &mapped[frame.body.clone()];
                        if verify {
                            frame.header.verify(body)?;
                        }
                        let count = frame.header.count;
                        // The first search of a batch indexes its records
                        // (one walk, as the search without an index would
                        // do); the searches after it walk from the index.
                        let table = batches.as_deref().zip(frame.position);
                        let index = match table {
                            Some((table, at)) => match table.record_index(at) {
                                Some(index) => Some(index),
                                None => {
                                    table.keep_record_index(at, index_records(body, count)?.into());
                                    table.record_index(at)
                                }
                            },
                            None => None,
                        };
                        select.select(body, count, index, &mut selected)?;
                        Selection::gather(body, count, std::mem::take(&mut selected))
                    })
                    .collect()
            });
            self.in_flight.push_back(Searching { frames, task });
        }
        Ok(())
    }

    /// The next batch searched on the workers, as the current one.
    fn next_searched(
        &mut self,
        workers: &Arc<WorkerPool>,
        select: &Selector,
    ) -> Result<Option<BatchHeader>, StorageError> {
        if self.searched.is_empty() {
            self.schedule(workers, select)?;
            let Some(searching) = self.in_flight.pop_front() else {
                // The end of the file, every batch verified (or trusted): a
                // corrupt one would have ended the search with its error.
                self.note_verified_whole();
                return Ok(None);
            };
            let results = searching.task.wait().map_err(|panicked| StorageError::Io {
                op: "search a batch of",
                path: self.scanner.path().to_path_buf(),
                source: std::io::Error::other(panicked),
            })?;
            self.searched.extend(
                searching
                    .frames
                    .into_iter()
                    .zip(results)
                    .map(|(frame, selected)| Searched { frame, selected }),
            );
        }
        let Searched { frame, selected } = self.searched.pop_front().expect("filled above");
        let selected = selected.map_err(|source| StorageError::Corrupt {
            path: self.scanner.path().to_path_buf(),
            offset: frame.offset,
            source,
        })?;
        self.scanner.set_body(frame.body);
        self.selected = selected.starts;
        self.gathered = selected.gathered;
        Ok(Some(frame.header))
    }

    /// Where the current batch's records are read from: the copy of its
    /// selected ones, or its body.
    fn selected_body(&self) -> &[u8] {
        self.gathered
            .as_deref()
            .unwrap_or_else(|| self.scanner.body())
    }

    /// The pool and the selector, when the batches are searched on the
    /// workers: a sealed, mapped file read with a selector.
    fn parallel(&self) -> Option<(Arc<WorkerPool>, Selector)> {
        match (&self.workers, &self.select) {
            (Some(workers), Some(select)) if self.scanner.mapping().is_some() && !self.growing => {
                Some((workers.clone(), select.clone()))
            }
            _ => None,
        }
    }

    /// Load the next batch; with a selector, skip batches it selects
    /// nothing of.
    fn next_batch(&mut self) -> Result<bool, StorageError> {
        self.enter_range();
        loop {
            if self.is_cancelled() {
                self.in_flight.clear();
                self.searched.clear();
                return Ok(false);
            }
            let parallel = self.parallel();
            let header = match &parallel {
                Some((workers, select)) => match self.next_searched(workers, select)? {
                    Some(header) => header,
                    None => return Ok(false),
                },
                None => {
                    if self.above_range_at.is_some() {
                        return Ok(false);
                    }
                    let next = match self.scanner.next_batch() {
                        Err(e) if self.growing && is_cut_short(&e) => return Ok(false),
                        other => other?,
                    };
                    let Some((header, body)) = next else {
                        // `next_batch` verified every batch it read.
                        self.note_verified_whole();
                        return Ok(false);
                    };
                    // Read and verified: above the range, the scan ends.
                    if starts_above(self.ids, &header, body) {
                        let at = self.scanner.offset() - header.frame_len() as u64;
                        self.above_range_at = Some(at);
                        return Ok(false);
                    }
                    self.gathered = None;
                    if let Some(select) = &self.select {
                        let mut selected = std::mem::take(&mut self.selected);
                        let searched = select.select(body, header.count, None, &mut selected);
                        self.selected = selected;
                        searched.map_err(|e| self.corrupt(e))?;
                    }
                    header
                }
            };
            self.next = 0;
            self.next_selected = 0;
            if self.select.is_none() {
                self.remaining_in_batch = header.count;
                return Ok(true);
            }
            self.skipped += (header.count as usize - self.selected.len()) as u64;
            if !self.selected.is_empty() {
                return Ok(true);
            }
        }
    }
}

impl RecordCursor for BatchCursor {
    fn selected_by(&self) -> Selected {
        match self.select {
            None => Selected::Nothing,
            Some(Selector::Literal(_)) => Selected::Literal,
            Some(Selector::Text(_) | Selector::LiteralThenPayload(_)) => Selected::Text,
        }
    }

    fn read_ahead(&mut self) {
        if self.is_cancelled() || !self.searched.is_empty() {
            return;
        }
        if let Some((workers, select)) = self.parallel() {
            self.enter_range();
            // A header that does not parse leaves the scanner on it: the
            // first advance meets it again and returns its error.
            let _ = self.schedule(&workers, &select);
        }
    }

    fn advance(&mut self) -> Result<bool, StorageError> {
        loop {
            let at = match self.select {
                Some(_) => match self.selected.get(self.next_selected) {
                    Some(&at) => {
                        self.next_selected += 1;
                        if let Some(&ahead) = self.selected.get(self.next_selected + PREFETCH_AHEAD)
                        {
                            prefetch(self.selected_body(), ahead);
                        }
                        at
                    }
                    None => {
                        if !self.next_batch()? {
                            return Ok(false);
                        }
                        continue;
                    }
                },
                None => {
                    if self.remaining_in_batch == 0 {
                        if !self.next_batch()? {
                            return Ok(false);
                        }
                        continue;
                    }
                    self.remaining_in_batch -= 1;
                    self.next
                }
            };
            let body = self.selected_body();
            let (record, next) = decode_record(body, at).map_err(|e| self.corrupt(e))?;
            let payload_start = next - record.payload.len();
            let topic_start = payload_start - record.topic.len();
            self.current = CurrentRecord {
                id: record.id,
                flags: record.flags,
                topic: (topic_start, payload_start),
                payload: (payload_start, next),
            };
            self.next = next;
            return Ok(true);
        }
    }

    fn record(&self) -> Record<'_> {
        let body = self.selected_body();
        let c = &self.current;
        Record {
            id: c.id,
            flags: c.flags,
            topic: &body[c.topic.0..c.topic.1],
            payload: &body[c.payload.0..c.payload.1],
        }
    }

    fn bytes_read(&self) -> u64 {
        let reached = self
            .scanner
            .offset()
            .min(self.above_range_at.unwrap_or(u64::MAX));
        reached.saturating_sub(self.passed_over)
    }

    fn records_skipped(&self) -> u64 {
        self.skipped
    }
}

/// Selected records ahead of the one being decoded whose first bytes are
/// asked for from memory (see [`prefetch`]).
const PREFETCH_AHEAD: usize = 8;

/// Ask the CPU to bring the record at `at` of `body` (its header and the
/// start of its payload) into its caches. The workers that selected a
/// batch's records passed over them several megabytes earlier, so the
/// reader finds each in memory, not in a cache: a fifth of its time for a
/// literal on 1% of fresh lines went to that wait (BENCHMARKS.md, "Design
/// measurements").
#[inline]
fn prefetch(body: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in [at, at + 64, at + 128] {
        if let Some(byte) = body.get(line) {
            prefetch_line(byte);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (body, at);
}

// `unsafe_code` is allowed for the one intrinsic: a prefetch takes a raw
// pointer, though it never reads through it.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[inline]
fn prefetch_line(byte: &u8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch is a hint that never faults, and the pointer is
    // of a live reference anyway; SSE, which it needs, is part of x86_64.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(byte).cast::<i8>()) }
}

#[cfg(test)]
mod tests;
