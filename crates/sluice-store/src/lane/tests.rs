//! The lane's rules and its state machine, driven by hand.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::SeedableRng;
use sluice_record::Ulid;

use super::*;
use crate::placement;

#[test]
fn a_lease_stops_gathering_at_a_quarter_and_gives_back_past_half() {
    let start = Instant::now();
    let mut lease = Lease::new();
    assert!(!lease.past_quarter(start + Duration::from_secs(3600)));
    assert!(!lease.past_half(start + Duration::from_secs(3600)));
    lease.lent(Duration::from_secs(60), start);
    // A later, shorter lease counts; the clock still runs from the first.
    lease.lent(Duration::from_secs(40), start + Duration::from_secs(5));
    assert!(!lease.past_quarter(start + Duration::from_secs(10)));
    assert!(lease.past_quarter(start + Duration::from_secs(11)));
    assert!(!lease.past_half(start + Duration::from_secs(20)));
    assert!(lease.past_half(start + Duration::from_secs(21)));
    assert_eq!(
        lease.held(start + Duration::from_secs(21)),
        Duration::from_secs(21)
    );
}

#[test]
fn picks_follow_the_weights_and_skip_nothing() {
    use rand::SeedableRng;
    let ingesters = vec![
        Ingester {
            base: "a".into(),
            weight: 1,
        },
        Ingester {
            base: "b".into(),
            weight: 3,
        },
    ];
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let picks: Vec<&str> = (0..4000)
        .map(|_| pick(&ingesters, &mut rng).unwrap().base.as_str())
        .collect();
    let a = picks.iter().filter(|p| **p == "a").count();
    // About a quarter: far from both 0 and a half.
    assert!((700..1300).contains(&a), "a picked {a} times of 4000");
    assert!(pick(&[], &mut rng).is_none());
}

#[test]
fn the_gate_needs_rf_minus_one_other_stores() {
    assert!(!too_few_stores(0, 0));
    assert!(!too_few_stores(0, 1));
    assert!(too_few_stores(0, 2));
    assert!(!too_few_stores(1, 2));
    assert!(too_few_stores(1, 3));
    assert!(!too_few_stores(5, 3));
}

#[test]
fn a_fanout_replaces_failures_in_rank_order() {
    let (mut fanout, first) = Fanout::start(vec!["a", "b", "c", "d"], 2);
    assert_eq!(first, vec!["a", "b"]);
    assert_eq!(fanout.failed(), Some("c"), "a failed: c is next");
    fanout.succeeded("b");
    assert!(!fanout.finished());
    assert_eq!(fanout.failed(), Some("d"), "c failed: d is next");
    fanout.succeeded("d");
    assert!(fanout.finished());
    assert_eq!(fanout.tried(), 4);
    assert_eq!(fanout.outcome(), Ok(vec!["b", "d"]));

    let (mut fanout, first) = Fanout::start(vec!["a", "b"], 2);
    assert_eq!(first.len(), 2);
    fanout.succeeded("a");
    assert_eq!(fanout.failed(), None, "nothing left to try");
    assert_eq!(fanout.outcome(), Err(Short { got: 1, tried: 2 }));

    let (fanout, first) = Fanout::<&str>::start(Vec::new(), 1);
    assert!(first.is_empty() && fanout.finished());
    assert_eq!(fanout.outcome(), Err(Short { got: 0, tried: 0 }));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the targets answer and in whatever order the answers
    /// come, the fanout tries a prefix of the ranking, never more than
    /// `want` at once, never a target twice, and ends with `want`
    /// replicas exactly when at least `want` targets would take one.
    #[test]
    fn a_fanout_tries_a_prefix_and_succeeds_iff_enough_targets_answer(
        answers in proptest::collection::vec(any::<bool>(), 0..8),
        want in 0usize..4,
        order in any::<u64>(),
    ) {
        let ranked: Vec<usize> = (0..answers.len()).collect();
        let (mut fanout, first) = Fanout::start(ranked, want);
        let mut running: Vec<usize> = first;
        let mut sent: Vec<usize> = running.clone();
        let mut pick = order;
        let mut steps = 0;
        while !running.is_empty() {
            steps += 1;
            prop_assert!(steps <= 64);
            prop_assert!(running.len() <= want);
            pick = pick.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let target = running.remove((pick >> 33) as usize % running.len());
            if answers[target] {
                fanout.succeeded(target);
            } else if let Some(next) = fanout.failed() {
                prop_assert!(!sent.contains(&next));
                sent.push(next);
                running.push(next);
            }
        }
        prop_assert!(fanout.finished());
        prop_assert_eq!(&sent, &(0..sent.len()).collect::<Vec<_>>());
        let able = answers.iter().filter(|ok| **ok).count();
        match fanout.outcome() {
            Ok(done) => {
                prop_assert!(able >= want);
                prop_assert_eq!(done.len(), want);
                prop_assert!(done.iter().all(|t| answers[*t]));
            }
            Err(short) => {
                prop_assert!(able < want);
                prop_assert_eq!(short.got, able);
                prop_assert_eq!(short.tried, answers.len());
            }
        }
    }
}

