//! The keys of the term filters, and what a literal probes for. A filter
//! is sound for substring matching: a frame that holds a literal inside
//! one payload always passes. Four kinds of keys, each stored per frame in
//! a block's bit-sliced filter ([`sliced`]):
//!
//! - **Word trigrams**: the byte trigrams of a payload (never across two
//!   payloads) with no ASCII digit that are not three hex letters, so the
//!   random digits and hex of ids, numbers and times do not fill the map.
//!   Good for words: a literal passes only if all its word trigrams do.
//!   Its digit and hex trigrams are not probed.
//! - **Short numbers**: every run of one to three ASCII digits with a
//!   separator (`is_separator`) or the payload's edge on each side, such as
//!   the status in `" 503 "`, `status=503` or `"status":503`. Digit trigrams
//!   would fill a filter; these are few (a small share of a frame's keys)
//!   and, in blocks sorted by status
//!   ([`crate::block_segment`]'s sort key), each in a few frames. A literal
//!   probes those of its numbers that have a separator on each side *within
//!   the literal*, so that any payload that holds the literal holds the
//!   same run with the same neighbours: `" 503 "` probes ` 503 ` (a key is
//!   the number and its two neighbours), while `503` alone, or `" 5031`,
//!   probes nothing.
//! - **Number prefixes**: every run of three or more digits after a
//!   separator, keyed with the bytes before it (its context: the two
//!   before, only after a space or a tab, and the four before): a run of
//!   exactly three by its digits (an *exact* key, two-byte context only)
//!   and by its first digit; a longer run, or three digits then a hex
//!   letter or `.`, by its first digit alone (a *long* key). A regex's
//!   literal set often has a number with no separator after it within the
//!   literal (`status=5[0-9]{2}` is `status=500` to `status=599`, any of
//!   which may go on as `status=5031`), which no short number can probe;
//!   two bytes of context tell apart numbers that one neighbour does not
//!   (`" 503 1024` against the size in `200 503 "`), and four bytes apart
//!   fields that two do not (`status=503`, `rows=503`). A literal probes
//!   the prefix keys of each of its runs of three or more whose context
//!   lies within it: exact or long where its run of three reaches its end
//!   (`for_each_literal_prefix`). Blocks written before prefixes were
//!   indexed have no rows for them, and are not probed for them.
//! - **Winnowed 8-grams of id bytes**, for long literals such as ids: of
//!   every [`WINDOW`] consecutive 8-grams of a payload, the one with the
//!   smallest hash among those made only of *id bytes* (ASCII letters and
//!   digits, `-` and `_`) is indexed; a window with none of those indexes
//!   nothing. A literal that holds a whole window holds the same window in
//!   any payload that contains it, so that window's key was indexed: every
//!   literal of `8 + WINDOW - 1` bytes or more has a probe key for each of
//!   its windows that holds an 8-gram of id bytes. A 32-character hex id
//!   spans 20 windows, so it has at least 4 distinct keys (one key is the
//!   minimum of at most `WINDOW` windows), about 7 on average. The 8-grams
//!   that hold a space or punctuation (times, addresses, the words and
//!   paths around them) are left out: in lines full of varied text they
//!   were three in five of a frame's keys, and words are pruned by their
//!   trigrams (BENCHMARKS.md, "Design measurements").
//!
//! Literals shorter than three bytes never prune; shorter than
//! `8 + WINDOW - 1`, only by word trigrams, short numbers and number
//! prefixes.

mod any_of;
pub mod sliced;

pub use any_of::AnyOfProbe;

const GRAM: usize = 8;
/// Winnowing: 8-grams per window.
pub const WINDOW: usize = 6;

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
/// trigram of `bytes`, those the filters index: no digit, and not
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

/// Whether `b` may stand next to a short number that the filters index:
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
/// module docs); [`for_each_number_key`] with no prefixes.
#[cfg(test)]
fn for_each_short_number(bytes: &[u8], edges_separate: bool, f: impl FnMut(u64)) {
    for_each_number_key(bytes, edges_separate, f, |_| {});
}

/// Bits 56 and up of a number prefix's key, by its kind and the length
/// of its context ([`PREFIX_CONTEXT`]): apart from each other and from
/// every short number's key, whose top bytes are 0.
///
/// - an *exact* key: a run of exactly three digits, with the two-byte
///   context only: with the four-byte one (`duration_ms=352`) the values of
///   one field would be hundreds of keys a frame;
/// - a *first-digit* key: the first of those three, so that a literal set
///   such as `status=500` to `status=599` shares one key that prunes before
///   its hundred exact keys are probed;
/// - a *long* key: the first digit of a run of four or more, or of three
///   followed by a hex letter or a `.` ([`goes_on`]), one key for the many
///   values of a size, an id or a decimal.
const EXACT_TAG: u64 = 0x50 << 56;
const FIRST_DIGIT_TAGS: [u64; 2] = [0x52 << 56, 0x53 << 56];
const LONG_TAGS: [u64; 2] = [0x54 << 56, 0x55 << 56];
/// The bytes before a number that its prefix keys hold: one key of each
/// kind with each length of context.
const PREFIX_CONTEXT: [usize; 2] = [2, 4];

