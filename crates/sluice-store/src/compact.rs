//! Compaction: merge overlapping and small segments into non-overlapping
//! block files of a target size, without duplicate ids.
//!
//! Segments reach the store as batch files (the consumer adopts ingest
//! segments as they are, so data is queryable as soon as it is durable);
//! compaction is what rewrites them as compressed, indexed block files,
//! off the ingest path. It is the only writer of block files.
//!
//! **Plan** ([`plan`]): walk the segments by smallest id and cut them into
//! groups. A segment joins the group before it when their id ranges overlap,
//! or when both are *small* (every batch file, and a block file holding
//! under half of [`CompactionConfig::target_segment_bytes`] of records) and
//! the group's records still fit in one output. Small neighbours join
//! only while the group stays under [`CompactionConfig::max_input_bytes`];
//! overlapping segments always join. A group is compacted when it
//! has two or more segments, or one batch file, or one that a query found
//! corrupt.
//!
//! **Run** ([`compact`]): a k-way merge of the group's cursors by id (equal
//! ids come out once) feeds block writers; an output is cut at the first new
//! id after [`CompactionConfig::target_segment_bytes`] of records, so outputs
//! never overlap. Memory is one block per open input plus the writer's
//! blocks in flight, whatever the group's size.
//!
//! **Two layouts** ([`BlockLayout`]): merges write blocks whose lines are in
//! id order, which is cheap, so that compaction keeps up with ingest. When
//! a pass finds nothing to merge, it *upgrades* one segment
//! ([`plan_upgrade`]: the oldest with blocks in id order): a compaction of
//! that one input into sorted blocks (lines sorted by kind, in frames with
//! their own filters), which queries for a word read a few percent of.
//! Under sustained ingest the newest data waits in id order; it is queried
//! the same way, only more slowly.
//!
//! **Block copy**: when no two inputs of a group overlap (small neighbours,
//! or the one input of an upgrade), the blocks of a block-file input go to
//! the output whole, checksums verified but neither decompressed nor
//! compressed again, when the output takes their layout: a merge takes any
//! block, an upgrade only sorted ones (it decodes and sorts the others).
//! Only the batch files between them are merged and encoded. A segment
//! first compacted at a fraction of the target would otherwise be
//! compressed again at every merge that grows it. Inputs a query found
//! corrupt are always decoded, so that their bad blocks are found and left
//! behind.
//!
//! **Durability rule**: every output is fsynced and renamed into place (and
//! the directory fsynced) before any input is removed. A crash in between
//! leaves records twice, never missing: queries remove the duplicates by id,
//! and the next plan sees the overlap and merges it away. If anything fails
//! before the inputs are removed, the outputs written so far are removed
//! and the inputs stay as they were.
//!
//! **Corruption rule**: a block that fails its checks is passed over and
//! counted; a batch file that fails stops at its last good batch. An input
//! where corruption was met is not removed but moved to `quarantine/`
//! ([`store_segment::quarantine`]) once the records that could be read are
//! durable elsewhere. An input that fails for another reason (an I/O error)
//! fails the whole compaction, and nothing changes.
//!
//! Queries never fail because a compaction removed a file: they open every
//! segment of their plan before reading and plan again when one vanished
//! (see `sluice_query::exec`).

use std::{collections::BTreeSet, path::Path};

use sluice_record::{Record, Ulid};
use std::sync::Arc;

use sluice_storage::{
    BlockCache, Fs, RecordCursor, SegmentMeta, StorageError, StoreSegmentWriter, WorkerPool,
    block_segment::{BlockCursor, BlockLayout, BlockSegment, RawBlock},
    merge::{Merge, MergeStats, Verdict},
    store_segment::{self, ScanOptions, SegmentKind},
};

/// What compaction writes: blocks of `layout`, kept decoded in `keep` as
/// they are built, if given, so that queries of the data just compacted
/// find it as they found it in batch files, without decompressing.
#[derive(Debug, Clone)]
pub struct Output {
    /// How the blocks lay out their lines.
    pub layout: BlockLayout,
    /// The cache of the store's queries, to keep the blocks written in.
    pub keep: Option<Arc<BlockCache>>,
}

