//! Term filters, sound for substring matching (a block or frame that holds
//! a literal inside one payload always passes). Three kinds of keys:
//!
//! - **Trigrams**: one bit per hashed byte trigram of every payload (never
//!   across two payloads). Good for words: a literal passes only if all its
//!   trigrams' bits are set.
//!   - Formats 2.0 and 2.1: a bitmap of [`TRIGRAM_BYTES`] (4 KiB, 32,768
//!     bits) per 1 MiB block, of every trigram. Useless for hex ids, whose
//!     4,096 trigrams all occur, and nearly full for any varied block.
//!   - Format 2.2 ([`FilterKind::Framed`]): only *word* trigrams, those
//!     with no ASCII digit that are not three hex letters, so the random
//!     digits and hex of ids, numbers and times do not fill the map; per
//!     frame, in the block's bit-sliced filter ([`sliced`]). A literal's
//!     digit and hex trigrams are not probed there.
//! - **Short numbers** (format 2.2, in rows of their own): every run of one
//!   to three ASCII digits with a separator (`is_separator`) or the payload's
//!   edge on each side, such as the status in `" 503 "`, `status=503` or
//!   `"status":503`. Digit trigrams would fill a filter; these are few (on
//!   testsvc lines, about 5% of a frame's keys) and, in blocks sorted by
//!   status ([`crate::block_segment`]'s sort key), each in a few frames. A
//!   literal probes those of its numbers that have a
//!   separator on each side *within the literal*, so that any payload that
//!   holds the literal holds the same run with the same neighbours: `" 503 "`
//!   probes ` 503 ` (a key is the number and its two neighbours), while
//!   `503` alone, or `" 5031`, probes nothing.
//! - **Chosen 8-grams** in a bloom filter, for long literals such as ids.
//!   Which 8-grams are chosen depends on the segment's [`FilterKind`]:
//!   - [`FilterKind::Winnowed`] and [`FilterKind::Framed`] (formats 2.1 and
//!     2.2): *winnowing*. Of
//!     every [`WINDOW`] consecutive 8-grams of a payload, the one with the
//!     smallest hash is indexed. A literal that holds a whole window holds
//!     the same window in any payload that contains it, so that window's
//!     minimum was indexed: every literal of `8 + WINDOW - 1` bytes or more
//!     is guaranteed probe keys. A 32-character id spans 18 windows, so it
//!     has at least 3 distinct minima (one key is the minimum of at most
//!     `WINDOW` windows), about 5 on average. [`WINNOW_BITS_PER_KEY`] bits
//!     (2.2: one more, see [`sliced`]) and 3 probes per key.
//!   - [`FilterKind::Sampled`] (format 2.0, read only): the 8-grams whose
//!     hash falls in one [`SAMPLE`]th of the hash space; 4 bits and 2
//!     probes per key. A literal may have no sampled 8-gram at all (3.5%
//!     of 32-character ids), and then it prunes by trigrams only.
//!
//! Encoded, 2.0 and 2.1 ([`TermFilter`]): the trigram bitmap, then the bloom
//! (its size in bytes is what is left). 2.2: see [`sliced`]. Literals
//! shorter than three bytes never prune; shorter than eight (or, winnowed,
//! than `8 + WINDOW - 1`), only by trigrams and (2.2) short numbers.

pub mod sliced;

/// Bytes of the trigram bitmap.
pub const TRIGRAM_BYTES: usize = 4096;
const TRIGRAM_BITS: u32 = (TRIGRAM_BYTES * 8) as u32;
/// Sampled filters: one 8-gram in this many is indexed.
pub const SAMPLE: u64 = 8;
const GRAM: usize = 8;
/// Sampled filters: bloom bits per 8-gram.
const SAMPLE_BITS_PER_KEY: usize = 4;
/// Winnowed filters: 8-grams per window.
pub const WINDOW: usize = 8;
/// Winnowed filters: bloom bits per chosen 8-gram, 3 probes each: about
/// 15% false positives per key, so 0.3% for a literal with three keys.
///
/// Measured on 100 MB of testsvc lines in 1 MiB blocks (the ignored test
/// `filter_tradeoff`): the filter is 0.040 of the text (sampled: 0.024), and
/// absent 32-hex ids pass 0.06% of blocks (sampled: 4.8%), 24-hex ids 1%
/// (13.7%). Windows of 10 or 12 grams save a fifth to a quarter of the
/// space but let 5 to 15 times more blocks through.
pub const WINNOW_BITS_PER_KEY: usize = 4;

