//! What a running cluster node answers, for the cluster tests: its
//! `/cluster` view, its metrics and its queries (an `impl` of
//! [`ClusterNode`] beside the one in `cluster_harness.rs`, which starts,
//! signals and restarts it), and the helpers that read views and wait on
//! them across nodes. `cluster_harness` re-exports the helpers.

// A toolbox: the cluster tests use most of it, not every part.
#![allow(dead_code)]

use std::process::{Command, Output};

use serde_json::Value;

use crate::cluster_harness::ClusterNode;
use crate::harness::{BIN, http_get, lines_of, metric_in};
use crate::loopback::{http_request, run_bounded, wait_until};

impl ClusterNode {
    /// `GET /cluster` as JSON, or what went wrong.
    pub fn try_cluster(&self) -> Result<Value, String> {
        match http_get(&self.api(), "/cluster") {
            Some((200, body)) => serde_json::from_str(&body)
                .map_err(|e| format!("/cluster is not JSON ({e}): {body}")),
            Some((status, body)) => Err(format!("/cluster: {status} {body}")),
            None => Err("/cluster: no answer".to_string()),
        }
    }

    /// `GET /cluster` as JSON; panics if it does not answer 200 with JSON.
    pub fn cluster(&self) -> Value {
        self.try_cluster()
            .unwrap_or_else(|e| panic!("{}: {e}; log:\n{}", self.name(), self.log()))
    }

    /// Poll `/cluster` until `pred` holds for it, and return that view.
    /// `what` names the wait in the panic after [`DEADLINE`], which shows
    /// the last view. Panics at once if the process is not running.
    pub fn wait_view(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_until(&format!("{what} in the view of {}", self.name()), || {
            self.assert_running(&format!("waiting for {what}"));
            let view = self.try_cluster()?;
            if pred(&view) {
                Ok(view)
            } else {
                Err(format!("{view:#}"))
            }
        })
    }

    /// Wait until its view reports node `id` live (`true`) or dead
    /// (`false`); returns the view.
    pub fn wait_node_live(&self, id: &str, live: bool) -> Value {
        let state = if live { "live" } else { "dead" };
        self.wait_view(&format!("node {id} {state}"), |v| {
            view_node(v, id).is_some_and(|n| n["live"].as_bool() == Some(live))
        })
    }

    /// `POST /cluster/forget?node=ID`: the status (200, 404 unknown, 409
    /// live).
    pub fn forget(&self, id: &str) -> u16 {
        let reply = http_request(&self.api(), "POST", &format!("/cluster/forget?node={id}"));
        reply
            .unwrap_or_else(|| panic!("{}: forget {id}: no answer", self.name()))
            .status
    }

    /// The sum of a metric's samples in `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let (status, body) = http_get(&self.api(), "/metrics")
            .unwrap_or_else(|| panic!("{}: /metrics: no answer", self.name()));
        assert_eq!(status, 200, "{}: /metrics: {body}", self.name());
        metric_in(&body, name)
    }

    /// Run `sluice query --api <api> ...args` (with `--from 24h` unless
    /// `args` has a `--from`), bounded by [`DEADLINE`].
    pub fn query(&self, args: &[&str]) -> Output {
        let mut command = Command::new(&*BIN);
        command.args(["query", "--api", &self.api()]);
        if !args.contains(&"--from") {
            command.args(["--from", "24h"]);
        }
        command.args(args);
        run_bounded(
            command,
            &format!("sluice query {args:?} on {}", self.name()),
        )
    }

    /// `query` with `--stats`: its exit code (0, or 3 when incomplete) and
    /// the stats JSON it printed; panics on another code or no JSON.
    pub fn query_stats(&self, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["--stats"];
        all.extend_from_slice(args);
        let out = self.query(&all);
        let code = out.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            code == 0 || code == 3,
            "query {all:?} on {} exited {}: {stderr}",
            self.name(),
            out.status
        );
        let stats = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "query {all:?} on {} printed no stats JSON ({e}): {}\nstderr: {stderr}",
                self.name(),
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (code, stats)
    }

    /// The payloads `query` prints, one per line; panics unless it exits 0
    /// (a complete answer).
    pub fn payloads(&self, args: &[&str]) -> Vec<Vec<u8>> {
        let out = self.query(args);
        assert!(
            out.status.success(),
            "query {args:?} on {} exited {}: {}",
            self.name(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        lines_of(&out.stdout)
    }
}

/// The `nodes` array of a `/cluster` view (empty if there is none).
pub fn view_nodes(view: &Value) -> Vec<Value> {
    view["nodes"].as_array().cloned().unwrap_or_default()
}

/// The entry of node `id` in a view.
pub fn view_node(view: &Value, id: &str) -> Option<Value> {
    view_nodes(view)
        .into_iter()
        .find(|n| n["id"].as_str() == Some(id))
}

/// Whether a view reports node `id` live.
pub fn is_live(view: &Value, id: &str) -> bool {
    view_node(view, id).is_some_and(|n| n["live"].as_bool() == Some(true))
}

/// The `health` a view reports for node `id`.
pub fn health_of(view: &Value, id: &str) -> Option<String> {
    view_node(view, id).and_then(|n| n["health"].as_str().map(str::to_string))
}

/// Whether a view entry has `role` (`"any"` matches every node; an
/// `ingeststore` has both `ingest` and `store`).
pub fn has_role(node: &Value, role: &str) -> bool {
    role == "any"
        || node["roles"]
            .as_array()
            .is_some_and(|roles| roles.iter().any(|r| r.as_str() == Some(role)))
}

/// How many nodes with `role` (or `"any"`) a view reports live.
pub fn live_count(view: &Value, role: &str) -> usize {
    view_nodes(view)
        .iter()
        .filter(|n| n["live"].as_bool() == Some(true) && has_role(n, role))
        .count()
}

/// Wait until each of `nodes` sees exactly `n` live nodes with `role` (or
/// `"any"`); returns their views, in order.
pub fn wait_live_count(nodes: &[&ClusterNode], role: &str, n: usize) -> Vec<Value> {
    nodes
        .iter()
        .map(|node| {
            node.wait_view(&format!("{n} live nodes with role {role}"), |v| {
                live_count(v, role) == n
            })
        })
        .collect()
}

/// Wait until each of `nodes` sees each of them live with health `ready`;
/// returns their views, in order. Other nodes in the views may be in any
/// state.
pub fn wait_converged(nodes: &[&ClusterNode]) -> Vec<Value> {
    let ids: Vec<String> = nodes.iter().map(|n| n.id()).collect();
    nodes
        .iter()
        .map(|node| {
            node.wait_view(&format!("nodes {ids:?} live and ready"), |v| {
                ids.iter()
                    .all(|id| is_live(v, id) && health_of(v, id).as_deref() == Some("ready"))
            })
        })
        .collect()
}
