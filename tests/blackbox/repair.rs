//! Repair (RF 2): a store lost for good has its batches copied again,
//! automatically after `--repair-after` or by `sluice repair`, until every
//! record is on two live stores.

use std::process::Command;

use serde_json::Value;

use crate::{
    cluster_harness::*,
    harness::*,
    loopback::run_bounded,
    replication::{assert_each_once, copies, lines, local_payloads, send_replicated},
};

/// Run `sluice repair --api <node> --from 24h --json ...args`; its exit
/// code and report.
fn repair(node: &ClusterNode, args: &[&str]) -> (Option<i32>, Value) {
    let mut command = Command::new(&*BIN);
    command.args(["repair", "--api", &node.api(), "--from", "24h", "--json"]);
    command.args(args);
    let out = run_bounded(command, &format!("sluice repair {args:?}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "sluice repair printed no JSON report ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

/// The lines of `sent` on fewer than two of `stores`.
fn under_replicated(stores: &[&ClusterNode], sent: &[String]) -> Vec<String> {
    copies(stores, sent)
        .into_iter()
        .filter(|(_, n)| *n < 2)
        .map(|(line, _)| line)
        .collect()
}

/// Start 1 ingester and 3 stores with RF 2, send `n` lines acked
/// `replicated`, and kill -9 the store holding the most of them. Returns
/// the nodes, the lines and the index of the dead store.
fn cluster_with_a_dead_store(
    options: NodeOptions,
    n: usize,
) -> (Vec<ClusterNode>, Vec<String>, usize) {
    let nodes = start_cluster_with(
        &["ingest", "store", "store", "store"],
        options.args(&["--replication-factor", "2"]),
    );
    let sent = lines("repair", n);
    // Several rounds, so that the lines spread over several batches and
    // every store holds some.
    for round in sent.chunks(n / 4) {
        send_replicated(&nodes[0], round);
    }
    let held: Vec<usize> = (1..4).map(|i| local_payloads(&nodes[i]).len()).collect();
    let victim = 1 + (0..3).max_by_key(|&i| held[i]).unwrap();
    assert!(held[victim - 1] > 0, "no store holds anything: {held:?}");
    nodes[victim].kill9();
    for (i, node) in nodes.iter().enumerate() {
        if i != victim {
            node.wait_node_live(&nodes[victim].id(), false);
        }
    }
    (nodes, sent, victim)
}

#[test]
fn a_store_killed_for_good_has_its_batches_copied_again_after_repair_after() {
    let (nodes, sent, victim) = cluster_with_a_dead_store(
        NodeOptions::default().env("SLUICE_REPAIR_AFTER", "2s"),
        4000,
    );
    let alive: Vec<&ClusterNode> = (1..4).filter(|&i| i != victim).map(|i| &nodes[i]).collect();
    assert!(
        !under_replicated(&alive, &sent).is_empty(),
        "the dead store held nothing only it and one other held"
    );
    wait_for("every line on the two live stores", || {
        under_replicated(&alive, &sent).is_empty().then_some(())
    });
    let made: f64 = alive
        .iter()
        .map(|s| s.metric("sluice_store_repair_copies_total"))
        .sum();
    assert!(made >= 1.0, "repair made no copy; something else did");
    assert!(
        alive
            .iter()
            .all(|s| s.metric("sluice_store_manifest_entries") >= 1.0)
    );
    let (code, report) = repair(alive[0], &["--dry-run"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["under_replicated"], 0, "{report}");
    assert_eq!(report["records"], sent.len() as u64, "{report}");
    assert_each_once(alive[0], &sent);
}

#[test]
fn sluice_repair_copies_what_has_fewer_than_rf_copies_and_then_finds_nothing() {
    // The default --repair-after (1 h): only `sluice repair` copies here.
    let (nodes, sent, victim) = cluster_with_a_dead_store(NodeOptions::default(), 4000);
    let alive: Vec<&ClusterNode> = (1..4).filter(|&i| i != victim).map(|i| &nodes[i]).collect();
    let missing = under_replicated(&alive, &sent);
    assert!(!missing.is_empty());

    let (code, dry) = repair(alive[0], &["--dry-run"]);
    assert_eq!(code, Some(0), "{dry}");
    assert_eq!(dry["under_replicated"], missing.len() as u64, "{dry}");
    assert_eq!(dry["copies_made"], 0, "{dry}");
    assert_eq!(under_replicated(&alive, &sent), missing, "a dry run copied");

    let (code, done) = repair(alive[1], &[]);
    assert_eq!(code, Some(0), "{done}");
    assert_eq!(done["failed"], 0, "{done}");
    assert_eq!(done["records_copied"], missing.len() as u64, "{done}");
    assert!(under_replicated(&alive, &sent).is_empty());

    let (code, after) = repair(alive[0], &["--dry-run"]);
    assert_eq!(code, Some(0), "{after}");
    assert_eq!(after["under_replicated"], 0, "{after}");
    assert_each_once(alive[0], &sent);
}
