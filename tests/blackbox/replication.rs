//! Replication (RF 2): every `replicated` ack means the record is durable
//! on two distinct stores, whatever one node does.

use std::{collections::BTreeMap, io::Write};

use crate::{cluster_harness::*, harness::*};

const RF2: &[&str] = &["--replication-factor", "2"];

/// The payloads store `node` holds alone (`scope=local`), in id order.
pub(crate) fn local_payloads(node: &ClusterNode) -> Vec<String> {
    let (status, body) = http_get(&node.api(), "/query?scope=local&from=24h&format=json")
        .unwrap_or_else(|| panic!("{}: /query: no answer", node.name()));
    assert_eq!(status, 200, "{}: {body}", node.name());
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["payload"].as_str().unwrap().to_string()
        })
        .collect()
}

/// How many of `stores` hold each line of `sent` (each store counted once).
pub(crate) fn copies(stores: &[&ClusterNode], sent: &[String]) -> BTreeMap<String, usize> {
    let mut count: BTreeMap<String, usize> = sent.iter().map(|l| (l.clone(), 0)).collect();
    for store in stores {
        let mut held = local_payloads(store);
        held.sort();
        held.dedup();
        for line in held {
            if let Some(n) = count.get_mut(&line) {
                *n += 1;
            }
        }
    }
    count
}

/// Every line of `sent` is on at least 2 of `stores`, each queried alone;
/// `context` leads the failure message.
pub(crate) fn assert_on_two_stores(stores: &[&ClusterNode], sent: &[String], context: &str) {
    let under: Vec<(String, usize)> = copies(stores, sent)
        .into_iter()
        .filter(|(_, n)| *n < 2)
        .collect();
    assert!(
        under.is_empty(),
        "{context}: {} acked lines on fewer than 2 stores, such as {:?}",
        under.len(),
        &under[..under.len().min(5)]
    );
}

/// Lines `"{tag} {i:05}"`.
pub(crate) fn lines(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag} {i:05}")).collect()
}

