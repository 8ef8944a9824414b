//! Compaction and blocks: copied whole, cut into outputs, left behind when
//! corrupt, and sorted when nothing is left to merge.

use super::*;

/// Records at millisecond `ms` whose payloads fill `blocks` blocks.
fn block_filling_records(ms: u64, blocks: usize) -> Vec<(Ulid, String)> {
    let per_block = sluice_storage::block_segment::TARGET_BLOCK_BYTES / 1000;
    (0..blocks * per_block)
        .map(|n| {
            let payload = format!("ms={ms} n={n:06} {}", "x".repeat(980));
            (id(ms, n as u128), payload)
        })
        .collect()
}

fn blocks_of(fs: &MemFs, meta: &SegmentMeta) -> Vec<sluice_storage::block_segment::BlockEntry> {
    BlockSegment::open(fs, &dir().join(&meta.name))
        .unwrap()
        .blocks()
        .to_vec()
}

#[test]
fn the_blocks_of_disjoint_block_file_neighbours_are_copied_whole() {
    let fs = MemFs::new();
    let a = write(&fs, SegmentKind::Blocks, &block_filling_records(1, 2));
    let b = write(&fs, SegmentKind::Batches, &[(id(2, 0), "between".into())]);
    let c = write(&fs, SegmentKind::Blocks, &block_filling_records(3, 1));
    let copied = blocks_of(&fs, &a).len() + blocks_of(&fs, &c).len();
    let model = all(&fs);
    let config = CompactionConfig {
        target_segment_bytes: 1 << 30,
        max_input_bytes: 1 << 30,
    };
    let done = merge(&fs, &[a, b, c], &config);
    assert_eq!(done.copied_blocks, copied as u64);
    assert_eq!(done.outputs.len(), 1);
    assert_eq!(done.records, model.len() as u64);
    assert_eq!(all(&fs), model);
    // The copied blocks' filters still find their records.
    assert_eq!(query(&fs, "ms=3 n=000007 ", 0, u64::MAX / 2).len(), 1);
    assert_eq!(query(&fs, "between", 0, u64::MAX / 2).len(), 1);
}

#[test]
fn copied_blocks_are_cut_into_outputs_of_the_target_size() {
    let fs = MemFs::new();
    let a = write(&fs, SegmentKind::Blocks, &block_filling_records(1, 3));
    let b = write(&fs, SegmentKind::Blocks, &block_filling_records(2, 3));
    let model = all(&fs);
    // Two blocks' worth.
    let config = CompactionConfig {
        target_segment_bytes: 2 * sluice_storage::block_segment::TARGET_BLOCK_BYTES as u64,
        max_input_bytes: 1 << 30,
    };
    let done = merge(&fs, &[a, b], &config);
    assert_eq!(done.copied_blocks, 6);
    assert_eq!(done.outputs.len(), 3, "{:?}", done.outputs);
    for pair in done.outputs.windows(2) {
        assert!(pair[0].max < pair[1].min, "outputs must not overlap");
    }
    assert_eq!(all(&fs), model);
}

#[test]
fn a_corrupt_block_of_a_copied_input_is_left_behind_and_the_input_quarantined() {
    let fs = MemFs::new();
    let records = block_filling_records(1, 3);
    let a = write(&fs, SegmentKind::Blocks, &records);
    let b = write(&fs, SegmentKind::Batches, &[(id(2, 0), "kept".into())]);
    let blocks = blocks_of(&fs, &a);
    assert!(blocks.len() >= 3);
    corrupt_block(&fs, &dir().join(&a.name), 1);
    let done = merge(&fs, &[a.clone(), b], &small_config());
    assert_eq!(done.corrupt_blocks, 1);
    assert_eq!(done.copied_blocks, blocks.len() as u64 - 1);
    assert_eq!(done.quarantined.len(), 1);
    assert!(fs.exists(&dir().join(QUARANTINE).join(&a.name)));
    assert_eq!(
        all(&fs).len(),
        records.len() - blocks[1].count as usize + 1,
        "every record but the corrupt block's"
    );
}

