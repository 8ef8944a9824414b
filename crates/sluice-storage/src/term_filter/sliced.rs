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
        let count = |bytes: &[u8]| u32::from_le_bytes(bytes.try_into().expect("4")) as usize;
        let (head, rest) = filter.split_at_checked(4)?;
        let trigram_rows = count(head);
        let (trigrams, rest) = rest.split_at_checked(area_len(trigram_rows, frames)?)?;
        let (head, rest) = rest.split_at_checked(4)?;
        let gram_rows = count(head);
        let (grams, rest) = rest.split_at_checked(area_len(gram_rows, frames)?)?;
        // Two optional sections, numbers then prefixes: each absent when
        // the filter ends before it.
        let section = |rest: &'a [u8]| -> Option<(Option<usize>, &'a [u8], &'a [u8])> {
            if rest.is_empty() {
                return Some((None, rest, rest));
            }
            let (head, rest) = rest.split_at_checked(4)?;
            let rows = count(head);
            if rows > NUMBER_MAP_BITS {
                return None;
            }
            let (area, rest) = rest.split_at_checked(area_len(rows, frames)?)?;
            Some((Some(rows), area, rest))
        };
        let (number_rows, numbers, rest) = section(rest)?;
        let (prefix_rows, prefixes, rest) = section(rest)?;
        if !rest.is_empty() || trigram_rows > MAP_BITS {
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
mod tests {
    use super::*;

    /// The sliced filter of `frames`, each a list of payloads, with word
    /// trigrams (and so numbers) indexed.
    fn encoded<P: AsRef<[u8]>>(frames: &[Vec<P>]) -> Vec<u8> {
        let mut builder = SliceBuilder::default();
        builder.clear(true);
        for frame in frames {
            builder.start_frame();
            for p in frame {
                builder.add(p.as_ref());
            }
        }
        let mut filter = Vec::new();
        builder.encode(&mut filter);
        filter
    }

    /// The frames, of `frames`, that `filter` says `literal` may be in.
    fn passing(filter: &[u8], frames: usize, literal: &[u8]) -> Vec<usize> {
        let mut mask = Vec::new();
        all_frames(frames, &mut mask);
        TermProbe::new(literal).narrow_frames(filter, frames, &mut mask);
        (0..frames)
            .filter(|&f| mask[f / 64] & (1 << (f % 64)) != 0)
            .collect()
    }

    /// The frames of `frames` (each a list of payloads) that `literal` may
    /// be in, by the sliced filter.
    fn candidates(frames: &[Vec<String>], literal: &str) -> Vec<usize> {
        passing(&encoded(frames), frames.len(), literal.as_bytes())
    }

    fn id(i: u64) -> String {
        format!(
            "{:032x}",
            (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) as u128 * 0x1_0000_0001
        )
    }

    /// 100 frames of similar lines, one level each: a level word and an id
    /// lead to their frames only.
    #[test]
    fn words_and_ids_find_their_frames() {
        let levels = ["INFO", "DEBUG", "WARN", "ERROR"];
        let frames: Vec<Vec<String>> = (0..100u64)
            .map(|f| {
                (0..200u64)
                    .map(|i| {
                        let level = levels[(f % 4) as usize];
                        format!(
                            "ts=2026-11-21T06:00:{:02}Z level={level} svc=api id={}",
                            i % 60,
                            id(f * 1000 + i)
                        )
                    })
                    .collect()
            })
            .collect();
        let errors = candidates(&frames, "level=ERROR");
        let want: Vec<usize> = (0..100).filter(|f| f % 4 == 3).collect();
        assert!(want.iter().all(|f| errors.contains(f)), "{errors:?}");
        assert!(
            errors.len() <= want.len() + 5,
            "{} frames pass",
            errors.len()
        );
        let one = candidates(&frames, &id(42_017));
        assert!(one.contains(&42), "{one:?}");
        assert!(one.len() <= 2, "{one:?}");
        assert_eq!(candidates(&frames, "svc=api").len(), 100);
        // Digits are not indexed as trigrams: a time passes every frame.
        assert_eq!(candidates(&frames, "06:00:77").len(), 100);
    }

    /// A literal shorter than a trigram has no key: it passes every frame,
    /// whatever the frames hold.
    #[test]
    fn short_literals_never_prune() {
        let frames: Vec<Vec<String>> = (0..3)
            .map(|f| vec![format!("level=INFO msg=done n={f} {}", id(f))])
            .collect();
        assert_eq!(candidates(&frames, "ab"), [0, 1, 2]);
        assert_eq!(candidates(&frames, ""), [0, 1, 2]);
    }

    /// Of 2,000 ids absent from a frame of 3,000 lines with ids (every
    /// hex trigram occurs, so only the 8-grams tell them apart), few pass.
    #[test]
    fn absent_ids_are_pruned_by_their_winnowed_grams() {
        let hex_id = super::super::tests::hex_id;
        let frame: Vec<String> = (0..3000)
            .map(|i| format!("req_id={} ok", hex_id(i)))
            .collect();
        let filter = encoded(&[frame]);
        assert_eq!(passing(&filter, 1, hex_id(17).as_bytes()), [0]);
        let passed = (10_000..12_000)
            .filter(|&i| !passing(&filter, 1, hex_id(i).as_bytes()).is_empty())
            .count();
        assert!(passed < 20, "{passed} of 2000 absent ids passed");
    }

    /// A builder reused for the next block must not take the keys it saw
    /// for the last one as already added (its recent-keys cache).
    #[test]
    fn a_cleared_builder_indexes_repeated_payloads_again() {
        let line = b"level=info trace_id=4bf92f3577b34da6a3ce929d0e0e4736 done";
        let mut builder = SliceBuilder::default();
        let mut filter = Vec::new();
        for _block in 0..2 {
            builder.clear(true);
            for _frame in 0..2 {
                builder.start_frame();
                builder.add(line);
                builder.add(line);
            }
            filter.clear();
            builder.encode(&mut filter);
            assert_eq!(
                passing(&filter, 2, b"4bf92f3577b34da6a3ce929d0e0e4736"),
                [0, 1]
            );
        }
    }

    /// A frame of random words sets nearly every trigram row: it nearly
    /// always passes, and does not make the rows of the other frames
    /// denser.
    #[test]
    fn a_frame_of_random_words_passes_every_trigram() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let noise: String = (0..60_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b"ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ_"[(x % 41) as usize] as char
            })
            .collect();
        let mut frames: Vec<Vec<String>> = (0..6)
            .map(|_| vec!["level=INFO msg=done".to_string()])
            .collect();
        frames.push(vec![noise]);
        assert_eq!(candidates(&frames, "ERROR"), vec![6]);
        assert_eq!(candidates(&frames, "INFO").len(), 7);
    }

    /// A frame of a few times the words of the others (the tail of a
    /// block's sort order, where rare templates gather) is folded onto the
    /// rows like the rest: it rules out absent words, where setting every
    /// row let it pass them all (in 62 of 262 blocks of the realistic
    /// corpus, a frame passed any absent word).
    #[test]
    fn a_denser_frame_still_rules_out_absent_words() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut words = |n: usize| -> Vec<String> {
            (0..n)
                .map(|_| {
                    (0..7)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            b"ghijklmnopqrstuvwxyz"[(x % 20) as usize] as char
                        })
                        .collect()
                })
                .collect()
        };
        let mut frames: Vec<Vec<String>> = (0..8).map(|_| words(40)).collect();
        frames.push(words(100));
        let filter = encoded(&frames);
        let absent = ["quartzwy", "vexingly", "jumpiest", "zigzagging", "whomping"];
        let passed: usize = absent
            .iter()
            .map(|w| passing(&filter, frames.len(), w.as_bytes()).len())
            .sum();
        assert!(passed <= 1, "absent words passed {passed} frames");
        // Its own words still find it.
        assert!(candidates(&frames, &frames[8][99]).contains(&8));
    }

    /// More than 64 frames: rows span several words.
    #[test]
    fn frames_beyond_the_first_word_are_found() {
        let frames: Vec<Vec<String>> = (0..150)
            .map(|f| {
                vec![format!(
                    "event {} happened",
                    ["alpha", "bravo", "charlie"][f % 3]
                )]
            })
            .collect();
        let got = candidates(&frames, "charlie");
        let want: Vec<usize> = (0..150).filter(|f| f % 3 == 2).collect();
        assert!(want.iter().all(|f| got.contains(f)));
        assert!(got.len() < 75, "{} pass", got.len());
        assert!(candidates(&frames, "zulu").len() < 10);
    }

    /// The builder's branchless loop sets the bits of exactly the word
    /// trigrams a probe looks for.
    #[test]
    fn the_builder_indexes_the_word_trigrams_a_probe_finds() {
        let text = b"ts=2026-11-21 level=ERROR id=4bf92f35deadbeef msg=\"cafe bad\" ok";
        let mut built = [0u64; MAP_BITS / 64];
        add_word_trigrams(text, &mut built);
        let mut want = [0u64; MAP_BITS / 64];
        super::super::for_each_word_trigram(text, |key| {
            for bit in trigram_bits(word_trigram_hash(key)) {
                want[bit / 64] |= 1 << (bit % 64);
            }
        });
        assert_eq!(built, want);
        assert!(want.iter().any(|&w| w != 0));
    }

    #[test]
    fn a_status_finds_the_frames_of_its_lines() {
        // Frames of access-log lines, each of one status, as a block
        // sorted by status has them.
        let statuses = ["200", "304", "404", "500", "503"];
        let frames: Vec<Vec<String>> = (0..100u64)
            .map(|f| {
                (0..200u64)
                    .map(|i| {
                        format!(
                            "10.0.{}.{} - - [21/Nov/2026:06:00:{:02} +0000] \"GET /a/{} HTTP/1.1\" {} {}",
                            f % 256,
                            i % 256,
                            i % 60,
                            f * 1000 + i,
                            statuses[(f % 5) as usize],
                            100 + i * 37 % 900,
                        )
                    })
                    .collect()
            })
            .collect();
        let want: Vec<usize> = (0..100).filter(|f| f % 5 == 4).collect();
        let got = candidates(&frames, "\" 503 ");
        assert!(want.iter().all(|f| got.contains(f)), "{got:?}");
        assert!(got.len() <= want.len() + 5, "{} frames pass", got.len());
        // Without a separator on each side within the literal, the run of
        // digits may be part of a longer number: no short number. `" 503`
        // still has a prefix (its two bytes before are in the literal, and
        // the sizes' `0 503` is not it); `503` has nothing.
        let got = candidates(&frames, "\" 503");
        assert!(want.iter().all(|f| got.contains(f)), "{got:?}");
        assert!(got.len() <= want.len() + 5, "{} frames pass", got.len());
        assert_eq!(candidates(&frames, "503").len(), 100);
    }

    #[test]
    fn a_number_prefix_prunes_a_field_that_may_go_on() {
        // `status=5[0-9]{2}`'s literals: `status=503` may go on as
        // `status=5031`, so only its prefix can prune; other fields hold
        // the same three digits.
        let frames: Vec<Vec<String>> = (0..60u64)
            .map(|f| {
                (0..50u64)
                    .map(|i| {
                        let status = [200, 404, 503][(f % 3) as usize] + (f / 3 % 2) * 1000;
                        format!(
                            "GET /x status={status} rows=5{:02} latency_ms={}",
                            i,
                            503 + i
                        )
                    })
                    .collect()
            })
            .collect();
        let want: Vec<usize> = (0..60).filter(|f| f % 3 == 2 && f / 3 % 2 == 0).collect();
        let got = candidates(&frames, "status=503");
        assert!(want.iter().all(|f| got.contains(f)), "{got:?}");
        assert!(
            got.len() <= want.len() + 3,
            "{} frames pass: {got:?}",
            got.len()
        );
        // `status=150` may start `status=1503`: it passes the frames of
        // four-digit statuses (a long key holds only the first digit),
        // not those of three.
        let want: Vec<usize> = (0..60).filter(|f| f / 3 % 2 == 1).collect();
        let got = candidates(&frames, "status=150");
        assert!(want.iter().all(|f| got.contains(f)), "{got:?}");
        assert!(
            got.len() <= want.len() + 3,
            "{} frames pass: {got:?}",
            got.len()
        );
    }

    #[test]
    fn prefixes_are_not_probed_in_a_filter_without_them() {
        let frames: Vec<Vec<String>> = (0..10)
            .map(|f| vec![format!("status={} msg=done", 2000 + f)])
            .collect();
        let mut filter = encoded(&frames);
        let passed = |filter: &[u8]| passing(filter, 10, b"status=200");
        let got = passed(&filter);
        assert_eq!(got.len(), 10, "every frame holds `status=200`: {got:?}");
        let passed = |filter: &[u8]| passing(filter, 10, b"status=300");
        assert!(passed(&filter).is_empty());
        // The same filter without its prefix section, as a block written
        // before prefixes were indexed has it: nothing rules a frame out.
        let section = 4 + Rows::parse(&filter, 10).unwrap().prefixes.len();
        filter.truncate(filter.len() - section);
        let rows = Rows::parse(&filter, 10).unwrap();
        assert!(rows.prefix_rows.is_none() && rows.number_rows.is_some());
        assert_eq!(passed(&filter).len(), 10);
    }

    #[test]
    fn numbers_are_not_probed_in_a_filter_without_them() {
        let frames: Vec<Vec<String>> = (0..10)
            .map(|f| vec![format!("status={} msg=done", 200 + f)])
            .collect();
        let mut filter = encoded(&frames);
        let passed = |filter: &[u8]| passing(filter, 10, b"status=205 ");
        let got = passed(&filter);
        assert!(got.contains(&5) && got.len() < 5, "{got:?}");
        // The same filter without its number and prefix sections, as a
        // block in id order has it: every frame holds the literal's word
        // trigrams, and its number is not probed.
        let rows = Rows::parse(&filter, 10).unwrap();
        let sections = 8 + rows.numbers.len() + rows.prefixes.len();
        filter.truncate(filter.len() - sections);
        assert!(Rows::parse(&filter, 10).unwrap().number_rows.is_none());
        assert_eq!(passed(&filter).len(), 10);
        // Frames without a short number: a literal with one passes none.
        let frames = vec![vec!["status=ok msg=done".to_string()]; 3];
        assert_eq!(candidates(&frames, "status=ok msg=done"), [0, 1, 2]);
        assert_eq!(candidates(&frames, "status=205 "), Vec::<usize>::new());
    }

    /// A filter cut short passes every frame rather than failing.
    #[test]
    fn a_malformed_filter_passes_everything() {
        // A word and a number: every section is probed.
        let probe = TermProbe::new(b"ERROR \" 503 ");
        for filter in [
            &[][..],
            &[9u8][..],
            &[0, 0, 0, 0, 1, 0, 0][..],
            &[1, 0, 0, 0, 0][..],
            // A number section cut short, too large, or of the wrong length.
            &[0, 0, 0, 0, 0, 0, 0, 0, 1][..],
            &[0, 0, 0, 0, 0, 0, 0, 0, 1, 0x20, 0, 0][..],
            &[0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0][..],
            &[0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0][..],
            // A prefix section cut short, or bytes after it.
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1][..],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7][..],
        ] {
            let mut mask = Vec::new();
            all_frames(3, &mut mask);
            probe.narrow_frames(filter, 3, &mut mask);
            assert_eq!(mask, vec![0b111]);
        }
    }

    proptest::proptest! {
        #[test]
        fn a_contained_literal_keeps_its_frame(
            frames in proptest::collection::vec(
                proptest::collection::vec(
                    super::super::tests::payload(b"ab05 E=\"x.", 64),
                    1..6,
                ),
                1..80,
            ),
            pick in proptest::prelude::any::<proptest::sample::Index>(),
            line in proptest::prelude::any::<proptest::sample::Index>(),
            start in proptest::prelude::any::<proptest::sample::Index>(),
            len in 0usize..40,
        ) {
            let filter = encoded(&frames);
            let f = pick.index(frames.len());
            let p = &frames[f][line.index(frames[f].len())];
            let from = start.index(p.len() + 1);
            let literal = &p[from..(from + len).min(p.len())];
            proptest::prop_assert!(
                passing(&filter, frames.len(), literal).contains(&f),
                "frame {} lost {:?}", f, literal
            );
        }
    }
}