/// Calls `f` with the index into [`PREFIX_CONTEXT`] and the bytes (nearest
/// lowest) of each context of a run of digits that starts at `start` of
/// `bytes`, after a separator: those that lie wholly in `bytes` (a literal
/// holds its own, and a payload's run at its very start is nobody's
/// field). The two-byte context only after a space or a tab, whose byte
/// before is not a letter or a digit (`" 503`, not `s=503`, which
/// `status=` and `bytes=` share, nor `":503`, which every JSON field
/// shares): the four-byte one tells those apart.
#[inline]
fn for_each_prefix_context(bytes: &[u8], start: usize, mut f: impl FnMut(usize, u64)) {
    for (kind, len) in PREFIX_CONTEXT.into_iter().enumerate() {
        let Some(from) = start.checked_sub(len) else {
            return;
        };
        let (far, near) = (bytes[start - 2], bytes[start - 1]);
        if len == 2 && (!matches!(near, b' ' | b'\t') || far.is_ascii_alphanumeric()) {
            continue;
        }
        let context = bytes[from..start]
            .iter()
            .rev()
            .enumerate()
            .fold(0u64, |key, (back, &b)| key | (b as u64) << (8 * back));
        f(kind, context);
    }
}

/// Whether three digits followed by `b` are most likely part of a larger
/// value, and get a long key (one per context and first digit), not an
/// exact one (one per value): `a` to `f` or `A` to `F` (an id's start), or
/// `.` (a decimal's whole part, an address's first part).
#[inline]
fn goes_on(b: u8) -> bool {
    CLASS[b as usize] == HEX_LETTER || b == b'.'
}

/// The prefix keys of a run in context `context` of kind `kind`, by the
/// kind of key: exact (`digits`, three folded, first highest; the
/// two-byte context only), first-digit and long (`first`).
#[inline]
fn prefix_keys(kind: usize, context: u64, digits: u64, first: u8) -> (Option<u64>, u64, u64) {
    let context = context << 24;
    (
        (kind == 0).then_some(EXACT_TAG | context | digits),
        FIRST_DIGIT_TAGS[kind] | context | first as u64,
        LONG_TAGS[kind] | context | first as u64,
    )
}

