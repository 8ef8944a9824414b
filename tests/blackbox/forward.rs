//! `sluice forward` over the acknowledged batch protocol.

use std::{collections::BTreeMap, io::Write};

use crate::harness::*;

#[test]
fn acked_forwarding_delivers_every_line_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let input = numbered_lines(100_000, "acked");
    let forwarder = Forwarder::stdin(&[&format!("sluice://{}", node.batch)], &["--topic", "web"]);
    let counts = forwarder.feed(input.clone(), || {});
    assert_eq!(counts["read"], 100_000);
    assert_eq!(counts["acked"], 100_000);
    node.wait_records(100_000);
    assert_eq!(node.all_payloads(), lines_of(&input));
    assert_eq!(node.stats(&["--topic", "web"])["records_matched"], 100_000);
}

#[test]
fn kill_9_of_the_ingeststore_while_forwarding_with_fsync_loses_nothing_and_shows_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &[]);
    let input = numbered_lines(1_000_000, "kill");
    let forwarder = Forwarder::stdin(
        &[&format!("sluice://{}", node.batch)],
        &["--guarantee", "fsync"],
    );
    let counts = forwarder.feed(input.clone(), || {
        // Kill at points spread over the stream (a fixed-seed sequence):
        // once this run of the node has taken 20,000 to 120,000 records.
        let mut seed = 0x5eed_u64;
        for _ in 0..4 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = 20_000 + (seed >> 33) % 100_000;
            wait_for("the node to take records before its kill", || {
                (node.metric("sluice_ingest_records_total") >= at as f64).then_some(())
            });
            node.kill9();
            node.restart();
        }
    });
    assert_eq!(counts["acked"], 1_000_000);
    // The kills cut batches off in flight: the forwarder sent them again.
    assert!(
        counts["resent"].as_u64().unwrap() > 0,
        "nothing was re-sent: {counts}"
    );
    node.wait_records(1_000_000);
    assert_eq!(
        node.all_payloads(),
        lines_of(&input),
        "every line exactly once, in order"
    );
}

#[test]
fn failover_to_a_second_ingester_when_the_first_is_killed_loses_nothing() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let mut a = Node::start(dir_a.path(), &[]);
    let b = Node::start(dir_b.path(), &[]);
    let input = numbered_lines(300_000, "failover");
    let mut forwarder = Forwarder::stdin(
        &[
            &format!("sluice://{}", a.batch),
            &format!("sluice://{}", b.batch),
        ],
        &["--guarantee", "fsync", "--mode", "failover"],
    );
    // Half the stream reaches the first ingester, which then dies; the
    // rest (and whatever it had not acknowledged) must go to the second.
    let mut stdin = forwarder.take_stdin();
    let half = input[..input.len() / 2]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    stdin.write_all(&input[..half]).unwrap();
    stdin.flush().unwrap();
    wait_for("the first ingester to receive data", || {
        (a.stats(&[])["records_matched"].as_u64().unwrap() > 0).then_some(())
    });
    a.kill9();
    stdin.write_all(&input[half..]).unwrap();
    drop(stdin);
    let exited = forwarder.wait();
    assert!(
        exited.status.success(),
        "forwarder failed: {}",
        exited.stderr
    );
    assert_eq!(exited.counts()["acked"], 300_000);
    a.restart();
    // Across both stores, deduplicated by id as a cluster query would.
    let mut by_id = BTreeMap::new();
    for node in [&a, &b] {
        wait_for("both stores to settle", || {
            let (flushed, pending) = (
                node.metric("sluice_ingest_segments_flushed"),
                node.metric("sluice_ingest_segments_pending"),
            );
            (flushed == 0.0 && pending == 0.0).then_some(())
        });
        for line in node
            .query(&["--ulid"])
            .stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            let (id, payload) = line.split_at(26);
            by_id.insert(id.to_vec(), payload[1..].to_vec());
        }
    }
    let got: Vec<Vec<u8>> = by_id.into_values().collect();
    assert_eq!(got, lines_of(&input));
    assert!(
        b.stats(&[])["records_matched"].as_u64().unwrap() > 0,
        "the second ingester took over"
    );
}