impl Output {
    /// Blocks of `layout`, not kept.
    pub fn blocks(layout: BlockLayout) -> Output {
        Output { layout, keep: None }
    }
}

/// Sizes that steer compaction.
#[derive(Debug, Clone)]
pub struct CompactionConfig {
    /// Bytes of records (uncompressed) per output segment.
    pub target_segment_bytes: u64,
    /// Bytes on disk one merge of small neighbours reads at most.
    pub max_input_bytes: u64,
}

/// The default records (uncompressed) per compacted segment: 256 MiB
/// (`--compact-target`).
pub const DEFAULT_TARGET_SEGMENT_BYTES: u64 = 256 << 20;
/// The least a merge of small neighbours may read: 1 GiB.
pub const MIN_MAX_INPUT_BYTES: u64 = 1 << 30;

impl CompactionConfig {
    /// Outputs of `target_segment_bytes` of records, from merges of small
    /// neighbours that read at most four targets on disk (and at least
    /// [`MIN_MAX_INPUT_BYTES`]).
    pub fn for_target(target_segment_bytes: u64) -> CompactionConfig {
        let target_segment_bytes = target_segment_bytes.max(1);
        CompactionConfig {
            target_segment_bytes,
            max_input_bytes: target_segment_bytes
                .saturating_mul(4)
                .max(MIN_MAX_INPUT_BYTES),
        }
    }
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self::for_target(DEFAULT_TARGET_SEGMENT_BYTES)
    }
}

/// A segment as compaction plans with it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its name, id range and size on disk.
    pub meta: SegmentMeta,
    /// A batch file or a block file.
    pub kind: SegmentKind,
    /// Bytes of its records, uncompressed
    /// ([`store_segment::segment_sizes`]).
    pub record_bytes: u64,
    /// Its blocks whose lines are not sorted: an upgrade sorts them.
    pub unsorted_blocks: u64,
}

impl Candidate {
    /// Whether this segment may be merged with neighbours it does not
    /// overlap: every batch file, and a block file under half the target.
    /// Two neighbours merge only while their records fit one output, so
    /// the merge writes one segment and the plan never repeats itself.
    fn is_small(&self, config: &CompactionConfig) -> bool {
        self.kind == SegmentKind::Batches || self.record_bytes < config.target_segment_bytes / 2
    }
}

/// Cut `segments` (sorted by smallest id) into the groups worth compacting;
/// `suspects` are names a query found corrupt.
pub fn plan(
    segments: &[Candidate],
    suspects: &BTreeSet<String>,
    config: &CompactionConfig,
) -> Vec<Vec<SegmentMeta>> {
    let mut groups = Vec::new();
    let mut group: Vec<&Candidate> = Vec::new();
    let mut group_max = Ulid::nil();
    let mut group_disk = 0u64;
    let mut group_records = 0u64;
    let mut group_small = true;
    let mut close = |group: &mut Vec<&Candidate>| {
        let worth = match group.as_slice() {
            [] => false,
            [one] => one.kind == SegmentKind::Batches || suspects.contains(&one.meta.name),
            _ => true,
        };
        if worth {
            groups.push(group.iter().map(|c| c.meta.clone()).collect());
        }
        group.clear();
    };
    for candidate in segments {
        if !group.is_empty() {
            let fits = group_disk + candidate.meta.bytes <= config.max_input_bytes;
            let overlaps = candidate.meta.min <= group_max;
            let neighbours = group_small
                && candidate.is_small(config)
                && group_records + candidate.record_bytes <= config.target_segment_bytes;
            // Overlaps always join, however large the group grows: left
            // apart, they would overlap for ever. The merge streams, so a
            // big group costs time, not memory.
            if overlaps || (fits && neighbours) {
                group.push(candidate);
                group_max = group_max.max(candidate.meta.max);
                group_disk += candidate.meta.bytes;
                group_records += candidate.record_bytes;
                group_small &= candidate.is_small(config);
                continue;
            }
            close(&mut group);
        }
        group.push(candidate);
        group_max = candidate.meta.max;
        group_disk = candidate.meta.bytes;
        group_records = candidate.record_bytes;
        group_small = candidate.is_small(config);
    }
    close(&mut group);
    groups
}

