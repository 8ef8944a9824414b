//! The bit-sliced term filter of a block: one filter that answers, for all
//! the block's frames at once, which may hold a literal.
//!
//! Each frame has, in effect, four bloom filters of the same sizes as
//! every other frame of its block: a map of its word trigrams, a bloom of
//! its winnowed 8-grams, one of its short numbers and one of its number
//! prefixes ([`super`]). They are stored *sliced*: row `r` holds bit
//! `r` of every frame's filter, frame `f` at bit `f % 64` of the row's word
//! `f / 64`. Probing a key reads one row per hash and ANDs it into a mask
//! of frames, so a query pays a few loads per block, not one per frame
//! (the idea of signature slicing, as in BitFunnel).
//!
//! # Layout
//!
//! For a block of `n` frames, a row is `n` bits; rows are packed one after
//! another, bit `i` of the area being bit `i % 8` of its byte `i / 8`.
//! Every integer is little-endian.
//!
//! ```text
//! trigram_rows u32     0: no trigram rows
//! trigram rows         ceil(trigram_rows * n / 8) bytes
//! gram_rows u32        0: no 8-gram rows
//! gram rows            ceil(gram_rows * n / 8) bytes
//! number_rows u32      absent: numbers not indexed (blocks in id order)
//! number rows          ceil(number_rows * n / 8) bytes
//! prefix_rows u32      absent: prefixes not indexed (blocks in id order,
//!                      and blocks written before prefixes were)
//! prefix rows          ceil(prefix_rows * n / 8) bytes
//! ```
//!
//! - A trigram's 32-bit hash gives two 15-bit
//!   values (its low half and its high half), and each value `b` lies in
//!   row `b * trigram_rows >> 15`: a bloom filter of two probes. There are
//!   twice as many rows as bits set by the frame at the third quartile
//!   (about four rows per trigram), so a frame up to there sets about two
//!   bits in five, and an absent trigram passes it about one time in six.
//!   A denser frame is folded onto the same rows and passes more often:
//!   one that sets twice as many bits as there are rows, about one time
//!   in 1.3 a trigram, so a word of six trigrams one time in five
//!   (setting all its rows instead let any absent word through to a frame
//!   in a quarter of the realistic corpus's blocks). (Two probes
//!   in half the rows prune a short word far better than one probe in
//!   all of them: BENCHMARKS.md, "Design measurements".)
//! - An 8-gram's hash picks 3 rows by double hashing, each mapped onto
//!   `gram_rows` by multiplying (not by a division). There are
//!   5 (`GRAM_BITS_PER_KEY`) times as many rows as the mean of the
//!   frames' distinct 8-grams: a frame of more keys than the mean passes
//!   more absent keys.
//! - A short number ([`super`]) sets 3 bits of a frame's map of
//!   8,192 bits (`NUMBER_MAP_BITS`), folded onto the rows as trigrams are.
//!   There are 6 (`NUMBER_ROWS_PER_BIT`) times as many rows as bits set by the frame
//!   at the third quartile: a number is often a literal's only key
//!   (`" 503 "`), so it must prune on its own: keyed with its neighbours,
//!   in rows of its own, it passes a few times the frames that hold it,
//!   where in the trigram rows it passed half of all frames
//!   (BENCHMARKS.md, "Design measurements"). Zero rows say that no frame
//!   holds a short number.
//! - A number prefix is kept as a short number is, in a map and rows of
//!   its own sized the same way: a literal that has one (`status=503`) may
//!   have no short number, and its prefix must prune alone.
//!
//! A filter whose sizes do not match its length passes every frame.

use super::{
    CLASS, TermProbe, Winnowing, distinct_estimate, for_each_number_key, is_word,
    short_number_hash, winnow, word_trigram_hash,
};

/// Bits of a frame's word-trigram map as it is built; the rows are this
/// many or fewer.
const MAP_BITS: usize = 1 << 15;
/// 8-gram rows per distinct 8-gram of the mean frame, 3 probes per key.
/// Frames are sorted by kind, so their keys vary, and a frame of many more
/// keys than the mean (one of lines full of ids) lets absent ids through:
/// 5 rows a key read less than half the frames that 4 did for absent ids
/// (BENCHMARKS.md, "Design measurements").
const GRAM_BITS_PER_KEY: usize = 5;
/// The fewest rows of any kind (but none at all).
const MIN_ROWS: usize = 64;
/// Bits of a frame's short-number map as it is built; the rows are this
/// many or fewer.
const NUMBER_MAP_BITS: usize = 1 << 13;
/// Rows per bit set by the frame at the third quartile.
const NUMBER_ROWS_PER_BIT: usize = 6;

