//! Compaction on the in-memory filesystem: planning, merging, crashes at
//! every step, a full disk, corruption, and a model-based property test.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::Arc,
};

use proptest::prelude::*;
use sluice_query::{Matcher, Query};
use sluice_storage::{MemFs, SegmentCache, store_segment::list_segments};

use super::*;
use crate::Store;

const DIR: &str = "/store";

fn dir() -> &'static Path {
    Path::new(DIR)
}

/// Two workers shared by the tests, so blocks are built and decoded on
/// other threads, as in a node.
pub(super) fn workers() -> Arc<WorkerPool> {
    static POOL: std::sync::LazyLock<Arc<WorkerPool>> =
        std::sync::LazyLock::new(|| WorkerPool::new(2).expect("start test workers"));
    POOL.clone()
}

fn id(ms: u64, n: u128) -> Ulid {
    Ulid::from_parts(ms, n)
}

/// Write one segment holding `records` (sorted here) in `format`.
fn write(fs: &MemFs, format: SegmentKind, records: &[(Ulid, String)]) -> SegmentMeta {
    let mut sorted = records.to_vec();
    sorted.sort();
    let mut writer = StoreSegmentWriter::create(fs, dir(), format, workers()).unwrap();
    for (id, payload) in &sorted {
        writer
            .push(Record {
                id: *id,
                flags: 0,
                topic: b"app",
                payload: payload.as_bytes(),
            })
            .unwrap();
    }
    writer.finish().unwrap().unwrap()
}

/// Every record the query engine returns for a literal.
fn query(fs: &MemFs, literal: &str, from_ms: u64, to_ms: u64) -> Vec<(Ulid, String)> {
    query_with(
        fs,
        Matcher::new(literal, false, false).unwrap(),
        from_ms,
        to_ms,
    )
}

fn query_with(fs: &MemFs, matcher: Matcher, from_ms: u64, to_ms: u64) -> Vec<(Ulid, String)> {
    let query = Query::between(from_ms, to_ms, matcher);
    let mut got = Vec::new();
    let scan = sluice_query::Scan::new(workers());
    let stats = sluice_query::execute(fs, dir(), &query, &scan, &mut |r: &Record<'_>| {
        got.push((r.id, String::from_utf8(r.payload.to_vec()).unwrap()));
        true
    })
    .unwrap();
    assert!(stats.failed_segments.is_empty(), "{stats:?}");
    got
}

fn all(fs: &MemFs) -> Vec<(Ulid, String)> {
    query(fs, "", 0, u64::MAX / 2)
}

fn candidates(fs: &MemFs) -> Vec<Candidate> {
    list_segments(fs, dir())
        .unwrap()
        .0
        .into_iter()
        .map(|meta| {
            let sizes =
                store_segment::segment_sizes(fs, &dir().join(&meta.name), meta.bytes).unwrap();
            Candidate {
                meta,
                kind: sizes.kind,
                record_bytes: sizes.record_bytes,
                unsorted_blocks: sizes.unsorted_blocks,
            }
        })
        .collect()
}

/// Compact as the maintainer does until there is nothing left to do:
/// merges in id order, then, when there are none, one segment sorted.
/// Returns the passes run.
fn compact_fully(fs: &MemFs, config: &CompactionConfig) -> usize {
    for pass in 0..200 {
        let none = BTreeSet::new();
        let groups = plan(&candidates(fs), &none, config);
        if groups.is_empty() {
            let Some(segment) = plan_upgrade(&candidates(fs), &none) else {
                return pass;
            };
            compact(
                fs,
                dir(),
                &[segment],
                config,
                &none,
                Output::blocks(BlockLayout::Sorted),
                &workers(),
            )
            .unwrap();
        }
        for group in groups {
            compact(
                fs,
                dir(),
                &group,
                config,
                &none,
                Output::blocks(BlockLayout::InOrder),
                &workers(),
            )
            .unwrap();
        }
    }
    panic!("compaction did not settle in 200 passes");
}

