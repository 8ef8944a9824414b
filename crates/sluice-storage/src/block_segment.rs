//! Block files: the store's compressed segments. zstd-compressed,
//! checksummed blocks with time and term filters, greppable with standard
//! tools. Compaction writes them ([`BlockWriter`]); queries read them by
//! mmap ([`BlockCursor`]).
//!
//! # Version policy
//!
//! One version is read: 2.5, the header's bytes `0x02 0x05`. A file with
//! any other version is refused with [`StorageError::UnsupportedVersion`],
//! which names the version found; nothing of it is read. A change to the
//! byte layout below gets a new version, and the old one is no longer read.
//!
//! # Byte layout
//!
//! The file is a valid zstd stream: zstd *skippable frames* (which
//! `zstd -d` ignores) and ordinary zstd frames. A skippable frame is
//! `magic u32, size u32, size bytes`; every integer is little-endian, and
//! LEB128 is the unsigned variable-length integer.
//!
//! ```text
//! header   skippable 0x184D2A50: "SLUICE" 0x02 0x05
//! block*   skippable 0x184D2A51: the block's meta (below)
//!          zstd frames: the block's text, one per frame of the block
//! footer   skippable 0x184D2A52: the block index (below)
//! ```
//!
//! So `zstdcat FILE | grep` prints the payloads, one per line.
//!
//! **A block** holds about [`TARGET_BLOCK_BYTES`] of text (the payloads,
//! each followed by a newline) cut into *frames*, each its own zstd frame.
//! It is laid out in one of two ways ([`BlockLayout`]):
//!
//! - *sorted*: its lines are ordered by a sort key (the line's severity and
//!   status, then the start of its template: its words, with every word
//!   that holds a digit masked; see `sort_key.rs`) and cut into frames of
//!   [`MIN_FRAME_BYTES`] to [`TARGET_FRAME_BYTES`] where kinds of line
//!   change. Lines of one kind (one level, one status, one format, one
//!   message) share frames: they compress better together, and a word on
//!   a few kinds of line lies in a few frames. Within such a block
//!   `zstdcat` prints lines in sort-key order, not in time order.
//! - *in id order*: one frame of up to [`IN_ORDER_FRAME_BYTES`] of lines in
//!   id order, cheaper to write.
//!
//! One bit-sliced filter ([`crate::term_filter::sliced`]) says, for every
//! frame at once, which may hold a literal; a query decompresses only
//! those.
//!
//! Block meta, in order:
//!
//! | field | bytes | meaning |
//! |---|---|---|
//! | `count` | u32 | records in the block, at most [`MAX_BLOCK_RECORDS`] |
//! | `min`, `max` | u128 each | its smallest and largest id |
//! | `text_len` | u32 | bytes of its text, uncompressed |
//! | `data_len` | u32 | bytes of its zstd frames |
//! | `data_crc` | u32 | crc32 of all its zstd frames |
//! | `frames` | u32 | bits 0-29: its number of frames `n`; bit 30: always set (each line ends at its newline, as no payload holds one); bit 31: set for a block in id order |
//! | frame table | `16 n` | per frame `data_len u32, text_len u32, rows u32, crc u32` (the crc32 of its zstd frame) |
//! | `filter_len` | u32 | bytes of the filter |
//! | filter | `filter_len` | the sliced filter ([`crate::term_filter::sliced`]) |
//! | ids | LEB128 `coded_len`, LEB128 `packed_len`, `packed_len` | the ids after the first (which is `min`), lane-coded (per id a LEB128 of its millisecond delta flag, lane and counter step, about a byte at ordinary rates) into `coded_len` bytes, then zstd-compressed into one frame of `packed_len` bytes (none when `coded_len` is 0): a small part of a byte an id (`block_segment/ids.rs`) |
//! | `width` | u8 | sorted blocks only: bytes of a line ordinal, 1 to 4 |
//! | line ordinals | `count * width` | sorted blocks only: per line, in frame order, its record's index in id order (in a block in id order, line `i` is record `i`) |
//! | topic table | LEB128 `t`, then `t` times `len u8, bytes` | the block's topics |
//! | topic indices | `count` LEB128 | only when `t > 1`: each record's topic |
//! | flagged | LEB128 `k`, then `k` times `index LEB128, flags u8` | records with flags |
//! | `meta_crc` | u32 | crc32 of every field above |
//!
//! Footer, in order:
//!
//! | field | bytes | meaning |
//! |---|---|---|
//! | `blocks` | u32 | number of blocks `b` |
//! | entries | `b` times 52 | per block `offset u64` (of its meta frame), `meta_len u32, data_len u32, count u32, min u128, max u128` |
//! | `records` | u64 | records in the file |
//! | `text` | u64 | bytes of all blocks' text, uncompressed (compaction sizes files by it) |
//! | `crc` | u32 | crc32 of the fields above |
//! | `frame_len` | u32 | bytes of the whole footer frame, its head included |
//! | tag | 4 | `"SLF2"` |
//!
//! A reader finds the footer from the last 8 bytes of the file.
//!
//! # Rules
//!
//! - Records are sorted by id with no id repeated, within a block and
//!   across the file; a block's `[min, max]` and the footer's copy agree.
//!   (A sorted block's *lines* are in sort-key order; its ids, in id
//!   order.)
//! - No payload holds a newline: the record model forbids it, the store's
//!   consumer checks it where data crosses from ingest to store, and the
//!   writer asserts it in debug builds.
//! - The reader refuses `text_len` above [`MAX_BLOCK_TEXT`], more than
//!   [`MAX_FRAMES`] frames, frames whose records, text or data do not add
//!   up to the block's, frames whose lines do not fill their text,
//!   ordinals that are not a permutation, and any offset or length outside
//!   the file.
//! - Write rule: as every store segment ([`crate::store_segment`]): a temp
//!   name, fsync, rename, fsync the directory. The file is never modified
//!   afterwards, so it is read through a memory map.
//! - Read rule: the footer's checksum is verified when the file is opened;
//!   a block's meta checksum before its filter or meta is used, and each
//!   zstd frame's checksum before it is decompressed. A mismatch is
//!   [`StorageError::Malformed`] naming the file and offset. A segment
//!   shared through [`crate::SegmentCache`] remembers which metas were
//!   verified, for the life of its mapping (the file is immutable).
//! - Pruning: a cursor skips blocks outside its time range and, for a
//!   literal, the frames whose part of the filter rules it out (and so the
//!   blocks none of whose frames may hold it); neither is decompressed.
//! - Blocks are self-contained: nothing in a block refers to its offset or
//!   to another block, so compaction copies a verified block whole into a
//!   new file ([`BlockSegment::raw_block`], [`BlockWriter::append_raw`]);
//!   only the footer records where it lies.

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use sluice_record::{MAX_PAYLOAD_BYTES, Ulid};

