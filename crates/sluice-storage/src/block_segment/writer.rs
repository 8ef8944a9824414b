//! Writing v2 segments, with blocks built on worker threads.
//!
//! The caller's thread only appends records to the open block (text, ids,
//! lengths, topics). A full block goes to a worker thread, which builds its
//! term filter, compresses its text and encodes its meta; the writer keeps
//! up to [`BlockWriter::workers`] blocks in flight and writes the finished
//! frames to the file strictly in order. Memory is bounded by the open block
//! plus the blocks in flight; their buffers, filters and zstd contexts are
//! reused from block to block. A writer dropped unfinished leaves its
//! workers to finish their one block each and exit.

use std::{collections::VecDeque, io, thread::JoinHandle};

use sluice_record::{Record, Ulid};

use super::{
    BlockEntry, ENTRY_LEN, FILE_TAG, FOOTER_TAG, SKIPPABLE_BLOCK, SKIPPABLE_FOOTER,
    SKIPPABLE_HEADER, TARGET_BLOCK_BYTES, ZSTD_LEVEL, block_compressor, put_varint, skippable,
};
use crate::{
    fs::WriteFile,
    term_filter::{FilterKind, TermFilter},
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
    filter: TermFilter,
    compressor: zstd::bulk::Compressor<'static>,
    meta: Vec<u8>,
    frame: Vec<u8>,
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

/// Builds a v2 segment into a [`WriteFile`], block by block.
pub struct BlockWriter {
    file: Box<dyn WriteFile>,
    written: u64,
    blocks: Vec<BlockEntry>,
    /// Records and text bytes of the blocks closed (written or in flight).
    records: u64,
    text_closed: u64,
    open: OpenBlock,
    level: i32,
    filter_kind: FilterKind,
    workers: usize,
    in_flight: VecDeque<JoinHandle<io::Result<Built>>>,
    spare_blocks: Vec<OpenBlock>,
    spare_tools: Vec<Tools>,
}

impl BlockWriter {
    /// A writer at [`ZSTD_LEVEL`] with one worker per core.
    pub fn new(file: Box<dyn WriteFile>) -> io::Result<BlockWriter> {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_options(file, ZSTD_LEVEL, workers)
    }

    /// A writer at zstd `level` with up to `workers` blocks built at once.
    pub fn with_options(
        file: Box<dyn WriteFile>,
        level: i32,
        workers: usize,
    ) -> io::Result<BlockWriter> {
        Self::create(file, level, workers, FilterKind::Winnowed)
    }

    /// A writer of format 2.0 files (sampled filters), which are only read
    /// now: for the tests that show they still are.
    #[cfg(test)]
    pub(crate) fn format_2_0(file: Box<dyn WriteFile>) -> io::Result<BlockWriter> {
        Self::create(file, ZSTD_LEVEL, 2, FilterKind::Sampled)
    }

    fn create(
        mut file: Box<dyn WriteFile>,
        level: i32,
        workers: usize,
        filter_kind: FilterKind,
    ) -> io::Result<BlockWriter> {
        let mut header = Vec::new();
        let mut tag = *FILE_TAG;
        if filter_kind == FilterKind::Sampled {
            tag[FILE_TAG.len() - 1] = 0;
        }
        skippable(&mut header, SKIPPABLE_HEADER, &tag);
        file.write_all(&header)?;
        Ok(BlockWriter {
            file,
            written: header.len() as u64,
            blocks: Vec::new(),
            records: 0,
            text_closed: 0,
            open: OpenBlock::default(),
            level,
            filter_kind,
            workers: workers.max(1),
            in_flight: VecDeque::new(),
            spare_blocks: Vec::new(),
            spare_tools: Vec::new(),
        })
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

    /// Append a record; ids must increase (the caller dedupes).
    pub fn push(&mut self, record: Record<'_>) -> io::Result<()> {
        let open = &mut self.open;
        debug_assert!(open.ids.last().is_none_or(|last| record.id > *last));
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
            open.text.reserve(TARGET_BLOCK_BYTES + 4096);
        }
        open.text.extend_from_slice(record.payload);
        open.text.push(b'\n');
        if open.text.len() >= TARGET_BLOCK_BYTES {
            self.close_block()?;
        }
        Ok(())
    }

    /// Append a block taken whole from another file of this format
    /// ([`super::BlockSegment::raw_block`]): compaction's way to move a
    /// block without decompressing and compressing it again. The open block
    /// is closed first, and every block in flight written, so blocks stay
    /// in id order; the caller keeps ids increasing across the two.
    pub fn append_raw(&mut self, raw: &super::RawBlock<'_>) -> io::Result<()> {
        debug_assert_eq!(self.filter_kind, FilterKind::Winnowed);
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

    /// Hand the open block to a worker, first writing the oldest block in
    /// flight if all workers are busy.
    fn close_block(&mut self) -> io::Result<()> {
        if self.open.ids.is_empty() {
            return Ok(());
        }
        while self.in_flight.len() >= self.workers {
            self.write_oldest()?;
        }
        let next = self.spare_blocks.pop().unwrap_or_default();
        let block = std::mem::replace(&mut self.open, next);
        self.records += block.ids.len() as u64;
        self.text_closed += block.text.len() as u64;
        let tools = match self.spare_tools.pop() {
            Some(tools) => tools,
            None => Tools {
                filter: TermFilter::of_kind(self.filter_kind),
                compressor: block_compressor(self.level)?,
                meta: Vec::new(),
                frame: Vec::new(),
            },
        };
        let worker = std::thread::Builder::new()
            .name("sluice-block".into())
            .spawn(move || build(block, tools))?;
        self.in_flight.push_back(worker);
        Ok(())
    }

    /// Wait for the oldest block in flight and append its frame.
    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(worker) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let mut built = worker
            .join()
            .map_err(|_| io::Error::other("a block-building thread panicked"))??;
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
        let mut footer = Vec::with_capacity(24 + self.blocks.len() * ENTRY_LEN);
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
        let frame_len = (8 + footer.len() + 8) as u32;
        footer.extend_from_slice(&frame_len.to_le_bytes());
        footer.extend_from_slice(FOOTER_TAG);
        let mut frame = Vec::with_capacity(footer.len() + 8);
        skippable(&mut frame, SKIPPABLE_FOOTER, &footer);
        self.file.write_all(&frame)?;
        self.written += frame.len() as u64;
        Ok((self.file, self.written))
    }
}

/// Build one block's frame: filter, compressed text, meta (see the layout
/// in the module docs of [`super`]).
fn build(block: OpenBlock, mut tools: Tools) -> io::Result<Built> {
    let count = block.ids.len();
    tools.filter.clear();
    let mut at = 0;
    for &len in &block.lens {
        let end = at + len as usize;
        tools.filter.add(&block.text[at..end]);
        at = end + 1;
    }
    let data = tools.compressor.compress(&block.text)?;
    let (min, max) = (block.ids[0], block.ids[count - 1]);
    let meta = &mut tools.meta;
    meta.clear();
    meta.extend_from_slice(&(count as u32).to_le_bytes());
    meta.extend_from_slice(&min.0.to_le_bytes());
    meta.extend_from_slice(&max.0.to_le_bytes());
    meta.extend_from_slice(&(block.text.len() as u32).to_le_bytes());
    meta.extend_from_slice(&(data.len() as u32).to_le_bytes());
    meta.extend_from_slice(&crc32fast::hash(&data).to_le_bytes());
    let len_at = meta.len();
    meta.extend_from_slice(&[0; 4]);
    tools.filter.encode(meta);
    let filter_len = (meta.len() - len_at - 4) as u32;
    meta[len_at..len_at + 4].copy_from_slice(&filter_len.to_le_bytes());
    meta.extend_from_slice(&min.0.to_le_bytes());
    for pair in block.ids.windows(2) {
        put_varint(meta, pair[1].0 - pair[0].0);
    }
    for &len in &block.lens {
        put_varint(meta, len as u128);
    }
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
    let crc = crc32fast::hash(meta);
    meta.extend_from_slice(&crc.to_le_bytes());

    tools.frame.clear();
    skippable(&mut tools.frame, SKIPPABLE_BLOCK, &tools.meta);
    tools.frame.extend_from_slice(&data);
    Ok(Built {
        meta_len: tools.meta.len() as u32,
        data_len: data.len() as u32,
        count: count as u32,
        min,
        max,
        block,
        tools,
    })
}