fn candidate(id: &str) -> Candidate {
    Candidate {
        id: id.to_string(),
        api: id.to_string(),
        weight: 1,
    }
}

fn view(targets: &[&str]) -> View {
    View {
        ingesters: vec![Ingester {
            base: "i1".to_string(),
            weight: 1,
        }],
        targets: targets.iter().map(|t| candidate(t)).collect(),
        disk_full: false,
    }
}

fn token(action: &Action) -> u64 {
    match action {
        Action::Next { token, .. }
        | Action::Download { token, .. }
        | Action::Write { token, .. }
        | Action::Replicate { token, .. }
        | Action::Commit { token, .. } => *token,
        other => panic!("no token in {other:?}"),
    }
}

/// Lend two segments, write them as one store segment, lose a replica
/// target, fall back to the next in rendezvous order, and commit both
/// naming this store and the target that took the copy.
#[test]
fn a_cycle_lends_writes_replicates_with_fallback_and_commits() {
    let t0 = Instant::now();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    let config = LaneConfig::defaults("s1", 2);
    let mut lane = Lane::new(config, t0);
    let view = view(&["s2", "s3"]);
    let lease = Duration::from_secs(60);
    let (a, b) = (Ulid(1), Ulid(2));

    let out = lane.step(t0, Event::Wake, &view, &mut rng);
    assert!(matches!(&out[..], [Action::Next { ingester, .. }] if ingester == "i1"));
    let out = lane.step(
        t0,
        Event::Next {
            token: token(&out[0]),
            result: Ok(Some((a, lease))),
        },
        &view,
        &mut rng,
    );
    assert!(matches!(&out[..], [Action::Download { id, .. }] if *id == a));
    let out = lane.step(
        t0,
        Event::Download {
            token: token(&out[0]),
            result: Ok(()),
        },
        &view,
        &mut rng,
    );
    let out = lane.step(
        t0,
        Event::Next {
            token: token(&out[0]),
            result: Ok(Some((b, lease))),
        },
        &view,
        &mut rng,
    );
    let out = lane.step(
        t0,
        Event::Download {
            token: token(&out[0]),
            result: Ok(()),
        },
        &view,
        &mut rng,
    );
    let out = lane.step(
        t0,
        Event::Next {
            token: token(&out[0]),
            result: Ok(None),
        },
        &view,
        &mut rng,
    );
    assert!(matches!(&out[..], [Action::Write { inputs, .. }] if *inputs == vec![a, b]));
    let name = "seg-name".to_string();
    let written = vec![Written {
        name: name.clone(),
        inputs: vec![a, b],
    }];
    let out = lane.step(
        t0,
        Event::Write {
            token: token(&out[0]),
            result: Ok(written),
        },
        &view,
        &mut rng,
    );
    let ranked: Vec<String> = placement::rank(&name, &view.targets)
        .iter()
        .map(|c| c.id.clone())
        .collect();
    let [Action::Replicate { target, .. }] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(target.id, ranked[0], "the first in rendezvous order");
    let out = lane.step(
        t0,
        Event::Replica {
            token: token(&out[0]),
            result: Err("507".into()),
        },
        &view,
        &mut rng,
    );
    let [Action::Replicate { target, .. }] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(target.id, ranked[1], "the fallback is the next in order");
    let out = lane.step(
        t0,
        Event::Replica {
            token: token(&out[0]),
            result: Ok(()),
        },
        &view,
        &mut rng,
    );
    let holders = vec!["s1".to_string(), ranked[1].clone()];
    assert!(
        matches!(&out[..], [Action::Commit { id, replicas, .. }] if *id == a && *replicas == holders)
    );
    let out = lane.step(
        t0,
        Event::Commit {
            token: token(&out[0]),
            result: Ok(()),
        },
        &view,
        &mut rng,
    );
    assert!(matches!(&out[..], [Action::Commit { id, .. }] if *id == b));
    let out = lane.step(
        t0,
        Event::Commit {
            token: token(&out[0]),
            result: Err("404".into()),
        },
        &view,
        &mut rng,
    );
    assert_eq!(out, vec![Action::Release { inputs: vec![a, b] }]);
    assert!(!lane.busy());
    assert_eq!(
        lane.wake_at(),
        Some(t0),
        "a lane that consumed lends again at once"
    );
}

