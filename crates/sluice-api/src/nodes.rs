//! Which nodes a cluster-wide request asks, and the rules `/query`,
//! `/histogram` and `/topics` share about them: ingesters first, a node
//! failed before it is asked when the view calls it `dead` or `not_ready`,
//! `consistency` (`strict` or `partial`), `node_timeout`, and the
//! replication factor the `complete` verdict counts stores against.

use std::time::Duration;

use axum::{http::StatusCode, response::Response};
use sluice_cluster::{ClusterView, Health, NodeInfo};
use sluice_query::gather::Role;

use crate::{ApiState, error};

/// `consistency`: whether a failed node fails the request (`strict`).
pub(crate) fn strict_from(consistency: Option<&str>) -> Result<bool, Response> {
    match consistency {
        None | Some("partial") => Ok(false),
        Some("strict") => Ok(true),
        Some(other) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("unknown consistency {other:?}: use strict or partial"),
        )),
    }
}

/// `node_timeout`, or the node's `--node-timeout`.
pub(crate) fn node_timeout_from(
    state: &ApiState,
    text: Option<&str>,
) -> Result<Duration, Response> {
    match text {
        None | Some("") => Ok(state.cluster.node_timeout),
        Some(text) => humantime::parse_duration(text).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("node_timeout {text:?} is not a duration like 10s or 500ms: {e}"),
            )
        }),
    }
}

/// A node the query asks.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) id: String,
    pub(crate) api: Option<String>,
    pub(crate) role: Role,
    pub(crate) is_self: bool,
    /// Why it failed before it was asked (dead, not ready).
    pub(crate) failed_up_front: Option<&'static str>,
}

/// The nodes with data in the view, ingesters first.
pub(crate) fn targets(view: &ClusterView) -> Vec<Target> {
    let mut targets: Vec<Target> = view
        .nodes
        .iter()
        .filter_map(|n| {
            let roles = n.roles?;
            let role = match (roles.ingest, roles.store) {
                (true, true) => Role::Both,
                (true, false) => Role::Ingest,
                (false, true) => Role::Store,
                (false, false) => return None,
            };
            Some(Target {
                id: n.id.clone(),
                api: n.api.as_ref().map(|a| a.to_string()),
                role,
                is_self: n.id == view.self_id,
                failed_up_front: up_front_failure(n, view),
            })
        })
        .collect();
    targets.sort_by_key(|t| !t.role.is_ingest());
    targets
}

fn up_front_failure(node: &NodeInfo, view: &ClusterView) -> Option<&'static str> {
    if node.id == view.self_id {
        return None;
    }
    if !node.live {
        return Some("dead");
    }
    if matches!(node.health, Some(Health::Starting) | None) {
        return Some("not_ready");
    }
    None
}

/// The nodes known to be unable to answer before anything is asked, as
/// `id (reason)`. Under `strict` any of them fails the request with 503
/// before the first byte.
pub(crate) fn down_up_front(targets: &[Target], strict: bool) -> Result<Vec<String>, Response> {
    let down: Vec<String> = targets
        .iter()
        .filter_map(|t| Some(format!("{} ({})", t.id, t.failed_up_front?)))
        .collect();
    if strict && !down.is_empty() {
        return Err(crate::error(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "consistency strict: {} node(s) cannot answer: {}; retry when they are back, \
                 or ask with consistency=partial",
                down.len(),
                down.join(", ")
            ),
        ));
    }
    Ok(down)
}

/// The replication factor the cluster runs with: the largest one its
/// nodes publish (1 until replication exists).
pub(crate) fn view_rf(view: &ClusterView) -> u32 {
    view.nodes
        .iter()
        .filter_map(|n| n.rf)
        .max()
        .unwrap_or(1)
        .max(1)
}