/// How the 8-grams of a segment's filters were chosen and hashed into the
/// bloom; fixed per file by its format version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKind {
    /// Format 2.0: sampled 8-grams.
    Sampled,
    /// Format 2.1: winnowed 8-grams.
    Winnowed,
    /// Format 2.2: word trigrams and winnowed 8-grams of each frame, in
    /// one bit-sliced filter per block ([`sliced`]).
    Framed,
}

/// Byte classes for [`for_each_word_trigram`], two bits a byte.
const DIGIT: u8 = 1;
const HEX_LETTER: u8 = 2;
const CLASS: [u8; 256] = {
    let mut class = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_digit() {
            class[b] = DIGIT;
        } else if matches!(c, b'a'..=b'f' | b'A'..=b'F') {
            class[b] = HEX_LETTER;
        }
        b += 1;
    }
    class
};
/// The digit bits, and the hex-letter bits, of three bytes' classes.
const DIGITS_OF_3: u32 = 0b01_01_01;
const HEX_OF_3: u32 = 0b10_10_10;

/// Calls `f` with the 24-bit key (first byte highest) of every *word*
/// trigram of `bytes`, those indexed by 2.2 filters: no digit, and not
/// three hex letters (the trigrams of ids, numbers and times, which are
/// many and random and would fill the map). One table lookup a byte.
#[inline]
fn for_each_word_trigram(bytes: &[u8], mut f: impl FnMut(u32)) {
    let (mut key, mut classes) = (0u32, 0u32);
    for (i, &b) in bytes.iter().enumerate() {
        key = (key << 8 | b as u32) & 0xFF_FFFF;
        classes = (classes << 2 | CLASS[b as usize] as u32) & 0b11_11_11;
        if i >= 2 && is_word(classes) {
            f(key);
        }
    }
}

/// Whether three bytes of these classes (two bits each) make a word
/// trigram.
#[inline]
fn is_word(classes: u32) -> bool {
    classes & DIGITS_OF_3 == 0 && classes & HEX_OF_3 != HEX_OF_3
}

/// Whether `b` may stand next to a short number that 2.2 filters index:
/// whitespace, quotes, and the punctuation of fields and lists. Not `.`,
/// `/`, `-` or `+`, so the parts of addresses, paths, dates and decimals
/// are not indexed. NUL too: a key writes the payload's edge as 0.
#[inline]
pub(crate) fn is_separator(b: u8) -> bool {
    SEPARATOR[b as usize] != 0
}

/// [`is_separator`] as a table, 1 for a separator.
pub(crate) const SEPARATOR: [u8; 256] = {
    let mut table = [0u8; 256];
    let separators = b"\0 \t\"'=:,;[](){}";
    let mut i = 0;
    while i < separators.len() {
        table[separators[i] as usize] = 1;
        i += 1;
    }
    table
};

/// Calls `f` with the key of every short number of `bytes` (see the
/// module docs): a run of 1 to 3 digits with a separator on each side. With
/// `edges_separate`, the start and end of `bytes` count as separators (a
/// payload); without, they do not (a literal, whose neighbours in a
/// payload are unknown). A key is the number *with* its two neighbours,
/// byte by byte (an edge as 0), so `" 503 "` and `status=503,` are apart.
///
/// Digits are found eight bytes at a time, and only a run that starts after
/// a separator is looked at further: most runs (in ids, times, addresses)
/// fail there.
#[inline]
fn for_each_short_number(bytes: &[u8], edges_separate: bool, mut f: impl FnMut(u64)) {
    let n = bytes.len();
    let edge = if edges_separate { 0 } else { b'x' };
    // Whether the byte before the chunk was a digit: a run that goes on
    // into the chunk does not start there.
    let mut carry = 0u64;
    let mut at = 0;
    while at < n {
        let chunk = match bytes.get(at..at + 8) {
            Some(eight) => u64::from_le_bytes(eight.try_into().expect("8 bytes")),
            None => {
                let mut last = [b'x'; 8];
                last[..n - at].copy_from_slice(&bytes[at..]);
                u64::from_le_bytes(last)
            }
        };
        let digits = digit_bytes(chunk);
        let mut starts = digits & !(digits << 8 | carry);
        carry = digits >> 56;
        while starts != 0 {
            let start = at + starts.trailing_zeros() as usize / 8;
            starts &= starts - 1;
            let before = match start.checked_sub(1) {
                Some(b) => bytes[b],
                None => edge,
            };
            if !is_separator(before) {
                continue;
            }
            let run = bytes[start..n.min(start + 4)]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let after = bytes.get(start + run).copied().unwrap_or(edge);
            if run <= 3 && is_separator(after) {
                let digits = bytes[start..start + run]
                    .iter()
                    .fold(0u64, |key, &d| key << 8 | d as u64);
                f((before as u64) << 32 | digits << 8 | after as u64);
            }
        }
        at += 8;
    }
}

