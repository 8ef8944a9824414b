//! Where a batch's replicas go: weighted rendezvous hashing.
//!
//! Every candidate store gets a score for a batch,
//! `-weight / ln(hash01(batch, store id))`, and the candidates are ranked
//! by score, highest first. The first RF−1 (after the writer itself) are a
//! batch's replica targets; on an error or a deadline the sender moves on to
//! the next in the ranking.
//!
//! - **Spread by weight.** Over many batches, a store comes first in a share
//!   of them that tracks its weight (its free disk), so load spreads without
//!   hot spots.
//! - **Minimal movement.** A store's score for a batch depends only on the
//!   batch and that store, so adding a store moves only the batches it now
//!   wins, and removing one moves only the batches it held; the relative
//!   order of every other store is unchanged.
//! - **Deterministic.** The hash is FNV-1a (64 bit) with a murmur3
//!   finalizer, fixed here and independent of the platform, the Rust
//!   release and the process, so every node ranks a batch the same way.
//!   Equal scores (vanishingly rare) are ordered by id, then address, then
//!   weight, so the ranking never depends on the order of the input.
//!
//! The hash covers the store's `id` (not its address), so a store that
//! moves to another address keeps its batches.

use std::cmp::Ordering;

/// A store that can hold a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The store's node id, which its score is hashed from.
    pub id: String,
    /// Its HTTP API address, where replicas are sent.
    pub api: String,
    /// Its share of placements, such as its free disk in bytes; 0 counts
    /// as 1.
    pub weight: u64,
}

/// The candidates in rendezvous order for `batch` (highest score first):
/// weighted rendezvous hashing (score = -weight / ln(hash01)), so each batch's
/// targets are spread over the stores in proportion to weight (free disk), and
/// adding or removing a store moves only the batches it wins or held.
pub fn rank<'a>(batch: &str, candidates: &'a [Candidate]) -> Vec<&'a Candidate> {
    let mut scored: Vec<(f64, &Candidate)> =
        candidates.iter().map(|c| (score(batch, c), c)).collect();
    scored.sort_by(|(a_score, a), (b_score, b)| {
        b_score.total_cmp(a_score).then_with(|| tie_break(a, b))
    });
    scored.into_iter().map(|(_, c)| c).collect()
}

fn tie_break(a: &Candidate, b: &Candidate) -> Ordering {
    (&a.id, &a.api, a.weight).cmp(&(&b.id, &b.api, b.weight))
}

/// The candidate's score for `batch`: `-weight / ln(u)` with `u` in (0, 1),
/// which is positive and grows with the weight.
fn score(batch: &str, candidate: &Candidate) -> f64 {
    let weight = candidate.weight.max(1) as f64;
    -weight / hash01(batch, &candidate.id).ln()
}

