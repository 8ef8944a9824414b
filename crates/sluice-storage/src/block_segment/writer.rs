//! Writing block files, with blocks built on the process's worker pool.
//!
//! The caller's thread only appends records to the open block (text, ids,
//! lengths, topics). A full block goes to a worker, which sorts its lines
//! (for a sorted block), cuts its frames, builds its sliced filter,
//! compresses its text and encodes its meta; the writer keeps up to one
//! block per worker of the pool in flight and writes the finished frames
//! to the file strictly in order. Memory is bounded by the open
//! block plus the blocks in flight; their buffers, filters and zstd contexts
//! are reused from block to block. A writer dropped unfinished leaves its
//! jobs to finish their one block each; their results are dropped.

use std::{collections::VecDeque, io, sync::Arc};

use sluice_record::{Record, Ulid};

use super::{
    BlockEntry, BlockLayout, CRC_LEN, ENTRY_LEN, FILE_TAG, FOOTER_FIELDS, FOOTER_TAG,
    FOOTER_TRAILER, FRAME_HEAD, IN_ORDER, IN_ORDER_FRAME_BYTES, LINES_END_AT_NEWLINES,
    MIN_FRAME_BYTES, SKIPPABLE_BLOCK, SKIPPABLE_FOOTER, SKIPPABLE_HEADER, SORTED_ZSTD_LEVEL,
    TARGET_BLOCK_BYTES, TARGET_FRAME_BYTES, ZSTD_LEVEL, block_compressor,
    cache::{BlockCache, BlockKey},
    put_varint, skippable,
    sort_key::{SORT_KEY_LEN, sort_key},
};
use crate::{
    fs::WriteFile,
    term_filter::sliced::SliceBuilder,
    workers::{Task, WorkerPool},
};

/// The records of one block, as pushed.
#[derive(Default)]
struct OpenBlock {
    text: Vec<u8>,
    ids: Vec<Ulid>,
    lens: Vec<u32>,
    topics: Vec<Vec<u8>>,
    topic_of: Vec<u32>,
    flagged: Vec<(u32, u8)>,
}

impl OpenBlock {
    fn clear(&mut self) {
        self.text.clear();
        self.ids.clear();
        self.lens.clear();
        self.topics.clear();
        self.topic_of.clear();
        self.flagged.clear();
    }
}

/// What a worker needs besides the block, handed back for reuse.
struct Tools {
    compressor: zstd::bulk::Compressor<'static>,
    meta: Vec<u8>,
    frame: Vec<u8>,
    /// Each record's sort key, payload start, the records in line order,
    /// the block's text in frame order (each frame compressed from its
    /// slice, and the whole kept as it is when the block is kept decoded),
    /// the frames' data, the frame table, and the sliced filter being
    /// built.
    keys: Vec<[u8; SORT_KEY_LEN]>,
    starts: Vec<u32>,
    order: Vec<u32>,
    lines_text: Vec<u8>,
    data: Vec<u8>,
    table: Vec<u8>,
    slices: SliceBuilder,
}

impl Tools {
    fn new(level: i32) -> io::Result<Tools> {
        Ok(Tools {
            compressor: block_compressor(level)?,
            meta: Vec::new(),
            frame: Vec::new(),
            keys: Vec::new(),
            starts: Vec::new(),
            order: Vec::new(),
            lines_text: Vec::new(),
            data: Vec::new(),
            table: Vec::new(),
            slices: SliceBuilder::default(),
        })
    }
}

/// A block built by a worker: its whole frame (meta frame and data frame).
struct Built {
    block: OpenBlock,
    tools: Tools,
    meta_len: u32,
    data_len: u32,
    count: u32,
    min: Ulid,
    max: Ulid,
}