/// A trigram's two bits in a map of [`MAP_BITS`], from its hash.
#[inline]
fn trigram_bits(hash: u32) -> [usize; 2] {
    let hash = hash as usize;
    [hash & (MAP_BITS - 1), (hash >> 16) & (MAP_BITS - 1)]
}

/// The row among `rows` of bit `bit` of a frame's map of `map_bits` (a
/// power of two): maps are folded onto the rows by multiplying.
#[inline]
fn fold(bit: usize, rows: usize, map_bits: usize) -> usize {
    (bit * rows) >> map_bits.trailing_zeros()
}

/// A short number's three bits in a map of [`NUMBER_MAP_BITS`], from its
/// hash.
#[inline]
fn number_bits(hash: u64) -> [usize; 3] {
    let mask = NUMBER_MAP_BITS as u64 - 1;
    [hash & mask, (hash >> 21) & mask, (hash >> 42) & mask].map(|b| b as usize)
}

/// A frame's short numbers, as they are added.
type NumberMap = [u64; NUMBER_MAP_BITS / 64];

/// Calls `f` with the index of every set bit of `words`.
#[inline]
fn for_each_bit(words: &[u64], mut f: impl FnMut(usize)) {
    for (i, &word) in words.iter().enumerate() {
        let mut word = word;
        while word != 0 {
            f(i * 64 + word.trailing_zeros() as usize);
            word &= word - 1;
        }
    }
}

/// Set bit `frame` of row `row` in an area of rows of `frames` bits.
#[inline]
fn mark(area: &mut [u8], frames: usize, row: usize, frame: usize) {
    let bit = row * frames + frame;
    area[bit / 8] |= 1 << (bit % 8);
}

/// Bytes of `rows` rows of `frames` bits.
fn area_len(rows: usize, frames: usize) -> Option<usize> {
    Some(rows.checked_mul(frames)?.div_ceil(8))
}

/// The 3 rows of an 8-gram hash among `rows`.
#[inline]
fn gram_rows(hash: u64, rows: u64) -> [usize; 3] {
    let step = hash.rotate_left(32) | 1;
    let at =
        |i: u64| ((hash.wrapping_add(i.wrapping_mul(step)) as u128 * rows as u128) >> 64) as usize;
    [at(0), at(1), at(2)]
}

/// A frame's word trigrams, as they are added.
type TrigramMap = [u64; MAP_BITS / 64];

/// Set the two bits of every word trigram of `payload` in `map`: one
/// straight loop, without a branch (whether a trigram is a word's is as
/// good as random, and a mispredicted branch costs more than the two bit
/// sets, which are made either way).
#[inline]
fn add_word_trigrams(payload: &[u8], map: &mut TrigramMap) {
    let (mut key, mut classes) = (0u32, 0u32);
    for (i, &b) in payload.iter().enumerate() {
        key = (key << 8 | b as u32) & 0xFF_FFFF;
        classes = (classes << 2 | CLASS[b as usize] as u32) & 0b11_11_11;
        let word = (i >= 2) & is_word(classes);
        let [low, high] = trigram_bits(word_trigram_hash(key));
        let word = word as u64;
        map[low / 64] |= word << (low % 64);
        map[high / 64] |= word << (high % 64);
    }
}

/// Builds the sliced filter of one block, frame by frame.
#[derive(Default)]
pub struct SliceBuilder {
    /// Per frame: its word-trigram map of [`MAP_BITS`], and its 8-grams.
    maps: Vec<Box<TrigramMap>>,
    grams: Vec<Vec<u64>>,
    /// Per frame: its short-number map, and its number-prefix map, of
    /// [`NUMBER_MAP_BITS`] each (when trigrams are indexed).
    numbers: Vec<NumberMap>,
    prefixes: Vec<NumberMap>,
    frames: usize,
    /// Whether word trigrams are indexed (else there are no trigram rows).
    trigrams: bool,
    winnowing: Winnowing,
    counting: Vec<u64>,
}

impl std::fmt::Debug for SliceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SliceBuilder")
            .field("frames", &self.frames)
            .finish()
    }
}

impl SliceBuilder {
    /// Forget every frame: the next block begins, with its word trigrams
    /// indexed or not.
    pub fn clear(&mut self, trigrams: bool) {
        self.frames = 0;
        self.trigrams = trigrams;
    }