/// A hash of `(batch, id)` mapped to the open interval (0, 1): the top 53
/// bits, offset by half a step so neither 0 nor 1 is reached.
fn hash01(batch: &str, id: &str) -> f64 {
    let h = hash(batch, id);
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// FNV-1a over the batch, a separator byte that no UTF-8 text holds, and
/// the id, then murmur3's 64-bit finalizer so that ids differing in one
/// character land far apart.
fn hash(batch: &str, id: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for &b in batch.as_bytes().iter().chain(&[0xff]).chain(id.as_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    fmix64(h)
}

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn candidate(id: &str, weight: u64) -> Candidate {
        Candidate {
            id: id.to_string(),
            api: format!("http://{id}:7650"),
            weight,
        }
    }

    fn ids(ranked: &[&Candidate]) -> Vec<String> {
        ranked.iter().map(|c| c.id.clone()).collect()
    }

    #[test]
    fn the_hash_is_fixed() {
        // A change here moves every replica: the hash is part of the
        // cluster's protocol, so it must not change between releases.
        assert_eq!(hash("", ""), 0x1bbd_5c81_3c69_a8d7);
        assert_eq!(hash("batch", "store-1"), 0x229d_6742_d6a0_7e63);
        assert_eq!(hash("b", "s"), hash("b", "s"));
        assert_ne!(hash("ab", "c"), hash("a", "bc"));
        let u = hash01(
            "01JD0000000000000000000000-01JD0000000000000000000001.seg",
            "s1",
        );
        assert!(u > 0.0 && u < 1.0);
    }

    #[test]
    fn no_candidates_rank_empty_and_zero_weight_counts_as_one() {
        assert!(rank("b", &[]).is_empty());
        for n in 0..200 {
            let batch = format!("batch-{n}");
            let zero = [candidate("a", 0), candidate("b", 1)];
            let one = [candidate("a", 1), candidate("b", 1)];
            assert_eq!(ids(&rank(&batch, &zero)), ids(&rank(&batch, &one)));
        }
    }

    /// First places over 20 000 fixed batch ids land in proportion to
    /// weight, within a loose margin (the ids are fixed, so this is
    /// deterministic; the margin is for the hash, not for chance).
    #[test]
    fn first_places_track_the_weights() {
        let stores = [
            candidate("store-1", 100),
            candidate("store-2", 200),
            candidate("store-3", 300),
            candidate("store-4", 400),
        ];
        let total: u64 = stores.iter().map(|c| c.weight).sum();
        let batches = 20_000;
        let mut firsts = [0u32; 4];
        for n in 0..batches {
            let batch = format!("01JD{n:022}-01JE{n:022}.seg");
            let first = rank(&batch, &stores)[0];
            firsts[stores.iter().position(|c| c == first).unwrap()] += 1;
        }
        for (store, &won) in stores.iter().zip(&firsts) {
            let want = store.weight as f64 / total as f64;
            let got = f64::from(won) / f64::from(batches);
            assert!(
                (got - want).abs() < 0.02,
                "{} won {got:.3} of first places, its weight is {want:.3}: {firsts:?}",
                store.id
            );
        }
    }

    #[test]
    fn equal_weights_spread_evenly_and_adding_a_store_moves_only_what_it_wins() {
        let three: Vec<Candidate> = (1..=3).map(|i| candidate(&format!("s{i}"), 1)).collect();
        let mut four = three.clone();
        four.push(candidate("s4", 1));
        let batches = 12_000;
        let mut moved = 0;
        for n in 0..batches {
            let batch = format!("batch-{n}");
            let before = rank(&batch, &three)[0];
            let after = rank(&batch, &four)[0];
            if before != after {
                assert_eq!(after.id, "s4", "{batch} moved between old stores");
                moved += 1;
            }
        }
        let share = f64::from(moved) / f64::from(batches);
        assert!((share - 0.25).abs() < 0.02, "the new store won {share:.3}");
    }

    fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
        proptest::collection::btree_map("[a-z0-9]{1,8}", 0u64..1_000_000, 0..8).prop_map(|m| {
            m.into_iter()
                .map(|(id, weight)| candidate(&id, weight))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn ranking_is_a_deterministic_permutation(batch in "[0-9A-Z.-]{0,40}", cs in candidates()) {
            let ranked = rank(&batch, &cs);
            prop_assert_eq!(&ranked, &rank(&batch, &cs));
            let mut got: Vec<&Candidate> = ranked.clone();
            got.sort_by(|a, b| tie_break(a, b));
            let mut want: Vec<&Candidate> = cs.iter().collect();
            want.sort_by(|a, b| tie_break(a, b));
            prop_assert_eq!(got, want);
        }

        #[test]
        fn ranking_ignores_the_input_order(
            batch in "[0-9A-Z.-]{0,40}",
            cs in candidates(),
            shuffle in any::<u64>(),
        ) {
            let mut shuffled = cs.clone();
            // A deterministic shuffle driven by the generated value.
            let mut state = shuffle;
            for i in (1..shuffled.len()).rev() {
                state = fmix64(state.wrapping_add(0x9e37_79b9_7f4a_7c15));
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(rank(&batch, &cs), rank(&batch, &shuffled));
        }

        #[test]
        fn removing_a_candidate_keeps_the_order_of_the_others(
            batch in "[0-9A-Z.-]{0,40}",
            cs in candidates(),
            gone in any::<proptest::sample::Index>(),
        ) {
            prop_assume!(!cs.is_empty());
            let gone = gone.index(cs.len());
            let mut fewer = cs.clone();
            let removed = fewer.remove(gone);
            let want: Vec<&Candidate> =
                rank(&batch, &cs).into_iter().filter(|c| **c != removed).collect();
            prop_assert_eq!(rank(&batch, &fewer), want);
        }
    }
}
