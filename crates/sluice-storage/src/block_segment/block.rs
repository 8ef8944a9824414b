//! Decoding one block of a block file, whole or only some of its frames.
//!
//! A block decodes into a [`Block`]: the text of the frames read, in frame
//! order, and its lines: where each ends in that text, and its record (by
//! its index in id order). A sorted block's frames hold its records in
//! sort-key order, and the meta's ordinals say which record each line is;
//! in a block in id order, line `i` is record `i`.

use std::{io::Cursor, sync::Arc};

use sluice_record::{Record, Ulid};

use super::{
    BLOCK_META_FIXED, BlockEntry, Bytes, Checks, IN_ORDER, LINES_END_AT_NEWLINES, MAX_BLOCK_TEXT,
    check_block,
};

/// The largest number of frames a block may have: more than any block
/// the writer cuts (a frame holds at least one record or 64 KiB of text).
pub const MAX_FRAMES: usize = 1 << 16;

/// One frame of a block, as its meta describes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FrameEntry {
    /// Where its zstd frame starts in the block's data.
    pub data_at: u32,
    pub data_len: u32,
    pub text_len: u32,
    pub rows: u32,
    /// crc32 of its zstd frame.
    pub crc: u32,
}

/// Bytes of a frame's entry in the frame table.
pub(crate) const FRAME_ENTRY_LEN: usize = 16;

/// What reading some frames of a block costs, as a query counts it
/// (`bytes_read`): the same whether they are decompressed from the file
/// or found in a kept block ([`Block::read_cost`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReadCost {
    pub frames: u64,
    /// Their compressed bytes.
    pub bytes: u64,
    /// Bytes of the block's filter, in its meta.
    pub filter_len: u64,
    /// Bytes of the meta's ordinals that are not read: those of the lines
    /// of the other frames.
    pub ordinals_unread: u64,
}

/// A block's frame table, as parsed.
pub(crate) struct FrameTable<'m> {
    /// Its sliced filter.
    pub filter: &'m [u8],
    /// Whether its lines are in id order ([`super::BlockLayout::InOrder`]).
    pub in_order: bool,
}

/// Parse the frame table and filter of block `entry`, whose meta says
/// it holds `text_len` bytes of text (`r` at the end of the fixed fields),
/// into `frames`, checking that the frames account for the block's
/// records, text and data exactly.
pub(crate) fn parse_frames<'m>(
    r: &mut Bytes<'m>,
    entry: &BlockEntry,
    text_len: u32,
    frames: &mut Vec<FrameEntry>,
) -> Result<FrameTable<'m>, &'static str> {
    let count = entry.count;
    frames.clear();
    let raw = r.u32()?;
    if raw & LINES_END_AT_NEWLINES == 0 {
        return Err("block lists its line lengths (format 2.2), which is not read");
    }
    let in_order = raw & IN_ORDER != 0;
    let n = (raw & !(IN_ORDER | LINES_END_AT_NEWLINES)) as usize;
    if n == 0 || n > MAX_FRAMES || n > count as usize {
        return Err("bad frame count");
    }
    let table = r.take(n * FRAME_ENTRY_LEN)?;
    let (mut rows, mut text, mut data) = (0u64, 0u64, 0u64);
    for fields in table.chunks_exact(FRAME_ENTRY_LEN) {
        let field = |i: usize| u32::from_le_bytes(fields[i * 4..i * 4 + 4].try_into().expect("4"));
        let frame = FrameEntry {
            data_at: data as u32,
            data_len: field(0),
            text_len: field(1),
            rows: field(2),
            crc: field(3),
        };
        if frame.rows == 0 || frame.text_len < frame.rows || frame.data_len == 0 {
            return Err("bad frame lengths");
        }
        rows += frame.rows as u64;
        text += frame.text_len as u64;
        data += frame.data_len as u64;
        if data > entry.data_len as u64 {
            return Err("frames overrun the block data");
        }
        frames.push(frame);
    }
    if rows != count as u64 || text != text_len as u64 || data != entry.data_len as u64 {
        return Err("frames do not add up to the block");
    }
    let filter_len = r.u32()? as usize;
    Ok(FrameTable {
        filter: r.take(filter_len)?,
        in_order,
    })
}