    /// Begin the next frame; [`SliceBuilder::add`] adds to it.
    pub fn start_frame(&mut self) {
        if self.maps.len() == self.frames {
            self.maps.push(Box::new([0; MAP_BITS / 64]));
            self.grams.push(Vec::new());
            self.numbers.push([0; NUMBER_MAP_BITS / 64]);
            self.prefixes.push([0; NUMBER_MAP_BITS / 64]);
        }
        self.maps[self.frames].fill(0);
        self.grams[self.frames].clear();
        self.numbers[self.frames].fill(0);
        self.prefixes[self.frames].fill(0);
        self.frames += 1;
        self.winnowing.forget();
    }

    /// Add the terms of one payload to the current frame.
    pub fn add(&mut self, payload: &[u8]) {
        let frame = self.frames.checked_sub(1).expect("start_frame first");
        if self.trigrams {
            add_word_trigrams(payload, &mut self.maps[frame]);
            let set = |map: &mut NumberMap, key: u64| {
                for bit in number_bits(short_number_hash(key)) {
                    map[bit / 64] |= 1 << (bit % 64);
                }
            };
            let (numbers, prefixes) = (&mut self.numbers[frame], &mut self.prefixes[frame]);
            for_each_number_key(
                payload,
                true,
                |key| set(numbers, key),
                |key| set(prefixes, key),
            );
        }
        winnow(payload, &mut self.winnowing, &mut self.grams[frame]);
    }

    /// Append the encoded filter of the frames so far to `out`.
    pub fn encode(&mut self, out: &mut Vec<u8>) {
        let frames = self.frames;
        // Word trigrams: two rows per bit of the frame at the third quartile.
        let maps = self.maps[..frames].iter().map(|m| &m[..]);
        put_folded(out, frames, maps, MAP_BITS, 2);
        // 8-gram rows: the mean frame's distinct keys times the bits per key.
        let distinct: usize = self.grams[..frames]
            .iter()
            .map(|g| distinct_estimate(g, &mut self.counting))
            .sum();
        let rows = if distinct == 0 {
            0
        } else {
            (distinct * GRAM_BITS_PER_KEY)
                .div_ceil(frames)
                .max(MIN_ROWS)
        };
        put_rows(out, rows, frames, |area| {
            for (f, grams) in self.grams[..frames].iter().enumerate() {
                for &hash in grams {
                    for row in gram_rows(hash, rows as u64) {
                        mark(area, frames, row, f);
                    }
                }
            }
        });
        // Short numbers and number prefixes, only where word trigrams are
        // (see the module docs).
        if self.trigrams {
            for maps in [&self.numbers, &self.prefixes] {
                let maps = maps[..frames].iter().map(|m| &m[..]);
                put_folded(out, frames, maps, NUMBER_MAP_BITS, NUMBER_ROWS_PER_BIT);
            }
        }
    }
}

/// Append a section: `rows` (u32), then `rows` rows of `frames` bits, set
/// by `fill`.
fn put_rows(out: &mut Vec<u8>, rows: usize, frames: usize, fill: impl FnOnce(&mut [u8])) {
    out.extend_from_slice(&(rows as u32).to_le_bytes());
    let start = out.len();
    out.resize(start + area_len(rows, frames).expect("small"), 0);
    fill(&mut out[start..]);
}

/// Append the section of the frames' `maps` of `map_bits` each, folded
/// onto `rows_per_bit` rows per bit set by the frame at the third quartile
/// (none when no frame set a bit). A denser frame is folded all the same:
/// its rows are fuller, but its bits still rule out most absent keys.
fn put_folded<'m>(
    out: &mut Vec<u8>,
    frames: usize,
    maps: impl Iterator<Item = &'m [u64]> + Clone,
    map_bits: usize,
    rows_per_bit: usize,
) {
    let set: Vec<usize> = maps
        .clone()
        .map(|m| m.iter().map(|w| w.count_ones() as usize).sum())
        .collect();
    let mut sorted = set.clone();
    sorted.sort_unstable();
    let quartile = sorted.get(frames * 3 / 4).copied().unwrap_or(0);
    let rows = match sorted.last() {
        None | Some(0) => 0,
        Some(_) => (quartile.max(1) * rows_per_bit).clamp(MIN_ROWS, map_bits),
    };
    put_rows(out, rows, frames, |area| {
        for (f, map) in maps.enumerate() {
            for_each_bit(map, |bit| mark(area, frames, fold(bit, rows, map_bits), f));
        }
    });
}

/// How many rows of each kind a sliced filter has: what [`Rows::parse`]
/// reads from the filter's four counts, which lie far apart in it (a
/// block's filter is about 200 KiB). A segment shared between queries keeps
/// them per block, so a probe reads the rows and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowCounts {
    trigram_rows: usize,
    gram_rows: usize,
    /// `None`: short numbers not indexed (the section is absent).
    number_rows: Option<usize>,
    /// `None`: number prefixes not indexed (the section is absent).
    prefix_rows: Option<usize>,
}

