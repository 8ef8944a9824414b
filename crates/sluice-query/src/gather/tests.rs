use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn frame(ids: &[u128]) -> RecordsFrame {
    let payloads: Vec<String> = ids.iter().map(|id| format!("r{id}")).collect();
    RecordsFrame::from_records(ids.iter().zip(&payloads).map(|(&id, p)| Record {
        id: Ulid(id),
        flags: 0,
        topic: b"t",
        payload: p.as_bytes(),
    }))
    .unwrap()
}

fn drain(m: &mut NodeMerge) -> Vec<u128> {
    let mut out = Vec::new();
    while let Some(r) = m.pop() {
        assert_eq!(r.payload, format!("r{}", r.id.0).as_bytes());
        out.push(r.id.0);
    }
    out
}

fn needs(m: &NodeMerge) -> Vec<usize> {
    m.needs().collect()
}

#[test]
fn records_wait_for_every_open_node_then_merge_in_order() {
    let mut m = NodeMerge::new(3);
    assert_eq!(needs(&m), [0, 1, 2]);
    m.push_records(0, frame(&[1, 4, 7])).unwrap();
    assert_eq!(drain(&mut m), [] as [u128; 0]);
    assert_eq!(needs(&m), [1, 2]);
    m.push_records(1, frame(&[2, 4, 8])).unwrap();
    // Node 2 has said nothing: it may still send 0.
    assert_eq!(drain(&mut m), [] as [u128; 0]);
    assert_eq!(needs(&m), [2]);
    m.progress(2, Ulid(3)).unwrap();
    assert_eq!(drain(&mut m), [1, 2]);
    assert_eq!(needs(&m), [2], "node 2 may still send 4");
    m.push_records(2, frame(&[4, 5])).unwrap();
    // 4 three times: once out, twice dropped.
    assert_eq!(drain(&mut m), [4, 5]);
    assert_eq!(needs(&m), [2], "node 0's 7 waits for node 2");
    m.finish(2);
    assert_eq!(drain(&mut m), [7]);
    assert_eq!(
        needs(&m),
        [0],
        "node 1's 8 waits for node 0, which sent up to 7"
    );
    m.finish(0);
    assert_eq!(drain(&mut m), [8]);
    assert_eq!(needs(&m), [1]);
    assert!(!m.is_done());
    m.finish(1);
    assert!(m.is_done());
    assert_eq!(needs(&m), [] as [usize; 0]);
    assert_eq!((m.emitted(), m.duplicates_dropped()), (6, 2));
}

#[test]
fn a_failed_node_keeps_what_it_sent_and_is_no_longer_waited_for() {
    let mut m = NodeMerge::new(2);
    m.push_records(0, frame(&[1, 3, 5])).unwrap();
    m.push_records(1, frame(&[2, 6])).unwrap();
    assert_eq!(drain(&mut m), [1, 2, 3, 5]);
    assert_eq!(needs(&m), [0]);
    m.fail(0);
    assert_eq!(
        m.push_records(0, frame(&[7])),
        Err(GatherError::Closed { node: 0 })
    );
    assert_eq!(
        m.progress(0, Ulid(9)).unwrap_err().to_string(),
        "node 0 already finished or failed: nothing more is taken from it"
    );
    assert_eq!(drain(&mut m), [6]);
    assert_eq!(needs(&m), [1]);
    m.fail(1);
    assert!(m.is_done());
    assert_eq!(drain(&mut m), [] as [u128; 0]);
    // Failing a node with records buffered keeps them too.
    let mut m = NodeMerge::new(2);
    m.push_records(0, frame(&[1, 2])).unwrap();
    m.fail(0);
    assert!(!m.is_done());
    assert_eq!(needs(&m), [1]);
    m.fail(1);
    assert_eq!(drain(&mut m), [1, 2]);
    assert!(m.is_done());
}