/// Bit 7 of each byte of `v` that is an ASCII digit.
#[inline]
fn digit_bytes(v: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let x = v ^ (0x30 * ONES);
    // A digit is now below 10: its high bit clear, and its low seven bits
    // do not reach 0x80 when 0x76 is added (no carry crosses a byte).
    let high = x & (0x80 * ONES);
    let ten_or_more = ((x & (0x7F * ONES)) + 0x76 * ONES) & (0x80 * ONES);
    !(high | ten_or_more) & (0x80 * ONES)
}

/// A 2.2 filter's hash of a short number's key.
#[inline]
fn short_number_hash(key: u64) -> u64 {
    gram_hash(&key.to_le_bytes())
}

/// A 2.2 filter's hash of a word trigram's key: its two 15-bit indices
/// come from the high bits of one 64-bit product.
#[inline]
fn word_trigram_hash(key: u32) -> u32 {
    ((key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

#[inline]
fn trigram_bit(a: u8, b: u8, c: u8) -> u32 {
    trigram_key_bit((a as u32) << 16 | (b as u32) << 8 | c as u32)
}

/// The bit of a trigram whose bytes, first to last, are `key`'s bits 23
/// to 0.
#[inline]
fn trigram_key_bit(key: u32) -> u32 {
    // Fibonacci hashing: the high bits of the product are well mixed.
    key.wrapping_mul(0x9E37_79B1) >> (32 - TRIGRAM_BITS.trailing_zeros())
}

#[inline]
fn gram_hash(gram: &[u8]) -> u64 {
    let key = u64::from_le_bytes(gram.try_into().expect("8 bytes"));
    // A 64-bit mix (splitmix64's finaliser).
    let mut x = key ^ (key >> 30);
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[inline]
fn sampled(hash: u64) -> bool {
    hash.is_multiple_of(SAMPLE)
}

/// Entries of [`Winnowing::recent`].
const RECENT_KEYS: usize = 16384;

/// Scratch space for [`winnow`], kept between calls.
#[derive(Clone)]
struct Winnowing {
    /// The 8-gram hashes, then, in place, the minima of runs of 2, 4 and
    /// finally [`WINDOW`] of them.
    minima: Vec<u64>,
    /// The last key appended whose low bits are the slot's index: a key
    /// found here is already in the output, so it is not appended again.
    /// The repeated structure of log lines (`level=info svc=`) yields the
    /// same keys line after line; skipping them here leaves a third as many
    /// keys to sort and deduplicate.
    recent: Box<[u64; RECENT_KEYS]>,
}

impl Default for Winnowing {
    fn default() -> Self {
        let mut winnowing = Winnowing {
            minima: Vec::new(),
            recent: Box::new([0; RECENT_KEYS]),
        };
        winnowing.forget();
        winnowing
    }
}

impl Winnowing {
    /// Forget the keys appended so far: call when the output is cleared.
    fn forget(&mut self) {
        // Slot i holds a value whose low bits are not i, so no key is found.
        for (slot, key) in self.recent.iter_mut().enumerate() {
            *key = !(slot as u64);
        }
    }
}

/// Appends to `out` the minimum hash of every window of [`WINDOW`]
/// consecutive 8-grams of `bytes`, skipping those found in the scratch's
/// recent keys (and so already in `out`).
///
/// The minima of windows of 8 come from those of 4, and those of 4 from
/// those of 2 (`min8[i] = min(min4[i], min4[i + 4])`): three straight
/// passes over the hashes, each done in place from the front, without the
/// unpredictable branches of tracking the minimum's position.
fn winnow(bytes: &[u8], scratch: &mut Winnowing, out: &mut Vec<u64>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
    {
        // SAFETY: the CPU has the features `winnow_avx512` is compiled for.
        return unsafe { winnow_avx512(bytes, scratch, out) };
    }
    winnow_portable(bytes, scratch, out)
}

/// [`winnow_portable`] compiled for AVX-512, which has 64-bit multiplies
/// and minima in its vectors: the whole filter built at 229 MB/s instead
/// of 195 in one A/B. Same results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
fn winnow_avx512(bytes: &[u8], scratch: &mut Winnowing, out: &mut Vec<u64>) {
    winnow_portable(bytes, scratch, out)
}

#[inline(always)]
fn winnow_portable(bytes: &[u8], scratch: &mut Winnowing, out: &mut Vec<u64>) {
    const _: () = assert!(WINDOW == 8, "winnow halves the window three times");
    if bytes.len() < GRAM + WINDOW - 1 {
        return;
    }
    let Winnowing { minima, recent } = scratch;
    minima.clear();
    minima.extend(bytes.windows(GRAM).map(gram_hash));
    let mut len = minima.len();
    for span in [1, 2, 4] {
        // Entry i becomes the minimum of the 2 * span hashes from i.
        len -= span;
        for i in 0..len {
            minima[i] = minima[i].min(minima[i + span]);
        }
    }
    // Compact to the front, without branches (whether a key is kept is as
    // good as random): first the minima that differ from the one before
    // (about 2 in WINDOW + 1), then of those, the ones not seen recently.
    let mut changed = 0;
    let mut previous = !minima[0];
    for i in 0..len {
        let key = minima[i];
        minima[changed] = key;
        changed += usize::from(key != previous);
        previous = key;
    }
    let mut kept = 0;
    for i in 0..changed {
        let key = minima[i];
        let slot = &mut recent[key as usize % RECENT_KEYS];
        let seen = *slot == key;
        *slot = key;
        minima[kept] = key;
        kept += usize::from(!seen);
    }
    out.extend_from_slice(&minima[..kept]);
}

/// The bloom positions of a hash in a filter of `bits` bits: the first
/// `n` of the array.
#[inline]
fn bloom_bits(kind: FilterKind, hash: u64, bits: u64) -> ([u64; 3], usize) {
    match kind {
        FilterKind::Sampled => (
            [
                (hash >> 8) % bits,
                (hash >> 36 ^ hash.rotate_left(17)) % bits,
                0,
            ],
            2,
        ),
        FilterKind::Winnowed | FilterKind::Framed => {
            // Double hashing: h1 + i * h2.
            let step = hash.rotate_left(32) | 1;
            let at = |i: u64| hash.wrapping_add(i.wrapping_mul(step)) % bits;
            ([at(0), at(1), at(2)], 3)
        }
    }
}

fn bit_set(bloom: &[u8], bit: u64) -> bool {
    bloom[(bit >> 3) as usize] & (1 << (bit & 7)) != 0
}

fn bits_per_key(kind: FilterKind) -> usize {
    match kind {
        FilterKind::Sampled => SAMPLE_BITS_PER_KEY,
        FilterKind::Winnowed | FilterKind::Framed => WINNOW_BITS_PER_KEY,
    }
}

/// About how many distinct values `keys` holds (linear counting: hash
/// each into a bitmap at least as large as the number of keys, and see
/// what share of its bits stayed clear; within a few percent here), never
/// more than `keys.len()`. It sizes the bloom, so it need not be exact:
/// sorting the keys to count them exactly took a sixth of the build.
fn distinct_estimate(keys: &[u64], bitmap: &mut Vec<u64>) -> usize {
    if keys.len() < 2 {
        return keys.len();
    }
    let bits = keys.len().next_power_of_two().max(1024);
    bitmap.clear();
    bitmap.resize(bits / 64, 0);
    for &key in keys {
        // Bits 40 and up: the low ones pick the recent-keys slot, so the
        // keys that survived that cache are not random in them.
        let bit = (key >> 40) as usize & (bits - 1);
        bitmap[bit / 64] |= 1 << (bit % 64);
    }
    let set: usize = bitmap.iter().map(|w| w.count_ones() as usize).sum();
    let clear = (bits - set).max(1) as f64;
    let estimate = bits as f64 * (bits as f64 / clear).ln();
    (estimate.round() as usize).clamp(1, keys.len())
}

/// A filter being built for one block.
#[derive(Clone)]
pub struct TermFilter {
    kind: FilterKind,
    trigrams: Box<[u8; TRIGRAM_BYTES]>,
    /// The chosen keys; one may occur more than once.
    grams: Vec<u64>,
    /// Scratch bitmap for [`distinct_estimate`].
    counting: Vec<u64>,
    winnowing: Winnowing,
}

impl std::fmt::Debug for TermFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set: u32 = self.trigrams.iter().map(|b| b.count_ones()).sum();
        f.debug_struct("TermFilter")
            .field("kind", &self.kind)
            .field("trigram_bits_set", &set)
            .field("chosen_grams", &self.grams.len())
            .finish()
    }
}

impl TermFilter {
    /// A filter of the kind that new segments are written with.
    pub fn new() -> Self {
        Self::of_kind(FilterKind::Winnowed)
    }

    pub fn of_kind(kind: FilterKind) -> Self {
        TermFilter {
            kind,
            trigrams: Box::new([0; TRIGRAM_BYTES]),
            grams: Vec::new(),
            counting: Vec::new(),
            winnowing: Winnowing::default(),
        }
    }

    /// Add the terms of one payload.
    pub fn add(&mut self, payload: &[u8]) {
        let trigrams = &mut self.trigrams;
        let mut set = |key: u32| {
            let bit = trigram_key_bit(key);
            trigrams[(bit >> 3) as usize] |= 1 << (bit & 7);
        };
        // One 4-byte load per trigram (its first three bytes), then the
        // last trigram, which has no fourth byte after it.
        let quads = payload.windows(4);
        let last = payload.len().checked_sub(3);
        for quad in quads {
            set(u32::from_be_bytes(quad.try_into().expect("4 bytes")) >> 8);
        }
        if let Some(at) = last {
            let w = &payload[at..];
            set((w[0] as u32) << 16 | (w[1] as u32) << 8 | w[2] as u32);
        }
        match self.kind {
            FilterKind::Sampled => {
                for w in payload.windows(GRAM) {
                    let hash = gram_hash(w);
                    if sampled(hash) {
                        self.grams.push(hash);
                    }
                }
            }
            FilterKind::Winnowed | FilterKind::Framed => {
                winnow(payload, &mut self.winnowing, &mut self.grams);
            }
        }
    }

    /// Append the encoded filter to `out`.
    pub fn encode(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.trigrams[..]);
        let distinct = distinct_estimate(&self.grams, &mut self.counting);
        let bytes = (distinct * bits_per_key(self.kind)).div_ceil(8).max(8);
        let start = out.len();
        out.resize(start + bytes, 0);
        let bloom = &mut out[start..];
        let bits = (bytes * 8) as u64;
        for &hash in &self.grams {
            let (positions, n) = bloom_bits(self.kind, hash, bits);
            for bit in &positions[..n] {
                bloom[(bit >> 3) as usize] |= 1 << (bit & 7);
            }
        }
    }

    pub fn clear(&mut self) {
        self.trigrams.fill(0);
        self.grams.clear();
        self.winnowing.forget();
    }
}

impl Default for TermFilter {
    fn default() -> Self {
        Self::new()
    }
}

/// What a literal needs of a filter, computed once per query.
#[derive(Debug, Clone, Default)]
pub struct TermProbe {
    /// (byte index, mask) pairs of the trigram bitmap, deduplicated.
    trigrams: Vec<(u16, u8)>,
    /// Hashes of the literal's sampled 8-grams.
    sampled: Vec<u64>,
    /// Hashes of the literal's winnowed 8-grams.
    winnowed: Vec<u64>,
    /// Hashes of the literal's word trigrams, for 2.2 filters.
    word_trigrams: Vec<u32>,
    /// Hashes of the literal's short numbers, for 2.2 filters that index
    /// them.
    numbers: Vec<u64>,
}

impl TermProbe {
    pub fn new(literal: &[u8]) -> Self {
        let mut trigrams: Vec<(u16, u8)> = literal
            .windows(3)
            .map(|w| {
                let bit = trigram_bit(w[0], w[1], w[2]);
                ((bit >> 3) as u16, 1u8 << (bit & 7))
            })
            .collect();
        trigrams.sort_unstable();
        trigrams.dedup();
        let mut sampled: Vec<u64> = literal
            .windows(GRAM)
            .map(gram_hash)
            .filter(|h| self::sampled(*h))
            .collect();
        sampled.sort_unstable();
        sampled.dedup();
        let mut winnowed = Vec::new();
        winnow(literal, &mut Winnowing::default(), &mut winnowed);
        winnowed.sort_unstable();
        winnowed.dedup();
        let mut word_trigrams = Vec::new();
        for_each_word_trigram(literal, |key| word_trigrams.push(word_trigram_hash(key)));
        word_trigrams.sort_unstable();
        word_trigrams.dedup();
        let mut numbers = Vec::new();
        for_each_short_number(literal, false, |key| numbers.push(short_number_hash(key)));
        numbers.sort_unstable();
        numbers.dedup();
        TermProbe {
            trigrams,
            sampled,
            winnowed,
            word_trigrams,
            numbers,
        }
    }

    /// Whether the literal may occur in a block whose encoded filter, of
    /// `kind`, is `filter`. A filter too short to hold the bitmap passes
    /// everything.
    pub fn may_match(&self, kind: FilterKind, filter: &[u8]) -> bool {
        if filter.len() < TRIGRAM_BYTES + 8 {
            return true;
        }
        let (trigrams, bloom) = filter.split_at(TRIGRAM_BYTES);
        // The 8-gram keys first: a long literal such as an id usually
        // fails on its first key, while all its trigrams may well be set.
        let bits = (bloom.len() * 8) as u64;
        let keys = match kind {
            FilterKind::Sampled => &self.sampled,
            FilterKind::Winnowed | FilterKind::Framed => &self.winnowed,
        };
        keys.iter().all(|&hash| {
            let (positions, n) = bloom_bits(kind, hash, bits);
            positions[..n].iter().all(|&bit| bit_set(bloom, bit))
        }) && self
            .trigrams
            .iter()
            .all(|&(byte, mask)| trigrams[byte as usize] & mask != 0)
    }
}

#[cfg(test)]
mod tests;

/// What each filter kind costs and prunes on real lines.
#[cfg(test)]
#[test]
#[ignore = "filter probe: SLUICE_PROBE_LINES=FILE cargo test --release -p sluice-storage -- --ignored filter_tradeoff --nocapture"]
fn filter_tradeoff() {
    let path = std::env::var("SLUICE_PROBE_LINES").expect("SLUICE_PROBE_LINES=FILE");
    let text = std::fs::read(path).expect("read SLUICE_PROBE_LINES");
    // 1 MiB blocks of whole lines, as the writer cuts them.
    let mut blocks: Vec<&[u8]> = Vec::new();
    let mut rest = &text[..];
    while !rest.is_empty() {
        let cut = rest.len().min(1 << 20);
        let end = memchr::memrchr(b'\n', &rest[..cut]).map_or(rest.len(), |at| at + 1);
        blocks.push(&rest[..end]);
        rest = &rest[end..];
    }
    // Absent ids shaped like the corpus's: 32 and 24 hex digits, and UUIDs.
    let ids: Vec<String> = (0..300u64)
        .flat_map(|i| {
            let v = (i + 7).wrapping_mul(0x9E37_79B9_7F4A_7C15) as u128 * 0x1_0000_0001;
            let h = format!("{v:032x}");
            // 8-4-4-4-12 digits, as a UUID is written.
            let mut uuid = h.clone();
            for at in [20, 16, 12, 8] {
                uuid.insert(at, '-');
            }
            [h.clone(), h[..24].to_string(), uuid]
        })
        .collect();
    let probes: Vec<TermProbe> = ids.iter().map(|id| TermProbe::new(id.as_bytes())).collect();
    for kind in [FilterKind::Sampled, FilterKind::Winnowed] {
        let started = std::time::Instant::now();
        let filters: Vec<Vec<u8>> = blocks
            .iter()
            .map(|block| {
                let mut filter = TermFilter::of_kind(kind);
                for line in block.split(|&b| b == b'\n') {
                    filter.add(line);
                }
                let mut out = Vec::new();
                filter.encode(&mut out);
                out
            })
            .collect();
        let build = started.elapsed().as_secs_f64();
        let bytes: usize = filters.iter().map(Vec::len).sum();
        let mut passed = [0usize; 3];
        for (i, probe) in probes.iter().enumerate() {
            passed[i % 3] += filters.iter().filter(|f| probe.may_match(kind, f)).count();
        }
        let rate = |n: usize| n as f64 / (ids.len() / 3 * blocks.len()) as f64;
        println!(
            "{kind:?}: filter {:.4} of raw, built at {:.0} MB/s; absent ids passing: 32-hex {:.4}, 24-hex {:.4}, uuid {:.4}",
            bytes as f64 / text.len() as f64,
            text.len() as f64 / build / 1e6,
            rate(passed[0]),
            rate(passed[1]),
            rate(passed[2]),
        );
    }
}