/// Builds a block file into a [`WriteFile`], block by block.
pub struct BlockWriter {
    file: Box<dyn WriteFile>,
    written: u64,
    blocks: Vec<BlockEntry>,
    /// Records and text bytes of the blocks closed (written or in flight).
    records: u64,
    text_closed: u64,
    open: OpenBlock,
    /// The text at which a block closes.
    block_bytes: usize,
    /// How blocks lay out their lines.
    layout: BlockLayout,
    workers: Arc<WorkerPool>,
    in_flight: VecDeque<Task<io::Result<Built>>>,
    spare_blocks: Vec<OpenBlock>,
    spare_tools: Vec<Tools>,
    /// Where each block built is kept decoded, if anywhere
    /// ([`BlockWriter::keeping_blocks_in`]).
    keep: Option<Arc<BlockCache>>,
}

impl BlockWriter {
    /// A writer of [`BlockLayout::Sorted`] blocks, built on `workers`.
    pub fn new(mut file: Box<dyn WriteFile>, workers: Arc<WorkerPool>) -> io::Result<BlockWriter> {
        let mut header = Vec::new();
        skippable(&mut header, SKIPPABLE_HEADER, FILE_TAG);
        file.write_all(&header)?;
        Ok(BlockWriter {
            file,
            written: header.len() as u64,
            blocks: Vec::new(),
            records: 0,
            text_closed: 0,
            open: OpenBlock::default(),
            layout: BlockLayout::Sorted,
            block_bytes: TARGET_BLOCK_BYTES,
            workers,
            in_flight: VecDeque::new(),
            spare_blocks: Vec::new(),
            spare_tools: Vec::new(),
            keep: None,
        })
    }

    /// Keep each block built in `cache`, decoded, as if a query had read
    /// it: compaction's way to keep fresh data as quick to search as it
    /// was in batch files (a query of the last minutes otherwise
    /// decompresses every block that compaction just wrote). Blocks
    /// appended raw ([`BlockWriter::append_raw`]) keep their key, so what
    /// is kept of them stays.
    pub fn keeping_blocks_in(mut self, cache: Arc<BlockCache>) -> Self {
        self.keep = Some(cache);
        self
    }

    /// Write blocks of `layout` ([`BlockLayout::Sorted`] unless set).
    pub fn with_layout(mut self, layout: BlockLayout) -> Self {
        self.layout = layout;
        self.block_bytes = match layout {
            BlockLayout::Sorted => TARGET_BLOCK_BYTES,
            // One frame a block: an eighth of the memory in flight while
            // compaction keeps up with ingest.
            BlockLayout::InOrder => IN_ORDER_FRAME_BYTES,
        };
        self
    }

    /// Close blocks once their text reaches `bytes`, not the layout's
    /// size: the tests' lines then make several blocks at half the size
    /// of [`TARGET_BLOCK_BYTES`], and the tests stay quick.
    #[cfg(test)]
    pub(crate) fn with_block_bytes(mut self, bytes: usize) -> Self {
        self.block_bytes = bytes;
        self
    }

    /// Records written or buffered.
    pub fn records(&self) -> u64 {
        self.records + self.open.ids.len() as u64
    }

    /// Bytes written to the file so far, plus the open block's text.
    pub fn bytes(&self) -> u64 {
        self.written + self.open.text.len() as u64
    }

    /// Uncompressed bytes of the records written or buffered: payloads and
    /// their newlines.
    pub fn text_bytes(&self) -> u64 {
        self.text_closed + self.open.text.len() as u64
    }

    /// Append a record; ids must increase (the caller dedupes), and its
    /// payload holds no newline (the record model; the store's consumer
    /// checks it where data comes in).
    pub fn push(&mut self, record: Record<'_>) -> io::Result<()> {
        let open = &mut self.open;
        debug_assert!(open.ids.last().is_none_or(|last| record.id > *last));
        debug_assert!(
            memchr::memchr(b'\n', record.payload).is_none(),
            "a payload holds a newline"
        );
        let index = open.ids.len() as u32;
        open.ids.push(record.id);
        open.lens.push(record.payload.len() as u32);
        let topic = match open.topics.iter().position(|t| t == record.topic) {
            Some(t) => t,
            None => {
                open.topics.push(record.topic.to_vec());
                open.topics.len() - 1
            }
        };
        open.topic_of.push(topic as u32);
        if record.flags != 0 {
            open.flagged.push((index, record.flags));
        }
        if open.text.capacity() == 0 {
            open.text.reserve(self.block_bytes + 4096);
        }
        open.text.extend_from_slice(record.payload);
        open.text.push(b'\n');
        if open.text.len() >= self.block_bytes {
            self.close_block()?;
        }
        Ok(())
    }