#[test]
fn out_of_order_input_is_refused_whole() {
    let mut m = NodeMerge::new(1);
    m.push_records(0, frame(&[3, 5])).unwrap();
    assert_eq!(
        m.push_records(0, frame(&[5, 6])).unwrap_err().to_string(),
        format!(
            "node 0 sent record {} after {}: a node's ids must strictly increase \
             (decrease, newest first)",
            Ulid(5),
            Ulid(5)
        )
    );
    m.progress(0, Ulid(10)).unwrap();
    m.progress(0, Ulid(8)).unwrap(); // a stale mark changes nothing
    assert!(matches!(
        m.push_records(0, frame(&[9])),
        Err(GatherError::OutOfOrder { .. })
    ));
    assert_eq!(
        m.push_records(0, frame(&[11, 13, 12])),
        Err(GatherError::OutOfOrder {
            node: 0,
            id: Ulid(12),
            after: Ulid(13)
        })
    );
    m.push_records(0, frame(&[])).unwrap();
    m.finish(0);
    assert_eq!(drain(&mut m), [3, 5]);
    assert!(m.is_done());
}

#[test]
fn a_popped_record_outlives_its_frame_until_the_next_pop() {
    let mut m = NodeMerge::new(1);
    m.push_records(0, frame(&[1])).unwrap();
    m.push_records(0, frame(&[2])).unwrap();
    m.finish(0);
    let r = m.pop().unwrap().to_owned_record();
    assert_eq!((r.id, &r.payload[..]), (Ulid(1), &b"r1"[..]));
    assert_eq!(m.buffered_frames(0), 1);
    assert_eq!(m.pop().unwrap().payload, b"r2");
    assert!(m.pop().is_none() && m.is_done());
}

#[test]
fn the_verdict_counts_stores_against_the_factor_and_any_ingester() {
    let node = |role, failed| QueriedNode { role, failed };
    use Role::*;
    let ok = [node(Ingest, false), node(Store, false), node(Both, false)];
    assert!(verdict(ok, 1));
    assert!(verdict([node(Store, true), node(Store, false)], 2));
    assert!(!verdict([node(Store, true), node(Store, true)], 2));
    assert!(!verdict([node(Store, true)], 1));
    assert!(!verdict([node(Ingest, true), node(Store, false)], 3));
    // Both roles: an ingester failed.
    assert!(!verdict([node(Both, true), node(Store, false)], 3));
    assert!(!verdict([node(Store, true)], 0), "a factor of 0 is 1");
    assert!(verdict([], 1));
    assert_eq!(Both.as_str(), "ingest,store");
}

/// What a node does next, in its script.
#[derive(Debug, Clone)]
enum Event {
    Records(Vec<u128>),
    Progress(u128),
    Finish,
    Fail,
}

/// One node's stream: sorted distinct ids cut into frames, honest
/// progress marks between them, then finish, or fail part way.
fn arb_script() -> impl Strategy<Value = Vec<Event>> {
    (
        proptest::collection::btree_set(0u128..48, 0..16),
        proptest::collection::vec(0usize..4, 1..8),
        proptest::collection::vec(proptest::option::of(any::<u8>()), 1..8),
        proptest::option::of(any::<proptest::sample::Index>()),
    )
        .prop_map(|(ids, sizes, marks, fail_at)| {
            let ids: Vec<u128> = ids.into_iter().collect();
            let mut events = Vec::new();
            let mut at = 0;
            let mut i = 0;
            while at < ids.len() || i == 0 {
                // Empty frames on the first pass through the sizes
                // only, so that the ids run out.
                let n = match sizes[i % sizes.len()] {
                    0 if i >= sizes.len() => 1,
                    n => n,
                }
                .min(ids.len() - at);
                events.push(Event::Records(ids[at..at + n].to_vec()));
                at += n;
                if let Some(seed) = marks[i % marks.len()] {
                    // Honest: below the next id not sent, or anything
                    // once all are sent.
                    let bound = ids.get(at).copied().unwrap_or(256);
                    if bound > 0 {
                        events.push(Event::Progress(seed as u128 % bound));
                    }
                }
                i += 1;
            }
            match fail_at {
                Some(cut) => {
                    events.truncate(cut.index(events.len() + 1));
                    events.push(Event::Fail);
                }
                None => events.push(Event::Finish),
            }
            events
        })
}