#[test]
fn the_gate_stops_lending_while_too_few_stores_are_ready() {
    let t0 = Instant::now();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    let mut lane = Lane::new(LaneConfig::defaults("s1", 3), t0);
    let out = lane.step(t0, Event::Wake, &view(&["s2"]), &mut rng);
    assert!(out.is_empty());
    assert_eq!(lane.stopped(), Some(Stop::TooFewStores));
    let later = lane.wake_at().unwrap();
    let out = lane.step(later, Event::Wake, &view(&["s2", "s3"]), &mut rng);
    assert!(matches!(&out[..], [Action::Next { .. }]));
    assert_eq!(lane.stopped(), None);
}

/// A download answered after half the lease: gathering stops (a
/// quarter passed) and the cycle gives the segment back instead of
/// writing it.
#[test]
fn a_cycle_past_half_its_lease_gives_everything_back() {
    let t0 = Instant::now();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    let mut lane = Lane::new(LaneConfig::defaults("s1", 2), t0);
    let view = view(&["s2"]);
    let out = lane.step(t0, Event::Wake, &view, &mut rng);
    let lease = Duration::from_secs(8);
    let out = lane.step(
        t0,
        Event::Next {
            token: token(&out[0]),
            result: Ok(Some((Ulid(9), lease))),
        },
        &view,
        &mut rng,
    );
    let late = t0 + Duration::from_secs(5);
    let out = lane.step(
        late,
        Event::Download {
            token: token(&out[0]),
            result: Ok(()),
        },
        &view,
        &mut rng,
    );
    assert_eq!(
        out,
        vec![
            Action::GiveBack {
                ingester: "i1".into(),
                id: Ulid(9)
            },
            Action::Release {
                inputs: vec![Ulid(9)]
            },
        ]
    );
    assert_eq!(lane.stopped(), Some(Stop::LeaseLapsed));
}

/// A request without an answer fails at its deadline, and a reply that
/// comes after it is ignored.
#[test]
fn a_silent_target_times_out_and_a_late_reply_is_ignored() {
    let t0 = Instant::now();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    let mut config = LaneConfig::defaults("s1", 2);
    config.replica_timeout = Duration::from_secs(1);
    let mut lane = Lane::new(config, t0);
    let view = view(&["s2"]);
    let out = lane.step(t0, Event::Wake, &view, &mut rng);
    let out = lane.step(
        t0,
        Event::Next {
            token: token(&out[0]),
            result: Ok(Some((Ulid(3), Duration::from_secs(60)))),
        },
        &view,
        &mut rng,
    );
    let out = lane.step(
        t0,
        Event::Download {
            token: token(&out[0]),
            result: Ok(()),
        },
        &view,
        &mut rng,
    );
    let out = lane.step(
        t0,
        Event::Next {
            token: token(&out[0]),
            result: Ok(None),
        },
        &view,
        &mut rng,
    );
    let written = vec![Written {
        name: "n".into(),
        inputs: vec![Ulid(3)],
    }];
    let out = lane.step(
        t0,
        Event::Write {
            token: token(&out[0]),
            result: Ok(written),
        },
        &view,
        &mut rng,
    );
    let replica = token(&out[0]);
    let deadline = lane.wake_at().unwrap();
    assert_eq!(deadline, t0 + Duration::from_secs(1));
    let out = lane.step(deadline, Event::Wake, &view, &mut rng);
    assert_eq!(
        out,
        vec![
            Action::GiveBack {
                ingester: "i1".into(),
                id: Ulid(3)
            },
            Action::Release {
                inputs: vec![Ulid(3)]
            },
        ]
    );
    assert_eq!(lane.stopped(), Some(Stop::TooFewReplicas));
    let out = lane.step(
        deadline,
        Event::Replica {
            token: replica,
            result: Ok(()),
        },
        &view,
        &mut rng,
    );
    assert!(out.is_empty(), "a late reply changes nothing");
}
