//! Reading block files: a cursor that prunes blocks by time and term filter
//! and decodes the blocks it keeps on the process's [`WorkerPool`], a few
//! ahead of the reader, handing them over strictly in order.
//!
//! A worker verifies and decompresses its block, finds the literal (if any)
//! and applies the record filter (if any), so the reader's thread only walks
//! the selected records. Blocks the [`BlockCache`] keeps are searched by a
//! worker in groups of about [`KEPT_GROUP_BYTES`] of text. With up to
//! [`JOBS_AHEAD`] jobs in flight, at most [`PREFETCH`] of them decoding, the
//! scan uses every core while the results stay in id order. Memory per
//! cursor is the block being read plus the blocks being decoded, and the
//! payloads a search selected in each (copied out, at most a quarter of
//! its text); their buffers and zstd contexts are reused. A cursor does no
//! work until it is first advanced or asked to read ahead (as the merge asks of the input it
//! opens and the one after it), so opening every segment of a query's plan
//! up front costs nothing.
//!
//! A cursor stops early, as if at the end of its segment, once its
//! [`Cancel`] flag is raised (the query's client went away): it checks the
//! flag before each block it schedules, so a cancelled scan ends within
//! the blocks already in flight.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use sluice_record::Record;

use super::{
    Block, BlockCache, BlockEntry, BlockSegment, FrameScratch, Picked, Probes,
    block::ReadCost,
    select::{
        Lines, Literal, RecordFilter, Select, Selection, TextMatcher, finish_selection,
        select_records,
    },
};
use crate::{
    StorageError,
    fs::Fs,
    term_filter::{AnyOfProbe, TermProbe},
    workers::{Task, WorkerPool},
};

/// Blocks decoded ahead of the one being read.
pub const PREFETCH: usize = 2;

/// Jobs in flight ahead of the block being read, of which at most
/// [`PREFETCH`] decode a block; the others search blocks the cache keeps,
/// which hold no buffers of their own but the selected payloads' copies
/// (at most a quarter of their text).
const JOBS_AHEAD: usize = 4;

/// Bytes of kept blocks' text one worker job searches, at least (the last
/// job of a segment may search less). A job per 1 MiB block woke a worker
/// and then the reader for each block: a fifth of the workers' time and a
/// third of the reader's for a literal on 1% of fresh lines, on this
/// machine, where a sleeping core takes long to wake (BENCHMARKS.md,
/// "Design measurements").
pub(super) const KEPT_GROUP_BYTES: usize = 4 << 20;

/// Raised when a scan should stop (its client went away); shared by every
/// cursor of one query.
pub type Cancel = Arc<AtomicBool>;

/// A block as a worker leaves it.
#[derive(Default)]
struct Decoded {
    /// The block decoded here; its buffers are reused for the next one.
    block: Block,
    /// Or the block as the [`BlockCache`] keeps it (found there, or put
    /// there once decoded): when set, it is the block.
    kept: Option<Arc<Block>>,
    /// The records to return, in id order once finished.
    selected: Selection,
    /// Those records, where each lies, in the same order.
    picked: Vec<Picked>,
    /// The frames to read; all of them when `all_frames`.
    wanted: Vec<u32>,
    all_frames: bool,
    /// What reading the wanted frames cost, wherever they came from.
    cost: ReadCost,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
    /// Why the block failed its checks, if it did.
    failure: Option<&'static str>,
}

impl Decoded {
    fn block(&self) -> &Block {
        self.kept.as_deref().unwrap_or(&self.block)
    }

    /// On the worker that selected the records: fill `picked` from
    /// `selected`, and count what reading the wanted frames cost.
    fn finish(&mut self) {
        let block = self.kept.as_deref().unwrap_or(&self.block);
        self.cost = block.read_cost((!self.all_frames).then_some(&self.wanted[..]));
        self.picked.clear();
        let hits = self.selected.hits.iter();
        self.picked
            .extend(hits.map(|hit| block.pick(hit.record as usize, self.selected.payload(hit))));
    }

    /// Selected record `i`.
    #[inline]
    fn record(&self, i: usize) -> Record<'_> {
        let block = self.block();
        block.picked_record(&self.picked[i], self.selected.text(block))
    }
}

