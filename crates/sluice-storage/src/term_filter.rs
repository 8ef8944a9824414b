//! The per-block term filter, in two parts, both sound for substring
//! matching (a block that holds a literal inside one payload always passes):
//!
//! - **Trigrams**: a bitmap of [`TRIGRAM_BYTES`] (4 KiB, 32,768 bits) with
//!   one bit per hashed byte trigram of every payload (never across two
//!   payloads). Good for words: a literal passes only if all its trigrams'
//!   bits are set. Useless for hex ids, whose 4,096 trigrams all occur.
//! - **Sampled 8-grams**: a bloom filter of the 8-byte substrings whose hash
//!   falls in one [`SAMPLE`]th of the hash space. Whether an 8-gram is
//!   sampled depends only on its bytes, so every sampled 8-gram of a literal
//!   that occurs in a payload was indexed. A 32-character id has 25 8-grams,
//!   about 3 of them sampled; a block without the id passes with a
//!   probability of a few in a thousand. About 4 bits per sampled 8-gram,
//!   2 probes each.
//!
//! Encoded: the trigram bitmap, then the bloom (its size in bytes is what is
//! left). Literals shorter than three bytes never prune; shorter than eight,
//! only by trigrams.

/// Bytes of the trigram bitmap.
pub const TRIGRAM_BYTES: usize = 4096;
const TRIGRAM_BITS: u32 = (TRIGRAM_BYTES * 8) as u32;
/// One 8-gram in this many is indexed.
pub const SAMPLE: u64 = 8;
const GRAM: usize = 8;
/// Bloom bits per sampled 8-gram.
const BLOOM_BITS_PER_KEY: usize = 4;

#[inline]
fn trigram_bit(a: u8, b: u8, c: u8) -> u32 {
    let key = (a as u32) << 16 | (b as u32) << 8 | c as u32;
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

/// The two bloom positions of a hash in a filter of `bits` bits.
#[inline]
fn bloom_bits(hash: u64, bits: u64) -> [u64; 2] {
    [
        (hash >> 8) % bits,
        (hash >> 36 ^ hash.rotate_left(17)) % bits,
    ]
}

/// A filter being built for one block.
#[derive(Clone)]
pub struct TermFilter {
    trigrams: Box<[u8; TRIGRAM_BYTES]>,
    grams: Vec<u64>,
}

impl Default for TermFilter {
    fn default() -> Self {
        TermFilter {
            trigrams: Box::new([0; TRIGRAM_BYTES]),
            grams: Vec::new(),
        }
    }
}

impl std::fmt::Debug for TermFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set: u32 = self.trigrams.iter().map(|b| b.count_ones()).sum();
        f.debug_struct("TermFilter")
            .field("trigram_bits_set", &set)
            .field("sampled_grams", &self.grams.len())
            .finish()
    }
}

impl TermFilter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add the terms of one payload.
    pub fn add(&mut self, payload: &[u8]) {
        for w in payload.windows(3) {
            let bit = trigram_bit(w[0], w[1], w[2]);
            self.trigrams[(bit >> 3) as usize] |= 1 << (bit & 7);
        }
        for w in payload.windows(GRAM) {
            let hash = gram_hash(w);
            if sampled(hash) {
                self.grams.push(hash);
            }
        }
    }

    /// Append the encoded filter to `out`.
    pub fn encode(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.trigrams[..]);
        self.grams.sort_unstable();
        self.grams.dedup();
        let bytes = (self.grams.len() * BLOOM_BITS_PER_KEY).div_ceil(8).max(8);
        let start = out.len();
        out.resize(start + bytes, 0);
        let bloom = &mut out[start..];
        let bits = (bytes * 8) as u64;
        for &hash in &self.grams {
            for bit in bloom_bits(hash, bits) {
                bloom[(bit >> 3) as usize] |= 1 << (bit & 7);
            }
        }
    }

    pub fn clear(&mut self) {
        self.trigrams.fill(0);
        self.grams.clear();
    }
}

/// What a literal needs of a filter, computed once per query.
#[derive(Debug, Clone, Default)]
pub struct TermProbe {
    /// (byte index, mask) pairs of the trigram bitmap, deduplicated.
    trigrams: Vec<(u16, u8)>,
    /// Hashes of the literal's sampled 8-grams.
    grams: Vec<u64>,
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
        let mut grams: Vec<u64> = literal
            .windows(GRAM)
            .map(gram_hash)
            .filter(|h| sampled(*h))
            .collect();
        grams.sort_unstable();
        grams.dedup();
        TermProbe { trigrams, grams }
    }

    /// Whether the literal may occur in a block whose encoded filter is
    /// `filter`. A filter too short to hold the bitmap passes everything.
    pub fn may_match(&self, filter: &[u8]) -> bool {
        if filter.len() < TRIGRAM_BYTES + 8 {
            return true;
        }
        let (trigrams, bloom) = filter.split_at(TRIGRAM_BYTES);
        if !self
            .trigrams
            .iter()
            .all(|&(byte, mask)| trigrams[byte as usize] & mask != 0)
        {
            return false;
        }
        let bits = (bloom.len() * 8) as u64;
        self.grams.iter().all(|&hash| {
            bloom_bits(hash, bits)
                .iter()
                .all(|&bit| bloom[(bit >> 3) as usize] & (1 << (bit & 7)) != 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(payloads: &[&[u8]]) -> Vec<u8> {
        let mut filter = TermFilter::new();
        for p in payloads {
            filter.add(p);
        }
        let mut out = Vec::new();
        filter.encode(&mut out);
        out
    }

    #[test]
    fn short_literals_never_prune() {
        let empty = encoded(&[]);
        assert!(TermProbe::new(b"ab").may_match(&empty));
        assert!(!TermProbe::new(b"abc").may_match(&empty));
    }

    #[test]
    fn hex_ids_are_pruned_by_sampled_grams() {
        // Ids from a simple generator: every hex trigram occurs, so only the
        // 8-grams can tell the blocks apart.
        let id = |i: u64| {
            format!(
                "{:032x}",
                (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) as u128 * 0x1_0000_0001
            )
        };
        let lines: Vec<String> = (0..3000).map(|i| format!("req_id={} ok", id(i))).collect();
        let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        let filter = encoded(&refs);
        assert!(TermProbe::new(id(17).as_bytes()).may_match(&filter));
        let passed = (10_000..10_200)
            .filter(|&i| TermProbe::new(id(i).as_bytes()).may_match(&filter))
            .count();
        assert!(passed < 40, "{passed} of 200 absent ids passed");
    }

    proptest! {
        /// No false negatives: a literal found in a payload always passes.
        #[test]
        fn a_contained_literal_always_passes(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..20),
            pick in any::<prop::sample::Index>(),
            start in any::<prop::sample::Index>(),
            len in 0usize..24,
        ) {
            let refs: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
            let filter = encoded(&refs);
            let p = &payloads[pick.index(payloads.len())];
            let from = start.index(p.len() + 1);
            let to = (from + len).min(p.len());
            prop_assert!(TermProbe::new(&p[from..to]).may_match(&filter));
        }
    }
}