/// The segment to sort next, when there is nothing to merge: the oldest
/// block file with blocks in id order ([`BlockLayout::InOrder`]) that no
/// query found corrupt.
pub fn plan_upgrade(segments: &[Candidate], suspects: &BTreeSet<String>) -> Option<SegmentMeta> {
    segments
        .iter()
        .find(|c| {
            c.kind == SegmentKind::Blocks
                && c.unsorted_blocks > 0
                && !suspects.contains(&c.meta.name)
        })
        .map(|c| c.meta.clone())
}

/// What one compaction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Compacted {
    /// Segments merged.
    pub inputs: usize,
    /// Their size on disk in bytes.
    pub input_bytes: u64,
    /// The segments written, in id order; none when every input was
    /// empty or unreadable.
    pub outputs: Vec<SegmentMeta>,
    /// Records written, duplicates excluded.
    pub records: u64,
    /// Records dropped because an input already gave their id.
    pub duplicates_removed: u64,
    /// Inputs moved to `quarantine/` (by name), with the first corruption
    /// met.
    pub quarantined: Vec<(String, String)>,
    /// Blocks of all inputs passed over because they failed their checks.
    pub corrupt_blocks: u64,
    /// Blocks that went to an output whole (see the module's block copy).
    pub copied_blocks: u64,
    /// How the blocks it wrote lay out their lines.
    pub layout: BlockLayout,
}

impl Compacted {
    /// Size of the outputs on disk in bytes.
    pub fn output_bytes(&self) -> u64 {
        self.outputs.iter().map(|m| m.bytes).sum()
    }
}

/// Merge `inputs` (sorted by smallest id) into block files of `output`'s
/// blocks in `dir`, then remove or quarantine the inputs (see the
/// module's rules). The blocks of `suspects` (names a query found corrupt)
/// are never copied whole. Blocks are decoded and built on `workers`.
pub fn compact(
    fs: &dyn Fs,
    dir: &Path,
    inputs: &[SegmentMeta],
    config: &CompactionConfig,
    suspects: &BTreeSet<String>,
    output: Output,
    workers: &Arc<WorkerPool>,
) -> Result<Compacted, StorageError> {
    let layout = output.layout;
    let mut outputs = Outputs {
        fs,
        dir,
        output,
        workers,
        target: config.target_segment_bytes,
        writer: None,
        done: Vec::new(),
        records: 0,
        duplicates: 0,
        copied_blocks: 0,
    };
    let copyable = copyable_inputs(fs, dir, inputs, suspects);
    let mut stats = MergeStats::default();
    let mut next = 0;
    while next < inputs.len() {
        let written = match &copyable[next] {
            Some(segment) => {
                let copied = copy_blocks(segment, next, &mut outputs, &mut stats);
                next += 1;
                copied
            }
            None => {
                let end = (next..inputs.len())
                    .find(|&i| copyable[i].is_some())
                    .unwrap_or(inputs.len());
                let merged = merge_inputs(fs, dir, inputs, next..end, &mut outputs, &mut stats);
                next = end;
                merged
            }
        };
        if let Err(err) = written {
            outputs.undo();
            return Err(err);
        }
    }
    let corrupt: BTreeSet<usize> = stats.corrupt.iter().map(|(idx, _)| *idx).collect();
    if let Some((idx, message)) = stats.failed.iter().find(|(idx, _)| !corrupt.contains(idx)) {
        outputs.undo();
        return Err(StorageError::Io {
            op: "compact: read input",
            path: dir.join(&inputs[*idx].name),
            source: std::io::Error::other(message.clone()),
        });
    }
    if let Err(err) = outputs.seal() {
        outputs.undo();
        return Err(err);
    }
    // Every output is durable: the inputs may go.
    let mut done = Compacted {
        layout,
        copied_blocks: outputs.copied_blocks,
        inputs: inputs.len(),
        input_bytes: inputs.iter().map(|m| m.bytes).sum(),
        records: outputs.records,
        duplicates_removed: outputs.duplicates + stats.duplicates_removed,
        outputs: outputs.done,
        quarantined: Vec::new(),
        corrupt_blocks: stats.corrupt_blocks,
    };
    for (idx, input) in inputs.iter().enumerate() {
        if corrupt.contains(&idx) {
            store_segment::quarantine(fs, dir, &input.name)?;
            let why = stats
                .corrupt
                .iter()
                .find(|(i, _)| *i == idx)
                .map(|(_, why)| why.clone())
                .unwrap_or_default();
            done.quarantined.push((input.name.clone(), why));
        } else {
            let path = dir.join(&input.name);
            fs.remove_file(&path)
                .map_err(StorageError::io("remove compacted segment", &path))?;
        }
    }
    fs.sync_dir(dir)
        .map_err(StorageError::io("fsync store dir", dir))?;
    Ok(done)
}

