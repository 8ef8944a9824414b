//! Store segments, format v2: zstd-compressed, checksummed blocks with time
//! and term filters, greppable with standard tools.
//!
//! # Byte layout
//!
//! The file is a valid zstd stream: a sequence of zstd *skippable frames*
//! (which `zstd -d` ignores) and ordinary zstd frames. Every integer is
//! little-endian; a skippable frame is `magic u32, size u32, size bytes`.
//! So `zstdcat SEGMENT | grep` prints the payloads, one per line.
//!
//! ```text
//! header   skippable 0x184D2A50: "SLUICE" 0x02 0x01 (format 2.1; 2.0
//!          files, 0x02 0x00, differ only in their term filters)
//! block*   skippable 0x184D2A51: block meta (below)
//!          zstd frame: every payload of the block followed by "\n"
//! footer   skippable 0x184D2A52: the block index (below)
//! ```
//!
//! Block meta: `count u32, min u128, max u128, text_len u32, data_len u32,
//! data_crc u32` (crc32 of the zstd frame's bytes), `filter_len u32` and
//! the term filter ([`crate::term_filter`]), the
//! first id (u128) and `count - 1` id deltas (LEB128, each at least 1), the
//! `count` payload lengths (LEB128), the topic table (`n` LEB128, then `n`
//! times `len u8, bytes`) and, when `n > 1`, one topic index per record
//! (LEB128), the flagged records (`k` LEB128, then `k` times `index LEB128,
//! flags u8`), and last `meta_crc u32` over all of the above.
//!
//! Footer: `blocks u32`, per block `offset u64` (of its meta frame),
//! `meta_len u32, data_len u32, count u32, min u128, max u128`, then
//! `records u64, text u64` (the uncompressed bytes of all blocks' text,
//! which compaction sizes segments by), `crc u32` over the above, then `frame_len u32` (the whole
//! footer frame, header included) and the tag `"SLF2"`. A reader finds the
//! footer from the last 8 bytes of the file.
//!
//! # Rules
//!
//! - Records are sorted by id with no id repeated, within a block and
//!   across the file; a block's `[min, max]` and the footer's copy agree.
//! - Blocks hold about [`TARGET_BLOCK_BYTES`] of text (one record may make
//!   a block larger); the reader refuses `text_len` above
//!   [`MAX_BLOCK_TEXT`] and any offset or length outside the file.
//! - Write rule: as every store segment ([`crate::store_segment`]): a temp
//!   name, fsync, rename, fsync the directory. The file is never modified
//!   afterwards, so it is read through a memory map.
//! - Read rule: the footer's checksum is verified when the file is opened;
//!   a block's meta checksum and data checksum when the block is read. A
//!   mismatch is [`StorageError::Corrupt`] naming the file and offset.
//! - Pruning: a cursor skips blocks outside its time range and, for a
//!   literal, blocks whose term filter rules the literal out
//!   ([`crate::term_filter`]); neither is ever decompressed. A filter is
//!   used only after its block's meta checksum is verified; a segment
//!   shared through [`crate::SegmentCache`] remembers which were, for the
//!   life of its mapping (the file is immutable).
//! - Blocks are self-contained: nothing in a block refers to its offset or
//!   to another block, so compaction copies a verified block whole into a
//!   new file of the same version ([`BlockSegment::raw_block`],
//!   [`BlockWriter::append_raw`]); only the footer records where it lies.
//! - Format versions: 2.1 (`0x02 0x01`) is written; 2.0 (`0x02 0x00`) is
//!   read too. They differ only in how the term filter chooses its 8-grams
//!   ([`crate::term_filter::FilterKind`]). Any other version is not a v2
//!   segment.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use sluice_record::{MAX_PAYLOAD_BYTES, Record, Ulid};

use crate::{
    StorageError,
    fs::{Fs, Mapped},
    term_filter::FilterKind,
};

mod cursor;
mod writer;
pub use cursor::{BlockCursor, RecordFilter};
pub use writer::BlockWriter;