/// A job in flight: the blocks it decodes or searches (index and entry),
/// and its task, which returns them in the same order.
struct InFlight {
    blocks: Vec<(usize, BlockEntry)>,
    task: Task<Vec<Decoded>>,
    /// Whether it decodes a block (so holds a block's buffers).
    decodes: bool,
}

/// Kept blocks gathered for one worker job: what each needs, and their
/// text's bytes.
#[derive(Default)]
struct KeptGroup {
    blocks: Vec<(usize, BlockEntry)>,
    jobs: Vec<(Arc<Block>, Decoded)>,
    bytes: usize,
}

/// A [`RecordCursor`](crate::RecordCursor) over a block file, pruning blocks
/// by time and by literal.
pub struct BlockCursor {
    segment: Arc<BlockSegment>,
    next_block: usize,
    /// The block after the last one to read.
    end_block: usize,
    /// Jobs in flight, in block order: each decodes one block or searches
    /// a group of kept ones.
    in_flight: VecDeque<InFlight>,
    /// Blocks of the last job waited for, not yet read: index, entry,
    /// what the job made of it.
    ready: VecDeque<(usize, BlockEntry, Decoded)>,
    workers: Arc<WorkerPool>,
    cancel: Option<Cancel>,
    current: Decoded,
    /// Position in `current.selected`.
    pos: usize,
    started: bool,
    spare: Vec<Decoded>,
    /// Scratch for probing a block's frame filters.
    frames: FrameScratch,
    from_ms: u64,
    to_ms: u64,
    /// Only blocks that overlap this id range are read.
    ids: (sluice_record::Ulid, sluice_record::Ulid),
    literal: Option<Literal>,
    /// What the filters are asked.
    probes: Probes,
    filter: Option<RecordFilter>,
    text: Option<Arc<dyn TextMatcher>>,
    bytes_read: u64,
    skipped: u64,
    blocks_loaded: u64,
    frames_loaded: u64,
    /// Pass over blocks that fail their checks instead of failing.
    skip_corrupt: bool,
    corrupt_blocks: u64,
    first_corruption: Option<String>,
    /// What reading ahead failed with, for the next advance to return.
    deferred: Option<StorageError>,
    /// Decoded blocks shared between queries: searched instead of
    /// decompressed when kept, kept when decoded whole.
    cache: Option<Arc<BlockCache>>,
}

impl BlockCursor {
    /// A cursor over the block file at `path`, decoding on `workers`.
    pub fn open(
        fs: &dyn Fs,
        path: &std::path::Path,
        workers: Arc<WorkerPool>,
    ) -> Result<BlockCursor, StorageError> {
        Ok(Self::new(BlockSegment::open(fs, path)?, workers))
    }

    /// A cursor over an opened segment, decoding on `workers`.
    pub fn new(segment: BlockSegment, workers: Arc<WorkerPool>) -> BlockCursor {
        Self::shared(Arc::new(segment), workers)
    }

    /// A cursor over a segment that other cursors may read too (see
    /// [`crate::SegmentCache`]).
    pub fn shared(segment: Arc<BlockSegment>, workers: Arc<WorkerPool>) -> BlockCursor {
        BlockCursor {
            segment,
            next_block: 0,
            end_block: usize::MAX,
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
            workers,
            cancel: None,
            current: Decoded::default(),
            pos: 0,
            started: false,
            spare: Vec::new(),
            frames: FrameScratch::default(),
            from_ms: 0,
            to_ms: u64::MAX,
            ids: (sluice_record::Ulid::nil(), sluice_record::Ulid(u128::MAX)),
            literal: None,
            probes: Probes::default(),
            filter: None,
            text: None,
            bytes_read: 0,
            skipped: 0,
            blocks_loaded: 0,
            frames_loaded: 0,
            skip_corrupt: false,
            deferred: None,
            corrupt_blocks: 0,
            first_corruption: None,
            cache: None,
        }
    }

