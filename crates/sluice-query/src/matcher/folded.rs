//! A literal searched without regard to ASCII case (`-i` of a literal).
//!
//! The regex crate searches a case-insensitive literal through Teddy, over
//! every case variant of its first bytes: 70% of a fresh `-i QUOTA` scan's
//! worker time went there, and it ran at about half the speed of memmem on
//! the same bytes. This is the "packed pair" search of memchr's memmem
//! (after Wojciech Muła's "generic SIMD"), with case folded: two rare bytes
//! of the needle are compared at once against 32 candidate starts, a
//! letter's byte with its case bit (0x20) set on both sides, and each
//! candidate both bytes agree on is checked in full.
//!
//! It is exact only for a needle whose characters fold to ASCII alone:
//! the regex crate's `(?i)k` also matches the Kelvin sign (U+212A) and
//! `(?i)s` the long s (U+017F). [`FoldedFinder::new`] refuses any other
//! needle, and the caller keeps the regex for it.

use memchr::arch::all::packedpair::Pair;

/// A needle that every case variant (ASCII) of is found by
/// [`FoldedFinder::find`].
#[derive(Debug)]
pub struct FoldedFinder {
    /// The needle, lowercased.
    needle: Box<[u8]>,
    /// Offsets in the needle of the two bytes compared first: the rarest
    /// by memchr's background frequencies (those of the lowercase bytes,
    /// which outnumber the uppercase ones in text), and the end of the
    /// needle farther from it (the same byte for a needle of one).
    first: usize,
    second: usize,
    #[cfg(target_arch = "x86_64")]
    avx2: bool,
}

/// Whether `(?i)` of `needle` matches exactly the ASCII case variants of
/// it: every character's case-fold class, as the regex crate builds it,
/// holds only ASCII bytes.
fn folds_within_ascii(needle: &str) -> bool {
    use regex_syntax::hir::{Class, HirKind};
    needle.is_ascii()
        && needle.chars().all(|c| {
            let pattern = format!("(?i){}", regex_syntax::escape(&c.to_string()));
            let Ok(hir) = regex_syntax::Parser::new().parse(&pattern) else {
                return false;
            };
            match hir.kind() {
                HirKind::Literal(_) => true,
                HirKind::Class(Class::Unicode(class)) => {
                    class.ranges().iter().all(|r| r.end().is_ascii())
                }
                HirKind::Class(Class::Bytes(class)) => {
                    class.ranges().iter().all(|r| r.end().is_ascii())
                }
                _ => false,
            }
        })
}

impl FoldedFinder {
    /// A finder for `needle`, or `None` when a case-insensitive regex of it
    /// would match more than its ASCII case variants (a character outside
    /// ASCII, or `k` and `s`), or it is empty or holds a newline (the text
    /// matchers decide each line alone).
    pub(crate) fn new(needle: &str) -> Option<FoldedFinder> {
        if needle.is_empty() || needle.contains('\n') || !folds_within_ascii(needle) {
            return None;
        }
        let needle: Box<[u8]> = needle.as_bytes().to_ascii_lowercase().into();
        // The rarest byte, and the end of the needle farther from it: bytes
        // side by side are seldom independent (`q` is nearly always followed
        // by `u`, so memchr's own second pick for `quota`, its `u`, let
        // every `request` through: 60 candidates a match on testsvc lines).
        let last = needle.len() - 1;
        let first = Pair::new(&needle).map_or(0, |pair| usize::from(pair.index1()));
        let second = if first >= last - first { 0 } else { last };
        Some(FoldedFinder {
            needle,
            first,
            second,
            #[cfg(target_arch = "x86_64")]
            avx2: std::is_x86_feature_detected!("avx2"),
        })
    }

    /// The needle, lowercased.
    pub(crate) fn needle(&self) -> &[u8] {
        &self.needle
    }