const SKIPPABLE_HEADER: u32 = 0x184D_2A50;
const SKIPPABLE_BLOCK: u32 = 0x184D_2A51;
const SKIPPABLE_FOOTER: u32 = 0x184D_2A52;
/// Format 2.1: winnowed term filters. Format 2.0 (`0x02 0x00`, sampled
/// filters) is still read.
const FILE_TAG: &[u8; 8] = b"SLUICE\x02\x01";
const FOOTER_TAG: &[u8; 4] = b"SLF2";
/// Bytes of the file header frame.
pub const HEADER_LEN: usize = 8 + FILE_TAG.len();
/// A block closes once its text reaches this size: 1 MiB. Larger blocks
/// compress better and dilute the fixed trigram bitmap; pruning a rare
/// literal still leaves one or two blocks to read.
pub const TARGET_BLOCK_BYTES: usize = 1 << 20;
/// The largest block text a reader accepts.
pub const MAX_BLOCK_TEXT: usize = TARGET_BLOCK_BYTES + MAX_PAYLOAD_BYTES + (1 << 20);
/// zstd level: fast to write, about a fifth of the text for log lines.
pub const ZSTD_LEVEL: i32 = 3;

/// A compressor for block text at `level`, with match-finder tables sized
/// for 1 MiB blocks rather than zstd's defaults for inputs of any size.
///
/// Measured with `zstd -b3 -B1M` on 50 MB of testsvc lines: the default
/// tables (hash 2^17, chain 2^16 entries, matches from 5 bytes) compress
/// to 0.276 at 215 MB/s; 2^16 and 2^15 entries, matches from 6 bytes,
/// to 0.274 at 260 MB/s. The tables then fit the core's L2 cache, and the
/// longer minimum match skips short ones that cost more than they save.
pub fn block_compressor(level: i32) -> std::io::Result<zstd::bulk::Compressor<'static>> {
    use zstd::zstd_safe::CParameter;
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    compressor.set_parameter(CParameter::HashLog(16))?;
    compressor.set_parameter(CParameter::ChainLog(15))?;
    compressor.set_parameter(CParameter::MinMatch(6))?;
    Ok(compressor)
}
/// Bytes of one footer entry.
const ENTRY_LEN: usize = 8 + 4 + 4 + 4 + 16 + 16;

/// Whether `bytes` (a file's first bytes) start a v2 segment.
pub fn is_block_segment(bytes: &[u8]) -> bool {
    filter_kind(bytes).is_some()
}

/// The term filter kind of a v2 file, from its header; `None` when `bytes`
/// do not start a v2 segment.
fn filter_kind(bytes: &[u8]) -> Option<FilterKind> {
    if bytes.len() < HEADER_LEN
        || bytes[..4] != SKIPPABLE_HEADER.to_le_bytes()
        || bytes[8..HEADER_LEN - 1] != FILE_TAG[..FILE_TAG.len() - 1]
    {
        return None;
    }
    match bytes[HEADER_LEN - 1] {
        0 => Some(FilterKind::Sampled),
        1 => Some(FilterKind::Winnowed),
        _ => None,
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn skippable(out: &mut Vec<u8>, magic: u32, content: &[u8]) {
    out.extend_from_slice(&magic.to_le_bytes());
    out.extend_from_slice(&(content.len() as u32).to_le_bytes());
    out.extend_from_slice(content);
}

/// One footer entry: where a block is and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEntry {
    /// Offset of the block's meta frame.
    pub offset: u64,
    pub meta_len: u32,
    pub data_len: u32,
    pub count: u32,
    pub min: Ulid,
    pub max: Ulid,
}

impl BlockEntry {
    /// Whether any record can have a time in `[from_ms, to_ms]`.
    pub fn overlaps_ms(&self, from_ms: u64, to_ms: u64) -> bool {
        self.min.timestamp_ms() <= to_ms && self.max.timestamp_ms() >= from_ms
    }

    fn meta_range(&self) -> std::ops::Range<usize> {
        let start = self.offset as usize + 8;
        start..start + self.meta_len as usize
    }

    pub(crate) fn data_range(&self) -> std::ops::Range<usize> {
        let start = self.meta_range().end;
        start..start + self.data_len as usize
    }
}

/// A little-endian reader over a checked byte slice.
struct Bytes<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).ok_or("length overflows")?;
        let out = self.buf.get(self.pos..end).ok_or("truncated")?;
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn u128(&mut self) -> Result<u128, &'static str> {
        Ok(u128::from_le_bytes(
            self.take(16)?.try_into().expect("16 bytes"),
        ))
    }
    fn varint(&mut self) -> Result<u128, &'static str> {
        let mut v: u128 = 0;
        for shift in (0..128).step_by(7) {
            let b = self.u8()?;
            v |= ((b & 0x7f) as u128)
                .checked_shl(shift)
                .ok_or("varint too long")?;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long")
    }
}

