//! Probing for a set of literals one of which every wanted record holds
//! (a regex's literal set: `ERROR|FATAL`, or `status=500` to `status=599`
//! for `status=5[0-9]{2}`), as cheaply as for a few literals.
//!
//! A frame may hold one of the literals if it passes every key of at least
//! one of them. The keys that all the literals share (the word trigrams of
//! `status=`, say) are probed once, as for a single literal; each literal
//! then probes only the keys it does not share (`" 503 "`'s number), and
//! literals whose remaining keys are the same, or a superset of another's,
//! are probed once. A literal left with no key of its own makes the shared
//! keys the whole test. This is exact, not an approximation: a frame passes
//! `shared AND (rest_1 OR rest_2 ...)` exactly when it passes
//! `(shared AND rest_1) OR (shared AND rest_2) ...`.
//!
//! Per block, each remaining literal starts from the frames that the
//! shared keys left and no earlier literal has already claimed, and the
//! walk stops once every frame is claimed: a block where the set is common
//! costs a probe or two, and a block where it is absent costs a few row
//! loads a literal (a few hundred for 100 literals), never any work per
//! record.

use super::{
    TermProbe,
    sliced::{Rows, none_left},
};

/// The probe of a literal set, built once per query.
#[derive(Debug, Clone, Default)]
pub struct AnyOfProbe {
    /// The keys every literal has.
    shared: TermProbe,
    /// Each literal's other keys, deduplicated; empty when a literal has
    /// none (the shared keys are then the whole test).
    rest: Vec<TermProbe>,
}

impl AnyOfProbe {
    /// The probe of "one of `literals`". An empty set, or one with a
    /// literal that has no keys (shorter than three bytes, say), rules out
    /// no frame.
    pub fn new<L: AsRef<[u8]>>(literals: &[L]) -> AnyOfProbe {
        let mut probes: Vec<TermProbe> = literals
            .iter()
            .map(|l| TermProbe::new(l.as_ref()))
            .collect();
        let Some(first) = probes.first() else {
            return AnyOfProbe::default();
        };
        let mut shared = first.clone();
        for probe in &probes[1..] {
            intersect(&mut shared.winnowed, &probe.winnowed);
            intersect(&mut shared.word_trigrams, &probe.word_trigrams);
            intersect(&mut shared.numbers, &probe.numbers);
            intersect(&mut shared.prefixes, &probe.prefixes);
            intersect(&mut shared.open, &probe.open);
        }
        for probe in &mut probes {
            remove(&mut probe.winnowed, &shared.winnowed);
            remove(&mut probe.word_trigrams, &shared.word_trigrams);
            remove(&mut probe.numbers, &shared.numbers);
            remove(&mut probe.prefixes, &shared.prefixes);
            remove(&mut probe.open, &shared.open);
        }
        if probes.iter().any(TermProbe::is_empty) {
            // That literal passes wherever the shared keys do.
            probes.clear();
        }
        // A probe whose keys include all of another's passes only frames
        // the other passes too: probe the smaller one alone.
        probes.sort_unstable_by_key(TermProbe::keys);
        let mut rest: Vec<TermProbe> = Vec::with_capacity(probes.len());
        for probe in probes {
            if !rest.iter().any(|kept| kept.is_subset_of(&probe)) {
                rest.push(probe);
            }
        }
        AnyOfProbe { shared, rest }
    }

    /// How many literals are probed one by one (after the shared keys).
    pub fn probes(&self) -> usize {
        self.rest.len()
    }

    /// Narrow `mask` to the frames that may hold one of the literals;
    /// `claimed` and `one` are scratch. Returns the rows read.
    pub(crate) fn narrow_rows(
        &self,
        rows: &Rows<'_>,
        mask: &mut [u64],
        claimed: &mut Vec<u64>,
        one: &mut Vec<u64>,
    ) -> u64 {
        let mut read = self.shared.narrow_rows(rows, mask);
        if self.rest.is_empty() || none_left(mask) {
            return read;
        }
        claimed.clear();
        claimed.resize(mask.len(), 0);
        for probe in &self.rest {
            // The frames still open: left by the shared keys, not claimed.
            one.clear();
            one.extend(mask.iter().zip(claimed.iter()).map(|(m, c)| m & !c));
            if none_left(one) {
                break;
            }
            read += probe.narrow_rows(rows, one);
            for (c, o) in claimed.iter_mut().zip(one.iter()) {
                *c |= o;
            }
        }
        mask.copy_from_slice(claimed);
        read
    }
}