#[test]
fn the_blocks_of_a_suspect_input_are_decoded_not_copied() {
    let fs = MemFs::new();
    let a = write(&fs, SegmentKind::Blocks, &block_filling_records(1, 1));
    let c = write(&fs, SegmentKind::Blocks, &block_filling_records(3, 1));
    let model = all(&fs);
    let suspects = BTreeSet::from([a.name.clone()]);
    let done = compact(
        &fs,
        dir(),
        &[a, c],
        &small_config(),
        &suspects,
        Output::blocks(BlockLayout::InOrder),
        &workers(),
    )
    .unwrap();
    assert_eq!(done.copied_blocks, 1, "only the trusted input's block");
    assert_eq!(all(&fs), model);
}

/// Whether every block of segment `meta` is sorted, and how many are.
fn sorted_blocks(fs: &MemFs, meta: &SegmentMeta) -> (bool, usize) {
    let segment = BlockSegment::open(fs, &dir().join(&meta.name)).unwrap();
    let sorted = (0..segment.blocks().len())
        .filter(|&i| segment.block_is_sorted(i))
        .count();
    (sorted == segment.blocks().len(), sorted)
}

#[test]
fn plan_upgrade_picks_the_oldest_segment_with_unsorted_blocks() {
    use SegmentKind::{Batches, Blocks};
    let mut segments = vec![
        candidate(0, 9, 100, Blocks),
        candidate(10, 19, 100, Blocks),
        candidate(20, 29, 100, Blocks),
        candidate(30, 39, 100, Batches),
    ];
    assert_eq!(
        plan_upgrade(&segments, &BTreeSet::new()),
        None,
        "all sorted; a batch file is merged, not upgraded"
    );
    segments[1].unsorted_blocks = 2;
    segments[2].unsorted_blocks = 1;
    assert_eq!(
        plan_upgrade(&segments, &BTreeSet::new()),
        Some(segments[1].meta.clone())
    );
    let suspects = BTreeSet::from([segments[1].meta.name.clone()]);
    assert_eq!(
        plan_upgrade(&segments, &suspects),
        Some(segments[2].meta.clone())
    );
}

/// A merge writes blocks in id order and copies sorted ones whole; the
/// upgrade then sorts the blocks in id order and copies the sorted ones.
#[test]
fn merges_write_blocks_in_id_order_and_the_upgrade_sorts_only_those() {
    let fs = MemFs::new();
    let a = write(&fs, SegmentKind::Blocks, &block_filling_records(1, 2));
    let b = write(&fs, SegmentKind::Batches, &block_filling_records(2, 1));
    assert_eq!(sorted_blocks(&fs, &a), (true, 2));
    let model = all(&fs);
    let config = CompactionConfig {
        target_segment_bytes: 1 << 30,
        max_input_bytes: 1 << 30,
    };
    let merged = merge(&fs, &[a, b], &config);
    assert_eq!(merged.copied_blocks, 2, "the sorted blocks went whole");
    assert_eq!(merged.outputs.len(), 1);
    let output = merged.outputs[0].clone();
    let (all_sorted, sorted) = sorted_blocks(&fs, &output);
    assert!(
        !all_sorted && sorted == 2,
        "the batch file's records were written in id order"
    );
    assert_eq!(all(&fs), model);

    let upgrade = plan_upgrade(&candidates(&fs), &BTreeSet::new()).expect("a segment to sort");
    assert_eq!(upgrade, output);
    let sorted_now = compact(
        &fs,
        dir(),
        &[upgrade],
        &config,
        &BTreeSet::new(),
        Output::blocks(BlockLayout::Sorted),
        &workers(),
    )
    .unwrap();
    assert_eq!(
        sorted_now.copied_blocks, 2,
        "blocks already sorted are copied"
    );
    assert_eq!(sorted_now.records, model.len() as u64);
    assert!(sorted_blocks(&fs, &sorted_now.outputs[0]).0);
    assert_eq!(all(&fs), model);
    assert_eq!(plan_upgrade(&candidates(&fs), &BTreeSet::new()), None);
    // A word on a few lines is still found, through the sorted frames.
    assert_eq!(query(&fs, "ms=2 n=000007 ", 0, u64::MAX / 2).len(), 1);
}