    /// Search blocks that `cache` keeps instead of decompressing them, and
    /// keep the blocks this cursor decodes whole.
    pub fn with_block_cache(mut self, cache: Arc<BlockCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Skip blocks with no record in `[from_ms, to_ms]`. Records of a block
    /// that is read are all returned; the caller filters them by time.
    pub fn with_time_range(mut self, from_ms: u64, to_ms: u64) -> Self {
        (self.from_ms, self.to_ms) = (from_ms, to_ms);
        self
    }

    /// Skip blocks with no record in the id range `[min, max]`. Records of
    /// a block that is read are all returned; the caller filters them.
    pub fn with_id_range(mut self, min: sluice_record::Ulid, max: sluice_record::Ulid) -> Self {
        self.ids = (min, max);
        self
    }

    /// Read only blocks `blocks` (indices into the segment's blocks).
    pub fn with_blocks(mut self, blocks: std::ops::Range<usize>) -> Self {
        (self.next_block, self.end_block) = (blocks.start, blocks.end);
        self
    }

    /// Return only records whose payload contains `literal`.
    pub fn with_literal(mut self, literal: Literal) -> Self {
        self.probes.all_of = Some(TermProbe::new(literal.needle()));
        self.literal = Some(literal);
        self
    }

    /// Skip blocks and frames that can hold none of `literals` (every
    /// wanted record holds one; the caller's filter selects the records).
    pub fn with_any_of(self, literals: &[Vec<u8>]) -> Self {
        self.with_any_of_probe(Arc::new(AnyOfProbe::new(literals)))
    }

    /// [`BlockCursor::with_any_of`] with the literals' probe built already
    /// (once per query, for all its cursors).
    pub fn with_any_of_probe(mut self, probe: Arc<AnyOfProbe>) -> Self {
        self.probes.any_of = Some(probe);
        self
    }

    /// Return only records whose payload `filter` accepts.
    pub fn with_filter(mut self, filter: RecordFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Return only records whose payload `matcher` matches, searching each
    /// decoded block's text as a whole (see [`TextMatcher`]). It selects
    /// records instead of the literal (which still prunes blocks and
    /// frames).
    pub fn with_text_matcher(mut self, matcher: Arc<dyn TextMatcher>) -> Self {
        self.text = Some(matcher);
        self
    }

    /// Stop, as if at the end, once `cancel` is raised.
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = Some(cancel);
        self
    }

    fn is_cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Pass over a block whose meta or data fails its checks, count it
    /// ([`RecordCursor::corrupt_blocks`](crate::RecordCursor::corrupt_blocks)),
    /// and go on with the next block, so the rest of the segment is served.
    pub fn skipping_corrupt_blocks(mut self) -> Self {
        self.skip_corrupt = true;
        self
    }

    /// Blocks read so far, wholly or in part (the others were pruned).
    pub fn blocks_loaded(&self) -> u64 {
        self.blocks_loaded
    }

    /// Frames decompressed so far.
    pub fn frames_loaded(&self) -> u64 {
        self.frames_loaded
    }

    /// A block failed its checks: fail, or count it and pass over it.
    fn corrupt_block(&mut self, offset: u64, why: &'static str) -> Result<(), StorageError> {
        let err = StorageError::Malformed {
            path: self.segment.path.clone(),
            offset,
            reason: why,
        };
        if !self.skip_corrupt {
            return Err(err);
        }
        self.corrupt_blocks += 1;
        self.first_corruption.get_or_insert_with(|| err.to_string());
        Ok(())
    }

    /// Start decoding or searching the next blocks that may hold a wanted
    /// record, until [`JOBS_AHEAD`] jobs (at most [`PREFETCH`] of them
    /// decoding) are in flight. Kept blocks to be searched on a worker go
    /// in groups of about [`KEPT_GROUP_BYTES`] of text.
    fn schedule(&mut self) -> Result<(), StorageError> {
        let mut group = KeptGroup::default();
        let scheduled = self.schedule_into(&mut group);
        // Whatever ended the loop, a group begun goes to a worker: its
        // blocks were taken from the plan.
        self.submit_group(&mut group);
        scheduled
    }

    /// Send `group` (if it holds a block) to a worker as one job.
    fn submit_group(&mut self, group: &mut KeptGroup) {
        if group.blocks.is_empty() {
            return;
        }
        let KeptGroup { blocks, jobs, .. } = std::mem::take(group);
        let select = self.select();
        let task = self.workers.submit(move || {
            jobs.into_iter()
                .map(|(kept, job)| select_kept(kept, job, select.clone()))
                .collect()
        });
        self.in_flight.push_back(InFlight {
            blocks,
            task,
            decodes: false,
        });
    }

    /// What selects a block's records, for a job.
    fn select(&self) -> Select {
        Select {
            literal: self.literal.clone(),
            text: self.text.clone(),
            filter: self.filter.clone(),
        }
    }

    /// Whether another block may be scheduled: fewer than [`PREFETCH`]
    /// jobs decoding, and either a group being gathered (it fills up to
    /// [`KEPT_GROUP_BYTES`], else a scan that keeps its jobs in flight
    /// would refill them a block at a time) or fewer than [`JOBS_AHEAD`]
    /// jobs in flight. (The block may start one more job: a group gathered
    /// before it goes first.)
    fn has_room(&self, group: &KeptGroup) -> bool {
        let decoding = self.in_flight.iter().filter(|job| job.decodes).count();
        decoding < PREFETCH && (!group.blocks.is_empty() || self.in_flight.len() < JOBS_AHEAD)
    }

    fn schedule_into(&mut self, group: &mut KeptGroup) -> Result<(), StorageError> {
        let end = self.end_block.min(self.segment.blocks.len());
        while self.next_block < end && self.has_room(group) {
            if self.is_cancelled() {
                self.next_block = end;
                break;
            }
            let i = self.next_block;
            self.next_block += 1;
            let entry = self.segment.blocks[i];
            if !entry.overlaps_ms(self.from_ms, self.to_ms)
                || entry.max < self.ids.0
                || entry.min > self.ids.1
            {
                continue;
            }
            let mut job = self.spare.pop().unwrap_or_default();
            job.all_frames = true;
            if !self.probes.is_empty() {
                let probed =
                    self.segment
                        .wanted_frames(i, &self.probes, &mut self.frames, &mut job.wanted);
                let frame_count = self.frames.frames.len();
                match probed {
                    Ok(filter_bytes) if job.wanted.is_empty() => {
                        // Only the filter was read.
                        self.bytes_read += filter_bytes;
                        self.skipped += entry.count as u64;
                        self.spare.push(job);
                        continue;
                    }
                    Ok(filter_bytes) => {
                        self.bytes_read += filter_bytes;
                        job.all_frames = job.wanted.len() == frame_count;
                    }
                    Err(why) => {
                        self.spare.push(job);
                        self.corrupt_block(entry.offset, why)?;
                        continue;
                    }
                }
            }
            let meta_verified = self.segment.meta_is_verified(i);
            let select = self.select();
            let key = self.segment.block_key(i);
            let kept = match &self.cache {
                // The key's checksum is trusted once this file's meta
                // was verified (kept blocks were, when decoded).
                Some(cache) if meta_verified => {
                    cache.get(&key, (!job.all_frames).then_some(&job.wanted[..]))
                }
                _ => None,
            };
            match kept {
                // A few frames' text is searched here: waking a worker and
                // waiting for its answer costs more (most of a repeated
                // rare literal's time, a block at a time).
                Some(kept) if !job.all_frames && self.text_wanted(&job.wanted) <= SEARCH_HERE => {
                    self.submit_group(group);
                    let task = Task::run_here(move || vec![select_kept(kept, job, select)]);
                    self.in_flight.push_back(InFlight {
                        blocks: vec![(i, entry)],
                        task,
                        decodes: false,
                    });
                }
                Some(kept) => {
                    group.bytes += match job.all_frames {
                        true => kept.text.len(),
                        false => self.text_wanted(&job.wanted) as usize,
                    };
                    group.blocks.push((i, entry));
                    group.jobs.push((kept, job));
                    if group.bytes >= KEPT_GROUP_BYTES {
                        self.submit_group(group);
                    }
                }
                None => {
                    self.submit_group(group);
                    // A block the query reads mostly is read whole, to be
                    // kept: the next query then needs no decompression.
                    if self.cache.is_some() && job.wanted.len() * 2 >= self.frames.frames.len() {
                        job.all_frames = true;
                    }
                    let bytes = self.segment.bytes.clone();
                    let keep = self.cache.clone().map(|cache| (cache, key));
                    let whole = job.all_frames;
                    let task = self.workers.submit(move || {
                        let decoded = decode(&bytes, &entry, meta_verified, job, select, keep);
                        // The compressed data is not read again soon; the
                        // filters, which every query probes, stay resident.
                        // A few frames read are left mapped: unmapping
                        // costs every core a TLB flush, which was most of
                        // what a rare literal's query spent in the kernel.
                        if whole {
                            bytes.release(entry.data_range());
                        }
                        vec![decoded]
                    });
                    self.in_flight.push_back(InFlight {
                        blocks: vec![(i, entry)],
                        task,
                        decodes: true,
                    });
                }
            }
        }
        Ok(())
    }

    /// Move to the next decoded block with a selected record.
    fn next_block(&mut self) -> Result<bool, StorageError> {
        if let Some(err) = self.deferred.take() {
            return Err(err);
        }
        loop {
            if self.ready.is_empty() {
                self.schedule()?;
                let Some(InFlight { blocks, task, .. }) = self.in_flight.pop_front() else {
                    return Ok(false);
                };
                let decoded = task.wait().map_err(|panicked| StorageError::Io {
                    op: "decode a block of",
                    path: self.segment.path.clone(),
                    source: std::io::Error::other(panicked),
                })?;
                self.ready.extend(
                    blocks
                        .into_iter()
                        .zip(decoded)
                        .map(|((i, entry), decoded)| (i, entry, decoded)),
                );
            }
            let (i, entry, decoded) = self.ready.pop_front().expect("filled above");
            let done = std::mem::replace(&mut self.current, decoded);
            self.spare.push(done);
            if let Some(why) = self.current.failure {
                self.current.selected.clear();
                self.corrupt_block(entry.offset, why)?;
                continue;
            }
            // The meta, once verified less its filter (probed, and
            // counted, above) and the ordinals of the lines not read, and
            // the frames read.
            let unread = match self.segment.meta_is_verified(i) {
                true => self.current.cost.filter_len + self.current.cost.ordinals_unread,
                false => 0,
            };
            self.segment.meta_was_verified(i);
            self.bytes_read += 8 + entry.meta_len as u64 - unread + self.current.cost.bytes;
            self.blocks_loaded += 1;
            self.frames_loaded += self.current.cost.frames;
            self.skipped += (entry.count as usize - self.current.selected.len()) as u64;
            if !self.current.selected.is_empty() {
                return Ok(true);
            }
        }
    }
}

/// Where [`decode`] puts a block it decoded whole: the cache, and the
/// block's key.
type Keep = (Arc<BlockCache>, super::cache::BlockKey);

/// Select the records of `kept`, a block the cache holds, that `job`'s
/// frames hold and that match, as [`decode`] does.
fn select_kept(kept: Arc<Block>, mut job: Decoded, select: Select) -> Decoded {
    job.selected.clear();
    job.failure = None;
    if job.all_frames {
        let lines = Lines::all(&kept);
        select_records(&kept, 0..kept.text.len(), lines, &select, &mut job.selected);
    } else {
        kept.frame_spans(&job.wanted, |text, lines| {
            let lines = Lines::of(&kept, lines);
            select_records(&kept, text, lines, &select, &mut job.selected);
        });
    }
    finish_selection(&kept, &mut job.selected, select.filter);
    job.kept = Some(kept);
    job.finish();
    job
}

/// Verify and decompress block `entry` of `bytes` (the frames `job`
/// wants) into `job`, and select the records that match: by the text
/// matcher over the whole text if there is one, else by the literal, then
/// by `filter`. A block decoded whole is then kept in `keep`'s cache; of a
/// block read in part, its records are (and taken from there when kept).
fn decode(
    bytes: &[u8],
    entry: &BlockEntry,
    meta_verified: bool,
    mut job: Decoded,
    select: Select,
    keep: Option<Keep>,
) -> Decoded {
    job.selected.clear();
    job.kept = None;
    let decompressor = match job.decompressor.take() {
        Some(decompressor) => decompressor,
        None => match zstd::bulk::Decompressor::new() {
            Ok(decompressor) => decompressor,
            Err(_) => {
                job.failure = Some("cannot start a zstd decompressor");
                return job;
            }
        },
    };
    let decompressor = job.decompressor.insert(decompressor);
    let wanted = (!job.all_frames).then_some(&job.wanted[..]);
    // A block read in part takes its records (ids, topics, flags) from the
    // cache if they are kept: the key's checksum is trusted once this
    // file's meta was verified.
    let known = match &keep {
        Some((cache, key)) if meta_verified && !job.all_frames => cache.get_records(key),
        _ => None,
    };
    match job.block.load(
        bytes,
        entry,
        wanted,
        meta_verified,
        known.as_ref(),
        decompressor,
    ) {
        Ok(()) => job.failure = None,
        Err(why) => {
            job.failure = Some(why);
            return job;
        }
    }
    let block = &job.block;
    select_records(
        block,
        0..block.text.len(),
        Lines::all(block),
        &select,
        &mut job.selected,
    );
    finish_selection(&job.block, &mut job.selected, select.filter);
    // Kept whole, or in part: the part answers the next query for the
    // same frames, and gives any other its records.
    if let Some((cache, key)) = keep {
        let buffers = cache.take_spare().unwrap_or_default();
        let mut block = std::mem::replace(&mut job.block, buffers);
        block.shed_scratch();
        let block = Arc::new(block);
        cache.insert(key, block.clone());
        job.kept = Some(block);
    }
    job.finish();
    job
}

/// Records ahead of the one returned whose payloads are prefetched.
const PAYLOAD_PREFETCH: usize = 8;

/// Bytes of a kept block's text, at most, that the cursor searches on its
/// own thread rather than a worker's.
const SEARCH_HERE: u64 = 128 << 10;

impl BlockCursor {
    /// Bytes of text of the frames `wanted` of the block just probed.
    fn text_wanted(&self, wanted: &[u32]) -> u64 {
        wanted
            .iter()
            .filter_map(|&f| self.frames.frames.get(f as usize))
            .map(|f| f.text_len as u64)
            .sum()
    }