/// A merge as the maintainer runs one: blocks in id order, no suspects.
fn merge(fs: &MemFs, inputs: &[SegmentMeta], config: &CompactionConfig) -> Compacted {
    compact(
        fs,
        dir(),
        inputs,
        config,
        &BTreeSet::new(),
        Output::blocks(BlockLayout::InOrder),
        &workers(),
    )
    .unwrap()
}

fn small_config() -> CompactionConfig {
    CompactionConfig {
        target_segment_bytes: 4096,
        max_input_bytes: 1 << 20,
    }
}

/// Three overlapping batch files (one a re-consumed copy) and one later.
fn overlapping_store(fs: &MemFs) -> Vec<(Ulid, String)> {
    fs.create_dir_all(dir()).unwrap();
    // An id always carries the same record, as in a re-consumed segment.
    let records = |from: u64, to: u64| -> Vec<(Ulid, String)> {
        (from..to)
            .map(|i| {
                (
                    id(1000 + i, i as u128),
                    format!("line {i} ERROR={}", i % 7 == 0),
                )
            })
            .collect()
    };
    let a = records(0, 200);
    let b: Vec<_> = records(100, 300).into_iter().step_by(2).collect();
    let c = records(400, 500);
    write(fs, SegmentKind::Batches, &a);
    write(fs, SegmentKind::Batches, &b);
    write(fs, SegmentKind::Batches, &b);
    write(fs, SegmentKind::Blocks, &c);
    let mut model: BTreeMap<Ulid, String> = BTreeMap::new();
    for (id, p) in a.iter().chain(&b).chain(&c) {
        model.entry(*id).or_insert_with(|| p.clone());
    }
    model.into_iter().collect()
}

fn meta(min_ms: u64, max_ms: u64, bytes: u64) -> SegmentMeta {
    let (min, max) = (id(min_ms, 0), id(max_ms, 0));
    SegmentMeta {
        name: format!("{min}-{max}.seg"),
        min,
        max,
        bytes,
    }
}

/// A candidate whose records take four times its bytes on disk if a block file.
fn candidate(min_ms: u64, max_ms: u64, bytes: u64, format: SegmentKind) -> Candidate {
    Candidate {
        meta: meta(min_ms, max_ms, bytes),
        kind: format,
        record_bytes: match format {
            SegmentKind::Batches => bytes,
            SegmentKind::Blocks => bytes * 4,
        },
        unsorted_blocks: 0,
    }
}

#[test]
fn plan_merges_overlaps_and_small_neighbours_and_leaves_settled_segments() {
    use SegmentKind::{Batches, Blocks};
    let config = CompactionConfig {
        target_segment_bytes: 1000,
        max_input_bytes: 10_000,
    };
    let segments = [
        candidate(0, 10, 500, Blocks),   // big, alone: settled
        candidate(20, 30, 50, Blocks),   // small neighbours...
        candidate(31, 40, 50, Blocks),   // ...merged
        candidate(41, 45, 130, Blocks),  // not small: over half the target
        candidate(50, 60, 900, Blocks),  // big
        candidate(55, 70, 900, Blocks),  // overlaps it: merged
        candidate(80, 90, 300, Batches), // fresh batch file alone: rewritten as blocks
        candidate(100, 110, 400, Blocks),
    ];
    let groups = plan(&segments, &BTreeSet::new(), &config);
    let spans: Vec<Vec<u64>> = groups
        .iter()
        .map(|g| g.iter().map(|m| m.min.timestamp_ms()).collect())
        .collect();
    assert_eq!(spans, [vec![20, 31], vec![50, 55], vec![80]]);

    let suspects = BTreeSet::from([segments[6].meta.name.clone()]);
    let groups = plan(&segments, &suspects, &config);
    assert_eq!(
        groups.last().unwrap()[0].name,
        segments[6].meta.name,
        "a suspect is rewritten alone"
    );

    // Small neighbours stop at the input bound; overlaps do not.
    let bounded = CompactionConfig {
        max_input_bytes: 60,
        ..config
    };
    let groups = plan(&segments, &BTreeSet::new(), &bounded);
    let spans: Vec<Vec<u64>> = groups
        .iter()
        .map(|g| g.iter().map(|m| m.min.timestamp_ms()).collect())
        .collect();
    assert_eq!(spans, [vec![50, 55], vec![80]]);
}