/// The maintainer merges first and sorts only when there is nothing to
/// merge.
#[test]
fn the_maintainer_sorts_segments_only_when_nothing_is_left_to_merge() {
    let fs = MemFs::new();
    fs.create_dir_all(dir()).unwrap();
    let model: Vec<(Ulid, String)> = (0..3)
        .flat_map(|ms| {
            let records = block_filling_records(ms, 1);
            write(&fs, SegmentKind::Batches, &records);
            records
        })
        .collect();
    let store = Store::open(Arc::new(fs.clone()), dir(), workers()).unwrap();
    let mut maintainer = crate::Maintainer::new(store, crate::MaintenanceConfig::default());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let first = maintainer.pass(0, &stop).unwrap();
    assert_eq!(first.compactions.len(), 1);
    assert_eq!(first.compactions[0].layout, BlockLayout::InOrder);
    let second = maintainer.pass(0, &stop).unwrap();
    assert_eq!(second.compactions.len(), 1);
    assert_eq!(second.compactions[0].layout, BlockLayout::Sorted);
    assert!(
        maintainer.pass(0, &stop).unwrap().compactions.is_empty(),
        "settled"
    );
    let segments = list_segments(&fs, dir()).unwrap().0;
    assert!(segments.iter().all(|s| sorted_blocks(&fs, s).0));
    let mut model = model;
    model.sort();
    assert_eq!(all(&fs), model);
}

/// A compaction given the block cache of the store's queries keeps every
/// block it builds there, in either layout: the next query decompresses
/// none, and answers as the files do.
#[test]
fn compaction_keeps_the_blocks_it_writes_for_the_next_query() {
    for layout in [BlockLayout::InOrder, BlockLayout::Sorted] {
        let fs = MemFs::new();
        let a = write(&fs, SegmentKind::Batches, &block_filling_records(1, 2));
        let b = write(&fs, SegmentKind::Batches, &block_filling_records(2, 1));
        let model = all(&fs);
        let cache = Arc::new(SegmentCache::with_block_cache(1 << 30));
        let blocks = cache.block_cache().unwrap().clone();
        let output = Output {
            layout,
            keep: Some(blocks.clone()),
        };
        let done = compact(
            &fs,
            dir(),
            &[a, b],
            &CompactionConfig {
                target_segment_bytes: 1 << 30,
                max_input_bytes: 1 << 30,
            },
            &BTreeSet::new(),
            output,
            &workers(),
        )
        .unwrap();
        let written: usize = done.outputs.iter().map(|m| blocks_of(&fs, m).len()).sum();
        assert!(written > 2, "{layout:?}: several blocks");
        assert_eq!(blocks.stats().written, written as u64, "{layout:?}");
        let scan = sluice_query::Scan {
            cache: Some(cache.clone()),
            ..sluice_query::Scan::new(workers())
        };
        let query = Query::between(
            0,
            u64::MAX / 2,
            Matcher::new("n=00000", false, false).unwrap(),
        );
        let mut got = Vec::new();
        sluice_query::execute(&fs, dir(), &query, &scan, &mut |r: &Record<'_>| {
            got.push((r.id, String::from_utf8(r.payload.to_vec()).unwrap()));
            true
        })
        .unwrap();
        let want: Vec<_> = model
            .iter()
            .filter(|(_, p)| p.contains("n=00000"))
            .cloned()
            .collect();
        assert_eq!(got, want, "{layout:?}");
        let stats = blocks.stats();
        assert_eq!(stats.misses, 0, "{layout:?}: nothing decompressed");
        assert!(stats.hits > 0, "{layout:?}");
    }
}