/// An opened v2 segment: the mapped file and its verified block index.
#[derive(Debug)]
pub struct BlockSegment {
    path: std::path::PathBuf,
    /// Shared with the threads that decode blocks ahead of a cursor.
    bytes: std::sync::Arc<Mapped>,
    blocks: Vec<BlockEntry>,
    records: u64,
    text_bytes: u64,
    filter_kind: FilterKind,
    /// Whether block `i`'s meta checksum was verified: a segment shared
    /// between queries ([`crate::SegmentCache`]) checks each filter once.
    meta_verified: Box<[AtomicBool]>,
}

impl BlockSegment {
    pub fn open(fs: &dyn Fs, path: &Path) -> Result<BlockSegment, StorageError> {
        let bytes = fs
            .map(path)
            .map_err(StorageError::io("map segment", path))?;
        Self::from_bytes(path, bytes)
    }

    /// Parse and verify the footer of `bytes` (the whole file).
    pub fn from_bytes(path: &Path, bytes: Mapped) -> Result<BlockSegment, StorageError> {
        let corrupt = |offset: usize, reason: &'static str| StorageError::Malformed {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason,
        };
        let Some(filter_kind) = filter_kind(&bytes) else {
            return Err(corrupt(0, "not a v2 store segment (bad header)"));
        };
        let len = bytes.len();
        if len < HEADER_LEN + 8 + 4 + 16 + 4 + 8 || bytes[len - 4..] != FOOTER_TAG[..] {
            return Err(corrupt(len, "no footer (the file is cut short)"));
        }
        let frame_len = u32::from_le_bytes(bytes[len - 8..len - 4].try_into().expect("4")) as usize;
        if frame_len < 8 + 4 + 16 + 4 + 8 || frame_len > len - HEADER_LEN {
            return Err(corrupt(len - 8, "bad footer length"));
        }
        let start = len - frame_len;
        let frame = &bytes[start..len];
        if frame[..4] != SKIPPABLE_FOOTER.to_le_bytes()
            || u32::from_le_bytes(frame[4..8].try_into().expect("4")) as usize != frame_len - 8
        {
            return Err(corrupt(start, "bad footer frame"));
        }
        let content = &frame[8..frame_len - 8];
        let (body, crc) = content.split_at(content.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4")) {
            return Err(corrupt(start, "footer checksum mismatch"));
        }
        let mut r = Bytes { buf: body, pos: 0 };
        let parse = |r: &mut Bytes<'_>| -> Result<(Vec<BlockEntry>, u64, u64), &'static str> {
            let n = r.u32()? as usize;
            if n.checked_mul(ENTRY_LEN)
                .is_none_or(|b| b + 20 != body.len())
            {
                return Err("footer block count does not match its size");
            }
            let mut blocks = Vec::with_capacity(n);
            let mut next_offset = HEADER_LEN as u64;
            let mut previous_max: Option<Ulid> = None;
            let mut total = 0u64;
            for _ in 0..n {
                let entry = BlockEntry {
                    offset: r.u64()?,
                    meta_len: r.u32()?,
                    data_len: r.u32()?,
                    count: r.u32()?,
                    min: Ulid(r.u128()?),
                    max: Ulid(r.u128()?),
                };
                let end = entry.offset + 8 + entry.meta_len as u64 + entry.data_len as u64;
                if entry.offset != next_offset || end > start as u64 {
                    return Err("a block lies outside the file or out of place");
                }
                if entry.count == 0
                    || entry.min > entry.max
                    || previous_max.is_some_and(|m| m >= entry.min)
                {
                    return Err("block ids out of order");
                }
                next_offset = end;
                previous_max = Some(entry.max);
                total += entry.count as u64;
                blocks.push(entry);
            }
            let records = r.u64()?;
            if records != total {
                return Err("footer record count does not match its blocks");
            }
            let text = r.u64()?;
            Ok((blocks, records, text))
        };
        let (blocks, records, text_bytes) = parse(&mut r).map_err(|why| corrupt(start, why))?;
        let blocks_len = blocks.len();
        Ok(BlockSegment {
            path: path.to_path_buf(),
            bytes: std::sync::Arc::new(bytes),
            blocks,
            records,
            text_bytes,
            filter_kind,
            meta_verified: (0..blocks_len).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    pub fn blocks(&self) -> &[BlockEntry] {
        &self.blocks
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// Uncompressed bytes of the records' text, as the footer states it.
    pub fn text_bytes(&self) -> u64 {
        self.text_bytes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file, as mapped.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether this file's blocks are of the format written now (2.1), so
    /// a writer may take them whole ([`BlockWriter::append_raw`]).
    pub fn is_current_format(&self) -> bool {
        self.filter_kind == FilterKind::Winnowed
    }

    /// Block `i` as its bytes on disk, for a writer to copy without
    /// decompressing it: its frame head, both checksums, its lengths and
    /// its agreement with the footer are verified, the same checks a
    /// cursor makes before it decompresses a block.
    pub fn raw_block(&self, i: usize) -> Result<RawBlock<'_>, &'static str> {
        let entry = self.blocks[i];
        let checked = check_block(&self.bytes, &entry)?;
        Ok(RawBlock {
            entry,
            text_len: checked.text_len,
            frame: checked.frame,
        })
    }

    /// The term filter of block `i`, after its meta checksum is verified:
    /// a damaged filter could otherwise prune a block that matches.
    fn filter(&self, i: usize) -> Result<&[u8], &'static str> {
        let meta = self
            .bytes
            .get(self.blocks[i].meta_range())
            .ok_or("block outside the file")?;
        if meta.len() < 4 {
            return Err("bad block frame");
        }
        let (body, crc) = meta.split_at(meta.len() - 4);
        let verified = &self.meta_verified[i];
        if !verified.load(Ordering::Relaxed) {
            if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4")) {
                return Err("block meta checksum mismatch");
            }
            verified.store(true, Ordering::Relaxed);
        }
        let mut r = Bytes {
            buf: body,
            pos: BLOCK_META_FIXED,
        };
        let len = r.u32()? as usize;
        r.take(len)
    }
}

/// Bytes of a block meta's fixed fields, before its filter: `count`, `min`,
/// `max`, `text_len`, `data_len`, `data_crc`.
const BLOCK_META_FIXED: usize = 4 + 16 + 16 + 4 + 4 + 4;

/// A block whose frame, checksums and lengths were verified.
struct CheckedBlock<'f> {
    frame: &'f [u8],
    /// The meta frame's content without its checksum.
    meta_body: &'f [u8],
    text_len: u32,
}

impl<'f> CheckedBlock<'f> {
    /// The zstd frame of the block's text.
    fn data(&self) -> &'f [u8] {
        &self.frame[8 + self.meta_body.len() + 4..]
    }
}