/// Calls `and` with the prefix key of each run of digits in `literal` that
/// any payload holding the literal has indexed, and `open` with the two
/// keys one of which it has indexed: a run of three digits that reaches
/// the literal's end may be the whole number (its exact and first-digit
/// keys) or the start of a longer one (a long key). Runs of fewer than
/// three digits have none.
fn for_each_literal_prefix(
    literal: &[u8],
    mut and: impl FnMut(u64),
    mut open: impl FnMut(u64, u64),
) {
    let mut i = 0;
    while i < literal.len() {
        if !literal[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < literal.len() && literal[i].is_ascii_digit() {
            i += 1;
        }
        if start == 0 || !is_separator(literal[start - 1]) || i - start < 3 {
            continue;
        }
        let digits = literal[start..start + 3]
            .iter()
            .fold(0u64, |key, &d| key << 8 | d as u64);
        let reaches_end = i == literal.len();
        let long = i - start > 3 || literal.get(i).is_some_and(|&b| goes_on(b));
        for_each_prefix_context(literal, start, |kind, context| {
            let (exact, first, long_key) = prefix_keys(kind, context, digits, literal[start]);
            match (long, reaches_end) {
                (true, _) => and(long_key),
                (false, false) => exact.into_iter().chain([first]).for_each(&mut and),
                (false, true) => {
                    for key in exact.into_iter().chain([first]) {
                        open(key, long_key);
                    }
                }
            }
        });
    }
}

/// Calls `short` with the key of every short number of `bytes`, and
/// `prefix` with the key of every number prefix (see the module docs): a
/// run of 1 to 3 digits with a separator on each side, and each run of
/// three or more after a separator. With `edges_separate`, the start and
/// end of `bytes` count as separators (a payload); without, they do not (a
/// literal, whose neighbours in a payload are unknown: its prefixes are
/// [`for_each_literal_prefix`]'s, not these). A short number's key is the
/// number *with* its two neighbours, byte by byte (an edge as 0), so
/// `" 503 "` and `status=503,` are apart. A run of three digits has an
/// exact prefix key, a longer one, or one followed by a hex letter (an id's
/// start), a long key (its first digit), each with each of its contexts
/// ([`for_each_prefix_context`]).
///
/// Digits are found eight bytes at a time, and only a run that starts after
/// a separator is looked at further: most runs (in ids, times, addresses)
/// fail there.
#[inline]
fn for_each_number_key(
    bytes: &[u8],
    edges_separate: bool,
    mut short: impl FnMut(u64),
    mut prefix: impl FnMut(u64),
) {
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
            let first = |count: usize| {
                bytes[start..start + count]
                    .iter()
                    .fold(0u64, |key, &d| key << 8 | d as u64)
            };
            let after = bytes.get(start + run).copied().unwrap_or(edge);
            if run <= 3 && is_separator(after) {
                short((before as u64) << 32 | first(run) << 8 | after as u64);
            }
            if run >= 3 {
                let long = run > 3 || goes_on(after);
                for_each_prefix_context(bytes, start, |kind, context| {
                    let (exact, first_digit, long_key) =
                        prefix_keys(kind, context, first(3), bytes[start]);
                    if long {
                        prefix(long_key);
                    } else {
                        exact.into_iter().chain([first_digit]).for_each(&mut prefix);
                    }
                });
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

/// The hash of a short number's key.
#[inline]
fn short_number_hash(key: u64) -> u64 {
    gram_hash(&key.to_le_bytes())
}

/// The hash of a word trigram's key: its two 15-bit indices
/// come from the high bits of one 64-bit product.
#[inline]
fn word_trigram_hash(key: u32) -> u32 {
    ((key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
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

/// Entries of [`Winnowing::recent`].
const RECENT_KEYS: usize = 16384;

/// Scratch space for [`winnow`], kept between calls.
#[derive(Clone)]
struct Winnowing {
    /// The 8-gram hashes, then, in place, the minima of runs of 2, 4 and
    /// finally [`WINDOW`] of them.
    minima: Vec<u64>,
    /// The last key met whose low bits are the slot's index: a key found
    /// here is already in the output (or is [`NOT_A_KEY`], never in it),
    /// so it is not appended again.
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
/// consecutive 8-grams of `bytes` that holds an 8-gram of id bytes (see
/// [`each_window_minimum`]), skipping those found in the scratch's recent
/// keys (and so already in `out`).
///
/// The minima of windows of 6 come from those of 4, and those of 4 from
/// those of 2 (`min6[i] = min(min4[i], min4[i + 2])`): three straight
/// passes over the hashes, each done in place from the front, without the
/// unpredictable branches of tracking the minimum's position.
// `unsafe_code` is allowed in this function alone: calling the
// `#[target_feature]` function from code compiled without those features
// is unsafe, and sound once they are detected.
#[allow(unsafe_code)]
fn winnow(bytes: &[u8], scratch: &mut Winnowing, out: &mut Vec<u64>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
    {
        // SAFETY: `winnow_avx512`'s one precondition is a CPU with AVX-512
        // F, DQ and VL, and all three were just detected.
        return unsafe { winnow_avx512(bytes, scratch, out) };
    }
    winnow_portable(bytes, scratch, out)
}

/// [`winnow_portable`] compiled for AVX-512, which has 64-bit multiplies
/// and minima in its vectors: the filter builds faster (BENCHMARKS.md,
/// "Design measurements"), with the same results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
fn winnow_avx512(bytes: &[u8], scratch: &mut Winnowing, out: &mut Vec<u64>) {
    winnow_portable(bytes, scratch, out)
}

/// Bytes an id is made of: ASCII letters and digits, `-` and `_`. Only
/// 8-grams of these are winnowed keys.
const ID_BYTE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' {
            table[b] = 1;
        }
        b += 1;
    }
    table
};

/// The hash that stands for an 8-gram that is not all [`ID_BYTE`]s: above
/// every other, so a window holding any id gram takes one of those as its
/// minimum, and a window of none has no key.
const NOT_A_KEY: u64 = u64::MAX;

/// The spans by which [`each_window_minimum`] widens each entry's range:
/// `1, 2, 2` takes it from one hash to 2, 4 and then 6 (the ranges of 4
/// from `i` and from `i + 2`), [`WINDOW`] in all.
const WINDOW_SPANS: [usize; 3] = [1, 2, 2];
const _: () = assert!(1 + WINDOW_SPANS[0] + WINDOW_SPANS[1] + WINDOW_SPANS[2] == WINDOW);

/// Fills the front of `minima` with the minimum hash of every window of
/// [`WINDOW`] consecutive 8-grams of `bytes` (at least `GRAM + WINDOW - 1`
/// bytes), in order, and returns how many windows there are. An 8-gram
/// that is not all id bytes hashes to [`NOT_A_KEY`].
#[inline(always)]
fn each_window_minimum(bytes: &[u8], minima: &mut Vec<u64>) -> usize {
    minima.clear();
    // How many id bytes end at the last byte of the current gram.
    let mut run = 0usize;
    for &b in &bytes[..GRAM - 1] {
        run = (run + 1) * ID_BYTE[b as usize] as usize;
    }
    minima.extend(bytes.windows(GRAM).map(|gram| {
        run = (run + 1) * ID_BYTE[gram[GRAM - 1] as usize] as usize;
        // All ones (NOT_A_KEY) unless the gram is all id bytes.
        let not_key = 0u64.wrapping_sub(u64::from(run < GRAM));
        gram_hash(gram) | not_key
    }));
    let mut len = minima.len();
    for span in WINDOW_SPANS {
        // Entry i becomes the minimum of the range from i widened by span.
        len -= span;
        for i in 0..len {
            minima[i] = minima[i].min(minima[i + span]);
        }
    }
    len
}

#[inline(always)]
fn winnow_portable(bytes: &[u8], scratch: &mut Winnowing, out: &mut Vec<u64>) {
    if bytes.len() < GRAM + WINDOW - 1 {
        return;
    }
    let Winnowing { minima, recent } = scratch;
    let len = each_window_minimum(bytes, minima);
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
        kept += usize::from(!seen & (key != NOT_A_KEY));
    }
    out.extend_from_slice(&minima[..kept]);
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

/// The keys a literal probes a sliced filter for, computed once per
/// query (see [`sliced`] for how a probe narrows a block's frames).
#[derive(Debug, Clone, Default)]
pub struct TermProbe {
    /// Hashes of the literal's winnowed 8-grams.
    winnowed: Vec<u64>,
    /// Hashes of the literal's word trigrams.
    word_trigrams: Vec<u32>,
    /// Hashes of the literal's short numbers.
    numbers: Vec<u64>,
    /// Hashes of the literal's number prefixes that a payload holding it
    /// has, and of those pairs one of which it has (a run of three digits
    /// at the literal's end: exact, or long).
    prefixes: Vec<u64>,
    open: Vec<(u64, u64)>,
}

impl TermProbe {
    /// The probe of `literal`: each kind of its keys, hashed, sorted and
    /// deduplicated.
    pub fn new(literal: &[u8]) -> Self {
        // Every window's minimum, without the builder's cache of recent
        // keys (128 KiB to set up, where a literal has a few windows):
        // sorting and deduplicating leaves the same keys.
        let mut winnowed = Vec::new();
        if literal.len() >= GRAM + WINDOW - 1 {
            let windows = each_window_minimum(literal, &mut winnowed);
            winnowed.truncate(windows);
            winnowed.retain(|&key| key != NOT_A_KEY);
        }
        winnowed.sort_unstable();
        winnowed.dedup();
        let mut word_trigrams = Vec::new();
        for_each_word_trigram(literal, |key| word_trigrams.push(word_trigram_hash(key)));
        word_trigrams.sort_unstable();
        word_trigrams.dedup();
        let (mut numbers, mut prefixes, mut open) = (Vec::new(), Vec::new(), Vec::new());
        for_each_number_key(
            literal,
            false,
            |key| numbers.push(short_number_hash(key)),
            |_| {},
        );
        for_each_literal_prefix(
            literal,
            |key| prefixes.push(short_number_hash(key)),
            |exact, long| open.push((short_number_hash(exact), short_number_hash(long))),
        );
        for keys in [&mut numbers, &mut prefixes] {
            keys.sort_unstable();
            keys.dedup();
        }
        open.sort_unstable();
        open.dedup();
        TermProbe {
            winnowed,
            word_trigrams,
            numbers,
            prefixes,
            open,
        }
    }

    /// Whether the probe has no key (it rules out no frame).
    pub fn is_empty(&self) -> bool {
        self.winnowed.is_empty()
            && self.word_trigrams.is_empty()
            && self.numbers.is_empty()
            && self.prefixes.is_empty()
            && self.open.is_empty()
    }

    /// How many keys the probe has.
    fn keys(&self) -> usize {
        self.winnowed.len()
            + self.word_trigrams.len()
            + self.numbers.len()
            + self.prefixes.len()
            + self.open.len()
    }
}

#[cfg(test)]
mod tests;