pub(crate) fn joined(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

/// Send `lines` through `sluice forward --guarantee replicated` to
/// `ingester`; every one is acked.
pub(crate) fn send_replicated(ingester: &ClusterNode, lines: &[String]) {
    let forwarder = Forwarder::stdin(
        &[&format!("sluice://{}", ingester.batch())],
        &["--guarantee", "replicated"],
    );
    let counts = forwarder.feed(joined(lines), || {});
    assert_eq!(
        counts["acked"].as_u64(),
        Some(lines.len() as u64),
        "{counts}"
    );
}

/// Every line of `sent` is answered once by a cluster query on `node`
/// (`partial`: a dead node may be named, the exit status is then 3).
pub(crate) fn assert_each_once(node: &ClusterNode, sent: &[String]) {
    let out = node.query(&["--consistency", "partial"]);
    let code = out.status.code();
    assert!(
        matches!(code, Some(0 | 3)),
        "query on {} exited {code:?}: {}",
        node.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    got.sort();
    let mut want = sent.to_vec();
    want.sort();
    assert_eq!(got.len(), want.len(), "each acked line once");
    assert_eq!(got, want);
}

#[test]
fn every_replicated_ack_is_on_two_stores_and_a_query_shows_it_once() {
    let nodes = start_cluster(&["ingest", "ingest", "store", "store", "store"], RF2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let stores: Vec<&ClusterNode> = nodes[2..].iter().collect();
    let to_a = lines("on-a", 1500);
    let to_b = lines("on-b", 1500);
    send_replicated(a, &to_a);
    send_replicated(b, &to_b);
    let sent: Vec<String> = to_a.iter().chain(&to_b).cloned().collect();
    // Acked means committed, and a commit needs two stores: no waiting.
    assert_on_two_stores(&stores, &sent, "acked means on 2 stores");
    assert_each_once(stores[0], &sent);
    // The commits named two stores each.
    let commits = |n: &ClusterNode| n.metric("sluice_ingest_commits_total{replicas=\"2\"}");
    assert!(commits(a) >= 1.0 && commits(b) >= 1.0);
    assert_eq!(a.metric("sluice_ingest_commits_total{replicas=\"1\"}"), 0.0);
}

#[test]
fn an_ingester_killed_after_replicated_acks_with_its_data_deleted_loses_nothing() {
    let nodes = start_cluster(&["ingest", "store", "store", "store"], RF2);
    let ingester = &nodes[0];
    let sent = lines("kept", 2000);
    send_replicated(ingester, &sent);
    ingester.kill9();
    std::fs::remove_dir_all(ingester.data()).unwrap();
    assert_each_once(&nodes[1], &sent);
    let stores: Vec<&ClusterNode> = nodes[1..].iter().collect();
    assert!(copies(&stores, &sent).values().all(|&n| n >= 2));
}

#[test]
fn with_one_store_up_replicated_sends_stall_and_flow_when_a_second_returns() {
    let nodes = start_cluster(&["ingest", "store", "store", "store"], RF2);
    let (ingester, up) = (&nodes[0], &nodes[1]);
    for gone in &nodes[2..] {
        gone.kill9();
        up.wait_node_live(&gone.id(), false);
    }
    // The lanes of the store left lend nothing: fewer than 2 stores.
    wait_for("the store's lanes to stop lending", || {
        (up.metric("sluice_store_gather_blocked{reason=\"too_few_stores\"}") == 1.0).then_some(())
    });
    // A forwarder with a spool and a small memory queue: with at most 16
    // batches of 4 KiB in flight and 16 KiB in memory, most of what it
    // reads while nothing is acked waits on disk only.
    let spool = tempfile::tempdir().unwrap();
    let mut forwarder = Forwarder::stdin(
        &[&format!("sluice://{}", ingester.batch())],
        &[
            "--guarantee",
            "replicated",
            "--spool",
            spool.path().to_str().unwrap(),
            "--queue-max",
            "16KiB",
            "--batch-size",
            "4KiB",
        ],
    );
    let spool_bytes = |f: &Forwarder| f.metric("sluice_forward_spool_bytes");
    let mut stdin = forwarder.take_stdin();
    let sent = lines("stalled", 40_000);
    let (first, second) = sent.split_at(sent.len() / 2);
    stdin.write_all(&joined(first)).unwrap();
    stdin.flush().unwrap();
    // Written on the ingester, and not acked: no store may commit it.
    wait_for("the ingester to write the first batches", || {
        (ingester.metric("sluice_ingest_records_total") > 0.0).then_some(())
    });
    let read_all =
        |f: &Forwarder, n: usize| f.metric("sluice_forward_records_read_total") >= n as f64;
    let held = wait_for("the forwarder to spool the first half", || {
        let bytes = spool_bytes(&forwarder);
        (read_all(&forwarder, first.len()) && bytes > 0.0).then_some(bytes)
    });
    // More input while stalled: the spool grows, past the memory queue.
    stdin.write_all(&joined(second)).unwrap();
    stdin.flush().unwrap();
    wait_for("the spool to grow with the second half", || {
        (read_all(&forwarder, sent.len()) && spool_bytes(&forwarder) > held).then_some(())
    });
    assert!(
        forwarder.metric("sluice_forward_records_spooled_total") > 0.0,
        "nothing waited on the disk spool alone"
    );
    let spool_files = || std::fs::read_dir(spool.path()).unwrap().count();
    assert!(spool_files() > 0, "the spool directory is empty");
    assert_eq!(forwarder.metric("sluice_forward_records_acked_total"), 0.0);
    assert!(local_payloads(up).is_empty(), "the lone store took nothing");
    // A second store comes back: everything flows and the spool drains
    // (the forwarder still runs: its input is open).
    nodes[2].restart();
    wait_for("every line acked and the spool drained", || {
        let acked = forwarder.metric("sluice_forward_records_acked_total");
        (acked == sent.len() as f64 && spool_bytes(&forwarder) == 0.0).then_some(())
    });
    drop(stdin);
    let (status, counts) = forwarder.exited();
    assert!(status.success(), "{counts}");
    assert_eq!(
        counts["acked"].as_u64(),
        Some(sent.len() as u64),
        "{counts}"
    );
    let stores = [up, &nodes[2]];
    assert!(copies(&stores, &sent).values().all(|&n| n == 2));
}

#[test]
fn a_silent_replication_target_is_passed_over_and_acks_keep_coming() {
    // Store C's API sits behind a proxy that answers nothing, while C
    // itself runs and gossips: it stays a candidate, and every replica sent
    // to it times out (1 s) and goes to the next store.
    let ingester = ClusterNode::start(
        "ingest",
        &[],
        &["--replication-factor", "2", "--pending-timeout", "3s"],
    );
    let seeds = [ingester.advertised_gossip()];
    let store_args = ["--replication-factor", "2", "--replica-timeout", "1s"];
    let a = ClusterNode::start("store", &seeds, &store_args);
    let b = ClusterNode::start("store", &seeds, &store_args);
    let silent = ClusterNode::start_with(
        "store",
        NodeOptions::default()
            .seeds(&seeds)
            .args(&store_args)
            .api_behind_proxy(),
    );
    wait_converged(&[&ingester, &a, &b, &silent]);
    silent
        .api_proxy()
        .set_mode(crate::fault_proxy::Mode::Blackhole);
    // Thirty small rounds, each sealed into its own segment (a segment
    // waiting for `replicated` is sealed after 200 ms): each segment that
    // A or B takes ranks C first half the time.
    let mut forwarder = Forwarder::stdin(
        &[&format!("sluice://{}", ingester.batch())],
        &["--guarantee", "replicated"],
    );
    let mut stdin = forwarder.take_stdin();
    let sent = lines("around", 600);
    for round in sent.chunks(20) {
        stdin.write_all(&joined(round)).unwrap();
        stdin.flush().unwrap();
        // Pacing the input, not waiting on anything.
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    drop(stdin);
    let (status, counts) = forwarder.exited();
    assert!(status.success(), "{counts}");
    assert_eq!(
        counts["acked"].as_u64(),
        Some(sent.len() as u64),
        "{counts}"
    );
    let timeouts: f64 = [&a, &b]
        .iter()
        .map(|n| n.metric("sluice_store_replication_failures_total{reason=\"timeout\"}"))
        .sum();
    assert!(
        timeouts >= 1.0,
        "no replica was ever sent to the silent store"
    );
    // Every line is on two stores: A and B, or one of them and C (whose
    // own lanes still consume and replicate).
    silent.api_proxy().set_mode(crate::fault_proxy::Mode::Pass);
    let stores = [&a, &b, &silent];
    assert!(copies(&stores, &sent).values().all(|&n| n >= 2));
}

#[test]
fn a_store_over_its_disk_limit_turns_readonly_and_replicas_go_elsewhere() {
    // With two stores (A and C) every segment goes to both; C holds at most
    // 1 KiB and its retention does not run, so it is over its limit once it
    // holds anything.
    let ingester = ClusterNode::start("ingest", &[], RF2);
    let seeds = [ingester.advertised_gossip()];
    let a = ClusterNode::start("store", &seeds, RF2);
    let full = ClusterNode::start(
        "store",
        &seeds,
        &[
            "--replication-factor",
            "2",
            "--max-disk",
            "1KiB",
            "--maintenance-interval",
            "1h",
        ],
    );
    wait_converged(&[&ingester, &a, &full]);
    let first = lines("first", 200);
    send_replicated(&ingester, &first);
    a.wait_view("the full store to say readonly", |view| {
        view_node(view, &full.id()).is_some_and(|n| n["health"] == "readonly")
    });
    // A third store joins; new data goes to A and B only.
    let b = ClusterNode::start("store", &seeds, RF2);
    for (node, other) in [(&a, &b), (&b, &a)] {
        node.wait_view("the other store ready and the full one readonly", |view| {
            let health = |id: &str| view_node(view, id).map(|n| n["health"].clone());
            health(&other.id()) == Some("ready".into())
                && health(&full.id()) == Some("readonly".into())
        });
    }
    let then = lines("then", 500);
    send_replicated(&ingester, &then);
    assert!(copies(&[&a, &b], &then).values().all(|&n| n == 2));
    assert!(
        copies(&[&full], &then).values().all(|&n| n == 0),
        "the readonly store took nothing new"
    );
    assert_eq!(
        full.metric("sluice_store_gather_blocked{reason=\"disk_full\"}"),
        1.0
    );
    // It is still asked by queries: everything shows once.
    let all: Vec<String> = first.iter().chain(&then).cloned().collect();
    assert_each_once(&a, &all);
}

#[test]
fn histogram_and_topics_count_each_record_once_when_two_stores_hold_it() {
    let nodes = start_cluster(&["ingest", "store", "store"], RF2);
    let sent = lines("counted", 700);
    send_replicated(&nodes[0], &sent);
    for asked in &nodes[1..] {
        let (status, body) = http_get(&asked.api(), "/histogram?from=1h&buckets=10").unwrap();
        assert_eq!(status, 200, "{body}");
        let histogram: serde_json::Value = serde_json::from_str(&body).unwrap();
        let sum: u64 = histogram["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_u64().unwrap())
            .sum();
        assert_eq!(
            sum,
            sent.len() as u64,
            "each record once, not once per copy: {body}"
        );
        assert_eq!(histogram["total"], sent.len() as u64);
        assert_eq!(histogram["complete"], true);
        let (status, body) = http_get(&asked.api(), "/topics?from=1h").unwrap();
        assert_eq!(status, 200, "{body}");
        let topics: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(topics["topics"][0]["records"], sent.len() as u64, "{body}");
        assert_eq!(topics["nodes_queried"], 3);
    }
}
