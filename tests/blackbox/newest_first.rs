//! Newest first (`sluice query --reverse --limit N`, `/query?direction=backward`):
//! the newest N matches in descending id order, on one node and across a
//! cluster, reading only the blocks that hold them.

use crate::{cluster_checks::*, cluster_harness::*, harness::*};

/// The lines `sluice query --ulid` printed.
fn lines(out: &std::process::Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "query failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The last `n` of `forward`, newest first.
fn newest(forward: &[String], n: usize) -> Vec<String> {
    forward.iter().rev().take(n).cloned().collect()
}

#[test]
fn reverse_gives_the_newest_lines_first_reading_only_the_newest_block() {
    let dir = tempfile::tempdir().unwrap();
    // Outputs of 1 MiB of records: many files of one block each.
    let node = Node::start(
        dir.path(),
        &[
            "--compact-target",
            "1MiB",
            "--maintenance-interval",
            "100ms",
        ],
    );
    let mut input = numbered_lines(60_000, "nf");
    for i in 0..60_000 {
        if i % 1_000 == 17 {
            input.extend_from_slice(format!("rare marker {i}\n").as_bytes());
        }
    }
    send_and_wait_close(&node.fast, &input);
    let total = lines_of(&input).len() as u64;
    node.wait_records(total);
    let store = node.data().join("store");
    wait_for("every store segment to be a block file", || {
        let segments = store_segments(&store);
        (segments.len() >= 4 && segments.iter().all(|p| is_block_file(p))).then_some(())
    });
    wait_for("every block sorted", || {
        (node.metric("sluice_store_unsorted_blocks") == 0.0
            && node.metric("sluice_store_compactions_total{layout=\"sorted\"}") >= 1.0)
            .then_some(())
    });
    let (segments, _, _) = settled_block_files(&store);

    let forward = lines(&node.query(&["--ulid"]));
    assert_eq!(forward.len() as u64, total);
    for n in ["1", "25", "1000"] {
        let got = lines(&node.query(&["--ulid", "--reverse", "--limit", n]));
        assert_eq!(got, newest(&forward, n.parse().unwrap()), "--limit {n}");
    }
    // A literal: the newest matches, wherever they lie.
    let rare = lines(&node.query(&["--ulid", "-q", "rare marker"]));
    assert_eq!(rare.len(), 60);
    let got = lines(&node.query(&["--ulid", "-q", "rare marker", "--reverse", "--limit", "7"]));
    assert_eq!(got, newest(&rare, 7));
    // More than there is: everything, reversed.
    let got = lines(&node.query(&["--ulid", "-q", "rare marker", "--reverse", "--limit", "500"]));
    assert_eq!(got, newest(&rare, 500));

    // The newest 10 lie in the newest block: that is what is read, not
    // the range.
    let whole = node.stats(&[]);
    let ten = node.stats(&["--reverse", "--limit", "10"]);
    assert_eq!(ten["records_matched"], 10, "{ten}");
    let largest = segments
        .iter()
        .filter_map(|p| Some(std::fs::metadata(p).ok()?.len()))
        .max()
        .unwrap();
    let read = |s: &serde_json::Value| s["bytes_read"].as_u64().unwrap();
    assert!(
        read(&ten) <= 2 * largest,
        "the newest 10 read {} bytes; the largest block file is {largest}",
        read(&ten)
    );
    assert!(
        read(&ten) * 3 < read(&whole),
        "the newest 10 read {} bytes, the whole range {}",
        read(&ten),
        read(&whole)
    );

    // Without a limit, it says what to do.
    let out = node.query(&["--reverse"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--reverse needs --limit N"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, body) = http_get(&node.api, "/query?direction=backward").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("pass limit=N"), "{body}");
}

#[test]
fn reverse_across_a_cluster_merges_newest_first_from_every_node() {
    let nodes = start_cluster(&["ingest", "store", "store"], &[]);
    let mut sent = 0u64;
    for round in 0..4 {
        send_lines(&nodes[0], &numbered_lines(2_000, &format!("round{round}")));
        sent += 2_000;
    }
    wait_records_with(&nodes[1], sent, &[]);
    for node in &nodes {
        let forward = lines(&node.query(&["--ulid"]));
        assert_eq!(forward.len() as u64, sent, "{}", node.name());
        for n in ["1", "333", "8000", "9000"] {
            let got = lines(&node.query(&["--ulid", "--reverse", "--limit", n]));
            assert_eq!(
                got,
                newest(&forward, n.parse().unwrap()),
                "--limit {n} on {}",
                node.name()
            );
        }
        let round2 = lines(&node.query(&["--ulid", "-q", "round2 line"]));
        let got =
            lines(&node.query(&["--ulid", "-q", "round2 line", "--reverse", "--limit", "50"]));
        assert_eq!(got, newest(&round2, 50), "{}", node.name());
        let (code, stats) = node.query_stats(&["--reverse", "--limit", "100"]);
        assert_eq!(code, 0, "{stats}");
        assert_eq!(stats["records_matched"], 100, "{stats}");
        assert_eq!(stats["complete"], true, "{stats}");
    }
}