use crate::{
    StorageError,
    fs::{Fs, Mapped},
    term_filter::sliced::{RowCounts, Rows},
};

mod block;
mod cache;
mod cursor;
mod ids;
mod probes;
mod select;
mod sort_key;
pub use sort_key::severity_of;
mod writer;
pub use block::MAX_FRAMES;
use block::{Block, FrameEntry, Picked};
pub use cache::{BlockCache, BlockCacheStats};
pub use cursor::{BlockCursor, Cancel, PREFETCH};
pub(crate) use probes::{FrameScratch, Probes};
pub use select::{RecordFilter, TextMatcher};
pub use writer::BlockWriter;

const SKIPPABLE_HEADER: u32 = 0x184D_2A50;
const SKIPPABLE_BLOCK: u32 = 0x184D_2A51;
const SKIPPABLE_FOOTER: u32 = 0x184D_2A52;
/// The header's content: the tag and the one version read and written, 2.5
/// (see the version policy in the module docs).
const FILE_TAG: &[u8; 8] = b"SLUICE\x02\x05";
/// Bytes of the tag before the version.
const TAG_LEN: usize = FILE_TAG.len() - 2;
const FOOTER_TAG: &[u8; 4] = b"SLF2";
/// Bytes of the file header frame.
pub const HEADER_LEN: usize = 8 + FILE_TAG.len();
/// A block closes once its text reaches this size: 8 MiB. Its records are
/// sorted by their sort key and cut into frames, so the larger the
/// block, the more lines of one kind share a frame: 8 MiB kept 0.295 of
/// the raw testsvc text on disk where 4 MiB kept 0.300, with queries as
/// fast and the node's peak memory the same (BENCHMARKS.md, "Design
/// measurements").
pub const TARGET_BLOCK_BYTES: usize = 8 << 20;
/// How a block lays out its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockLayout {
    /// Sorted by their sort key, in frames cut where kinds of line change,
    /// with word trigrams indexed per frame: what queries are fastest on.
    #[default]
    Sorted,
    /// In id order, in blocks of one frame of [`IN_ORDER_FRAME_BYTES`],
    /// with only 8-grams indexed: written in two thirds of the time of
    /// sorted blocks (measured when those were 4 MiB) and in an eighth of
    /// their memory, for compaction to keep up with ingest; rewritten as
    /// sorted when the store has time.
    InOrder,
}