/// For each input, the opened segment when its blocks may be copied whole:
/// no two inputs overlap, and it is a block file that no query found
/// corrupt and whose footer reads.
fn copyable_inputs(
    fs: &dyn Fs,
    dir: &Path,
    inputs: &[SegmentMeta],
    suspects: &BTreeSet<String>,
) -> Vec<Option<Arc<BlockSegment>>> {
    // Overlapping inputs need the merge to interleave them.
    let disjoint = inputs.windows(2).all(|pair| pair[0].max < pair[1].min);
    if !disjoint {
        return inputs.iter().map(|_| None).collect();
    }
    inputs
        .iter()
        .map(|input| {
            if suspects.contains(&input.name) {
                return None;
            }
            let path = dir.join(&input.name);
            if store_segment::segment_kind(fs, &path).ok()? != SegmentKind::Blocks {
                return None;
            }
            // A footer that does not read is left to the merge, which
            // tells corruption from other failures.
            BlockSegment::open(fs, &path).ok().map(Arc::new)
        })
        .collect()
}

/// Copy the blocks of input `index` to the outputs: whole when the
/// outputs take them as they are (any block, for outputs in id order; a
/// sorted block, for sorted outputs), else decoded and written again. A
/// block that fails its checks is passed over and counted, as the merge
/// does.
fn copy_blocks(
    segment: &Arc<BlockSegment>,
    index: usize,
    outputs: &mut Outputs<'_>,
    stats: &mut MergeStats,
) -> Result<(), StorageError> {
    let blocks = segment.blocks().len();
    let in_order = outputs.output.layout == BlockLayout::InOrder;
    let whole = |i: usize| in_order || segment.block_is_sorted(i);
    let mut i = 0;
    while i < blocks {
        if !whole(i) {
            let end = (i..blocks).find(|&j| whole(j)).unwrap_or(blocks);
            rewrite_blocks(segment, i..end, index, outputs, stats)?;
            i = end;
            continue;
        }
        let block = i;
        i += 1;
        match segment.raw_block(block) {
            Ok(raw) => outputs.push_raw(&raw)?,
            Err(why) => {
                stats.corrupt_blocks += 1;
                // Worded as a cursor words it, so both paths log alike.
                if !stats.corrupt.iter().any(|(idx, _)| *idx == index) {
                    let err = StorageError::Malformed {
                        path: segment.path().to_path_buf(),
                        offset: segment.blocks()[block].offset,
                        reason: why,
                    };
                    stats.corrupt.push((index, err.to_string()));
                }
            }
        }
    }
    Ok(())
}

/// Decode blocks `blocks` of input `index` and write their records to the
/// outputs; corrupt blocks are counted, as the merge counts them.
fn rewrite_blocks(
    segment: &Arc<BlockSegment>,
    blocks: std::ops::Range<usize>,
    index: usize,
    outputs: &mut Outputs<'_>,
    stats: &mut MergeStats,
) -> Result<(), StorageError> {
    let mut cursor = BlockCursor::shared(segment.clone(), outputs.workers.clone())
        .with_blocks(blocks)
        .skipping_corrupt_blocks();
    while cursor.advance()? {
        outputs.push(&cursor.record())?;
    }
    stats.corrupt_blocks += cursor.corrupt_blocks();
    if let Some(why) = cursor.first_corruption()
        && !stats.corrupt.iter().any(|(idx, _)| *idx == index)
    {
        stats.corrupt.push((index, why.to_string()));
    }
    Ok(())
}