#[test]
fn compaction_merges_dedupes_and_splits_into_non_overlapping_block_files() {
    let fs = MemFs::new();
    let model = overlapping_store(&fs);
    assert_eq!(all(&fs), model);
    let passes = compact_fully(&fs, &small_config());
    assert!(passes >= 1);
    assert_eq!(all(&fs), model, "compaction changes no query result");

    let (segments, _) = list_segments(&fs, dir()).unwrap();
    assert!(
        segments.len() > 1,
        "the output was split at the target size"
    );
    for pair in segments.windows(2) {
        assert!(pair[0].max < pair[1].min, "outputs overlap: {pair:?}");
    }
    let mut stored = 0;
    for s in &segments {
        let path = dir().join(&s.name);
        assert_eq!(
            store_segment::segment_kind(&fs, &path).unwrap(),
            SegmentKind::Blocks
        );
        let mut cursor =
            store_segment::open_cursor(&fs, &path, &ScanOptions::new(workers())).unwrap();
        while cursor.advance().unwrap() {
            stored += 1;
        }
    }
    assert_eq!(stored, model.len(), "no duplicate is stored");
    assert_eq!(
        query(&fs, "ERROR=true", 1150, 1450).len(),
        model
            .iter()
            .filter(|(i, p)| (1150..=1450).contains(&i.timestamp_ms()) && p.contains("ERROR=true"))
            .count()
    );
}

/// Runs `step` on a copy of the store made by `setup`, letting `n`
/// filesystem operations succeed for n = 0, 1, ... until `step` completes
/// without a fault; after each fault the machine "loses power", the store
/// is opened again (recovery), and `check` must hold.
fn crash_at_every_step(
    setup: impl Fn(&MemFs),
    step: impl Fn(&MemFs) -> Result<(), StorageError>,
    check: impl Fn(&MemFs, u64),
) -> u64 {
    for n in 0.. {
        let fs = MemFs::new();
        setup(&fs);
        fs.fail_after(Some(n));
        let finished = step(&fs).is_ok();
        fs.fail_after(None);
        fs.crash(Some(n));
        Store::open(Arc::new(fs.clone()), dir(), workers()).unwrap();
        check(&fs, n);
        if finished {
            return n;
        }
        assert!(n < 10_000, "the step never finished");
    }
    unreachable!()
}

#[test]
fn a_crash_at_every_step_of_compaction_loses_no_record_and_shows_no_duplicate() {
    let config = small_config();
    let model = overlapping_store(&MemFs::new());
    let steps = crash_at_every_step(
        |fs| {
            overlapping_store(fs);
        },
        |fs| {
            let groups = plan(&candidates(fs), &BTreeSet::new(), &config);
            for group in groups {
                compact(
                    fs,
                    dir(),
                    &group,
                    &config,
                    &BTreeSet::new(),
                    Output::blocks(BlockLayout::InOrder),
                    &workers(),
                )?;
            }
            Ok(())
        },
        |fs, n| {
            let got = all(fs);
            if got != model {
                let (segments, _) = list_segments(fs, dir()).unwrap();
                panic!(
                    "after a crash at step {n}: {} records, not {}; segments {segments:?}",
                    got.len(),
                    model.len()
                );
            }
            // The next compactions clean up whatever the crash left.
            compact_fully(fs, &config);
            assert_eq!(all(fs), model, "after recovering from step {n}");
            let (segments, _) = list_segments(fs, dir()).unwrap();
            assert!(segments.windows(2).all(|p| p[0].max < p[1].min));
        },
    );
    assert!(steps > 10, "the compaction took {steps} steps");
}