/// A sliced filter's rows, once its sizes are checked.
pub(crate) struct Rows<'a> {
    frames: usize,
    trigram_rows: usize,
    /// Short numbers' rows: none when they are not indexed.
    number_rows: Option<usize>,
    numbers: &'a [u8],
    /// Number prefixes' rows: none when they are not indexed.
    prefix_rows: Option<usize>,
    prefixes: &'a [u8],
    trigrams: &'a [u8],
    gram_rows: usize,
    grams: &'a [u8],
}

impl<'a> Rows<'a> {
    /// The rows of `filter`, of a block of `frames`; `None` when its sizes
    /// do not match its length (it then passes every frame).
    pub(crate) fn parse(filter: &'a [u8], frames: usize) -> Option<Rows<'a>> {
        let count_at = |at: usize| -> Option<usize> {
            let bytes = filter.get(at..at.checked_add(4)?)?;
            Some(u32::from_le_bytes(bytes.try_into().expect("4")) as usize)
        };
        let trigram_rows = count_at(0)?;
        let mut at = 4 + area_len(trigram_rows, frames)?;
        let gram_rows = count_at(at)?;
        at = at.checked_add(4 + area_len(gram_rows, frames)?)?;
        // Two optional sections, numbers then prefixes: each absent when
        // the filter ends before it.
        let mut section = || -> Option<Option<usize>> {
            if at == filter.len() {
                return Some(None);
            }
            let rows = count_at(at)?;
            at = at.checked_add(4 + area_len(rows, frames)?)?;
            Some(Some(rows))
        };
        let number_rows = section()?;
        let prefix_rows = section()?;
        let counts = RowCounts {
            trigram_rows,
            gram_rows,
            number_rows,
            prefix_rows,
        };
        Self::with_counts(filter, frames, counts)
    }

    /// The rows of `filter` by `counts` as [`Rows::parse`] found them in
    /// the same filter: this only cuts the filter into its areas and reads
    /// none of its bytes. `None` when the counts do not match its length.
    pub(crate) fn with_counts(
        filter: &'a [u8],
        frames: usize,
        counts: RowCounts,
    ) -> Option<Rows<'a>> {
        let RowCounts {
            trigram_rows,
            gram_rows,
            number_rows,
            prefix_rows,
        } = counts;
        if trigram_rows > MAP_BITS
            || number_rows.is_some_and(|rows| rows > NUMBER_MAP_BITS)
            || prefix_rows.is_some_and(|rows| rows > NUMBER_MAP_BITS)
            || (number_rows.is_none() && prefix_rows.is_some())
        {
            return None;
        }
        let area = |rest: &'a [u8], rows: usize| -> Option<(&'a [u8], &'a [u8])> {
            rest.get(4..)?.split_at_checked(area_len(rows, frames)?)
        };
        let (trigrams, rest) = area(filter, trigram_rows)?;
        let (grams, rest) = area(rest, gram_rows)?;
        let (numbers, rest) = match number_rows {
            Some(rows) => area(rest, rows)?,
            None => (&rest[..0], rest),
        };
        let (prefixes, rest) = match prefix_rows {
            Some(rows) => area(rest, rows)?,
            None => (&rest[..0], rest),
        };
        if !rest.is_empty() {
            return None;
        }
        Some(Rows {
            frames,
            trigram_rows,
            number_rows,
            numbers,
            prefix_rows,
            prefixes,
            trigrams,
            gram_rows,
            grams,
        })
    }

    /// The counts of rows of each kind, for [`Rows::with_counts`].
    pub(crate) fn counts(&self) -> RowCounts {
        RowCounts {
            trigram_rows: self.trigram_rows,
            gram_rows: self.gram_rows,
            number_rows: self.number_rows,
            prefix_rows: self.prefix_rows,
        }
    }

    /// Bytes of the filter a probe read: the counts and `rows` rows.
    pub(crate) fn bytes_read(&self, rows: u64) -> u64 {
        let counts = 8
            + 4 * u64::from(self.number_rows.is_some())
            + 4 * u64::from(self.prefix_rows.is_some());
        counts + rows * self.frames.div_ceil(8) as u64
    }

    /// AND row `row` of `area` into `mask`.
    #[inline]
    fn and(&self, area: &[u8], row: usize, mask: &mut [u64]) {
        for (w, m) in mask.iter_mut().enumerate() {
            *m &= self.word(area, row, w);
        }
    }

    /// Word `w` (frames `64 * w` on) of row `row` of `area`.
    #[inline]
    fn word(&self, area: &[u8], row: usize, w: usize) -> u64 {
        let from = row * self.frames + w * 64;
        let len = (self.frames - w * 64).min(64);
        read_bits(area, from, len)
    }
}