    /// The offset of the first occurrence of the needle in `haystack`, in
    /// any ASCII case.
    // `unsafe_code` is allowed here and in `find_avx2` alone: calling a
    // `#[target_feature]` function is unsafe until the feature is detected,
    // and unaligned vector loads take raw pointers.
    #[allow(unsafe_code)]
    pub(crate) fn find(&self, haystack: &[u8]) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: the CPU has AVX2 (checked when the finder was built).
            return unsafe { self.find_avx2(haystack) };
        }
        self.find_from(haystack, 0)
    }

    /// Whether the needle starts at `at` (which leaves room for it).
    #[inline(always)]
    fn is_at(&self, haystack: &[u8], at: usize) -> bool {
        haystack[at..at + self.needle.len()].eq_ignore_ascii_case(&self.needle)
    }

    /// The first occurrence starting at or after `from`: memchr2 for the
    /// first byte in both cases, each hit checked in full.
    fn find_from(&self, haystack: &[u8], from: usize) -> Option<usize> {
        let last_start = haystack.len().checked_sub(self.needle.len())?;
        let byte = self.needle[self.first];
        let (lower, upper) = (byte, byte.to_ascii_uppercase());
        let mut at = from;
        while at <= last_start {
            let window = &haystack[at + self.first..=last_start + self.first];
            let start = at + memchr::memchr2(lower, upper, window)?;
            if self.is_at(haystack, start) {
                return Some(start);
            }
            at = start + 1;
        }
        None
    }

    /// [`find`](Self::find) 32 candidate starts at a time.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[allow(unsafe_code)]
    fn find_avx2(&self, haystack: &[u8]) -> Option<usize> {
        use std::arch::x86_64::{
            __m256i, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8,
            _mm256_or_si256, _mm256_set1_epi8,
        };
        const LANES: usize = 32;
        let last_start = haystack.len().checked_sub(self.needle.len())?;
        // A letter is compared with its case bit set on both sides; any
        // other byte as it is.
        let (byte1, byte2) = (self.needle[self.first], self.needle[self.second]);
        let fold = |byte: u8| _mm256_set1_epi8(if byte.is_ascii_lowercase() { 0x20 } else { 0 });
        let (want1, fold1) = (_mm256_set1_epi8(byte1 as i8), fold(byte1));
        let (want2, fold2) = (_mm256_set1_epi8(byte2 as i8), fold(byte2));
        let ptr = haystack.as_ptr();
        let mut at = 0;
        while at + LANES - 1 <= last_start {
            // SAFETY: `at + LANES - 1 <= last_start`, so 32 bytes from `at
            // + offset` end at most at `last_start + offset + 1`, within the
            // haystack because `offset` is less than the needle's length.
            let (v1, v2) = unsafe {
                (
                    _mm256_loadu_si256(ptr.add(at + self.first).cast::<__m256i>()),
                    _mm256_loadu_si256(ptr.add(at + self.second).cast::<__m256i>()),
                )
            };
            let eq1 = _mm256_cmpeq_epi8(_mm256_or_si256(v1, fold1), want1);
            let eq2 = _mm256_cmpeq_epi8(_mm256_or_si256(v2, fold2), want2);
            let mut mask = _mm256_movemask_epi8(_mm256_and_si256(eq1, eq2)) as u32;
            while mask != 0 {
                let start = at + mask.trailing_zeros() as usize;
                if self.is_at(haystack, start) {
                    return Some(start);
                }
                mask &= mask - 1;
            }
            at += LANES;
        }
        self.find_from(haystack, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first start of `needle` in `haystack`, comparing ASCII case
    /// folded, one position at a time.
    fn reference(needle: &str, haystack: &[u8]) -> Option<usize> {
        let n = needle.len();
        (0..=haystack.len().checked_sub(n)?)
            .find(|&at| haystack[at..at + n].eq_ignore_ascii_case(needle.as_bytes()))
    }

    #[test]
    fn only_needles_that_fold_within_ascii_are_taken() {
        assert!(FoldedFinder::new("QUOTA").is_some());
        assert!(FoldedFinder::new("deadline exceeded: 503").is_some());
        // (?i)k matches the Kelvin sign, (?i)s the long s.
        assert!(FoldedFinder::new("kafka").is_none());
        assert!(FoldedFinder::new("status").is_none());
        assert!(FoldedFinder::new("é").is_none());
        assert!(FoldedFinder::new("").is_none());
        assert!(FoldedFinder::new("a\nb").is_none());
    }

    #[test]
    fn finds_every_case_and_only_letters_fold() {
        let f = FoldedFinder::new("QuOtA").unwrap();
        let mut text = vec![b'x'; 100];
        text.extend_from_slice(b"qUoTa");
        assert_eq!(f.find(&text), Some(100));
        // '@' is '`' with the case bit cleared: not a case variant.
        let at = FoldedFinder::new("a@b").unwrap();
        assert_eq!(at.find(b"A`B a@B"), Some(4));
        assert_eq!(FoldedFinder::new("x").unwrap().find(b"aaX"), Some(2));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// Over random text of few distinct bytes (so that partial
        /// matches are frequent), both paths find what a position by
        /// position comparison finds.
        #[test]
        fn find_equals_a_position_by_position_search(
            needle in "[abcAB@`0 ]{1,12}",
            haystack in proptest::collection::vec(
                proptest::sample::select(b"abcABC@` 0\n".to_vec()), 0..300),
        ) {
            let Some(finder) = FoldedFinder::new(&needle) else {
                return Ok(());
            };
            let expected = reference(&needle, &haystack);
            proptest::prop_assert_eq!(finder.find(&haystack), expected);
            proptest::prop_assert_eq!(finder.find_from(&haystack, 0), expected);
        }
    }
}
