//! Store maintenance through the real binary: compaction into block files,
//! retention by age and by size, and quarantine of a corrupt segment.

use std::path::Path;

use crate::harness::{store_segments as segments, *};

/// The `<min>-<max>` range of a segment's name.
fn range(path: &Path) -> (String, String) {
    let name = path.file_name().unwrap().to_str().unwrap();
    let (min, rest) = name.split_once('-').unwrap();
    (min.to_string(), rest[..26].to_string())
}

fn lines(n: usize) -> Vec<u8> {
    let mut input = Vec::new();
    for i in 0..n {
        let level = if i % 100 == 3 { "ERROR" } else { "INFO" };
        input.extend_from_slice(
            format!(
                "{level} compaction test line {i:06} user=u{} ok\n",
                i * 7 % 1000
            )
            .as_bytes(),
        );
    }
    input
}

#[test]
fn compaction_rewrites_fresh_segments_as_non_overlapping_greppable_block_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(
        dir.path(),
        &[
            "--compact-target",
            "512KiB",
            "--maintenance-interval",
            "100ms",
            "--segment-size",
            "256KiB",
        ],
    );
    let input = lines(40_000);
    // Two connections at once: their ingest segments overlap in time.
    let half = input.len() / 2;
    let cut = half + input[half..].iter().position(|&b| b == b'\n').unwrap() + 1;
    std::thread::scope(|s| {
        s.spawn(|| send_and_wait_close(&node.fast, &input[..cut]));
        s.spawn(|| send_and_wait_close(&node.fast, &input[cut..]));
    });
    node.wait_records(40_000);

    let store = node.data().join("store");
    wait_for(
        "every store segment to be compacted to a block file",
        || {
            let segments = segments(&store);
            (segments.len() > 1 && segments.iter().all(|p| is_block_file(p))).then_some(())
        },
    );
    assert_eq!(node.all_payloads().len(), 40_000);
    let out = node.query(&["-q", "ERROR"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 400);
    assert!(node.metric("sluice_store_compactions_total") >= 1.0);
    assert!(node.log().contains("compacted segments"));
    // Merges wrote blocks in id order; once nothing is left to merge, the
    // maintainer sorts them.
    wait_for("every block sorted", || {
        (node.metric("sluice_store_unsorted_blocks") == 0.0
            && node.metric("sluice_store_compactions_total{layout=\"sorted\"}") >= 1.0)
            .then_some(())
    });
    assert_eq!(node.all_payloads().len(), 40_000);

    // Compaction may still be merging small block file neighbours (files come and
    // go); a stopped node finishes the merge under way and leaves the
    // directory still.
    node.stop();
    let settled = segments(&store);
    assert!(settled.iter().all(|p| is_block_file(p)), "{settled:?}");
    for pair in settled.windows(2) {
        assert!(
            range(&pair[0]).1 < range(&pair[1]).0,
            "segments overlap: {pair:?}"
        );
    }
    let mut text = Vec::new();
    for segment in &settled {
        text.extend_from_slice(&zstdcat(segment));
    }
    let mut got = lines_of(&text);
    let mut want = lines_of(&input);
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len(), "every line is stored once");
    assert_eq!(got, want);
}

#[test]
fn retention_purges_by_age_and_by_size_and_reports_it() {
    // By age: everything is older than 1 s soon after it arrives.
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        dir.path(),
        &["--retain", "1s", "--maintenance-interval", "100ms"],
    );
    send_and_wait_close(&node.fast, &lines(1000));
    // Queries read the ingest side too: wait until the store holds it all.
    node.wait_ingest_drained();
    wait_for("the segments to be purged by age", || {
        (node.metric("sluice_store_purged_segments_total{reason=\"age\"}") >= 1.0
            && segments(&node.data().join("store")).is_empty())
        .then_some(())
    });
    assert_eq!(node.stats(&[])["records_matched"], 0);
    assert!(node.log().contains("retention purged a segment"));
    drop(node);

    // By size: the oldest segments go until the rest fits.
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        dir.path(),
        &[
            "--max-disk",
            "300KiB",
            "--no-compact",
            "--segment-size",
            "64KiB",
            "--maintenance-interval",
            "100ms",
        ],
    );
    // In ten rounds, each taken by the store before the next: a store
    // segment then holds one round at most (about 60 KiB), however slowly
    // the store consumes on a busy machine. One gather of everything would
    // be a single segment over the limit, purged whole with the newest line.
    let input = lines(20_000);
    for round in lines_of(&input).chunks(2_000) {
        let round: Vec<u8> = round
            .iter()
            .flat_map(|line| [&line[..], b"\n"].concat())
            .collect();
        send_and_wait_close(&node.fast, &round);
        node.wait_ingest_drained();
    }
    let store = node.data().join("store");
    let last_line = "compaction test line 019999";
    let kept = wait_for(
        "the store to shrink under --max-disk with the newest data kept",
        || {
            let segments = segments(&store);
            let bytes: u64 = segments
                .iter()
                .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                .sum();
            let newest = node.query(&["-q", last_line]).stdout;
            (node.metric("sluice_store_purged_segments_total{reason=\"disk\"}") >= 1.0
                && bytes <= 300 << 10
                && !newest.is_empty())
            .then_some(bytes)
        },
    );
    assert!(kept > 0);
    assert!(node.log().contains("retention purged a segment"));
    assert!(node.log().contains("reason=\"disk\""));
    let payloads = node.all_payloads();
    assert!(payloads.len() < 20_000, "the oldest records were purged");
}

