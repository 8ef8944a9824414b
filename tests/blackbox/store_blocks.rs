//! Block files, as compaction writes them: compressed store segments,
//! queried, pruned and greppable, end to end.

use crate::harness::*;

/// A well-mixed 32-digit hex id, like a tracing system's.
fn trace_id(i: u64) -> String {
    let mix = |mut x: u64| {
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    };
    format!("{:016x}{:016x}", mix(i), mix(i + (1 << 40)))
}

/// A node that compacts to 1 MiB outputs, soon: several files, each of
/// one sorted block. `extra` flags follow.
fn start_compacting_small(dir: &std::path::Path, extra: &[&str]) -> Node {
    let mut args = vec![
        "--compact-target",
        "1MiB",
        "--maintenance-interval",
        "100ms",
    ];
    args.extend_from_slice(extra);
    Node::start(dir, &args)
}

/// Wait until every store segment is a block file and every block sorted.
fn wait_all_sorted(node: &Node) {
    let store = node.data().join("store");
    wait_for(
        "every store segment to be compacted to a block file",
        || {
            let segments = store_segments(&store);
            (!segments.is_empty() && segments.iter().all(|p| is_block_file(p))).then_some(())
        },
    );
    wait_for("every block sorted", || {
        (node.metric("sluice_store_unsorted_blocks") == 0.0
            && node.metric("sluice_store_compactions_total{layout=\"sorted\"}") >= 1.0)
            .then_some(())
    });
}

#[test]
fn block_files_are_queried_pruned_and_greppable_with_zstdcat() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_compacting_small(dir.path(), &[]);
    let mut input = Vec::new();
    for i in 0..50_000 {
        let level = if i % 100 == 7 { "ERROR" } else { "INFO" };
        input.extend_from_slice(
            format!("{level} request {i} trace_id={} done\n", trace_id(i)).as_bytes(),
        );
    }
    send_and_wait_close(&node.fast, &input);
    node.wait_records(50_000);

    // Every store segment becomes a block file, and every block is sorted.
    wait_all_sorted(&node);
    let store = node.data().join("store");
    // A block file is a zstd stream whose text is the lines.
    let (segments, stored, text) = settled_block_files(&store);
    assert!(!segments.is_empty());
    let mut got = lines_of(&text);
    let mut want = lines_of(&input);
    got.sort();
    want.sort();
    assert_eq!(got, want, "zstdcat prints every line once");
    assert!(
        stored < input.len() as u64,
        "stored {stored} bytes for {} of text",
        input.len()
    );

    // Queries: a literal, a rare id, and the stats show pruning.
    let out = node.query(&["-q", "ERROR"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 500);
    let rare = trace_id(31_337);
    let out = node.query(&["-q", &rare]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("INFO request 31337 trace_id={rare} done\n")
    );
    // Every line holds "request": a full scan.
    let all = node.stats(&["-q", "request"]);
    let one = node.stats(&["-q", &rare]);
    let read = |s: &serde_json::Value| s["bytes_read"].as_u64().unwrap();
    assert!(
        read(&one) * 2 < read(&all),
        "a rare id should skip most blocks by their filters: {one} vs {all}"
    );
    // The ERROR lines (1%) sort next to each other in their block, so
    // their frames are few: the rest of the text is not decompressed.
    let errors = node.stats(&["-q", "ERROR"]);
    assert_eq!(errors["records_matched"], 500);
    assert!(
        read(&errors) * 2 < read(&all),
        "a word on 1% of lines should skip most frames: {errors} vs {all}"
    );

    // A regex prunes through its mandatory literal ("trace_id=<id> ").
    let pattern = format!("trace_id={rare} (done|failed)$");
    let out = node.query(&["--regex", "-q", &pattern]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("INFO request 31337 trace_id={rare} done\n")
    );
    let by_regex = node.stats(&["--regex", "-q", &pattern]);
    assert!(
        read(&by_regex) * 2 < read(&all),
        "a regex with a rare mandatory literal should skip blocks too: {by_regex} vs {all}"
    );

    // An alternation prunes to the blocks that may hold one of its ids.
    // (Both near each other, so in one block of several.)
    let other = trace_id(31_400);
    let pattern = format!("trace_id=({rare}|{other}) done");
    let out = node.query(&["--regex", "-q", &pattern]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "INFO request 31337 trace_id={rare} done\nINFO request 31400 trace_id={other} done\n"
        )
    );
    let by_alternation = node.stats(&["--regex", "-q", &pattern]);
    assert!(
        read(&by_alternation) * 2 < read(&all),
        "an alternation of rare ids should skip blocks: {by_alternation} vs {all}"
    );
}