/// Bits `[from, from + len)` of `area` (`len` at most 64), lowest first.
#[inline]
fn read_bits(area: &[u8], from: usize, len: usize) -> u64 {
    let byte = from / 8;
    // Sixteen bytes at once where the area has them (a copy of a length
    // known only at run time is a call to memmove: 8% of a rare literal's
    // profile, once per row and block).
    let bytes = match area.get(byte..byte + 16) {
        Some(bytes) => bytes.try_into().expect("16 bytes"),
        None => {
            let mut buf = [0u8; 16];
            let end = area.len().min(byte + 16);
            buf[..end - byte].copy_from_slice(&area[byte..end]);
            buf
        }
    };
    let bits = u128::from_le_bytes(bytes) >> (from % 8);
    let mask = if len == 64 {
        u64::MAX
    } else {
        (1u64 << len) - 1
    };
    bits as u64 & mask
}

impl TermProbe {
    /// Narrow `mask` (one bit per frame of a block of `frames`) to the
    /// frames whose part of the sliced `filter` the literal may occur in.
    /// Returns the bytes of the filter read: its counts and the rows.
    /// (Cursors parse a block's filter once for all their probes, with
    /// [`Rows::parse`] and [`TermProbe::narrow_rows`].)
    #[cfg(test)]
    pub(crate) fn narrow_frames(&self, filter: &[u8], frames: usize, mask: &mut [u64]) -> u64 {
        match Rows::parse(filter, frames) {
            Some(rows) => rows.bytes_read(self.narrow_rows(&rows, mask)),
            None => filter.len() as u64,
        }
    }

    /// Narrow `mask` to the frames whose part of the parsed filter `rows`
    /// the literal may occur in; returns the rows read. Stops once no
    /// frame is left.
    pub(crate) fn narrow_rows(&self, rows: &Rows<'_>, mask: &mut [u64]) -> u64 {
        let mut read = 0;
        if rows.gram_rows > 0 {
            for &hash in &self.winnowed {
                for row in gram_rows(hash, rows.gram_rows as u64) {
                    rows.and(rows.grams, row, mask);
                    read += 1;
                }
                if none_left(mask) {
                    return read;
                }
            }
        }
        for (keys, count, area) in [
            (&self.numbers, rows.number_rows, rows.numbers),
            (&self.prefixes, rows.prefix_rows, rows.prefixes),
        ] {
            let Some(count) = count.filter(|_| !keys.is_empty()) else {
                continue;
            };
            if count == 0 {
                // No frame holds a key of this kind.
                mask.fill(0);
                return read;
            }
            for &hash in keys {
                for bit in number_bits(hash) {
                    rows.and(area, fold(bit, count, NUMBER_MAP_BITS), mask);
                    read += 1;
                }
            }
            if none_left(mask) {
                return read;
            }
        }
        if let Some(count) = rows.prefix_rows.filter(|_| !self.open.is_empty()) {
            // Each pair: a frame passes if it may hold either key.
            let row = |bit| fold(bit, count, NUMBER_MAP_BITS);
            for &(exact, long) in &self.open {
                for (w, m) in mask.iter_mut().enumerate() {
                    let may_hold = |hash| {
                        number_bits(hash).into_iter().fold(u64::MAX, |bits, bit| {
                            bits & rows.word(rows.prefixes, row(bit), w)
                        })
                    };
                    *m &= match count {
                        0 => 0,
                        _ => may_hold(exact) | may_hold(long),
                    };
                }
                read += 6;
            }
            if none_left(mask) {
                return read;
            }
        }
        if rows.trigram_rows > 0 {
            for &hash in &self.word_trigrams {
                for bit in trigram_bits(hash) {
                    rows.and(rows.trigrams, fold(bit, rows.trigram_rows, MAP_BITS), mask);
                    read += 1;
                }
            }
        }
        read
    }
}

/// Whether `mask` has no frame left.
#[inline]
pub(crate) fn none_left(mask: &[u64]) -> bool {
    mask.iter().all(|&m| m == 0)
}

/// Every frame of a block of `frames`, as a mask.
pub(crate) fn all_frames(frames: usize, mask: &mut Vec<u64>) {
    mask.clear();
    mask.resize(frames.div_ceil(64), u64::MAX);
    if !frames.is_multiple_of(64)
        && let Some(last) = mask.last_mut()
    {
        *last = (1u64 << (frames % 64)) - 1;
    }
}

#[cfg(test)]
mod tests;