/// Verify block `entry` of `file` short of decompressing it: its frame
/// head, meta and data checksums, lengths, and agreement with the footer.
fn check_block<'f>(file: &'f [u8], entry: &BlockEntry) -> Result<CheckedBlock<'f>, &'static str> {
    let frame = file
        .get(entry.offset as usize..entry.data_range().end)
        .ok_or("block outside the file")?;
    let (head, rest) = frame.split_at(8);
    let (meta, data) = rest.split_at(entry.meta_len as usize);
    if head[..4] != SKIPPABLE_BLOCK.to_le_bytes()
        || u32::from_le_bytes(head[4..8].try_into().expect("4")) != entry.meta_len
        || meta.len() < 4
    {
        return Err("bad block frame");
    }
    let (body, crc) = meta.split_at(meta.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4")) {
        return Err("block meta checksum mismatch");
    }
    let mut r = Bytes { buf: body, pos: 0 };
    let count = r.u32()?;
    let (min, max) = (Ulid(r.u128()?), Ulid(r.u128()?));
    let text_len = r.u32()?;
    let data_len = r.u32()?;
    let data_crc = r.u32()?;
    if count != entry.count || min != entry.min || max != entry.max {
        return Err("block meta disagrees with the footer");
    }
    if data_len != entry.data_len || text_len as usize > MAX_BLOCK_TEXT {
        return Err("bad block lengths");
    }
    if crc32fast::hash(data) != data_crc {
        return Err("block data checksum mismatch");
    }
    Ok(CheckedBlock {
        frame,
        meta_body: body,
        text_len,
    })
}

/// A verified block as stored: its meta frame and data frame, whole
/// ([`BlockSegment::raw_block`]).
#[derive(Debug, Clone, Copy)]
pub struct RawBlock<'a> {
    /// Its footer entry in the file it came from.
    pub entry: BlockEntry,
    /// Bytes of its text, uncompressed.
    pub text_len: u32,
    /// Both frames, from the meta frame's magic to the data frame's end.
    pub frame: &'a [u8],
}