fn apply(m: &mut NodeMerge, node: usize, event: &Event) {
    match event {
        Event::Records(ids) => m.push_records(node, frame(ids)).unwrap(),
        Event::Progress(id) => m.progress(node, Ulid(*id)).unwrap(),
        Event::Finish => m.finish(node),
        Event::Fail => m.fail(node),
    }
}

/// Feed the scripts, choosing the next node with `pick` from the nodes
/// that still have events (and, if `by_needs`, from those the merge
/// needs); check every popped record is safe, and return the output.
fn run(scripts: &[Vec<Event>], picks: &[usize], by_needs: bool) -> Vec<u128> {
    run_in(scripts, picks, by_needs, false)
}

/// [`run`], newest first when `backward` (the scripts' ids descend).
fn run_in(scripts: &[Vec<Event>], picks: &[usize], by_needs: bool, backward: bool) -> Vec<u128> {
    let before = |a: u128, b: u128| if backward { a > b } else { a < b };
    let mut m = if backward {
        NodeMerge::backward(scripts.len())
    } else {
        NodeMerge::new(scripts.len())
    };
    let mut next = vec![0usize; scripts.len()];
    let mut out: Vec<u128> = Vec::new();
    let mut picks = picks.iter().cycle();
    loop {
        while let Some(r) = m.pop() {
            let id = r.id.0;
            assert!(
                out.last().is_none_or(|&l| before(l, id)),
                "{id} after {out:?}"
            );
            // Safe: no node will still deliver a record at or below it.
            for (node, script) in scripts.iter().enumerate() {
                for event in &script[next[node]..] {
                    if let Event::Records(ids) = event {
                        assert!(
                            ids.iter().all(|&later| before(id, later)),
                            "{id} popped while node {node} will still send {ids:?}"
                        );
                    }
                }
            }
            out.push(id);
        }
        if m.is_done() {
            assert_eq!(needs(&m), [] as [usize; 0]);
            break;
        }
        let needed = needs(&m);
        assert!(
            !needed.is_empty(),
            "pop is None, not done, and nothing needed"
        );
        for &node in &needed {
            assert_eq!(m.buffered_frames(node), 0);
            assert!(next[node] < scripts[node].len(), "node {node} is closed");
        }
        let choices: Vec<usize> = if by_needs {
            needed
        } else {
            (0..scripts.len())
                .filter(|&n| next[n] < scripts[n].len())
                .collect()
        };
        let node = choices[picks.next().unwrap() % choices.len()];
        apply(&mut m, node, &scripts[node][next[node]]);
        next[node] += 1;
        if by_needs {
            // Read only when needed: at most the one frame read.
            for node in 0..scripts.len() {
                assert!(m.buffered_frames(node) <= 1);
            }
        }
    }
    // Done means every node finished or failed: each script was
    // played to its end.
    let unplayed: usize = scripts
        .iter()
        .enumerate()
        .map(|(n, s)| s.len() - next[n])
        .sum();
    assert_eq!(unplayed, 0);
    assert_eq!(m.emitted(), out.len() as u64);
    out
}

fn want(scripts: &[Vec<Event>]) -> Vec<u128> {
    let all: BTreeSet<u128> = scripts
        .iter()
        .flatten()
        .flat_map(|e| match e {
            Event::Records(ids) => ids.clone(),
            _ => Vec::new(),
        })
        .collect();
    all.into_iter().collect()
}

/// The scripts with every id `x` made `MIRROR - x`: ids descend, and a
/// progress mark covers the ids above it.
const MIRROR: u128 = 1_000;

