//! Where replicas go: weighted rendezvous hashing of a batch's name over
//! the stores that can take one.
//!
//! Each candidate scores `-weight / ln(u)`, where `u` in (0, 1) comes from
//! a hash of the batch and the candidate's id; the highest score ranks
//! first. Every store ranks the same way without talking to the others,
//! each batch's first places fall on stores in proportion to their weight
//! (their free disk), and adding or removing a store moves only the batches
//! it wins or held.

/// A store that can hold a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its node id.
    pub id: String,
    /// Its API address (`HOST:PORT`).
    pub api: String,
    /// How much it should take relative to the others (its free-disk
    /// bucket); 0 counts as 1.
    pub weight: u64,
}

/// The candidates in rendezvous order for `batch`, best first.
pub fn rank<'a>(batch: &str, candidates: &'a [Candidate]) -> Vec<&'a Candidate> {
    let mut scored: Vec<(f64, &Candidate)> =
        candidates.iter().map(|c| (score(batch, c), c)).collect();
    // Ties (equal scores) fall back on the id, so the order never depends
    // on the input's.
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
    scored.into_iter().map(|(_, c)| c).collect()
}

fn score(batch: &str, candidate: &Candidate) -> f64 {
    let hash = fnv1a(batch.as_bytes(), candidate.id.as_bytes());
    // The top 53 bits as a fraction in (0, 1): never 0, never 1.
    let unit = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(candidate.weight.max(1) as f64) / unit.ln()
}

/// FNV-1a over `a`, a separator and `b`, then a 64-bit finalizer (FNV alone
/// mixes the last bytes poorly).
fn fnv1a(a: &[u8], b: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in a.iter().chain([0xffu8].iter()).chain(b) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finalizer.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stores(weights: &[u64]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Candidate {
                id: format!("node-{i}"),
                api: format!("127.0.0.{}:7650", i + 1),
                weight,
            })
            .collect()
    }

    fn ids(ranked: &[&Candidate]) -> Vec<String> {
        ranked.iter().map(|c| c.id.clone()).collect()
    }

    #[test]
    fn first_places_follow_the_weights() {
        let candidates = stores(&[1, 1, 2]);
        let mut firsts = [0u32; 3];
        for i in 0..4000 {
            let best = &rank(&format!("batch-{i}"), &candidates)[0];
            firsts[candidates.iter().position(|c| c == *best).unwrap()] += 1;
        }
        // Expected 1000, 1000, 2000; a wide margin, and fixed inputs.
        assert!((800..1200).contains(&firsts[0]), "{firsts:?}");
        assert!((800..1200).contains(&firsts[1]), "{firsts:?}");
        assert!((1750..2250).contains(&firsts[2]), "{firsts:?}");
    }

    proptest! {
        #[test]
        fn a_ranking_is_a_permutation_independent_of_input_order(
            batch in "[0-9A-Z]{26}",
            weights in proptest::collection::vec(0u64..10, 1..8),
            rotate in 0usize..8,
        ) {
            let candidates = stores(&weights);
            let ranked = ids(&rank(&batch, &candidates));
            let mut sorted = ranked.clone();
            sorted.sort();
            let mut all: Vec<String> = candidates.iter().map(|c| c.id.clone()).collect();
            all.sort();
            prop_assert_eq!(sorted, all);
            let mut turned = candidates.clone();
            turned.rotate_left(rotate % candidates.len());
            prop_assert_eq!(ids(&rank(&batch, &turned)), ranked);
        }

        #[test]
        fn removing_a_store_keeps_the_others_in_order(
            batch in "[0-9A-Z]{26}",
            weights in proptest::collection::vec(0u64..10, 2..8),
            gone in 0usize..8,
        ) {
            let candidates = stores(&weights);
            let gone = gone % candidates.len();
            let before: Vec<String> = ids(&rank(&batch, &candidates))
                .into_iter()
                .filter(|id| *id != candidates[gone].id)
                .collect();
            let mut fewer = candidates.clone();
            fewer.remove(gone);
            prop_assert_eq!(ids(&rank(&batch, &fewer)), before);
        }
    }
}