    /// Prefetch the payload of selected record `i` of the current block,
    /// if there is one.
    #[inline]
    fn prefetch_payload(&self, i: usize) {
        if let Some(picked) = self.current.picked.get(i) {
            let text = self.current.selected.text(self.current.block());
            Block::prefetch_payload(picked, text);
        }
    }
}

impl crate::RecordCursor for BlockCursor {
    fn advance(&mut self) -> Result<bool, StorageError> {
        if self.started {
            self.pos += 1;
        }
        self.started = true;
        if self.pos < self.current.selected.len() {
            self.prefetch_payload(self.pos + PAYLOAD_PREFETCH);
            return Ok(true);
        }
        self.pos = 0;
        self.current.selected.clear();
        let found = self.next_block()?;
        for ahead in 0..=PAYLOAD_PREFETCH {
            self.prefetch_payload(ahead);
        }
        Ok(found)
    }

    fn record(&self) -> Record<'_> {
        self.current.record(self.pos)
    }

    fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    fn records_skipped(&self) -> u64 {
        self.skipped
    }

    fn corrupt_blocks(&self) -> u64 {
        self.corrupt_blocks
    }

    fn first_corruption(&self) -> Option<&str> {
        self.first_corruption.as_deref()
    }

    fn read_ahead(&mut self) {
        if self.deferred.is_none()
            && let Err(err) = self.schedule()
        {
            self.deferred = Some(err);
        }
    }

    fn selected_by(&self) -> crate::cursor::Selected {
        // A text matcher decides each record (`select_by_text`), where a
        // literal only narrows what it searches; without one, the literal
        // selects (`select_by_literal`).
        match (&self.text, &self.literal) {
            (Some(_), _) => crate::cursor::Selected::Text,
            (None, Some(_)) => crate::cursor::Selected::Literal,
            (None, None) => crate::cursor::Selected::Nothing,
        }
    }
}
