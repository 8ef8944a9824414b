//! What the cluster tests share: sending lines to an ingester, and reading
//! a query's stats and a view.

use serde_json::Value;

use crate::{cluster_harness::*, harness::*};

/// The generation a view gives node `id`.
pub fn generation_of(view: &Value, id: &str) -> u64 {
    view_node(view, id)
        .and_then(|n| n["generation"].as_u64())
        .unwrap_or_else(|| panic!("{id} is not in the view {view}"))
}

/// How many records node `id` answered with, by a query's per-node stats.
pub fn records_on(stats: &Value, id: &str) -> u64 {
    stats["per_node"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["node"] == id)
        .and_then(|n| n["records_matched"].as_u64())
        .unwrap_or(0)
}

/// Wait until a query on `node` (with `args`) is complete (exit 0) with
/// `n` records, and return its stats.
pub fn wait_records_with(node: &ClusterNode, n: u64, args: &[&str]) -> Value {
    wait_until(&format!("{n} records from {}", node.name()), || {
        let (code, stats) = node.query_stats(args);
        if code == 0 && stats["records_matched"].as_u64() == Some(n) {
            Ok(stats)
        } else {
            Err(format!("exit {code}: {stats}"))
        }
    })
}

/// Send `lines` to the ingester's batch listener; every one is acked.
pub fn send_lines(ingester: &ClusterNode, lines: &[u8]) {
    let forwarder = Forwarder::stdin(
        &[&format!("sluice://{}", ingester.batch())],
        &["--guarantee", "write"],
    );
    let counts = forwarder.feed(lines.to_vec(), || {});
    assert_eq!(
        counts["acked"].as_u64(),
        Some(lines_of(lines).len() as u64),
        "{counts}"
    );
}