fn mirror(scripts: &[Vec<Event>]) -> Vec<Vec<Event>> {
    scripts
        .iter()
        .map(|script| {
            script
                .iter()
                .map(|e| match e {
                    Event::Records(ids) => {
                        Event::Records(ids.iter().map(|id| MIRROR - id).collect())
                    }
                    Event::Progress(id) => Event::Progress(MIRROR - id),
                    other => other.clone(),
                })
                .collect()
        })
        .collect()
}

#[test]
fn decided_is_what_every_node_has_covered_and_nothing_buffered() {
    let mut m = NodeMerge::new(2);
    assert_eq!(m.decided(), None, "nothing said yet");
    m.push_records(0, frame(&[3, 8])).unwrap();
    assert_eq!(m.decided(), None, "node 1 said nothing");
    m.progress(1, Ulid(5)).unwrap();
    assert_eq!(m.decided(), Some(Ulid(2)), "3 is buffered");
    assert_eq!(drain(&mut m), [3]);
    assert_eq!(m.decided(), Some(Ulid(5)), "node 1 may still send 6");
    m.finish(1);
    assert_eq!(m.decided(), Some(Ulid(7)), "8 is buffered");
    assert_eq!(drain(&mut m), [8]);
    assert_eq!(m.decided(), Some(Ulid(8)));
    m.finish(0);
    assert_eq!(m.decided(), None, "done");
    // Newest first: covered at or above.
    let mut m = NodeMerge::backward(2);
    m.push_records(0, frame(&[9, 4])).unwrap();
    m.progress(1, Ulid(6)).unwrap();
    assert_eq!(m.decided(), Some(Ulid(10)), "9 is buffered");
    assert_eq!(drain(&mut m), [9]);
    assert_eq!(m.decided(), Some(Ulid(6)));
}

#[test]
fn newest_first_merges_in_descending_order_and_progress_covers_ids_above() {
    let mut m = NodeMerge::backward(2);
    m.push_records(0, frame(&[9, 5, 2])).unwrap();
    assert_eq!(drain(&mut m), [] as [u128; 0]);
    // Node 1 sent every id at or above 6: 9 is safe, 5 is not.
    m.progress(1, Ulid(6)).unwrap();
    assert_eq!(drain(&mut m), [9]);
    m.push_records(1, frame(&[5, 4])).unwrap();
    assert_eq!(drain(&mut m), [5, 4]);
    assert!(matches!(
        m.push_records(1, frame(&[4, 3])),
        Err(GatherError::OutOfOrder { .. })
    ));
    m.finish(1);
    assert_eq!(drain(&mut m), [2]);
    m.finish(0);
    assert!(m.is_done());
    assert_eq!(m.duplicates_dropped(), 1);
}

proptest! {
    #[test]
    fn newest_first_any_interleaving_gives_the_reversed_union_without_copies(
        scripts in proptest::collection::vec(arb_script(), 1..5),
        picks in proptest::collection::vec(any::<usize>(), 1..40),
        by_needs in any::<bool>(),
    ) {
        let got = run_in(&mirror(&scripts), &picks, by_needs, true);
        let want: Vec<u128> = want(&scripts).into_iter().map(|id| MIRROR - id).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn any_interleaving_gives_the_sorted_union_without_copies(
        scripts in proptest::collection::vec(arb_script(), 1..5),
        picks in proptest::collection::vec(any::<usize>(), 1..40),
    ) {
        let got = run(&scripts, &picks, false);
        prop_assert_eq!(got, want(&scripts));
    }

    #[test]
    fn reading_only_what_it_needs_gives_the_same_with_one_frame_a_node(
        scripts in proptest::collection::vec(arb_script(), 1..5),
        picks in proptest::collection::vec(any::<usize>(), 1..40),
    ) {
        let got = run(&scripts, &picks, true);
        prop_assert_eq!(got, want(&scripts));
    }
}
