//! The deterministic simulation, many seeds (issue 19).
//!
//! - `SLUICE_SIM_SEEDS=N` runs N seeds (default 1000) from
//!   `SLUICE_SIM_FIRST_SEED` (default 0);
//! - `SLUICE_SIM_SEED=S` replays seed S alone and prints its report.
//!
//! A failure names its seed and shows the nemesis and the last events.

use std::time::Duration;

use proptest::prelude::*;
use sluice_sim::{Report, SimConfig, run};

/// Seeds run by default: enough to meet every kind of fault in many
/// orders, and a few seconds of CPU.
const DEFAULT_SEEDS: u64 = 1000;

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    match text.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={text:?} is not a number"),
    }
}

/// The seeds to run: one replayed, or a range.
fn seeds() -> Vec<u64> {
    if let Some(seed) = env_u64("SLUICE_SIM_SEED") {
        return vec![seed];
    }
    let first = env_u64("SLUICE_SIM_FIRST_SEED").unwrap_or(0);
    let count = env_u64("SLUICE_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    (first..first.saturating_add(count)).collect()
}

#[test]
fn every_acked_record_is_on_rf_stores_after_any_faults() {
    let config = SimConfig::default();
    let seeds = seeds();
    let replay = seeds.len() == 1;
    let mut totals = (0usize, 0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for seed in seeds {
        let report = run(seed, &config);
        if replay {
            println!("{}", report.details());
        }
        if let Err(failure) = report.check() {
            failures.push((seed, failure));
            continue;
        }
        totals.0 += report.acked;
        totals.1 += report.failed + report.unknown;
        totals.2 += report.faults;
        totals.3 += report.acked_records;
    }
    if let Some((_, first)) = failures.first() {
        let seeds: Vec<u64> = failures.iter().map(|(seed, _)| *seed).collect();
        panic!(
            "{} seed(s) failed: {seeds:?}; the first:\n{first}",
            seeds.len()
        );
    }
    let (acked, not_acked, faults, records) = totals;
    println!(
        "acked batches {acked} ({records} records), failed or unknown {not_acked}, faults {faults}"
    );
    // The runs must have done something worth checking.
    assert!(acked > 0, "no batch was ever acked");
    assert!(faults > 0, "the nemesis never acted");
}

#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig::default();
    for seed in [3, 41] {
        let (a, b) = (run(seed, &config), run(seed, &config));
        assert_eq!(
            a.trace, b.trace,
            "seed {seed}: two runs took different paths"
        );
        assert_eq!(a.to_string(), b.to_string());
    }
    assert_ne!(run(3, &config).trace, run(4, &config).trace);
}

/// Stores that replicate to one store (a misconfigured RF) and ingesters
/// that do not check the replicas a commit names: acks mean one copy, and
/// the checker says so, naming the seed.
#[test]
fn the_checker_catches_acks_without_rf_copies() {
    let config = SimConfig {
        lane_rf: Some(1),
        commit_rule: false,
        ..SimConfig::default()
    };
    let report = run(5, &config);
    assert!(report.acked > 0, "{report}");
    assert!(!report.under_replicated.is_empty(), "{report}");
    let failure = report.safety().unwrap_err();
    assert!(failure.contains("SLUICE_SIM_SEED=5"), "{failure}");
    assert!(failure.contains("under-replicated:"), "{failure}");
}

/// The same misconfigured stores against ingesters that apply the commit
/// rule: every commit is refused, nothing is acked, nothing is broken.
#[test]
fn the_commit_rule_keeps_a_misconfigured_store_from_acking() {
    let config = SimConfig {
        lane_rf: Some(1),
        nemesis: false,
        settle_limit: Duration::from_secs(10),
        ..SimConfig::default()
    };
    let report = run(5, &config);
    assert_eq!(report.acked, 0, "{report}");
    assert!(report.commits_refused > 0, "{report}");
    assert_eq!(report.commits, 0, "{report}");
    report.safety().unwrap();
}

/// Without faults every batch is acked and every ingester drains.
#[test]
fn without_faults_every_batch_is_acked() {
    let config = SimConfig {
        nemesis: false,
        ..SimConfig::default()
    };
    let report: Report = run(9, &config);
    report.check().unwrap();
    assert!(report.acked > 0, "{report}");
    assert_eq!(
        report.failed + report.unknown + report.in_flight,
        0,
        "{report}"
    );
}

proptest! {
    // A fixed seed: like the simulation's own seeds, the shapes tried are
    // the same every run, so a failure replays.
    #![proptest_config(ProptestConfig {
        cases: 24,
        rng_seed: proptest::test_runner::RngSeed::Fixed(19),
        ..ProptestConfig::default()
    })]

    /// Other cluster shapes: 1 to 3 ingesters, 2 to 5 stores, RF 1 to 3,
    /// 1 to 3 lanes, with faults.
    #[test]
    fn other_cluster_shapes_keep_the_promise(
        seed in any::<u64>(),
        ingesters in 1usize..=3,
        stores in 2usize..=5,
        rf in 1u32..=3,
        lanes in 1usize..=3,
        writers in 1usize..=2,
    ) {
        let config = SimConfig {
            ingesters,
            stores,
            rf: rf.min(stores as u32),
            lanes_per_store: lanes,
            writers_per_ingester: writers,
            ..SimConfig::default()
        };
        let report = run(seed, &config);
        if let Err(failure) = report.check() {
            return Err(TestCaseError::fail(format!("{config:?}\n{failure}")));
        }
    }
}