/// One decoded block.
#[derive(Debug, Default)]
pub(crate) struct Block {
    text: Vec<u8>,
    ids: Vec<Ulid>,
    /// Payload `i` is `text[ends[i] - len .. ends[i]]`; `starts[i]` is its start.
    starts: Vec<u32>,
    ends: Vec<u32>,
    topics: Vec<(u32, u32)>,
    /// Bytes of the topic names, indexed by `topics`.
    topic_bytes: Vec<u8>,
    topic_of: Vec<u32>,
    flags: Vec<u8>,
}

impl Block {
    /// Decode and verify block `entry` of `file`.
    pub(crate) fn load(
        &mut self,
        file: &[u8],
        entry: &BlockEntry,
        decompressor: &mut zstd::bulk::Decompressor<'static>,
    ) -> Result<(), &'static str> {
        let checked = check_block(file, entry)?;
        let text_len = checked.text_len as usize;
        let mut r = Bytes {
            buf: checked.meta_body,
            pos: BLOCK_META_FIXED,
        };
        let filter_len = r.u32()? as usize;
        r.take(filter_len)?;
        let count = entry.count as usize;
        let max = entry.max;
        self.ids.clear();
        let mut id = r.u128()?;
        self.ids.push(Ulid(id));
        for _ in 1..count {
            let delta = r.varint()?;
            if delta == 0 {
                return Err("ids do not increase");
            }
            id = id.checked_add(delta).ok_or("id overflows")?;
            self.ids.push(Ulid(id));
        }
        if self.ids.last() != Some(&max) {
            return Err("ids do not end at the block's max");
        }
        self.starts.clear();
        self.ends.clear();
        let mut at = 0usize;
        for _ in 0..count {
            let len = usize::try_from(r.varint()?).map_err(|_| "payload too long")?;
            let end = at.checked_add(len).ok_or("payload too long")?;
            if end >= text_len {
                return Err("payloads overrun the block text");
            }
            self.starts.push(at as u32);
            self.ends.push(end as u32);
            at = end + 1;
        }
        if at != text_len {
            return Err("payload lengths do not add up to the block text");
        }
        let topics = r.varint()? as usize;
        if topics == 0 || topics > count {
            return Err("bad topic table");
        }
        self.topics.clear();
        self.topic_bytes.clear();
        for _ in 0..topics {
            let len = r.u8()? as usize;
            let name = r.take(len)?;
            let from = self.topic_bytes.len() as u32;
            self.topic_bytes.extend_from_slice(name);
            self.topics.push((from, self.topic_bytes.len() as u32));
        }
        self.topic_of.clear();
        if topics > 1 {
            for _ in 0..count {
                let t = r.varint()?;
                if t >= topics as u128 {
                    return Err("topic index out of range");
                }
                self.topic_of.push(t as u32);
            }
        } else {
            self.topic_of.resize(count, 0);
        }
        self.flags.clear();
        self.flags.resize(count, 0);
        let flagged = r.varint()?;
        if flagged > count as u128 {
            return Err("too many flagged records");
        }
        for _ in 0..flagged {
            let index = r.varint()?;
            let flags = r.u8()?;
            *self
                .flags
                .get_mut(usize::try_from(index).unwrap_or(usize::MAX))
                .ok_or("flag index out of range")? = flags;
        }
        if r.pos != checked.meta_body.len() {
            return Err("trailing bytes in block meta");
        }
        self.text.clear();
        self.text.reserve(text_len);
        let n = decompressor
            .decompress_to_buffer(checked.data(), &mut self.text)
            .map_err(|_| "block data does not decompress")?;
        if n != text_len || self.text.len() != text_len {
            return Err("block text has the wrong length");
        }
        if self.ends.iter().any(|&e| self.text[e as usize] != b'\n') {
            return Err("block text is not one payload per line");
        }
        Ok(())
    }

    pub(crate) fn record(&self, i: usize) -> Record<'_> {
        let (from, to) = self.topics[self.topic_of[i] as usize];
        Record {
            id: self.ids[i],
            flags: self.flags[i],
            topic: &self.topic_bytes[from as usize..to as usize],
            payload: &self.text[self.starts[i] as usize..self.ends[i] as usize],
        }
    }
}

#[cfg(test)]
mod tests;