#[test]
fn a_crash_at_every_step_of_a_segment_write_leaves_it_whole_or_absent() {
    let records: Vec<(Ulid, String)> = (0..3000)
        .map(|i| (id(5000 + i, 0), format!("line {i}")))
        .collect();
    for format in [SegmentKind::Batches, SegmentKind::Blocks] {
        crash_at_every_step(
            |fs| fs.create_dir_all(dir()).unwrap(),
            |fs| {
                let mut writer = StoreSegmentWriter::create(fs, dir(), format, workers())?;
                for (id, payload) in &records {
                    writer.push(Record {
                        id: *id,
                        flags: 0,
                        topic: b"app",
                        payload: payload.as_bytes(),
                    })?;
                }
                writer.finish().map(|_| ())
            },
            |fs, n| {
                let got = all(fs);
                assert!(
                    got.is_empty() || got == records,
                    "{format:?}, crash at step {n}: {} records",
                    got.len()
                );
            },
        );
    }
}

#[test]
fn a_crash_at_every_step_of_retention_purges_only_old_segments() {
    use crate::retention::{self, RetentionConfig};
    let setup = |fs: &MemFs| {
        fs.create_dir_all(dir()).unwrap();
        for day in 0..6u64 {
            let records: Vec<_> = (0..50)
                .map(|i| (id(day * 1000 + i, 0), format!("day {day} {i}")))
                .collect();
            write(fs, SegmentKind::Blocks, &records);
        }
    };
    let config = RetentionConfig {
        retain: Some(std::time::Duration::from_millis(2500)),
        max_disk: None,
    };
    let now_ms = 5100;
    let expected: Vec<_> = (3..6u64)
        .flat_map(|day| (0..50).map(move |i| (id(day * 1000 + i, 0), format!("day {day} {i}"))))
        .collect();
    crash_at_every_step(
        setup,
        |fs| {
            let (segments, _) = list_segments(fs, dir())?;
            retention::apply(fs, dir(), &segments, now_ms, &config).map(|_| ())
        },
        |fs, n| {
            let got = all(fs);
            assert!(
                got.ends_with(&expected),
                "crash at step {n}: kept data was purged"
            );
            let (segments, _) = list_segments(fs, dir()).unwrap();
            retention::apply(fs, dir(), &segments, now_ms, &config).unwrap();
            assert_eq!(all(fs), expected);
        },
    );
}

#[test]
fn a_full_disk_fails_compaction_without_changing_anything_and_it_resumes() {
    let fs = MemFs::new();
    let model = overlapping_store(&fs);
    let config = small_config();
    let before = list_segments(&fs, dir()).unwrap().0;
    fs.set_capacity(Some(fs.used_bytes() + 1000));
    let groups = plan(&candidates(&fs), &BTreeSet::new(), &config);
    let err = groups
        .iter()
        .map(|g| {
            compact(
                &fs,
                dir(),
                g,
                &config,
                &BTreeSet::new(),
                Output::blocks(BlockLayout::InOrder),
                &workers(),
            )
        })
        .find_map(Result::err)
        .expect("the disk is too small for the outputs");
    assert!(err.is_disk_full(), "{err}");
    assert!(
        err.to_string().contains("/store"),
        "the error names the store: {err}"
    );
    // The failed group's partial outputs were removed; every input is there.
    let after = list_segments(&fs, dir()).unwrap().0;
    for input in &before {
        if !after.contains(input) {
            // Only a group compacted before the failure may have gone.
            assert!(groups[0].contains(input), "{} vanished", input.name);
        }
    }
    assert_eq!(all(&fs), model);
    fs.set_capacity(None);
    compact_fully(&fs, &config);
    assert_eq!(all(&fs), model);
}