/// Which record each line of a block is.
enum Ordinals<'a> {
    /// A block in id order: line `i` is record `i`.
    Identity,
    /// A sorted block: little-endian integers of `width` bytes, one per line; read
    /// only for the lines of the frames read.
    Packed { bytes: &'a [u8], width: usize },
}

impl<'a> Ordinals<'a> {
    fn read(r: &mut Bytes<'a>, count: usize) -> Result<Self, &'static str> {
        let width = r.u8()? as usize;
        if !(1..=4).contains(&width) || (width < 4 && count > 1 << (8 * width)) {
            return Err("bad ordinal width");
        }
        let bytes = r.take(count.checked_mul(width).ok_or("too many records")?)?;
        Ok(Ordinals::Packed { bytes, width })
    }

    #[inline]
    fn get(&self, line: usize) -> u32 {
        match *self {
            Ordinals::Identity => line as u32,
            Ordinals::Packed { bytes, width } => {
                let at = line * width;
                let b = |i: usize| bytes[at + i] as u32;
                match width {
                    1 => b(0),
                    2 => b(0) | b(1) << 8,
                    3 => b(0) | b(1) << 8 | b(2) << 16,
                    _ => b(0) | b(1) << 8 | b(2) << 16 | b(3) << 24,
                }
            }
        }
    }
}

/// A record of a block, as [`Block::pick`] finds it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Picked {
    id: Ulid,
    start: u32,
    end: u32,
    topic: u32,
    flags: u8,
}

/// Every record's id, topic and flags, decoded from a block's meta: shared
/// by a [`Block`] and the [`BlockCache`](super::BlockCache), which keeps
/// them for blocks read in part (a query for a rare literal reads one frame
/// of each block, and decoding its ids was most of its time).
#[derive(Debug, Default)]
pub(crate) struct Records {
    ids: Vec<Ulid>,
    topics: Vec<(u32, u32)>,
    /// Bytes of the topic names, indexed by `topics`.
    topic_bytes: Vec<u8>,
    topic_of: Vec<u32>,
    flags: Vec<u8>,
    /// Where, in the meta these came from, the ordinals begin (after the
    /// ids) and the records' part ends (after the flags).
    ordinals_at: usize,
    end: usize,
}

impl Records {
    /// The heap these hold, as [`super::BlockCache`] charges it.
    pub(crate) fn heap_bytes(&self) -> u64 {
        (self.ids.capacity() * std::mem::size_of::<Ulid>()
            + self.topics.capacity() * 8
            + self.topic_bytes.capacity()
            + self.topic_of.capacity() * 4
            + self.flags.capacity()
            + std::mem::size_of::<Records>()) as u64
    }

    /// Read the topic table, the topic of each of `count` records and the
    /// flags from `r`.
    fn read_topics_and_flags(
        &mut self,
        r: &mut Bytes<'_>,
        count: usize,
    ) -> Result<(), &'static str> {
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
        Ok(())
    }
}

/// A line read: where it ends in the block's text (at its newline), and
/// its record (in id order).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line {
    pub end: u32,
    pub record: u32,
}

/// One decoded block: the frames asked for, and every record's id, topic
/// and flags.
#[derive(Debug, Default)]
pub(crate) struct Block {
    /// The text of the frames read, in frame order: payloads, each
    /// followed by "\n".
    pub(crate) text: Vec<u8>,
    /// Every record's id, topic and flags.
    pub(crate) records: Arc<Records>,
    /// The lines read, in text order: where each ends in `text` (at its
    /// newline), and its record. A search maps a match to its line by the
    /// ends, sequentially, and takes the record beside the end (one cache
    /// line, where two arrays were a miss each for a word on 2% of lines).
    pub(crate) lines: Vec<Line>,
    /// The frame table (read again by [`Block::frame_spans`]), and
    /// scratch: which records were placed.
    frames: Vec<FrameEntry>,
    seen: Vec<u64>,
    /// Bytes of the block's filter, in its meta.
    pub(crate) filter_len: u64,
    /// Bytes of each line's ordinal in the meta (0 for a block in id
    /// order, which stores none).
    ordinal_width: u64,
    /// Whether every frame was read; if not, `held` lists those that were
    /// (ascending), whose text `text` holds in frame order.
    pub(crate) whole: bool,
    pub(crate) held: Vec<u32>,
}