#[test]
fn a_slow_destination_loses_nothing_in_block_mode_and_the_counts_balance_when_dropping() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    // About 1.6 MB/s: far slower than the input.
    let proxy = throttling_proxy(node.batch.clone(), 16 << 10);
    let destination = format!("sluice://{proxy}");
    let small_queue = ["--queue-max", "128KiB", "--batch-size", "32KiB"];
    let mut total = 0u64;
    for (mode, lines) in [
        ("block", 30_000),
        ("drop-newest", 60_000),
        ("drop-oldest", 60_000),
    ] {
        let input = numbered_lines(lines, mode);
        let mut args = vec!["--on-full", mode];
        args.extend(small_queue);
        let mut forwarder = Forwarder::stdin(&[&destination], &args);
        let mut stdin = forwarder.take_stdin();
        let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
        writer.join().unwrap();
        let exited = forwarder.wait();
        let counts = exited.counts();
        let (read, acked) = (
            counts["read"].as_u64().unwrap(),
            counts["acked"].as_u64().unwrap(),
        );
        let dropped = counts["dropped_queue_full"].as_u64().unwrap()
            + counts["dropped_rejected"].as_u64().unwrap();
        assert_eq!(read, lines as u64, "{mode}");
        assert_eq!(
            read,
            acked + dropped,
            "{mode}: read = acked + dropped once drained"
        );
        assert_eq!(counts["in_flight"], 0);
        assert_eq!(counts["queued"], 0);
        if mode == "block" {
            assert_eq!(dropped, 0, "block never drops");
            assert!(exited.status.success());
        } else {
            assert!(dropped > 0, "{mode}: the queue overflowed");
            assert!(
                !exited.status.success(),
                "{mode}: not everything was acknowledged"
            );
        }
        total += acked;
        node.wait_records(total);
    }
}

#[test]
fn the_forwarder_reports_on_sigusr1_and_serves_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let mut forwarder = Forwarder::stdin(&[&format!("sluice://{}", node.batch)], &[]);
    let mut stdin = forwarder.take_stdin();
    stdin.write_all(&numbered_lines(1000, "usr1")).unwrap();
    stdin.flush().unwrap();
    wait_for("the forwarder's metrics to show every ack", || {
        let (_, body) = http_get(&forwarder.api, "/metrics")?;
        body.lines()
            .any(|l| l == "sluice_forward_records_acked_total 1000")
            .then_some(())
    });
    forwarder.signal("USR1");
    drop(stdin);
    let exited = forwarder.wait();
    assert!(
        exited.status.success(),
        "SIGUSR1 does not stop the forwarder"
    );
    let reports = &exited.reports;
    assert_eq!(
        reports.len(),
        2,
        "one report on SIGUSR1, one at exit: {}",
        exited.stderr
    );
    assert_eq!(reports[0]["read"], 1000);
    assert_eq!(reports[0]["acked"], 1000);
    assert!(reports[0]["sent"].as_u64().unwrap() >= 1000);
    for field in [
        "spooled",
        "replayed",
        "dropped_queue_full",
        "dropped_spool_full",
        "in_flight",
    ] {
        assert!(reports[0][field].is_u64(), "{field} is reported");
    }
}

/// A plain-lines forwarder has no acks or queue to count: it refuses
/// `--api` with a reason rather than ignore it, and `--json` reports what
/// it read and sent.
#[test]
fn a_tcp_forwarder_refuses_api_and_reports_its_lines_as_json() {
    let out = std::process::Command::new(&*BIN)
        .args(["forward", "tcp://127.0.0.1:9", "--api", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--api") && stderr.contains("tcp://"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let forwarder = Forwarder::stdin(&[&format!("tcp://{}", node.fast)], &[]);
    let stats = forwarder.feed(numbered_lines(100, "json"), || {});
    assert_eq!(stats["lines_read"], 100, "{stats}");
    node.wait_records(100);
}
