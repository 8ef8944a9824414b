//! Partitions, end to end: a store cut off from gossip by UDP proxies in
//! front of every node's gossip socket, and one coordinator cut from one
//! store's API while another coordinator still reaches it. Every node
//! binds a loopback IP of its own, so the proxies tell nodes apart by the
//! source IP of what they relay.

use serde_json::Value;

use crate::{cluster_checks::*, cluster_harness::*, harness::*};

/// Every query here names a node timeout: a node that hangs costs 2 s,
/// not the default 10 s.
const NODE_TIMEOUT: [&str; 2] = ["--node-timeout", "2s"];

/// Wait until a query on `node` is complete with `n` records.
fn wait_records(node: &ClusterNode, n: u64) -> Value {
    wait_records_with(node, n, &NODE_TIMEOUT)
}

/// The failed nodes of a query's stats, as (node, reason).
fn failed(stats: &Value) -> Vec<(String, String)> {
    stats["nodes_failed"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let field = |name: &str| n[name].as_str().unwrap_or_default().to_string();
            (field("node"), field("reason"))
        })
        .collect()
}

#[test]
fn a_store_cut_off_from_gossip_is_dead_to_the_others_and_live_again_once_healed() {
    let options = NodeOptions::default().gossip_behind_proxy();
    let nodes = start_cluster_with(&["ingest", "store", "store"], options);
    let (ingester, kept, cut) = (&nodes[0], &nodes[1], &nodes[2]);
    let id = cut.id();
    let generation = generation_of(&ingester.cluster(), &id);

    // Nothing the store sends reaches anyone (every proxy drops datagrams
    // from its IP), and nothing reaches it (its own proxy drops all).
    for node in &nodes {
        node.gossip_proxy().set_mode_for(cut.ip(), UdpMode::Drop);
    }
    cut.gossip_proxy().set_mode(UdpMode::Drop);
    for node in [ingester, kept] {
        node.wait_node_live(&id, false);
    }
    // The cut is whole: the store hears no one either.
    for other in [ingester, kept] {
        cut.wait_node_live(&other.id(), false);
    }
    // The rest of the cluster still gossips.
    wait_converged(&[ingester, kept]);
    for node in &nodes {
        assert!(node.gossip_proxy().stats().dropped > 0, "{}", node.name());
    }

    let (code, stats) = ingester.query_stats(&NODE_TIMEOUT);
    assert_eq!(code, 3, "{stats}");
    assert_eq!(stats["complete"], false, "{stats}");
    assert_eq!(
        failed(&stats),
        [(id.clone(), "dead".to_string())],
        "{stats}"
    );

    // Healed: every node sees it live again, in the same generation (it
    // never restarted).
    for node in &nodes {
        node.gossip_proxy().clear_modes_for_all();
        node.gossip_proxy().set_mode(UdpMode::Pass);
    }
    for node in [ingester, kept] {
        let view = node.wait_node_live(&id, true);
        assert_eq!(generation_of(&view, &id), generation, "{view}");
    }
    wait_converged(&nodes.iter().collect::<Vec<_>>());
    let (code, stats) = ingester.query_stats(&NODE_TIMEOUT);
    assert_eq!(code, 0, "{stats}");
    assert_eq!(stats["complete"], true, "{stats}");
}

#[test]
fn a_coordinator_cut_from_one_store_names_it_unreachable_while_another_reaches_it() {
    // 1 ingester and 2 stores, the second behind an API proxy of its own.
    let ingester = ClusterNode::start_with(
        "ingest",
        NodeOptions::default()
            .args(&["--flush-age", "50ms"])
            .no_wait_ready(),
    );
    let seeds = gossip_seeds(&[&ingester]);
    let options = NodeOptions::default().seeds(&seeds).no_wait_ready();
    let kept = ClusterNode::start_with("store", options.clone());
    let cut = ClusterNode::start_with("store", options.api_behind_proxy());
    for node in [&ingester, &kept, &cut] {
        node.wait_ready();
    }
    wait_converged(&[&ingester, &kept, &cut]);

    // Send lines until both stores hold some and the ingester none, so
    // that every record is on exactly one store.
    let mut sent = Vec::new();
    let mut kept_share = None;
    for round in 0..200 {
        let lines = numbered_lines(500, &format!("round{round}"));
        send_lines(&ingester, &lines);
        sent.extend(lines_of(&lines));
        let stats = wait_records(&kept, sent.len() as u64);
        let share = |node: &ClusterNode| records_on(&stats, &node.id());
        if share(&ingester) == 0 && share(&kept) > 0 && share(&cut) > 0 {
            kept_share = Some(share(&kept));
            break;
        }
    }
    let kept_share = kept_share.expect("the two stores never both took segments");
    let total = sent.len() as u64;

    // Coordinator A (the ingester) is cut from the store's API; B (the
    // other store) is not.
    let (a, b) = (&ingester, &kept);
    cut.api_proxy().set_mode_for(a.ip(), Mode::Refuse);

    let (code, stats) = a.query_stats(&NODE_TIMEOUT);
    assert_eq!(code, 3, "{stats}");
    assert_eq!(stats["complete"], false, "{stats}");
    assert_eq!(
        stats["records_matched"].as_u64(),
        Some(kept_share),
        "{stats}"
    );
    assert_eq!(
        failed(&stats),
        [(cut.id(), "unreachable".to_string())],
        "{stats}"
    );

    let (code, stats) = b.query_stats(&NODE_TIMEOUT);
    assert_eq!(code, 0, "{stats}");
    assert_eq!(stats["complete"], true, "{stats}");
    assert_eq!(stats["records_matched"].as_u64(), Some(total), "{stats}");
    // Every record once: the lines sent, in any order.
    let mut got = b.payloads(&NODE_TIMEOUT);
    got.sort();
    sent.sort();
    assert_eq!(got.len() as u64, total);
    assert!(got == sent, "B's records are not the lines sent");

    // Healed: A is complete again.
    cut.api_proxy().clear_mode_for(a.ip());
    let (code, stats) = a.query_stats(&NODE_TIMEOUT);
    assert_eq!(code, 0, "{stats}");
    assert_eq!(stats["complete"], true, "{stats}");
    assert_eq!(stats["records_matched"].as_u64(), Some(total), "{stats}");
}