/// The frame of a block of [`BlockLayout::InOrder`] closes once its text
/// reaches this size: 1 MiB. Lines in id order mix every kind in every
/// frame, so smaller frames would only compress worse (BENCHMARKS.md,
/// "Design measurements").
pub const IN_ORDER_FRAME_BYTES: usize = 1 << 20;

/// The flag, in a block meta's `frames` field, of a block whose lines are
/// in id order.
const IN_ORDER: u32 = 1 << 31;
/// The flag, in a block meta's `frames` field, that each line ends at its
/// newline (no payload holds one), set in every block. A block without it
/// lists its lines' lengths, as version 2.2 did, and is refused.
const LINES_END_AT_NEWLINES: u32 = 1 << 30;

/// A frame of a sorted block closes once its text reaches this size: 64 KiB,
/// the size that compressed best while a word on 1% of the lines still lies
/// in few frames (BENCHMARKS.md, "Design measurements").
pub const TARGET_FRAME_BYTES: usize = 64 << 10;
/// The smallest frame the writer cuts where kinds of line change (see
/// `frame_end` in the writer); the last frame of a block may be smaller.
pub const MIN_FRAME_BYTES: usize = 16 << 10;
/// The most records a block holds: a writer closes a block once its text
/// reaches [`TARGET_BLOCK_BYTES`], and each record's line takes at least
/// its newline. A reader refuses more, so that a few bytes of compressed
/// ids cannot make it set aside memory for millions of records.
pub const MAX_BLOCK_RECORDS: usize = TARGET_BLOCK_BYTES;
/// The largest block text a reader accepts.
pub const MAX_BLOCK_TEXT: usize = TARGET_BLOCK_BYTES + MAX_PAYLOAD_BYTES + (1 << 20);
/// zstd level of blocks in id order, which compaction writes while it
/// keeps up with ingest: fast to write, about a fourth of the text for
/// log lines.
pub const ZSTD_LEVEL: i32 = 3;
/// zstd level of sorted blocks, which the store writes only when it has
/// time: it saves a few hundredths of the text over level 3 at half the
/// writer's speed, and decompression is as fast at every level
/// (BENCHMARKS.md, "Design measurements").
pub const SORTED_ZSTD_LEVEL: i32 = 9;

/// A compressor for block text at `level`, with match-finder tables sized
/// for 1 MiB blocks rather than zstd's defaults for inputs of any size
/// (hash 2^16 and chain 2^15 entries, matches from 6 bytes): the tables
/// then fit the core's L2 cache, and the longer minimum match skips short
/// ones that cost more than they save; faster and no larger
/// (BENCHMARKS.md, "Design measurements").
pub fn block_compressor(level: i32) -> std::io::Result<zstd::bulk::Compressor<'static>> {
    use zstd::zstd_safe::CParameter;
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    compressor.set_parameter(CParameter::HashLog(16))?;
    compressor.set_parameter(CParameter::ChainLog(15))?;
    compressor.set_parameter(CParameter::MinMatch(6))?;
    Ok(compressor)
}
/// Bytes of a skippable frame's head: its magic and its size (u32 each).
const FRAME_HEAD: usize = 4 + 4;
/// Bytes of one footer entry: `offset` (u64), `meta_len`, `data_len` and
/// `count` (u32), `min` and `max` (u128).
const ENTRY_LEN: usize = 8 + 4 + 4 + 4 + 16 + 16;
/// Bytes of the footer's fields around its entries, up to its checksum:
/// `blocks` (u32), `records` and `text` (u64).
const FOOTER_FIELDS: usize = 4 + 8 + 8;
/// Bytes of a crc32.
const CRC_LEN: usize = 4;
/// Bytes after the footer's checksum: `frame_len` (u32) and the tag.
const FOOTER_TRAILER: usize = 4 + FOOTER_TAG.len();
/// The smallest footer frame, of a file with no block.
const MIN_FOOTER_FRAME: usize = FRAME_HEAD + FOOTER_FIELDS + CRC_LEN + FOOTER_TRAILER;