#[test]
fn a_corrupt_segment_is_reported_by_queries_and_quarantined_keeping_its_good_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["--maintenance-interval", "100ms"]);
    // About 13 MiB: two blocks (a block closes at 8 MiB of text).
    let input = lines(300_000);
    send_and_wait_close(&node.fast, &input);
    node.wait_records(300_000);
    let store = node.data().join("store");
    // Settled: one block file, its blocks sorted, nothing left to do.
    let segment = wait_for("a compacted and sorted block file", || {
        let segments = segments(&store);
        (segments.len() == 1
            && is_block_file(&segments[0])
            && node.metric("sluice_store_unsorted_blocks") == 0.0)
            .then(|| segments[0].clone())
    });
    // Flip a byte in the middle of the file: inside one block's data.
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&segment, &bytes).unwrap();

    let stats = node.stats(&[]);
    assert_eq!(
        stats["corrupt_segments"][0],
        segment.file_name().unwrap().to_str().unwrap()
    );
    assert!(stats["corrupt_blocks"].as_u64().unwrap() >= 1, "{stats}");
    let served = stats["records_matched"].as_u64().unwrap();
    assert!(
        served > 0 && served < 300_000,
        "the other blocks are served: {stats}"
    );

    let aside = store.join("quarantine").join(segment.file_name().unwrap());
    wait_for("the corrupt segment to be quarantined", || {
        aside.exists().then_some(())
    });
    let stats = node.stats(&[]);
    assert_eq!(
        stats["records_matched"].as_u64().unwrap(),
        served,
        "the readable records were kept"
    );
    assert_eq!(stats["corrupt_blocks"], 0, "{stats}");
    assert!(node.metric("sluice_store_quarantined_segments_total") >= 1.0);
}

/// A block file of a version this build does not read is refused by name:
/// a query reports it as corrupt, with the version in the reason, never as
/// an empty segment.
#[test]
fn a_block_file_of_another_version_is_reported_as_corrupt_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &["--maintenance-interval", "100ms"]);
    send_and_wait_close(&node.fast, &lines(20_000));
    node.wait_records(20_000);
    let store = node.data().join("store");
    let segment = wait_for("one compacted and sorted block file", || {
        let segments = segments(&store);
        (segments.len() == 1
            && is_block_file(&segments[0])
            && node.metric("sluice_store_unsorted_blocks") == 0.0)
            .then(|| segments[0].clone())
    });
    node.stop();
    // The header's version bytes: "SLUICE" then major and minor.
    let mut bytes = std::fs::read(&segment).unwrap();
    assert_eq!(&bytes[8..16], b"SLUICE\x02\x05");
    bytes[14..16].copy_from_slice(&[2, 9]);
    std::fs::write(&segment, &bytes).unwrap();
    // Without compaction, which would quarantine it: the query alone.
    node.extra_args.push("--no-compact".into());
    node.restart();

    let stats = node.stats(&[]);
    let name = segment.file_name().unwrap().to_str().unwrap();
    assert_eq!(stats["corrupt_segments"][0], name, "{stats}");
    let reason = stats["failed_segments"][0].as_str().unwrap();
    assert!(
        reason.contains(name) && reason.contains("format 2.9") && reason.contains("2.5"),
        "{stats}"
    );
    assert_eq!(stats["records_matched"], 0, "{stats}");
    assert!(segment.exists(), "the file is kept");
}
