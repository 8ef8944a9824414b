//! The Loki APIs across a cluster: lines pushed to an ingester
//! (`POST /loki/api/v1/push`) are read back from a store node that holds
//! half of them (`query_range`, `query`), each once although RF 2 keeps
//! two copies.

use std::collections::BTreeMap;

use serde_json::json;

use crate::{
    cluster_harness::*,
    loki_query::{enc, entries, get_json, request},
};

#[test]
fn lines_pushed_to_an_ingester_are_read_once_from_any_node() {
    let nodes = start_cluster(
        &["ingest", "store", "store"],
        &["--replication-factor", "2"],
    );
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut model: BTreeMap<&str, usize> = BTreeMap::new();
    let mut streams = Vec::new();
    for env in ["prod", "dev"] {
        let count = if env == "prod" { 240 } else { 160 };
        model.insert(env, count);
        let values: Vec<_> = (0..count)
            .map(|i| {
                json!([
                    (now_ns - 60_000_000_000 + i as u128 * 1_000_000).to_string(),
                    format!("{env} line {i}")
                ])
            })
            .collect();
        streams.push(json!({"stream": {"app": "shop", "env": env}, "values": values}));
    }
    let body = json!({ "streams": streams }).to_string();
    let (status, text) = request(
        &nodes[0].api(),
        "POST",
        "/loki/api/v1/push",
        &["Content-Type: application/json"],
        &body,
    );
    assert_eq!(status, 204, "{text}");
    let total: usize = model.values().sum();
    // Once both stores hold the lines (each store alone holds them all with
    // RF 2 and two stores), ask the stores, not the ingester.
    for store in &nodes[1..] {
        wait_view_query(store, total);
    }
    for node in &nodes {
        let all = get_json(
            &node.api(),
            &format!(
                "/loki/api/v1/query_range?query={}&limit=5000&direction=forward&since=1h",
                enc(r#"{app="shop"}"#)
            ),
        );
        let got = entries(&all);
        assert_eq!(got.len(), total, "{} answered {all}", node.name());
        let mut lines: Vec<&str> = got.iter().map(|(_, _, l)| l.as_str()).collect();
        lines.sort();
        lines.dedup();
        assert_eq!(lines.len(), total, "each line once on {}", node.name());
        // Counted by label across the cluster, each line once.
        let counted = get_json(
            &node.api(),
            &format!(
                "/loki/api/v1/query?query={}",
                enc(r#"sum by (env) (count_over_time({app="shop"}[10m]))"#)
            ),
        );
        let mut by_env: BTreeMap<String, usize> = BTreeMap::new();
        for sample in counted["data"]["result"].as_array().unwrap() {
            let env = sample["metric"]["env"].as_str().unwrap().to_string();
            let value: usize = sample["value"][1].as_str().unwrap().parse().unwrap();
            by_env.insert(env, value);
        }
        let want: BTreeMap<String, usize> =
            model.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(by_env, want, "{} answered {counted}", node.name());
    }
}

/// Wait until `store` alone holds `n` records.
fn wait_view_query(store: &ClusterNode, n: usize) {
    crate::harness::wait_for(&format!("{} to hold {n} records", store.name()), || {
        let out = store.query(&["--local"]);
        let held = String::from_utf8_lossy(&out.stdout).lines().count();
        (held >= n).then_some(())
    });
}