/// Flip one byte in the data frame of block `block` of a block file.
fn corrupt_block(fs: &MemFs, path: &Path, block: usize) {
    let segment = sluice_storage::block_segment::BlockSegment::open(fs, path).unwrap();
    let entry = segment.blocks()[block];
    let mut bytes = fs.read_all(path).unwrap();
    let at = entry.offset as usize + 8 + entry.meta_len as usize + entry.data_len as usize / 2;
    bytes[at] ^= 0x40;
    fs.write_all_synced(path, &bytes);
}

#[test]
fn a_corrupt_block_is_reported_by_queries_and_quarantined_with_the_rest_kept() {
    let fs = MemFs::new();
    fs.create_dir_all(dir()).unwrap();
    // Big enough for three blocks: lines of 55 bytes.
    let lines = sluice_storage::block_segment::TARGET_BLOCK_BYTES as u64 * 5 / 2 / 55;
    let records: Vec<(Ulid, String)> = (0..lines)
        .map(|i| {
            (
                id(10_000 + i, 0),
                format!("record {i:06} {}", "x".repeat(40)),
            )
        })
        .collect();
    let segment = write(&fs, SegmentKind::Blocks, &records);
    let path = dir().join(&segment.name);
    let blocks = sluice_storage::block_segment::BlockSegment::open(&fs, &path)
        .unwrap()
        .blocks()
        .to_vec();
    assert!(blocks.len() >= 3, "{} blocks", blocks.len());
    corrupt_block(&fs, &path, 1);
    let lost = blocks[1].count as usize;

    let query = Query::between(0, u64::MAX / 2, Matcher::All);
    let mut served = 0usize;
    let scan = sluice_query::Scan::new(workers());
    let stats = sluice_query::execute(&fs, dir(), &query, &scan, &mut |_: &Record<'_>| {
        served += 1;
        true
    })
    .unwrap();
    assert_eq!(served, records.len() - lost, "every other block is served");
    assert_eq!(stats.corrupt_blocks, 1);
    assert_eq!(stats.corrupt_segments, std::slice::from_ref(&segment.name));

    // The maintainer salvages it once a query reported it.
    let store = Store::open(Arc::new(fs.clone()), dir(), workers()).unwrap();
    store.report_corrupt(stats.corrupt_segments.iter().map(String::as_str));
    let mut maintainer = crate::Maintainer::new(store, crate::MaintenanceConfig::default());
    let pass = maintainer
        .pass(0, &std::sync::atomic::AtomicBool::new(false))
        .unwrap();
    assert_eq!(pass.compactions.len(), 1);
    assert_eq!(pass.compactions[0].quarantined.len(), 1);
    assert_eq!(pass.compactions[0].corrupt_blocks, 1);
    assert!(
        fs.exists(&dir().join(QUARANTINE).join(&segment.name)),
        "the corrupt file is kept aside, not deleted"
    );
    assert_eq!(all(&fs).len(), records.len() - lost);
    let (segments, strangers) = list_segments(&fs, dir()).unwrap();
    assert_eq!(segments.len(), 1);
    assert!(strangers.is_empty());
}

const QUARANTINE: &str = store_segment::QUARANTINE_DIR;

#[test]
fn a_segment_with_a_corrupt_footer_is_quarantined_whole() {
    let fs = MemFs::new();
    fs.create_dir_all(dir()).unwrap();
    let bad = write(&fs, SegmentKind::Blocks, &[(id(1, 0), "lost".into())]);
    let good = write(&fs, SegmentKind::Batches, &[(id(2, 0), "kept".into())]);
    let path = dir().join(&bad.name);
    let mut bytes = fs.read_all(&path).unwrap();
    let n = bytes.len();
    bytes[n - 12] ^= 1;
    fs.write_all_synced(&path, &bytes);
    let done = merge(&fs, &[bad.clone(), good], &small_config());
    assert_eq!(done.quarantined.len(), 1);
    assert!(fs.exists(&dir().join(QUARANTINE).join(&bad.name)));
    assert_eq!(all(&fs), [(id(2, 0), "kept".to_string())]);
}