    /// Append a block taken whole from another block file
    /// ([`super::BlockSegment::raw_block`]): compaction's way to move a
    /// block without decompressing and compressing it again. The open block
    /// is closed first, and every block in flight written, so blocks stay
    /// in id order; the caller keeps ids increasing across the two.
    pub fn append_raw(&mut self, raw: &super::RawBlock<'_>) -> io::Result<()> {
        self.close_block()?;
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        debug_assert!(self.blocks.last().is_none_or(|b| b.max < raw.entry.min));
        self.file.write_all(raw.frame)?;
        self.blocks.push(BlockEntry {
            offset: self.written,
            ..raw.entry
        });
        self.written += raw.frame.len() as u64;
        self.records += raw.entry.count as u64;
        self.text_closed += raw.text_len as u64;
        Ok(())
    }

    /// The zstd level of this writer's blocks: [`SORTED_ZSTD_LEVEL`] for
    /// sorted blocks, which the store writes when it has time, and
    /// [`ZSTD_LEVEL`] for the rest, which compaction writes to keep up
    /// with ingest.
    fn level(&self) -> i32 {
        match self.layout {
            BlockLayout::Sorted => SORTED_ZSTD_LEVEL,
            BlockLayout::InOrder => ZSTD_LEVEL,
        }
    }

    /// Hand the open block to a worker, first writing the oldest block in
    /// flight if all workers are busy.
    fn close_block(&mut self) -> io::Result<()> {
        if self.open.ids.is_empty() {
            return Ok(());
        }
        while self.in_flight.len() >= self.workers.workers().max(1) {
            self.write_oldest()?;
        }
        let next = self.spare_blocks.pop().unwrap_or_default();
        let block = std::mem::replace(&mut self.open, next);
        self.records += block.ids.len() as u64;
        self.text_closed += block.text.len() as u64;
        let tools = match self.spare_tools.pop() {
            Some(tools) => tools,
            None => Tools::new(self.level())?,
        };
        let layout = self.layout;
        let keep = self.keep.clone();
        let task = self
            .workers
            .submit(move || build(block, tools, layout, keep.as_deref()));
        self.in_flight.push_back(task);
        Ok(())
    }

    /// Wait for the oldest block in flight and append its frame.
    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(task) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let mut built = task.wait().map_err(io::Error::other)??;
        self.file.write_all(&built.tools.frame)?;
        self.blocks.push(BlockEntry {
            offset: self.written,
            meta_len: built.meta_len,
            data_len: built.data_len,
            count: built.count,
            min: built.min,
            max: built.max,
        });
        self.written += built.tools.frame.len() as u64;
        built.block.clear();
        self.spare_blocks.push(built.block);
        self.spare_tools.push(built.tools);
        Ok(())
    }

    /// Close the last block and write the footer. Returns the file (for the
    /// caller to sync) and its length.
    pub fn finish(mut self) -> io::Result<(Box<dyn WriteFile>, u64)> {
        self.close_block()?;
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        let mut footer = Vec::with_capacity(
            FOOTER_FIELDS + CRC_LEN + FOOTER_TRAILER + self.blocks.len() * ENTRY_LEN,
        );
        footer.extend_from_slice(&(self.blocks.len() as u32).to_le_bytes());
        for b in &self.blocks {
            footer.extend_from_slice(&b.offset.to_le_bytes());
            footer.extend_from_slice(&b.meta_len.to_le_bytes());
            footer.extend_from_slice(&b.data_len.to_le_bytes());
            footer.extend_from_slice(&b.count.to_le_bytes());
            footer.extend_from_slice(&b.min.0.to_le_bytes());
            footer.extend_from_slice(&b.max.0.to_le_bytes());
        }
        footer.extend_from_slice(&self.records.to_le_bytes());
        footer.extend_from_slice(&self.text_closed.to_le_bytes());
        let crc = crc32fast::hash(&footer);
        footer.extend_from_slice(&crc.to_le_bytes());
        let frame_len = (FRAME_HEAD + footer.len() + FOOTER_TRAILER) as u32;
        footer.extend_from_slice(&frame_len.to_le_bytes());
        footer.extend_from_slice(FOOTER_TAG);
        let mut frame = Vec::with_capacity(FRAME_HEAD + footer.len());
        skippable(&mut frame, SKIPPABLE_FOOTER, &footer);
        self.file.write_all(&frame)?;
        self.written += frame.len() as u64;
        Ok((self.file, self.written))
    }
}