/// Whether `bytes` (a file's first bytes) start a block file of any
/// version: its header frame and tag. [`BlockSegment::open`] then refuses
/// any version but the one it reads.
pub fn is_block_segment(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN
        && bytes[..4] == SKIPPABLE_HEADER.to_le_bytes()
        && bytes[8..8 + TAG_LEN] == FILE_TAG[..TAG_LEN]
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
    /// Bytes of the meta frame's content (after its 8-byte head), its
    /// checksum included.
    pub meta_len: u32,
    /// Bytes of the block's zstd frames, which follow the meta frame.
    pub data_len: u32,
    /// Records in the block, at least 1.
    pub count: u32,
    /// Its smallest id.
    pub min: Ulid,
    /// Its largest id.
    pub max: Ulid,
}

impl BlockEntry {
    /// Whether any record can have a time in `[from_ms, to_ms]`.
    pub fn overlaps_ms(&self, from_ms: u64, to_ms: u64) -> bool {
        self.min.timestamp_ms() <= to_ms && self.max.timestamp_ms() >= from_ms
    }

    fn meta_range(&self) -> std::ops::Range<usize> {
        let start = self.offset as usize + FRAME_HEAD;
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
    #[inline]
    fn varint(&mut self) -> Result<u128, &'static str> {
        // Most values (an id's lane and step, a topic) are one byte.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(b as u128);
        }
        self.long_varint()
    }

    fn long_varint(&mut self) -> Result<u128, &'static str> {
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

/// An opened block file: the mapped file and its verified block index.
#[derive(Debug)]
pub struct BlockSegment {
    path: std::path::PathBuf,
    /// Shared with the threads that decode blocks ahead of a cursor.
    bytes: std::sync::Arc<Mapped>,
    blocks: Vec<BlockEntry>,
    records: u64,
    text_bytes: u64,
    /// Whether block `i`'s meta checksum was verified: a segment shared
    /// between queries ([`crate::SegmentCache`]) checks each filter once.
    meta_verified: Box<[AtomicBool]>,
    /// Where block `i`'s sliced filter lies and its row counts, once its
    /// frame table was parsed (and so its meta verified): a query probes
    /// every block in its range, and parsing each table again to find the
    /// filter was 7% of a rare id's time on the node.
    filters: Box<[OnceLock<FilterSpan>]>,
}

/// A block's sliced filter: its bytes in the file, the frames it covers,
/// its rows of each kind (`None`: its sizes are wrong; it passes all).
#[derive(Debug, Clone, Copy)]
struct FilterSpan {
    at: usize,
    len: usize,
    frames: usize,
    counts: Option<RowCounts>,
}