/// Compaction keeps the blocks it writes decoded (`--block-cache`), so the
/// first query after it decompresses nothing. After a restart (nothing
/// kept), a scan that cannot skip blocks keeps them decoded: the same query
/// again is answered from kept blocks, with the same lines, and `/metrics`
/// shows the hits; a query for a rare id keeps the part of the blocks it
/// read (the frames and the records), which answers it again;
/// `--block-cache 0` keeps nothing.
#[test]
fn a_repeated_scan_is_answered_from_kept_blocks() {
    for (cache, keeps) in [("64MiB", true), ("0", false)] {
        let dir = tempfile::tempdir().unwrap();
        let mut node = start_compacting_small(dir.path(), &["--block-cache", cache]);
        let mut input = Vec::new();
        for i in 0..20_000 {
            let word = if i % 100 == 3 { "quota" } else { "fine" };
            // Inside a word that holds digits, which the sort key masks:
            // spread evenly over the frames, so a scan reads most of them.
            input.extend_from_slice(
                format!("INFO request {i} trace_id={} tag=t{i}{word}\n", trace_id(i)).as_bytes(),
            );
        }
        send_and_wait_close(&node.fast, &input);
        node.wait_records(20_000);
        wait_all_sorted(&node);
        let misses = || node.metric("sluice_block_cache_lookups_total{result=\"miss\"}");
        let fresh = node.query(&["-q", "quota"]);
        assert_eq!(String::from_utf8_lossy(&fresh.stdout).lines().count(), 200);
        match keeps {
            true => {
                assert!(node.metric("sluice_block_cache_written_total") > 0.0);
                assert_eq!(misses(), 0.0, "the blocks compaction wrote were kept");
            }
            false => assert_eq!(node.metric("sluice_block_cache_written_total"), 0.0),
        }
        node.stop();
        node.restart();
        // The same query twice: the same lines, and how many lookups of
        // kept blocks the second one hit.
        let hits = || node.metric("sluice_block_cache_lookups_total{result=\"hit\"}");
        let twice = |args: &[&str]| {
            let once = node.query(args);
            assert!(once.status.success());
            let hits_before = hits();
            let again = node.query(args);
            assert_eq!(
                once.stdout, again.stdout,
                "kept blocks answer as decoded ones"
            );
            (
                String::from_utf8_lossy(&again.stdout).lines().count(),
                hits() - hits_before,
            )
        };
        // A rare id reads a frame or two of a block: that part of the
        // block (its frames, ids, topics, flags) is kept, and the same
        // query again decompresses and decodes nothing.
        let rare = trace_id(12_345);
        let (lines, part_hits) = twice(&["-q", &rare]);
        assert_eq!(lines, 1);
        match keeps {
            true => {
                assert!(
                    part_hits > 0.0,
                    "the second query found the part kept ({cache})"
                );
                assert!(node.metric("sluice_block_cache_parts") > 0.0);
            }
            false => assert_eq!(hits(), 0.0, "--block-cache 0"),
        }
        let (lines, scan_hits) = twice(&["-q", "quota"]);
        assert_eq!(lines, 200);
        match keeps {
            true => {
                assert!(
                    scan_hits > 0.0,
                    "the second scan found kept blocks ({cache})"
                );
                assert!(node.metric("sluice_block_cache_bytes") > 0.0);
            }
            false => assert_eq!(
                node.metric("sluice_block_cache_bytes"),
                0.0,
                "--block-cache 0"
            ),
        }
    }
}