/// Where a frame of lines in id order that starts at line `first` ends
/// (exclusive): at [`IN_ORDER_FRAME_BYTES`].
fn fixed_frame_end(lens: &[u32], first: usize) -> usize {
    let mut bytes = 0usize;
    let mut line = first;
    while line < lens.len() && bytes < IN_ORDER_FRAME_BYTES {
        bytes += lens[line] as usize + 1;
        line += 1;
    }
    line
}

/// Where the frame that starts at line `first` ends (exclusive): once it
/// holds [`MIN_FRAME_BYTES`], at the line whose sort key shares the
/// shortest prefix with the one before it, up to [`TARGET_FRAME_BYTES`] (the
/// later of equals, for larger frames). Frames then tend to begin where a
/// kind of line begins, so a word on a few kinds of line lies in fewer
/// frames than when frames are cut at a fixed size, for a little more
/// compressed text (BENCHMARKS.md, "Design measurements").
fn frame_end(order: &[u32], keys: &[[u8; SORT_KEY_LEN]], lens: &[u32], first: usize) -> usize {
    let key = |line: usize| &keys[order[line] as usize];
    // The bytes two keys share at their start, eight at a time.
    let shared = |a: &[u8; SORT_KEY_LEN], b: &[u8; SORT_KEY_LEN]| {
        let word = |k: &[u8; SORT_KEY_LEN], i: usize| {
            u64::from_le_bytes(k[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
        };
        (0..SORT_KEY_LEN / 8)
            .find_map(|i| {
                let diff = word(a, i) ^ word(b, i);
                (diff != 0).then(|| i * 8 + diff.trailing_zeros() as usize / 8)
            })
            .unwrap_or(SORT_KEY_LEN)
    };
    let mut bytes = 0usize;
    let mut line = first;
    let mut cut = None;
    let mut weakest = usize::MAX;
    while line < order.len() && bytes < TARGET_FRAME_BYTES {
        if bytes >= MIN_FRAME_BYTES {
            let prefix = shared(key(line - 1), key(line));
            if prefix <= weakest {
                (weakest, cut) = (prefix, Some(line));
            }
        }
        bytes += lens[order[line] as usize] as usize + 1;
        line += 1;
    }
    match cut {
        Some(cut) if line < order.len() => cut,
        _ => line,
    }
}

/// Build one block's frame: for a sorted block, records sorted by
/// [`sort_key`] and cut into frames of up to [`TARGET_FRAME_BYTES`]; each
/// frame compressed and filtered on its own (see the layout in the module
/// docs of [`super`]).
fn build(
    block: OpenBlock,
    mut tools: Tools,
    layout: BlockLayout,
    keep: Option<&BlockCache>,
) -> io::Result<Built> {
    // A build on a background thread pauses at each frame (and before
    // and after them) while a query scans (see `workers`).
    crate::workers::yield_to_queries();
    let sorted = layout == BlockLayout::Sorted;
    let count = block.ids.len();
    let Tools {
        compressor,
        meta,
        frame,
        keys,
        starts,
        order,
        lines_text,
        data,
        table,
        slices,
    } = &mut tools;
    starts.clear();
    keys.clear();
    let mut at = 0u32;
    for &len in &block.lens {
        starts.push(at);
        if sorted {
            let mut key = [0u8; SORT_KEY_LEN];
            sort_key(&block.text[at as usize..(at + len) as usize], &mut key);
            keys.push(key);
        }
        at += len + 1;
    }
    order.clear();
    order.extend(0..count as u32);
    if sorted {
        // Ties keep id order, so equal lines stay in time order in a frame.
        order.sort_unstable_by(|&a, &b| keys[a as usize].cmp(&keys[b as usize]).then(a.cmp(&b)));
    }
    data.clear();
    table.clear();
    // Lines in id order mix every kind in every frame: word trigrams would
    // prune nothing, so only the 8-grams are indexed.
    slices.clear(sorted);
    let mut frames = 0usize;
    let mut line = 0;
    lines_text.clear();
    while line < count {
        crate::workers::yield_to_queries();
        let text_at = lines_text.len();
        slices.start_frame();
        let first = line;
        let end = match sorted {
            true => frame_end(order, keys, &block.lens, first),
            false => fixed_frame_end(&block.lens, first),
        };
        for &record in &order[first..end] {
            let start = starts[record as usize] as usize;
            let payload = &block.text[start..start + block.lens[record as usize] as usize];
            lines_text.extend_from_slice(payload);
            lines_text.push(b'\n');
            slices.add(payload);
        }
        line = end;
        let frame_text = &lines_text[text_at..];
        let data_at = data.len();
        data.reserve(zstd::zstd_safe::compress_bound(frame_text.len()));
        let mut out = std::io::Cursor::new(&mut *data);
        out.set_position(data_at as u64);
        compressor.compress_to_buffer(frame_text, &mut out)?;
        for field in [
            (data.len() - data_at) as u32,
            frame_text.len() as u32,
            (line - first) as u32,
            crc32fast::hash(&data[data_at..]),
        ] {
            table.extend_from_slice(&field.to_le_bytes());
        }
        frames += 1;
    }
    crate::workers::yield_to_queries();
    let (min, max) = (block.ids[0], block.ids[count - 1]);
    put_fixed_meta(meta, &block, data);
    let in_order_flag = if sorted { 0 } else { IN_ORDER };
    meta.extend_from_slice(&(frames as u32 | in_order_flag | LINES_END_AT_NEWLINES).to_le_bytes());
    meta.extend_from_slice(table);
    put_filter_and_ids(meta, &block.ids, compressor, |meta| slices.encode(meta))?;
    // Each line's record, in as few bytes as the largest index needs.
    if sorted {
        let width = match count - 1 {
            0..=0xFF => 1,
            0x100..=0xFFFF => 2,
            0x1_0000..=0xFF_FFFF => 3,
            _ => 4,
        };
        meta.push(width as u8);
        for &record in order.iter() {
            meta.extend_from_slice(&record.to_le_bytes()[..width]);
        }
    }
    encode_topics_and_flags(&block, meta);
    let crc = crc32fast::hash(meta);
    meta.extend_from_slice(&crc.to_le_bytes());

    frame.clear();
    skippable(frame, SKIPPABLE_BLOCK, meta);
    frame.extend_from_slice(data);
    let (meta_len, data_len) = (meta.len() as u32, data.len() as u32);
    if let Some(cache) = keep {
        let entry = BlockEntry {
            offset: 0,
            meta_len,
            data_len,
            count: count as u32,
            min,
            max,
        };
        keep_built(cache, frame, &entry, lines_text);
    }
    Ok(Built {
        meta_len,
        data_len,
        count: count as u32,
        min,
        max,
        block,
        tools,
    })
}

/// Keep the block just built (`frame`, its meta frame and data, and
/// `text`, its frames' text in frame order) in `cache`, decoded as a query
/// would keep it.
fn keep_built(cache: &BlockCache, frame: &[u8], entry: &BlockEntry, text: &[u8]) {
    let mut block = cache.take_spare().unwrap_or_default();
    let adopted = block.adopt(frame, entry, text);
    debug_assert!(
        adopted.is_ok(),
        "a block just built does not read: {adopted:?}"
    );
    if adopted.is_ok() {
        block.shed_scratch();
        let key = BlockKey::new(
            entry,
            &frame[FRAME_HEAD..FRAME_HEAD + entry.meta_len as usize],
        );
        cache.insert_written(key, Arc::new(block));
    }
}

/// Start `meta` with a block's fixed fields: `count`, `min`, `max`,
/// `text_len`, `data_len` and `data_crc` (of all its zstd frames, `data`).
fn put_fixed_meta(meta: &mut Vec<u8>, block: &OpenBlock, data: &[u8]) {
    let count = block.ids.len();
    meta.clear();
    meta.extend_from_slice(&(count as u32).to_le_bytes());
    meta.extend_from_slice(&block.ids[0].0.to_le_bytes());
    meta.extend_from_slice(&block.ids[count - 1].0.to_le_bytes());
    meta.extend_from_slice(&(block.text.len() as u32).to_le_bytes());
    meta.extend_from_slice(&(data.len() as u32).to_le_bytes());
    meta.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
}

/// Append the filter that `encode` writes, after its length (u32), then
/// the block's ids after the first (which is the meta's `min`), lane-coded
/// and compressed by `compressor` (`ids.rs`).
fn put_filter_and_ids(
    meta: &mut Vec<u8>,
    ids: &[Ulid],
    compressor: &mut zstd::bulk::Compressor<'static>,
    encode: impl FnOnce(&mut Vec<u8>),
) -> io::Result<()> {
    let len_at = meta.len();
    meta.extend_from_slice(&[0; 4]);
    encode(meta);
    let filter_len = (meta.len() - len_at - 4) as u32;
    meta[len_at..len_at + 4].copy_from_slice(&filter_len.to_le_bytes());
    super::ids::encode_packed(ids, compressor, meta)
}

/// The topic table, each record's topic when there are several, and the
/// flagged records: the end of a block meta.
fn encode_topics_and_flags(block: &OpenBlock, meta: &mut Vec<u8>) {
    put_varint(meta, block.topics.len() as u128);
    for topic in &block.topics {
        meta.push(topic.len() as u8);
        meta.extend_from_slice(topic);
    }
    if block.topics.len() > 1 {
        for &t in &block.topic_of {
            put_varint(meta, t as u128);
        }
    }
    put_varint(meta, block.flagged.len() as u128);
    for &(index, flags) in &block.flagged {
        put_varint(meta, index as u128);
        meta.push(flags);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames end where kinds of line change, once past the smallest size.
    #[test]
    fn a_frame_ends_at_the_weakest_key_boundary() {
        let payloads: Vec<String> = (0..2000)
            .map(|i| {
                let kind = ["alpha", "bravo", "charlie"][i * 3 / 2000];
                format!("{kind} n={} {}", i + 1000, "x".repeat(90))
            })
            .collect();
        let mut keys = Vec::new();
        let mut lens = Vec::new();
        for p in &payloads {
            let mut k = [0u8; SORT_KEY_LEN];
            sort_key(p.as_bytes(), &mut k);
            keys.push(k);
            lens.push(p.len() as u32);
        }
        let order: Vec<u32> = (0..2000).collect();
        // About 100 bytes a line: 16 KiB is about 160 lines, 64 KiB 650;
        // the kinds change at lines 667 and 1334.
        let bytes = |from: usize, to: usize| -> usize {
            lens[from..to].iter().map(|&l| l as usize + 1).sum()
        };
        let end = frame_end(&order, &keys, &lens, 0);
        assert!(
            (TARGET_FRAME_BYTES - 200..=TARGET_FRAME_BYTES).contains(&bytes(0, end)),
            "no boundary within reach: a full frame, not {} bytes",
            bytes(0, end)
        );
        let end = frame_end(&order, &keys, &lens, 500);
        assert_eq!(end, 667, "cut where alpha ends");
        let end = frame_end(&order, &keys, &lens, 1800);
        assert_eq!(end, 2000, "the last frame takes the rest");
    }
}
