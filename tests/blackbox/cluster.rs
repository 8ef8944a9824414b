//! The cluster, end to end: separate ingest and store nodes on their own
//! loopback addresses, found by gossip, queried from any node, under
//! kills, pauses, partitions and drains.

use std::collections::BTreeSet;

use crate::{cluster_checks::*, cluster_harness::*, harness::*};

/// Lines printed by `sluice query --ulid`, split into (id, payload).
fn ids_and_payloads(output: &std::process::Output) -> Vec<(String, Vec<u8>)> {
    lines_of(&output.stdout)
        .into_iter()
        .map(|line| {
            let (id, payload) = line.split_at(26);
            (
                String::from_utf8(id.to_vec()).unwrap(),
                payload[1..].to_vec(),
            )
        })
        .collect()
}

/// Wait until a query on `node` is complete with `n` records.
fn wait_records(node: &ClusterNode, n: u64) -> serde_json::Value {
    wait_records_with(node, n, &[])
}

/// Start nodes of `roles`, each with its own extra flags, seeded at the
/// first, and wait until every node sees every other live and ready.
fn start_roles(roles: &[(&str, &[&str])]) -> Vec<ClusterNode> {
    start_roles_every(roles, "100ms")
}

/// [`start_roles`] with a gossip interval.
fn start_roles_every(roles: &[(&str, &[&str])], gossip_interval: &str) -> Vec<ClusterNode> {
    let mut nodes: Vec<ClusterNode> = Vec::new();
    for (role, extra) in roles {
        let seeds = nodes
            .first()
            .map(|n| gossip_seeds(&[n]))
            .unwrap_or_default();
        let options = NodeOptions::default()
            .seeds(&seeds)
            .args(extra)
            .gossip_interval(gossip_interval);
        nodes.push(ClusterNode::start_with(role, options));
    }
    wait_converged(&nodes.iter().collect::<Vec<_>>());
    nodes
}

/// Wait until `store` itself holds `n` records (by a query on `node`).
fn wait_stored(node: &ClusterNode, store: &str, n: u64) -> serde_json::Value {
    wait_until(&format!("{store} to hold {n} records"), || {
        let stats = wait_records(node, n);
        if records_on(&stats, store) == n {
            Ok(stats)
        } else {
            Err(stats.to_string())
        }
    })
}

#[test]
fn a_node_joins_by_seed_and_a_killed_node_is_dead_then_live_again() {
    let nodes = start_cluster(&["ingest", "ingest", "store"], &[]);
    // A new store knows only one seed, and every node comes to see it.
    let late = ClusterNode::start("store", &gossip_seeds(&[&nodes[1]]), &[]);
    let all: Vec<&ClusterNode> = nodes.iter().chain([&late]).collect();
    wait_converged(&all);
    let status = std::process::Command::new(&*BIN)
        .args(["cluster", "status", "--api", &nodes[0].api()])
        .output()
        .unwrap();
    assert!(status.status.success());
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(table.contains(&late.id()), "{table}");
    assert_eq!(table.matches(" live ").count(), 4, "{table}");

    let id = nodes[1].id();
    let before = generation_of(&nodes[0].cluster(), &id);
    nodes[1].kill9();
    for node in [&nodes[0], &nodes[2], &late] {
        let view = node.wait_node_live(&id, false);
        assert_eq!(generation_of(&view, &id), before);
    }
    // A query names the dead node and says the result is incomplete.
    let (code, stats) = nodes[0].query_stats(&[]);
    assert_eq!(code, 3, "{stats}");
    assert_eq!(stats["complete"], false);
    let failed = &stats["nodes_failed"][0];
    assert_eq!(failed["node"], id.as_str(), "{stats}");
    assert_eq!(failed["reason"], "dead", "{stats}");

    nodes[1].restart();
    for node in [&nodes[0], &nodes[2], &late] {
        let view = node.wait_node_live(&id, true);
        assert!(generation_of(&view, &id) > before, "{view}");
    }
}