#[test]
fn queries_running_while_compaction_removes_their_files_see_every_record() {
    // Without a cache, and with one that already holds the files the
    // compaction is about to remove.
    for cached in [false, true] {
        let fs = MemFs::new();
        let model = overlapping_store(&fs);
        let config = small_config();
        let cache = cached.then(|| {
            // Block files first: only those are cached.
            compact(
                &fs,
                dir(),
                &candidates(&fs)[..1]
                    .iter()
                    .map(|c| c.meta.clone())
                    .collect::<Vec<_>>(),
                &config,
                &BTreeSet::new(),
                Output::blocks(BlockLayout::InOrder),
                &workers(),
            )
            .unwrap();
            let cache = Arc::new(SegmentCache::new());
            assert_eq!(query_cached(&fs, Some(cache.clone())).0, model);
            assert!(!cache.is_empty());
            cache
        });
        // A query plans, then compaction removes every planned file before
        // the query opens them: it plans again and finds the outputs.
        let plans = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let fs2 = fs.clone();
        let interleaved = InterleavedFs {
            inner: fs.clone(),
            on_first_list: Box::new(move || {
                compact_fully(&fs2, &config);
            }),
            lists: plans.clone(),
        };
        let (got, stats) = query_cached(&interleaved, cache);
        assert_eq!(got, model, "cached: {cached}");
        assert!(stats.failed_segments.is_empty(), "{stats:?}");
        assert!(
            plans.load(std::sync::atomic::Ordering::Relaxed) >= 2,
            "the query planned again"
        );
    }
}

fn query_cached(
    fs: &dyn Fs,
    cache: Option<Arc<SegmentCache>>,
) -> (Vec<(Ulid, String)>, sluice_query::QueryStats) {
    let query = Query::between(0, u64::MAX / 2, Matcher::All);
    let mut got = Vec::new();
    let scan = sluice_query::Scan {
        cache,
        ..sluice_query::Scan::new(workers())
    };
    let stats = sluice_query::execute(fs, dir(), &query, &scan, &mut |r: &Record<'_>| {
        got.push((r.id, String::from_utf8(r.payload.to_vec()).unwrap()));
        true
    })
    .unwrap();
    (got, stats)
}

#[test]
fn a_shared_segment_cache_follows_compaction() {
    let fs = MemFs::new();
    let model = overlapping_store(&fs);
    let config = small_config();
    let cache = Arc::new(SegmentCache::new());
    for pass in 0..3 {
        // Each pass rewrites segments (some under new names, some under
        // the names of their inputs); queries keep equal to the model and
        // the cache holds only what is listed.
        compact_fully(
            &fs,
            &CompactionConfig {
                target_segment_bytes: 2048 << pass,
                ..config
            },
        );
        assert_eq!(
            query_cached(&fs, Some(cache.clone())).0,
            model,
            "pass {pass}"
        );
        let listed = list_segments(&fs, dir()).unwrap().0.len();
        assert_eq!(cache.len(), listed, "pass {pass}");
    }
}

/// A filesystem that runs a hook right after the first directory listing.
struct InterleavedFs {
    inner: MemFs,
    on_first_list: Box<dyn Fn() + Send + Sync>,
    lists: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for InterleavedFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InterleavedFs")
    }
}

