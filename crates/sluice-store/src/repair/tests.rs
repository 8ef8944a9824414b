use std::{path::Path, sync::Arc};

use proptest::prelude::*;
use sluice_record::Record;
use sluice_storage::{MemFs, WorkerPool, store_segment::SegmentKind};

use super::*;

fn store_state(id: &str, live: bool, accepts: bool) -> StoreState {
    StoreState {
        candidate: Candidate {
            id: id.to_string(),
            api: format!("{id}:80"),
            weight: 1,
        },
        live,
        accepts,
    }
}

fn holding(batch: &str, holders: &[&str]) -> Holding {
    Holding {
        batch: batch.to_string(),
        min: Ulid(1),
        max: Ulid(2),
        holders: holders.iter().map(|h| h.to_string()).collect(),
    }
}

fn always(_: &str) -> bool {
    true
}

fn never(_: &str) -> bool {
    false
}

#[test]
fn a_batch_whose_other_holder_died_long_ago_is_copied_to_a_store_without_it() {
    let stores = [
        store_state("a", true, true),
        store_state("b", true, true),
        store_state("c", true, true),
        store_state("dead", false, false),
    ];
    let holdings = [holding("x.seg", &["a", "dead"])];
    let plan = plan("a", 2, &holdings, &stores, &always);
    assert_eq!(plan.under_replicated, 1);
    assert_eq!(plan.copies.len(), 1);
    let copy = &plan.copies[0];
    assert_eq!(copy.want, 1);
    assert_eq!(copy.live_holders, vec!["a".to_string()]);
    let mut targets: Vec<&str> = copy.ranked.iter().map(|c| c.id.as_str()).collect();
    targets.sort();
    assert_eq!(
        targets,
        ["b", "c"],
        "every live store without it, in rank order"
    );
}

#[test]
fn a_holder_dead_for_less_than_repair_after_is_waited_for() {
    let stores = [
        store_state("a", true, true),
        store_state("b", true, true),
        store_state("dead", false, false),
    ];
    let holdings = [holding("x.seg", &["a", "dead"])];
    let plan = plan("a", 2, &holdings, &stores, &never);
    assert_eq!(plan.under_replicated, 1);
    assert_eq!(plan.waiting, 1);
    assert!(plan.copies.is_empty());
}

#[test]
fn a_batch_on_rf_live_stores_needs_nothing() {
    let stores = [
        store_state("a", true, true),
        store_state("b", true, true),
        store_state("dead", false, false),
    ];
    let holdings = [holding("x.seg", &["a", "b", "dead"])];
    let plan = plan("a", 2, &holdings, &stores, &always);
    assert_eq!(plan, Plan::default());
}

#[test]
fn stores_that_take_no_replicas_are_not_targets() {
    let stores = [
        store_state("a", true, true),
        store_state("full", true, false),
        store_state("c", true, true),
        store_state("dead", false, false),
    ];
    let holdings = [holding("x.seg", &["a", "dead"])];
    let plan = plan("a", 2, &holdings, &stores, &always);
    let targets: Vec<&str> = plan.copies[0]
        .ranked
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(targets, ["c"]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Of the live holders of an under-replicated batch, exactly one plans
    /// the copy when they share a view, and it asks for what is missing.
    #[test]
    fn exactly_one_live_holder_copies(
        batch in "[a-z0-9]{1,12}\\.seg",
        stores_up in 2usize..7,
        holders_up in 1usize..4,
        rf in 2usize..5,
    ) {
        let holders_up = holders_up.min(stores_up);
        prop_assume!(holders_up < rf);
        let mut stores: Vec<StoreState> = (0..stores_up)
            .map(|i| store_state(&format!("s{i}"), true, true))
            .collect();
        stores.push(store_state("gone", false, false));
        let mut holders: Vec<String> = (0..holders_up).map(|i| format!("s{i}")).collect();
        holders.push("gone".into());
        let holding = Holding {
            batch,
            min: Ulid(1),
            max: Ulid(2),
            holders: holders.iter().cloned().collect(),
        };
        let mut actors = 0;
        for me in &holders[..holders_up] {
            let plan = plan(me, rf, [&holding], &stores, &always);
            if let Some(copy) = plan.copies.first() {
                actors += 1;
                prop_assert_eq!(copy.want, rf - holders_up);
                prop_assert!(copy.ranked.iter().all(|c| !holders.contains(&c.id)));
            } else {
                prop_assert_eq!(plan.someone_else, 1);
            }
        }
        prop_assert_eq!(actors, 1);
    }
}

fn write_segment(store: &Store, ids: impl IntoIterator<Item = u128>) {
    let fs = store.fs().clone();
    let mut writer =
        StoreSegmentWriter::create(&*fs, store.dir(), SegmentKind::Blocks, WorkerPool::inline())
            .unwrap();
    for id in ids {
        let payload = format!("record {id}");
        writer
            .push(Record {
                id: Ulid(id),
                flags: 0,
                topic: b"t",
                payload: payload.as_bytes(),
            })
            .unwrap();
    }
    writer.finish().unwrap().unwrap();
}

fn read_all(store: &Store, name: &str) -> Vec<(u128, String)> {
    let path = scratch_dir(store).join(name);
    let mut cursor = store_segment::open_cursor(
        &**store.fs(),
        &path,
        &ScanOptions::new(WorkerPool::inline()),
    )
    .unwrap();
    let mut out = Vec::new();
    while cursor.advance().unwrap() {
        let record = cursor.record();
        out.push((
            record.id.0,
            String::from_utf8(record.payload.to_vec()).unwrap(),
        ));
    }
    out
}

#[test]
fn a_copy_reads_the_range_from_every_segment_that_holds_it_once() {
    let fs: Arc<dyn sluice_storage::Fs> = Arc::new(MemFs::new());
    let store = Store::open(fs, Path::new("/store"), WorkerPool::inline()).unwrap();
    // A compacted segment and two later batches, one overlapping it with a
    // copy of record 15.
    write_segment(&store, 10..20);
    write_segment(&store, [15, 21, 22]);
    write_segment(&store, 30..33);
    let (meta, records) = extract(&store, Ulid(12), Ulid(30)).unwrap().unwrap();
    let got = read_all(&store, &meta.name);
    let want: Vec<(u128, String)> = (12..20)
        .chain([21, 22, 30])
        .map(|id| (id, format!("record {id}")))
        .collect();
    assert_eq!(got, want);
    assert_eq!(records, want.len() as u64);
    assert_eq!((meta.min, meta.max), (Ulid(12), Ulid(30)));
}

#[test]
fn a_range_the_store_no_longer_holds_copies_nothing() {
    let fs: Arc<dyn sluice_storage::Fs> = Arc::new(MemFs::new());
    let store = Store::open(fs, Path::new("/store"), WorkerPool::inline()).unwrap();
    write_segment(&store, 10..20);
    assert!(extract(&store, Ulid(40), Ulid(50)).unwrap().is_none());
    // Overlapping by range but holding no record inside it.
    write_segment(&store, [60, 90]);
    assert!(extract(&store, Ulid(70), Ulid(80)).unwrap().is_none());
}