#[test]
fn lines_through_two_forwarders_to_two_ingesters_come_back_once_in_order_from_any_node() {
    let nodes = start_cluster(&["ingest", "ingest", "store", "store"], &[]);
    let destinations: Vec<String> = nodes[..2]
        .iter()
        .map(|n| format!("sluice://{}", n.batch()))
        .collect();
    let destinations: Vec<&str> = destinations.iter().map(String::as_str).collect();
    let halves = [
        numbered_lines(100_000, "left"),
        numbered_lines(100_000, "right"),
    ];
    let forwarders: Vec<_> = halves
        .iter()
        .map(|half| {
            let forwarder = Forwarder::stdin(
                &destinations,
                &["--mode", "balance", "--guarantee", "write"],
            );
            let half = half.clone();
            std::thread::spawn(move || forwarder.feed(half, || {}))
        })
        .collect();
    for forwarder in forwarders {
        let counts = forwarder.join().unwrap();
        assert_eq!(counts["acked"].as_u64(), Some(100_000), "{counts}");
    }
    // Both ingesters took lines: the forwarders balanced.
    let expected: BTreeSet<Vec<u8>> = halves.iter().flat_map(|h| lines_of(h)).collect();
    let stats = wait_records(&nodes[3], 200_000);
    assert_eq!(stats["nodes_queried"], 4);
    // The plan, summed over every node that holds data.
    let plan =
        http_request(&nodes[0].api(), "HEAD", "/query?from=24h").expect("HEAD /query answers");
    assert_eq!(plan.status, 200);
    assert_eq!(plan.header("x-sluice-nodes"), Some("4"));
    let planned: u64 = plan.header("x-sluice-segments").unwrap().parse().unwrap();
    let bytes: u64 = plan.header("x-sluice-bytes").unwrap().parse().unwrap();
    // Compaction may merge segments between the two asks: only the shape.
    assert!(
        planned >= 1 && bytes > 0,
        "{planned} segments, {bytes} bytes"
    );
    // No double work: once the ingesters hold nothing, the stores consumed
    // each segment once (a lease that lapsed or a commit that failed would
    // lend one again; neither happens here).
    wait_until("the ingesters to hold nothing", || {
        let stats = wait_records(&nodes[3], 200_000);
        let held: u64 = nodes[..2].iter().map(|n| records_on(&stats, &n.id())).sum();
        if held == 0 {
            Ok(())
        } else {
            Err(format!("{held} held: {stats}"))
        }
    });
    let flushed: f64 = nodes[..2]
        .iter()
        .map(|n| n.metric("sluice_ingest_segments_flushed_total"))
        .sum();
    let lent: f64 = nodes[..2]
        .iter()
        .map(|n| n.metric(r#"sluice_ingest_segments_lent_total{outcome="lent"}"#))
        .sum();
    let consumed: f64 = nodes[2..]
        .iter()
        .map(|n| n.metric("sluice_store_segments_consumed_total"))
        .sum();
    assert!(flushed >= 2.0, "{flushed} segments flushed");
    assert_eq!((lent, consumed), (flushed, flushed));
    for node in &nodes {
        let output = node.query(&["--ulid"]);
        assert!(output.status.success(), "{output:?}");
        let rows = ids_and_payloads(&output);
        assert_eq!(rows.len(), 200_000, "from {}", node.name());
        assert!(
            rows.windows(2).all(|w| w[0].0 < w[1].0),
            "ids from {} are not strictly increasing",
            node.name()
        );
        let got: BTreeSet<Vec<u8>> = rows.into_iter().map(|(_, p)| p).collect();
        assert_eq!(got, expected, "from {}", node.name());
    }
}

#[test]
fn a_line_is_queryable_once_its_ingester_acked_it_before_any_store_took_it() {
    // A long flush age keeps the segment active: no store can lend it.
    let nodes = start_roles(&[("ingest", &["--flush-age", "1h"]), ("store", &[])]);
    // The forwarder's connection stays open, so its segment stays active:
    // no store can lend it.
    let mut forwarder = Forwarder::stdin(
        &[&format!("sluice://{}", nodes[0].batch())],
        &["--guarantee", "write", "--linger", "10ms"],
    );
    let mut stdin = forwarder.take_stdin();
    std::io::Write::write_all(&mut stdin, b"fresh line one\nfresh line two\n").unwrap();
    std::io::Write::flush(&mut stdin).unwrap();
    wait_until("the ingester to ack both lines", || {
        let acked = forwarder.metric("sluice_forward_records_acked_total");
        if acked >= 2.0 {
            Ok(())
        } else {
            Err(format!("{acked} acked"))
        }
    });
    let (code, stats) = nodes[1].query_stats(&["-q", "fresh line"]);
    assert_eq!(code, 0, "{stats}");
    assert_eq!(stats["records_matched"], 2, "{stats}");
    assert_eq!(records_on(&stats, &nodes[0].id()), 2, "{stats}");
    assert_eq!(records_on(&stats, &nodes[1].id()), 0, "{stats}");
    let payloads = nodes[1].payloads(&["-q", "fresh line"]);
    assert_eq!(
        payloads,
        vec![b"fresh line one".to_vec(), b"fresh line two".to_vec()]
    );
    drop(stdin);
    forwarder.wait();
}

/// Start 1 ingester and 2 stores, and send lines until both stores hold
/// some; returns the nodes, the total, and each store's share.
fn two_stores_with_data(
    extra_store: impl FnOnce(&[String]) -> (ClusterNode, Option<FaultProxy>),
) -> (Vec<ClusterNode>, Option<FaultProxy>, u64) {
    // A gossip interval long enough that a paused node is not yet called
    // dead when the first query asks it (dead detection takes a few).
    let mut nodes = start_roles_every(
        &[("ingest", &["--flush-age", "50ms"]), ("store", &[][..])],
        "500ms",
    );
    let (second, proxy) = extra_store(&gossip_seeds(&[&nodes[0]]));
    nodes.push(second);
    let all: Vec<&ClusterNode> = nodes.iter().collect();
    wait_converged(&all);
    let mut sent = 0u64;
    for round in 0..200 {
        let lines = numbered_lines(500, &format!("round{round}"));
        send_lines(&nodes[0], &lines);
        sent += 500;
        let stats = wait_records(&nodes[1], sent);
        // Wait until the ingester holds nothing, so that every record is
        // on exactly one store.
        if records_on(&stats, &nodes[0].id()) == 0
            && records_on(&stats, &nodes[1].id()) > 0
            && records_on(&stats, &nodes[2].id()) > 0
        {
            return (nodes, proxy, sent);
        }
    }
    panic!("the two stores never both took segments");
}

/// The share of `store` once the ingester holds nothing (as
/// [`two_stores_with_data`] left it).
fn settled_share(node: &ClusterNode, total: u64, store: &str) -> u64 {
    records_on(&wait_records(node, total), store)
}

#[test]
fn a_stopped_store_makes_partial_answers_name_it_and_strict_ones_fail() {
    let (nodes, _, total) =
        two_stores_with_data(|seeds| (ClusterNode::start("store", seeds, &[]), None));
    let stopped = &nodes[2];
    let others_share = settled_share(&nodes[1], total, &nodes[1].id());
    stopped.sigstop();

    let (code, stats) = nodes[1].query_stats(&["--node-timeout", "1s"]);
    assert_eq!(code, 3, "{stats}");
    assert_eq!(stats["complete"], false);
    assert_eq!(stats["records_matched"].as_u64(), Some(others_share));
    let failed = stats["nodes_failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{stats}");
    assert_eq!(failed[0]["node"], stopped.id().as_str());
    assert_eq!(failed[0]["reason"], "timeout");

    // The records themselves, and the line on stderr that names the node.
    // By now gossip may have called the paused node dead, which is as
    // true: either reason names it.
    let output = nodes[1].query(&["--node-timeout", "1s"]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(lines_of(&output.stdout).len() as u64, others_share);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&stopped.id()) && (stderr.contains("timeout") || stderr.contains("dead")),
        "{stderr}"
    );

    let strict = nodes[1].query(&["--node-timeout", "1s", "--consistency", "strict"]);
    assert_eq!(strict.status.code(), Some(1), "{strict:?}");
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(
        stderr.contains("strict") && stderr.contains(&stopped.id()),
        "{stderr}"
    );

    stopped.sigcont();
    let stats = wait_until("every node to answer again", || {
        let output = nodes[1].query(&["--stats", "--consistency", "strict"]);
        match output.status.code() {
            Some(0) => Ok(serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()),
            _ => Err(format!("{output:?}")),
        }
    });
    assert_eq!(stats["records_matched"].as_u64(), Some(total));
}

#[test]
fn a_partitioned_store_is_named_unreachable() {
    let (nodes, proxy, total) = two_stores_with_data(|seeds| {
        let (node, proxy) = ClusterNode::start_behind_proxy("store", seeds, &[]);
        (node, Some(proxy))
    });
    let proxy = proxy.unwrap();
    let cut = &nodes[2];
    let others_share = settled_share(&nodes[1], total, &nodes[1].id());
    proxy.set_mode(Mode::Refuse);

    let (code, stats) = nodes[1].query_stats(&[]);
    assert_eq!(code, 3, "{stats}");
    assert_eq!(stats["complete"], false);
    assert_eq!(stats["records_matched"].as_u64(), Some(others_share));
    let failed = stats["nodes_failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{stats}");
    assert_eq!(failed[0]["node"], cut.id().as_str());
    assert_eq!(failed[0]["reason"], "unreachable");
    let strict = nodes[1].query(&["--consistency", "strict"]);
    assert_eq!(strict.status.code(), Some(1), "{strict:?}");

    proxy.set_mode(Mode::Pass);
    let (code, stats) = nodes[1].query_stats(&["--consistency", "strict"]);
    assert_eq!(code, 0, "{stats}");
    assert_eq!(stats["records_matched"].as_u64(), Some(total));
}

#[test]
fn segments_a_killed_store_held_are_lent_again_and_shown_once() {
    // Stores reach the ingester only through the proxy, which holds every
    // reply: the first store's lend goes through, its answer does not.
    let (ingester, proxy) = ClusterNode::start_behind_proxy(
        "ingest",
        &[],
        &["--flush-age", "50ms", "--pending-timeout", "2s"],
    );
    let lines = numbered_lines(3000, "lease");
    send_lines(&ingester, &lines);
    wait_until("a flushed segment", || {
        let waiting = ingester.metric("sluice_ingest_segments_flushed");
        if waiting > 0.0 {
            Ok(())
        } else {
            Err(format!("{waiting} waiting"))
        }
    });
    proxy.set_modes(Mode::Pass, Mode::Hold);
    let doomed = ClusterNode::start(
        "store",
        &gossip_seeds(&[&ingester]),
        &["--consume-lanes", "1"],
    );
    wait_until("the store's lend to be held", || {
        let stats = proxy.stats();
        if stats.held > 0 {
            Ok(())
        } else {
            Err(format!("{stats:?}"))
        }
    });
    // The segment is lent to the store now: the ingester counts it pending.
    wait_until("a lent segment", || {
        let lent = ingester.metric("sluice_ingest_segments_pending");
        if lent > 0.0 {
            Ok(())
        } else {
            Err(format!("{lent} lent"))
        }
    });
    let doomed_id = doomed.id();
    doomed.kill9();
    proxy.set_mode(Mode::Pass);
    let heir = ClusterNode::start("store", &gossip_seeds(&[&ingester]), &[]);
    heir.wait_node_live(&doomed_id, false);
    assert_eq!(heir.forget(&doomed_id), 200);
    ingester.wait_view("the killed store to be forgotten", |v| {
        view_node(v, &doomed_id).is_none()
    });
    wait_stored(&heir, &heir.id(), 3000);
    let output = heir.query(&["--ulid"]);
    let rows = ids_and_payloads(&output);
    let unique: BTreeSet<&String> = rows.iter().map(|(id, _)| id).collect();
    assert_eq!(unique.len(), 3000);
    // Lent to the killed store, then again after its lease.
    let lends = |outcome: &str| {
        ingester.metric(&format!(
            r#"sluice_ingest_segments_lent_total{{outcome="{outcome}"}}"#
        ))
    };
    assert!(lends("lent") >= 2.0 && lends("timed_out") >= 1.0);
}

#[test]
fn an_ingester_told_to_stop_waits_until_stores_took_its_segments() {
    let nodes = start_roles(&[("ingest", &["--flush-age", "50ms"]), ("store", &[])]);
    let (ingester, store) = (&nodes[0], &nodes[1]);
    store.sigstop();
    let lines = numbered_lines(2000, "drain");
    send_lines(ingester, &lines);
    let ingester_id = ingester.id();
    ingester.sigterm();
    store.sigcont();
    store.wait_view("the ingester to say it drains", |v| {
        health_of(v, &ingester_id).as_deref() == Some("draining") || !is_live(v, &ingester_id)
    });
    let status = ingester.wait_exit();
    assert!(status.success(), "{status}");
    assert!(ingester.log().contains("drained"), "{}", ingester.log());
    let left: Vec<_> = std::fs::read_dir(ingester.data().join("ingest"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".flushed"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let (_, stats) = store.query_stats(&[]);
    assert_eq!(stats["records_matched"], 2000, "{stats}");
    assert_eq!(records_on(&stats, &store.id()), 2000, "{stats}");
}

#[test]
fn nodes_of_another_cluster_id_are_ignored() {
    let nodes = start_cluster(&["ingest", "store"], &[]);
    let seeds = gossip_seeds(&[&nodes[0]]);
    let stranger = ClusterNode::start_in("other", "store", &seeds, &[]);
    // A node of the same cluster started after the stranger is seen by
    // all: gossip had time to carry the stranger too, had it been taken.
    let member = ClusterNode::start("store", &seeds, &[]);
    wait_converged(&[&nodes[0], &nodes[1], &member]);
    for node in [&nodes[0], &nodes[1], &member] {
        let view = node.cluster();
        assert!(view_node(&view, &stranger.id()).is_none(), "{view}");
    }
    let own = stranger.cluster();
    assert_eq!(view_nodes(&own).len(), 1, "{own}");
}