impl BlockSegment {
    /// Map the block file at `path` and verify its header and footer (see
    /// [`BlockSegment::from_bytes`]).
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
        if !is_block_segment(&bytes) {
            return Err(corrupt(0, "not a block file (bad header)"));
        }
        let version = &bytes[8 + TAG_LEN..HEADER_LEN];
        if version != &FILE_TAG[TAG_LEN..] {
            return Err(StorageError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: format!("{}.{}", version[0], version[1]),
                supported: format!("{}.{}", FILE_TAG[TAG_LEN], FILE_TAG[TAG_LEN + 1]),
            });
        }
        let len = bytes.len();
        if len < HEADER_LEN + MIN_FOOTER_FRAME || bytes[len - FOOTER_TAG.len()..] != FOOTER_TAG[..]
        {
            return Err(corrupt(len, "no footer (the file is cut short)"));
        }
        let trailer = len - FOOTER_TRAILER;
        let frame_len =
            u32::from_le_bytes(bytes[trailer..trailer + 4].try_into().expect("4")) as usize;
        if frame_len < MIN_FOOTER_FRAME || frame_len > len - HEADER_LEN {
            return Err(corrupt(trailer, "bad footer length"));
        }
        let start = len - frame_len;
        let frame = &bytes[start..len];
        if frame[..4] != SKIPPABLE_FOOTER.to_le_bytes()
            || u32::from_le_bytes(frame[4..FRAME_HEAD].try_into().expect("4")) as usize
                != frame_len - FRAME_HEAD
        {
            return Err(corrupt(start, "bad footer frame"));
        }
        let content = &frame[FRAME_HEAD..frame_len - FOOTER_TRAILER];
        let (body, crc) = content.split_at(content.len() - CRC_LEN);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4")) {
            return Err(corrupt(start, "footer checksum mismatch"));
        }
        let mut r = Bytes { buf: body, pos: 0 };
        let parse = |r: &mut Bytes<'_>| -> Result<(Vec<BlockEntry>, u64, u64), &'static str> {
            let n = r.u32()? as usize;
            if n.checked_mul(ENTRY_LEN)
                .is_none_or(|b| b + FOOTER_FIELDS != body.len())
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
                let end = entry.offset
                    + FRAME_HEAD as u64
                    + entry.meta_len as u64
                    + entry.data_len as u64;
                if entry.offset != next_offset || end > start as u64 {
                    return Err("a block lies outside the file or out of place");
                }
                if entry.count as usize > MAX_BLOCK_RECORDS {
                    return Err("a block holds more records than a block can");
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
            meta_verified: (0..blocks_len).map(|_| AtomicBool::new(false)).collect(),
            filters: (0..blocks_len).map(|_| OnceLock::new()).collect(),
        })
    }

    /// What identifies block `i`'s content wherever it lies (see
    /// [`BlockCache`]): its id range, count, lengths and meta checksum.
    pub(crate) fn block_key(&self, i: usize) -> cache::BlockKey {
        let entry = &self.blocks[i];
        cache::BlockKey::new(entry, &self.bytes[entry.meta_range()])
    }

    /// The footer's index: every block, in id order.
    pub fn blocks(&self) -> &[BlockEntry] {
        &self.blocks
    }

    /// Records in the file, as the footer states it.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Uncompressed bytes of the records' text, as the footer states it.
    pub fn text_bytes(&self) -> u64 {
        self.text_bytes
    }

    /// The file this was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file, as mapped.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Block `i` as its bytes on disk, for a writer to copy without
    /// decompressing it: its frame head, both checksums, its lengths and
    /// its agreement with the footer are verified, the same checks a
    /// cursor makes before it decompresses a block.
    pub fn raw_block(&self, i: usize) -> Result<RawBlock<'_>, &'static str> {
        let entry = self.blocks[i];
        let checks = Checks {
            meta: true,
            data: true,
        };
        let checked = check_block(&self.bytes, &entry, checks)?;
        Ok(RawBlock {
            entry,
            text_len: checked.text_len,
            frame: checked.frame,
        })
    }

    /// Which frames of block `i` may hold a wanted record, by its filter:
    /// their indices go to `wanted`, ascending. Returns the bytes of the
    /// filter read (the rows probed).
    pub(crate) fn wanted_frames(
        &self,
        i: usize,
        probes: &Probes,
        scratch: &mut FrameScratch,
        wanted: &mut Vec<u32>,
    ) -> Result<u64, &'static str> {
        wanted.clear();
        scratch.frames.clear();
        let (filter, n, rows) = match self.filters[i].get() {
            Some(span) => {
                let filter = &self.bytes[span.at..span.at + span.len];
                // Cut by the counts kept: reading them again touched four
                // pages far apart, half of a rare literal's probe.
                let counts = span.counts;
                let rows = counts.and_then(|c| Rows::with_counts(filter, span.frames, c));
                (filter, span.frames, rows)
            }
            None => {
                let filter = self.frame_table(i, &mut scratch.frames)?.filter;
                // The filter is a part of the mapped file.
                let at = filter.as_ptr() as usize - self.bytes.as_ptr() as usize;
                let frames = scratch.frames.len();
                let rows = Rows::parse(filter, frames);
                let _ = self.filters[i].set(FilterSpan {
                    at,
                    len: filter.len(),
                    frames,
                    counts: rows.as_ref().map(Rows::counts),
                });
                (filter, frames, rows)
            }
        };
        let read = probes.narrow_frames(rows, filter.len(), n, scratch);
        for (w, &word) in scratch.mask.iter().enumerate() {
            let mut word = word;
            while word != 0 {
                wanted.push((w * 64) as u32 + word.trailing_zeros());
                word &= word - 1;
            }
        }
        // A block with frames to read needs its frame table; the others
        // needed only the filter.
        if !wanted.is_empty() && scratch.frames.is_empty() {
            self.frame_table(i, &mut scratch.frames)?;
        }
        Ok(read)
    }

    /// Block `i`'s record ids and topics from its meta alone (its checksum
    /// verified), nothing decompressed: what a count by time or by topic
    /// needs. Returns the bytes of the meta read.
    pub fn read_meta(&self, i: usize, meta: &mut BlockMeta) -> Result<u64, StorageError> {
        let entry = self.blocks[i];
        meta.block
            .load_meta(&self.bytes, &entry, self.meta_is_verified(i))
            .map_err(|reason| StorageError::Malformed {
                path: self.path.clone(),
                offset: entry.offset,
                reason,
            })?;
        self.meta_was_verified(i);
        Ok((FRAME_HEAD + entry.meta_len as usize) as u64)
    }

    /// Bytes of block `i`'s sliced filter.
    pub fn filter_bytes(&self, i: usize) -> Result<u64, &'static str> {
        Ok(self.frame_table(i, &mut Vec::new())?.filter.len() as u64)
    }

    /// The frame table of block `i`, its meta verified, into `frames`;
    /// returns the block's sliced filter.
    fn frame_table(
        &self,
        i: usize,
        frames: &mut Vec<FrameEntry>,
    ) -> Result<block::FrameTable<'_>, &'static str> {
        let body = self.verified_meta(i)?;
        // The fixed fields' `text_len`, then `data_len` and `data_crc`.
        let mut r = Bytes {
            buf: body,
            pos: BLOCK_META_FIXED - 12,
        };
        let text_len = r.u32()?;
        r.pos = BLOCK_META_FIXED;
        block::parse_frames(&mut r, &self.blocks[i], text_len, frames)
    }

    /// Whether block `i`'s lines are [`BlockLayout::Sorted`], by its
    /// meta's flag, not yet verified: what compaction plans and copies by
    /// (a copied block is verified as it is copied).
    pub fn block_is_sorted(&self, i: usize) -> bool {
        let at = self.blocks[i].offset as usize + FRAME_HEAD + BLOCK_META_FIXED;
        self.bytes
            .get(at..at + 4)
            .is_some_and(|b| u32::from_le_bytes(b.try_into().expect("4")) & IN_ORDER == 0)
    }

    /// Blocks that are not [sorted](Self::block_is_sorted).
    pub fn unsorted_blocks(&self) -> usize {
        (0..self.blocks.len())
            .filter(|&i| !self.block_is_sorted(i))
            .count()
    }

    /// Whether block `i`'s meta checksum was verified through this mapping.
    fn meta_is_verified(&self, i: usize) -> bool {
        self.meta_verified[i].load(Ordering::Relaxed)
    }

    /// Remember that block `i`'s meta checksum was verified.
    fn meta_was_verified(&self, i: usize) {
        self.meta_verified[i].store(true, Ordering::Relaxed);
    }

    /// The meta body of block `i` (without its checksum), once the
    /// checksum is verified: a damaged filter could otherwise prune a
    /// block that matches.
    fn verified_meta(&self, i: usize) -> Result<&[u8], &'static str> {
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
        Ok(body)
    }
}

