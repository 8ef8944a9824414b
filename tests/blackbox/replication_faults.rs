//! Replication (RF 2) under a store crash: whichever store dies and
//! whenever, every line acked `replicated` is kept, on two stores, and
//! shows once.

use std::{
    io::Write,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{
    cluster_harness::*,
    harness::*,
    replication::{assert_each_once, assert_on_two_stores, joined, lines, send_replicated},
};

/// Lines the node at `node` holds itself, read with `sluice query --local`.
fn local_lines(node: &ClusterNode) -> Vec<String> {
    let out = node.query(&["--local"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "sluice query --local on {}: {}",
        node.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_store_killed_at_a_random_moment_while_forwarders_send_loses_no_acked_line() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // Mixed, since clock nanoseconds have coarse low bits.
    let mixed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17;
    let victim = 2 + (mixed % 3) as usize;
    let nodes = start_cluster(
        &["ingest", "ingest", "store", "store", "store"],
        &["--replication-factor", "2"],
    );
    let to_a = lines("crash-a", 40_000);
    let to_b = lines("crash-b", 40_000);
    // Each forwarder's stdin gets its lines in 40 slices, 25 ms apart
    // (about a second), and the store dies at a random moment of that
    // second: while both still send.
    let kill_after = Duration::from_millis((mixed / 3) % 900);
    eprintln!("seed {seed}: killing store {victim} after {kill_after:?}");
    let forward = |ingester: &ClusterNode| {
        Forwarder::stdin(
            &[&format!("sluice://{}", ingester.batch())],
            &["--guarantee", "replicated"],
        )
    };
    let (mut fa, mut fb) = (forward(&nodes[0]), forward(&nodes[1]));
    let (stdin_a, stdin_b) = (fa.take_stdin(), fb.take_stdin());
    let trickle = |mut stdin: std::process::ChildStdin, lines: &[String]| {
        for slice in lines.chunks(lines.len() / 40) {
            stdin.write_all(&joined(slice)).unwrap();
            stdin.flush().unwrap();
            std::thread::sleep(Duration::from_millis(25));
        }
    };
    std::thread::scope(|scope| {
        scope.spawn(|| trickle(stdin_a, &to_a));
        scope.spawn(|| trickle(stdin_b, &to_b));
        std::thread::sleep(kill_after);
        nodes[victim].kill9();
    });
    for (forwarder, sent) in [(fa, &to_a), (fb, &to_b)] {
        let (status, counts) = forwarder.exited();
        assert!(status.success(), "seed {seed}: {counts}");
        assert_eq!(
            counts["acked"].as_u64(),
            Some(sent.len() as u64),
            "seed {seed}: {counts}"
        );
    }
    let sent: Vec<String> = to_a.iter().chain(&to_b).cloned().collect();

    // With one store of three down and RF 2, every acked line still has a
    // live copy: the query is complete though it names the dead store.
    let live = &nodes[if victim == 2 { 3 } else { 2 }];
    live.wait_node_live(&nodes[victim].id(), false);
    let (code, stats) = live.query_stats(&[]);
    assert_eq!(stats["complete"], true, "seed {seed}: {stats}");
    assert_eq!(code, 0, "seed {seed}: {stats}");
    assert_each_once(live, &sent);

    // Back up, each store alone: every acked line on at least two.
    nodes[victim].restart();
    let stores: Vec<&ClusterNode> = nodes[2..].iter().collect();
    assert_on_two_stores(&stores, &sent, &format!("seed {seed}"));
    // The CLI's per-node view agrees with the API's.
    let held: usize = stores.iter().map(|s| local_lines(s).len()).sum();
    assert!(held >= 2 * sent.len(), "seed {seed}: {held} copies in all");
}

#[test]
fn a_replication_target_stopped_with_sigstop_is_passed_over_and_acks_keep_coming() {
    // Store C is paused right after the cluster forms. Gossip every second
    // takes some seconds to call it dead, and meanwhile lanes pick it as a
    // target: its replicas time out (1 s) and go to the next store. Its own
    // lanes' leases lapse (4 s) and their segments move. Acks must keep
    // coming all along.
    let nodes = start_cluster_with(
        &["ingest", "store", "store", "store"],
        NodeOptions::default()
            .gossip_interval("1s")
            .args(&["--replication-factor", "2"])
            .env("SLUICE_REPLICA_TIMEOUT", "1s")
            .env("SLUICE_PENDING_TIMEOUT", "4s"),
    );
    let paused = &nodes[3];
    paused.sigstop();
    let sent = lines("paused", 4000);
    for round in sent.chunks(500) {
        send_replicated(&nodes[0], round);
    }
    let timed_out: f64 = nodes[1..3]
        .iter()
        .map(|s| s.metric("sluice_store_replication_failures_total{reason=\"timeout\"}"))
        .sum();
    eprintln!("replicas to the paused store that timed out and moved on: {timed_out}");
    paused.sigcont();
    let stores: Vec<&ClusterNode> = nodes[1..].iter().collect();
    assert_on_two_stores(&stores, &sent, "a paused target");
    assert_each_once(&nodes[1], &sent);
}