/// Merge `inputs[range]` by id into the outputs, adding the merge's stats
/// (with indices into `inputs`) to `stats`.
fn merge_inputs(
    fs: &dyn Fs,
    dir: &Path,
    inputs: &[SegmentMeta],
    range: std::ops::Range<usize>,
    outputs: &mut Outputs<'_>,
    stats: &mut MergeStats,
) -> Result<(), StorageError> {
    let offset = range.start;
    let inputs = &inputs[range];
    let mins: Vec<Ulid> = inputs.iter().map(|m| m.min).collect();
    let options = ScanOptions {
        skip_corrupt_blocks: true,
        ..ScanOptions::new(outputs.workers.clone())
    };
    let mut open = |i: usize| -> Result<Box<dyn RecordCursor>, StorageError> {
        store_segment::open_cursor(fs, &dir.join(&inputs[i].name), &options)
    };
    let keep_all = |_: &Record<'_>| Verdict::Keep;
    let mut merge = Merge::new(&mins, &mut open, &keep_all);
    let written = merge.run_fallible(|record| outputs.push(record));
    let part = merge.stats;
    stats.duplicates_removed += part.duplicates_removed;
    stats.corrupt_blocks += part.corrupt_blocks;
    let shift = |(i, why): (usize, String)| (i + offset, why);
    stats.failed.extend(part.failed.into_iter().map(shift));
    stats.corrupt.extend(part.corrupt.into_iter().map(shift));
    written
}

/// The outputs of one compaction: the writer under way and those done.
struct Outputs<'a> {
    fs: &'a dyn Fs,
    dir: &'a Path,
    output: Output,
    /// Where blocks are decoded and built.
    workers: &'a Arc<WorkerPool>,
    target: u64,
    writer: Option<StoreSegmentWriter<'a>>,
    done: Vec<SegmentMeta>,
    records: u64,
    duplicates: u64,
    copied_blocks: u64,
}

impl<'a> Outputs<'a> {
    fn writer(&mut self) -> Result<&mut StoreSegmentWriter<'a>, StorageError> {
        match self.writer {
            Some(ref mut writer) => Ok(writer),
            None => {
                let writer = StoreSegmentWriter::blocks(
                    self.fs,
                    self.dir,
                    self.output.layout,
                    self.workers.clone(),
                )?;
                Ok(self.writer.insert(match &self.output.keep {
                    Some(cache) => writer.keeping_blocks_in(cache.clone()),
                    None => writer,
                }))
            }
        }
    }

    fn push(&mut self, record: &Record<'_>) -> Result<(), StorageError> {
        let writer = self.writer()?;
        writer.push(*record)?;
        if writer.record_bytes() >= self.target {
            self.seal()?;
        }
        Ok(())
    }

    fn push_raw(&mut self, raw: &RawBlock<'_>) -> Result<(), StorageError> {
        let writer = self.writer()?;
        writer.push_raw_block(raw)?;
        let full = writer.record_bytes() >= self.target;
        self.copied_blocks += 1;
        if full {
            self.seal()?;
        }
        Ok(())
    }

    /// Make the writer under way durable under its final name.
    fn seal(&mut self) -> Result<(), StorageError> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        self.records += writer.records();
        self.duplicates += writer.duplicates();
        if let Some(meta) = writer.finish()? {
            self.done.push(meta);
        }
        Ok(())
    }

    /// Remove what this compaction wrote; its inputs still hold every
    /// record. Best effort: after a crash the next plan merges the leftovers.
    fn undo(mut self) {
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
        for meta in &self.done {
            let _ = self.fs.remove_file(&self.dir.join(&meta.name));
        }
        let _ = self.fs.sync_dir(self.dir);
    }
}

#[cfg(test)]
mod tests;