impl Fs for InterleavedFs {
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn create_new(&self, path: &Path) -> std::io::Result<Box<dyn sluice_storage::WriteFile>> {
        self.inner.create_new(path)
    }
    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn sluice_storage::WriteFile>> {
        self.inner.open_append(path)
    }
    fn open_read(&self, path: &Path) -> std::io::Result<Box<dyn sluice_storage::ReadFile>> {
        self.inner.open_read(path)
    }
    fn map(&self, path: &Path) -> std::io::Result<sluice_storage::Mapped> {
        self.inner.map(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<sluice_storage::DirEntry>> {
        let listed = self.inner.read_dir(path);
        if self
            .lists
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            (self.on_first_list)();
        }
        listed
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.hard_link(from, to)
    }
    fn truncate(&self, path: &Path, len: u64) -> std::io::Result<()> {
        self.inner.truncate(path, len)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
}

const WORDS: [&str; 4] = ["alpha", "beta", "gamma", "ERROR"];

fn payload(ms: u64, n: u8, word: u8) -> String {
    format!("{ms}.{n} {} tail", WORDS[word as usize % WORDS.len()])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Write random segments (overlapping, with duplicates, in either
    /// format), compact some of the way or all of it, and query random
    /// ranges and terms: the results equal a sorted, deduplicated model.
    #[test]
    fn compaction_never_changes_what_a_query_returns(
        batches in proptest::collection::vec(
            (proptest::collection::vec((0u64..400, 0u8..4, 0u8..4), 1..120), any::<bool>()),
            1..7,
        ),
        target in 200u64..6000,
        passes in 0usize..3,
        queries in proptest::collection::vec((0u64..420, 0u64..420, 0u8..7), 1..6),
    ) {
        let fs = MemFs::new();
        fs.create_dir_all(dir()).unwrap();
        let mut model: BTreeMap<Ulid, String> = BTreeMap::new();
        for (batch, blocks) in &batches {
            let ids: BTreeSet<Ulid> = batch.iter().map(|&(ms, n, _)| id(ms, n as u128)).collect();
            // The same id always carries the same payload, as a re-consumed
            // segment does.
            let records: Vec<(Ulid, String)> = ids
                .into_iter()
                .map(|id| {
                    let (ms, n) = (id.timestamp_ms(), (id.0 & 0xff) as u8);
                    let word = (ms as u8).wrapping_add(n) % 4;
                    (id, payload(ms, n, word))
                })
                .collect();
            let format = if *blocks { SegmentKind::Blocks } else { SegmentKind::Batches };
            write(&fs, format, &records);
            model.extend(records);
        }
        let config = CompactionConfig {
            target_segment_bytes: target,
            max_input_bytes: target * 8,
        };
        for _ in 0..passes {
            for group in plan(&candidates(&fs), &BTreeSet::new(), &config) {
                merge(&fs, &group, &config);
            }
        }
        if passes == 2 {
            compact_fully(&fs, &config);
            let (segments, _) = list_segments(&fs, dir()).unwrap();
            prop_assert!(segments.windows(2).all(|p| p[0].max < p[1].min));
        }
        for (a, b, word) in queries {
            let (from, to) = (a.min(b), a.max(b));
            // Words 0..4 are literals; 4 is every record; 5 a regex without
            // a required literal; 6 one whose required literal " ERROR t"
            // prunes blocks and selects records before the regex runs.
            let matcher = match word {
                5 => Matcher::new(r"^[0-9]*[13579]\.[0-9] (beta|ERROR)", true, false).unwrap(),
                6 => Matcher::new(r"[02468]\.[0-9]+ ERROR t[a-z]il$", true, false).unwrap(),
                _ => Matcher::new(WORDS.get(word as usize).copied().unwrap_or(""), false, false).unwrap(),
            };
            let expected: Vec<(Ulid, String)> = model
                .iter()
                .filter(|(id, p)| (from..=to).contains(&id.timestamp_ms()) && matcher.is_match(p.as_bytes()))
                .map(|(id, p)| (*id, p.clone()))
                .collect();
            prop_assert_eq!(query_with(&fs, matcher, from, to), expected);
        }
    }
}

mod blocks;