impl Block {
    /// Decode and verify block `entry` of `file`: its meta (its checksum
    /// unless `meta_verified`), and the frames in `wanted` (indices,
    /// ascending), or all of them when it is `None`. The meta's records are
    /// taken from `known` when given: decoded from the same meta before
    /// (the caller matched it by the meta's checksum). What it read is
    /// [`Block::read_cost`] of `wanted`.
    pub(crate) fn load(
        &mut self,
        file: &[u8],
        entry: &BlockEntry,
        wanted: Option<&[u32]>,
        meta_verified: bool,
        known: Option<&Arc<Records>>,
        decompressor: &mut zstd::bulk::Decompressor<'static>,
    ) -> Result<(), &'static str> {
        // The data is checked frame by frame, as it is read.
        let checks = Checks {
            meta: !meta_verified,
            data: false,
        };
        let checked = check_block(file, entry, checks)?;
        let mut r = Bytes {
            buf: checked.meta_body,
            pos: BLOCK_META_FIXED,
        };
        let ordinals = self.begin(&mut r, entry, checked.text_len, wanted, known)?;
        let data = checked.data();
        let frames = std::mem::take(&mut self.frames);
        self.whole = wanted.is_none();
        self.held.clear();
        let mut read = Ok(());
        let mut first_row = 0usize;
        let mut next_wanted = wanted.map(|w| w.iter().peekable());
        for (f, frame) in frames.iter().enumerate() {
            let take = match &mut next_wanted {
                None => true,
                Some(w) => w.next_if(|&&i| i as usize == f).is_some(),
            };
            if take {
                if !self.whole {
                    self.held.push(f as u32);
                }
                read = self
                    .read_frame(data, frame, decompressor)
                    .and_then(|base| self.place_lines(base, frame, first_row, &ordinals));
                if read.is_err() {
                    break;
                }
            }
            first_row += frame.rows as usize;
        }
        self.frames = frames;
        read
    }

    /// Take block `entry` of `file` whole as it was just written, its
    /// frames' text given (`text`: each frame's, in frame order, as the
    /// writer compressed it) rather than decompressed: the meta is parsed
    /// and the lines placed, as [`Block::load`] does, so the block answers
    /// as if a query had decoded it. No checksum is computed again: the
    /// writer computed them from these very bytes and this text.
    pub(crate) fn adopt(
        &mut self,
        file: &[u8],
        entry: &BlockEntry,
        text: &[u8],
    ) -> Result<(), &'static str> {
        let checks = Checks {
            meta: false,
            data: false,
        };
        let checked = check_block(file, entry, checks)?;
        if text.len() != checked.text_len as usize {
            return Err("block text has the wrong length");
        }
        let mut r = Bytes {
            buf: checked.meta_body,
            pos: BLOCK_META_FIXED,
        };
        let ordinals = self.begin(&mut r, entry, checked.text_len, None, None)?;
        self.text.extend_from_slice(text);
        self.whole = true;
        self.held.clear();
        let frames = std::mem::take(&mut self.frames);
        let (mut base, mut first_row) = (0usize, 0usize);
        let mut placed = Ok(());
        for frame in &frames {
            placed = self.place_lines(base, frame, first_row, &ordinals);
            if placed.is_err() {
                break;
            }
            base += frame.text_len as usize;
            first_row += frame.rows as usize;
        }
        self.frames = frames;
        placed
    }

    /// Parse the meta after its fixed fields (`r`): the frame table, the
    /// filter's length and the records (taken from `known` if given), and
    /// make this block ready to take the text of the frames `wanted`
    /// (`None`: all). Returns the lines' ordinals.
    fn begin<'m>(
        &mut self,
        r: &mut Bytes<'m>,
        entry: &BlockEntry,
        text_len: u32,
        wanted: Option<&[u32]>,
        known: Option<&Arc<Records>>,
    ) -> Result<Ordinals<'m>, &'static str> {
        let count = entry.count as usize;
        let table = parse_frames(r, entry, text_len, &mut self.frames)?;
        self.filter_len = table.filter.len() as u64;
        let ordinals = self.parse_records(r, entry, table.in_order, known)?;
        if r.pos != r.buf.len() {
            return Err("trailing bytes in block meta");
        }
        self.seen.clear();
        self.seen.resize(count.div_ceil(64), 0);
        self.lines.clear();
        self.text.clear();
        // Sized once: a block kept in the cache is charged its capacity.
        let text_wanted: usize = match wanted {
            None => text_len as usize,
            Some(w) => w
                .iter()
                .filter_map(|&f| self.frames.get(f as usize))
                .map(|f| f.text_len as usize)
                .sum(),
        };
        self.text.reserve_exact(text_wanted.min(MAX_BLOCK_TEXT));
        self.lines.reserve_exact(count);
        Ok(ordinals)
    }

    /// Parse the meta's ids, ordinals, topics and flags (`r` after the
    /// filter) into this block, or take `known`, decoded from this meta
    /// before, and read only the ordinals; returns the ordinals.
    fn parse_records<'m>(
        &mut self,
        r: &mut Bytes<'m>,
        entry: &BlockEntry,
        in_order: bool,
        known: Option<&Arc<Records>>,
    ) -> Result<Ordinals<'m>, &'static str> {
        let count = entry.count as usize;
        let ordinals = |r: &mut Bytes<'m>| match in_order {
            true => Ok(Ordinals::Identity),
            false => Ordinals::read(r, count),
        };
        self.ordinal_width = 0;
        let width = |ordinals: &Ordinals<'_>| match ordinals {
            Ordinals::Identity => 0,
            Ordinals::Packed { width, .. } => *width as u64,
        };
        if let Some(known) = known {
            self.records = known.clone();
            r.pos = known.ordinals_at;
            let ordinals = ordinals(r)?;
            self.ordinal_width = width(&ordinals);
            r.pos = known.end;
            return Ok(ordinals);
        }
        // Decode into this block's own records when no one else holds
        // them (the cache may): their buffers are reused.
        if Arc::get_mut(&mut self.records).is_none() {
            self.records = Arc::default();
        }
        let records = Arc::get_mut(&mut self.records).expect("just made unique");
        records.ids.clear();
        super::ids::decode_packed(r, entry.min, count, &mut records.ids)?;
        if records.ids.last() != Some(&entry.max) {
            return Err("ids do not end at the block's max");
        }
        records.ordinals_at = r.pos;
        let ordinals = ordinals(r)?;
        self.ordinal_width = width(&ordinals);
        records.read_topics_and_flags(r, count)?;
        records.end = r.pos;
        Ok(ordinals)
    }

    /// Decode block `entry`'s meta alone (its checksum verified unless
    /// `meta_verified`): every record's id, topic and flags, nothing
    /// decompressed. [`Block::ids`] and [`Block::topic_of`] then answer.
    pub(crate) fn load_meta(
        &mut self,
        file: &[u8],
        entry: &BlockEntry,
        meta_verified: bool,
    ) -> Result<(), &'static str> {
        let checks = Checks {
            meta: !meta_verified,
            data: false,
        };
        let checked = check_block(file, entry, checks)?;
        let mut r = Bytes {
            buf: checked.meta_body,
            pos: BLOCK_META_FIXED,
        };
        let table = parse_frames(&mut r, entry, checked.text_len, &mut self.frames)?;
        self.parse_records(&mut r, entry, table.in_order, None)?;
        if r.pos != checked.meta_body.len() {
            return Err("trailing bytes in block meta");
        }
        Ok(())
    }

    /// Every record's id, in id order (after [`Block::load`] or
    /// [`Block::load_meta`]).
    pub(crate) fn ids(&self) -> &[Ulid] {
        &self.records.ids
    }

    /// Record `i`'s topic (in id order).
    pub(crate) fn topic_of(&self, i: usize) -> &[u8] {
        let records = &*self.records;
        let (from, to) = records.topics[records.topic_of[i] as usize];
        &records.topic_bytes[from as usize..to as usize]
    }

    /// Verify and decompress `frame` after the text read so far; returns
    /// where its text begins.
    fn read_frame(
        &mut self,
        data: &[u8],
        frame: &FrameEntry,
        decompressor: &mut zstd::bulk::Decompressor<'static>,
    ) -> Result<usize, &'static str> {
        let at = frame.data_at as usize;
        let bytes = data
            .get(at..at + frame.data_len as usize)
            .ok_or("frame outside the block data")?;
        if crc32fast::hash(bytes) != frame.crc {
            return Err("frame data checksum mismatch");
        }
        let text_len = frame.text_len as usize;
        let base = self.text.len();
        if base + text_len > MAX_BLOCK_TEXT {
            return Err("bad block lengths");
        }
        self.text.reserve(text_len);
        let mut out = Cursor::new(&mut self.text);
        out.set_position(base as u64);
        let n = decompressor
            .decompress_to_buffer(bytes, &mut out)
            .map_err(|_| "block data does not decompress")?;
        if n != text_len || self.text.len() != base + text_len {
            return Err("block text has the wrong length");
        }
        Ok(base)
    }

    /// Place the records of `frame`, whose text begins at `base` and whose
    /// first line is line `first_row` of the block.
    fn place_lines(
        &mut self,
        base: usize,
        frame: &FrameEntry,
        first_row: usize,
        ordinals: &Ordinals<'_>,
    ) -> Result<(), &'static str> {
        let text_len = frame.text_len as usize;
        let end_of_text = base + text_len;
        if text_len == 0 || self.text.get(end_of_text - 1) != Some(&b'\n') {
            return Err("block text is not one payload per line");
        }
        let lines = first_row..first_row + frame.rows as usize;
        // Each line ends at its newline, and the lines must fill the
        // frame's text exactly.
        let mut newlines = memchr::memchr_iter(b'\n', &self.text[base..end_of_text]);
        let mut at = base;
        for line in lines {
            let end = base + newlines.next().ok_or("frame has fewer lines than rows")?;
            let ordinal = ordinals.get(line);
            let i = ordinal as usize;
            // Each line a different record: checked for the lines read.
            if i >= self.records.ids.len() || self.seen[i / 64] & (1 << (i % 64)) != 0 {
                return Err("ordinals are not a permutation");
            }
            self.seen[i / 64] |= 1 << (i % 64);
            self.lines.push(Line {
                end: end as u32,
                record: ordinal,
            });
            at = end + 1;
        }
        if at != end_of_text {
            return Err("frame has more lines than rows");
        }
        Ok(())
    }

    /// The heap this block holds, as [`super::BlockCache`] charges it.
    pub(crate) fn heap_bytes(&self) -> u64 {
        use std::mem::size_of;
        (self.text.capacity()
            + (self.lines.capacity() * 2 + self.held.capacity()) * 4
            + self.frames.capacity() * size_of::<FrameEntry>()
            + self.seen.capacity() * 8
            + size_of::<Block>()) as u64
            + self.records.heap_bytes()
    }

    /// What reading frames `wanted` (indices, ascending; `None`: all of
    /// them) of this block costs: their compressed bytes, and, of the
    /// meta's ordinals, those of the other frames' lines, which a block
    /// read in part does not read ([`Ordinals::get`]).
    pub(crate) fn read_cost(&self, wanted: Option<&[u32]>) -> ReadCost {
        let filter_len = self.filter_len;
        let Some(wanted) = wanted else {
            return ReadCost {
                frames: self.frames.len() as u64,
                bytes: self.frames.iter().map(|f| f.data_len as u64).sum(),
                filter_len,
                ordinals_unread: 0,
            };
        };
        let (mut bytes, mut lines_read) = (0, 0);
        for frame in wanted.iter().filter_map(|&f| self.frames.get(f as usize)) {
            bytes += frame.data_len as u64;
            lines_read += frame.rows as u64;
        }
        let lines = self.records.ids.len() as u64;
        ReadCost {
            frames: wanted.len() as u64,
            bytes,
            filter_len,
            ordinals_unread: lines.saturating_sub(lines_read) * self.ordinal_width,
        }
    }

    /// Drop what only decoding needed, before the block is kept.
    pub(crate) fn shed_scratch(&mut self) {
        self.seen = Vec::new();
        if let Some(records) = Arc::get_mut(&mut self.records) {
            records.ids.shrink_to_fit();
            records.topic_of.shrink_to_fit();
        }
    }

    /// Whether the frames `wanted` (indices, ascending; `None`: all of
    /// them) were read.
    pub(crate) fn holds(&self, wanted: Option<&[u32]>) -> bool {
        match (self.whole, wanted) {
            (true, _) => true,
            (false, None) => false,
            (false, Some(wanted)) => {
                let mut held = self.held.iter();
                wanted
                    .iter()
                    .all(|&w| held.find(|&&h| h >= w).is_some_and(|&h| h == w))
            }
        }
    }

    /// For a block that [`Block::holds`] frames `wanted` (indices,
    /// ascending): the text and the lines (a range of [`Block::lines`])
    /// of those frames, adjacent frames joined into one span, passed to
    /// `each`.
    pub(crate) fn frame_spans(
        &self,
        wanted: &[u32],
        mut each: impl FnMut(std::ops::Range<usize>, std::ops::Range<usize>),
    ) {
        debug_assert!(self.holds(Some(wanted)));
        let (mut text_at, mut line_at) = (0usize, 0usize);
        let mut span: Option<(std::ops::Range<usize>, std::ops::Range<usize>)> = None;
        let mut wanted = wanted.iter().peekable();
        let mut held = self.held.iter().peekable();
        for (f, frame) in self.frames.iter().enumerate() {
            // The text holds the frames read, one after another.
            if !self.whole && held.next_if(|&&h| h as usize == f).is_none() {
                continue;
            }
            let (text_end, line_end) = (
                text_at + frame.text_len as usize,
                line_at + frame.rows as usize,
            );
            if wanted.next_if(|&&w| w as usize == f).is_some() {
                span = match span {
                    Some((text, lines)) if text.end == text_at => {
                        Some((text.start..text_end, lines.start..line_end))
                    }
                    other => {
                        if let Some((text, lines)) = other {
                            each(text, lines);
                        }
                        Some((text_at..text_end, line_at..line_end))
                    }
                };
            }
            (text_at, line_at) = (text_end, line_end);
        }
        if let Some((text, lines)) = span {
            each(text, lines);
        }
    }

    /// Record `i` (in id order), its payload the bytes `payload` of the
    /// block's text or of a copy, for [`Block::picked_record`]: read once,
    /// on a worker, into an array in the order records go out, so that the
    /// reader does not chase the records' arrays (a few percent of a
    /// block's records, scattered through them, are a cache miss each).
    #[inline]
    pub(crate) fn pick(&self, i: usize, payload: std::ops::Range<u32>) -> Picked {
        let records = &*self.records;
        Picked {
            id: records.ids[i],
            start: payload.start,
            end: payload.end,
            topic: records.topic_of[i],
            flags: records.flags[i],
        }
    }

    /// The record `picked` from this block, its payload in `text` (the
    /// block's text, or the copy [`pick`](Self::pick) was told of).
    #[inline]
    pub(crate) fn picked_record<'a>(&'a self, picked: &Picked, text: &'a [u8]) -> Record<'a> {
        let records = &*self.records;
        let (from, to) = records.topics[picked.topic as usize];
        Record {
            id: picked.id,
            flags: picked.flags,
            topic: &records.topic_bytes[from as usize..to as usize],
            payload: &text[picked.start as usize..picked.end as usize],
        }
    }

    /// Ask the CPU to bring the payload of `picked`, in `text` (as for
    /// [`Block::picked_record`]), into its cache, ahead of reading it:
    /// records go out in id order, and a sorted block's text is in
    /// sort-key order, so each payload is a cache miss.
    #[inline]
    pub(crate) fn prefetch_payload(picked: &Picked, text: &[u8]) {
        let (start, end) = (picked.start as usize, picked.end as usize);
        if let (Some(first), Some(last)) = (text.get(start), text.get(end)) {
            prefetch(first);
            prefetch(last);
        }
    }
}

/// A hint to load the cache line of `byte`; nothing elsewhere.
#[inline]
fn prefetch(byte: &u8) {
    #[cfg(target_arch = "x86_64")]
    // `unsafe_code` is allowed for the one intrinsic call.
    #[allow(unsafe_code)]
    // SAFETY: a prefetch is a hint that never faults and changes no
    // memory; the address is that of a live reference.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (byte as *const u8).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = byte;
}