/// One block's record ids and topics, as [`BlockSegment::read_meta`]
/// decodes them from its meta; reused from block to block.
#[derive(Debug, Default)]
pub struct BlockMeta {
    block: Block,
}

impl BlockMeta {
    /// Every record's id, ascending.
    pub fn ids(&self) -> &[Ulid] {
        self.block.ids()
    }

    /// Record `i`'s topic (`i` in id order).
    pub fn topic(&self, i: usize) -> &[u8] {
        self.block.topic_of(i)
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
    /// The zstd frames of the block's text.
    fn data(&self) -> &'f [u8] {
        &self.frame[8 + self.meta_body.len() + 4..]
    }
}

/// Which checksums [`check_block`] verifies.
#[derive(Debug, Clone, Copy)]
struct Checks {
    /// The meta's: skipped only when this mapping verified it already.
    meta: bool,
    /// The whole data's, for a block copied whole; a block being read
    /// checks each frame it decompresses instead.
    data: bool,
}

/// Verify block `entry` of `file` short of decompressing it: its frame
/// head, meta and data checksums, lengths, and agreement with the footer.
fn check_block<'f>(
    file: &'f [u8],
    entry: &BlockEntry,
    checks: Checks,
) -> Result<CheckedBlock<'f>, &'static str> {
    let frame = file
        .get(entry.offset as usize..entry.data_range().end)
        .ok_or("block outside the file")?;
    let (head, rest) = frame.split_at(FRAME_HEAD);
    let (meta, data) = rest.split_at(entry.meta_len as usize);
    if head[..4] != SKIPPABLE_BLOCK.to_le_bytes()
        || u32::from_le_bytes(head[4..8].try_into().expect("4")) != entry.meta_len
        || meta.len() < 4
    {
        return Err("bad block frame");
    }
    let (body, crc) = meta.split_at(meta.len() - 4);
    if checks.meta && crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4")) {
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
    if checks.data && crc32fast::hash(data) != data_crc {
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

#[cfg(test)]
mod tests;