impl TermProbe {
    /// Whether every key of `self` is a key of `other`.
    fn is_subset_of(&self, other: &TermProbe) -> bool {
        subset(&self.winnowed, &other.winnowed)
            && subset(&self.word_trigrams, &other.word_trigrams)
            && subset(&self.numbers, &other.numbers)
            && subset(&self.prefixes, &other.prefixes)
            && subset(&self.open, &other.open)
    }
}

/// Keep in `keys` (sorted) those also in `other` (sorted).
fn intersect<T: Ord + Copy>(keys: &mut Vec<T>, other: &[T]) {
    keys.retain(|k| other.binary_search(k).is_ok());
}

/// Remove from `keys` those in `other` (sorted).
fn remove<T: Ord + Copy>(keys: &mut Vec<T>, other: &[T]) {
    keys.retain(|k| other.binary_search(k).is_err());
}

/// Whether every key of `keys` is in `other` (both sorted).
fn subset<T: Ord>(keys: &[T], other: &[T]) -> bool {
    keys.iter().all(|k| other.binary_search(k).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term_filter::sliced::{SliceBuilder, all_frames};

    /// The frames of a block of `frames` (payload lists) that `literals`
    /// may be in, by one probe each, ORed (the plain way), and by the
    /// set's probe; both, and the rows each read.
    fn both_ways(frames: &[Vec<String>], literals: &[&str]) -> (Vec<u64>, Vec<u64>, u64, u64) {
        let mut builder = SliceBuilder::default();
        builder.clear(true);
        for frame in frames {
            builder.start_frame();
            for p in frame {
                builder.add(p.as_bytes());
            }
        }
        let mut filter = Vec::new();
        builder.encode(&mut filter);
        let rows = Rows::parse(&filter, frames.len()).expect("a well-formed filter");
        let mut plain = vec![0u64; frames.len().div_ceil(64)];
        let mut plain_read = 0;
        for literal in literals {
            let mut one = Vec::new();
            all_frames(frames.len(), &mut one);
            plain_read += TermProbe::new(literal.as_bytes()).narrow_rows(&rows, &mut one);
            for (p, o) in plain.iter_mut().zip(&one) {
                *p |= o;
            }
        }
        let mut mask = Vec::new();
        all_frames(frames.len(), &mut mask);
        let (mut claimed, mut one) = (Vec::new(), Vec::new());
        let read = AnyOfProbe::new(literals).narrow_rows(&rows, &mut mask, &mut claimed, &mut one);
        (plain, mask, plain_read, read)
    }

    /// 100 frames, each of one status, as a block sorted by status has
    /// them: the set of the 5xx statuses passes what probing each of them
    /// passes. Each literal probes only its number's rows after the shared
    /// trigrams of `status=`; without a separator after the number (no
    /// number key), the shared trigrams are the whole probe.
    #[test]
    fn a_set_of_statuses_passes_what_its_literals_pass_for_fewer_rows() {
        let statuses = [200, 204, 301, 304, 404, 500, 503];
        let frames: Vec<Vec<String>> = (0..100usize)
            .map(|f| {
                (0..50)
                    .map(|i| {
                        format!(
                            "GET /api/items/{i} status={} took={}ms",
                            statuses[f % statuses.len()],
                            i * 7
                        )
                    })
                    .collect()
            })
            .collect();
        let literals: Vec<String> = (500..600).map(|s| format!("status={s} ")).collect();
        let literals: Vec<&str> = literals.iter().map(String::as_str).collect();
        let (plain, set, _, read) = both_ways(&frames, &literals);
        assert_eq!(plain, set);
        let passed: Vec<usize> = (0..100)
            .filter(|f| set[f / 64] >> (f % 64) & 1 == 1)
            .collect();
        let want: Vec<usize> = (0..100).filter(|f| f % 7 >= 5).collect();
        assert!(want.iter().all(|f| passed.contains(f)), "{passed:?}");
        assert!(passed.len() < want.len() + 10, "{passed:?}");
        // 5 trigrams of 2 rows, then 3 rows for each of a literal's number
        // and its two prefixes.
        assert!(read <= 5 * 2 + 100 * 3 * 3, "{read} rows");

        // Without a separator after the number there is no number key, but
        // the prefixes (`s=503`, `tus=503`) prune as well.
        let literals: Vec<String> = (500..600).map(|s| format!("status={s}")).collect();
        let literals: Vec<&str> = literals.iter().map(String::as_str).collect();
        let (plain, set, _, read) = both_ways(&frames, &literals);
        assert_eq!(plain, set);
        let passed: Vec<usize> = (0..100)
            .filter(|f| set[f / 64] >> (f % 64) & 1 == 1)
            .collect();
        assert!(want.iter().all(|f| passed.contains(f)), "{passed:?}");
        assert!(passed.len() < want.len() + 10, "{passed:?}");
        assert!(read <= 5 * 2 + 100 * 2 * 3, "{read} rows");

        // A number inside a word has no key: the shared trigrams are the
        // whole probe.
        let literals: Vec<String> = (500..600).map(|s| format!("status=v{s}")).collect();
        let literals: Vec<&str> = literals.iter().map(String::as_str).collect();
        let (plain, set, plain_read, read) = both_ways(&frames, &literals);
        assert_eq!(plain, set);
        assert_eq!(read, 6 * 2);
        assert_eq!(plain_read, 100 * 6 * 2);
    }

    #[test]
    fn shared_keys_are_probed_once_and_supersets_dropped() {
        // `status=v5xx`'s number is inside a word, with no key: every
        // literal's keys are the shared trigrams of `status=v`.
        let literals: Vec<String> = (500..600).map(|s| format!("status=v{s}")).collect();
        let probe = AnyOfProbe::new(&literals);
        assert_eq!(probe.probes(), 0);
        assert!(!probe.shared.is_empty());
        // Each keeps its number; they share the prefix that says "three
        // digits from 5, or more" after `tus=`, probed once.
        let literals: Vec<String> = (500..600).map(|s| format!("status={s} ")).collect();
        assert_eq!(AnyOfProbe::new(&literals).probes(), 100);
        let literals: Vec<String> = (500..600).map(|s| format!("status={s}")).collect();
        let probe = AnyOfProbe::new(&literals);
        assert_eq!((probe.probes(), probe.shared.open.len()), (0, 1));
        // `" 5xx "`: each its number and its exact prefix, and the
        // first-digit prefix shared.
        let literals: Vec<String> = (500..600).map(|s| format!("\" {s} ")).collect();
        let probe = AnyOfProbe::new(&literals);
        assert_eq!((probe.probes(), probe.shared.prefixes.len()), (100, 1));
        // `ERROR x` holds every key of `ERROR`.
        let probe = AnyOfProbe::new(&["FATAL", "ERROR", "ERROR x"]);
        assert_eq!(probe.probes(), 2);
        // Nothing to probe: every frame passes.
        assert_eq!(AnyOfProbe::new::<&str>(&[]).probes(), 0);
        assert!(AnyOfProbe::new(&["ab", "ERROR"]).shared.is_empty());
    }

    proptest::proptest! {
        /// The set's probe passes exactly the frames that probing each
        /// literal alone and ORing passes, so it keeps every frame that
        /// holds one of the literals.
        #[test]
        fn the_set_passes_exactly_what_its_literals_pass(
            frames in proptest::collection::vec(
                proptest::collection::vec("[ab05 =\"xE.]{0,40}", 1..5),
                1..70,
            ),
            literals in proptest::collection::vec("[ab05 =\"xE.]{0,12}", 0..12),
            from_frames in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), 0usize..30),
                0..4,
            ),
        ) {
            // Some literals cut from the frames, so some are present.
            let mut literals = literals;
            for (pick, len) in from_frames {
                let lines: Vec<&String> = frames.iter().flatten().collect();
                let line = lines[pick.index(lines.len())];
                literals.push(line[..len.min(line.len())].to_string());
            }
            let literals: Vec<&str> = literals.iter().map(String::as_str).collect();
            let (plain, set, _, _) = both_ways(&frames, &literals);
            if literals.is_empty() {
                let mut all = Vec::new();
                all_frames(frames.len(), &mut all);
                proptest::prop_assert_eq!(set, all);
            } else {
                proptest::prop_assert_eq!(plain, set);
            }
        }
    }
}
