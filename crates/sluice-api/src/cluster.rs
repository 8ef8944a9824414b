//! The cluster as the API sees it: the membership view, the HTTP client
//! that reaches other nodes, and the operator endpoints.
//!
//! ```text
//! GET  /cluster               every node this one knows, as JSON
//! POST /cluster/forget?node=  drop a dead node from the view
//! ```

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use sluice_cluster::{ForgetError, Membership};

use crate::{ApiState, error};

/// How long a query waits for another node's next frame by default before
/// it counts the node as failed (`timeout`).
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a node needs to act for the whole cluster.
#[derive(Clone)]
pub struct Cluster {
    /// The membership view (a cluster of one for a lone `ingeststore`).
    pub membership: Arc<dyn Membership>,
    /// The client for other nodes' APIs, bound to `--bind`.
    pub http: reqwest::Client,
    /// The default of a query's `node_timeout`.
    pub node_timeout: Duration,
}

impl Cluster {
    /// A cluster of one (this node, with `roles` and its `api` address),
    /// with a default client: for tools and in-process tests.
    pub fn solo(roles: sluice_cluster::Roles, api: &str) -> Cluster {
        let keys = vec![
            (sluice_cluster::keys::ROLES.to_string(), roles.to_string()),
            (sluice_cluster::keys::API.to_string(), api.to_string()),
            (
                sluice_cluster::keys::HEALTH.to_string(),
                "ready".to_string(),
            ),
        ];
        let id = sluice_record::Ulid::new().to_string();
        Cluster {
            membership: Arc::new(sluice_cluster::Solo::new("solo", &id, 1, keys)),
            http: reqwest::Client::new(),
            node_timeout: DEFAULT_NODE_TIMEOUT,
        }
    }
}

/// `GET /cluster`.
pub(crate) async fn view(State(state): State<ApiState>) -> Response {
    let view = state.cluster.membership.view();
    let body = serde_json::to_string(&*view).expect("the view serialises");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(crate) struct ForgetParams {
    node: String,
}

/// `POST /cluster/forget?node=ID`.
pub(crate) async fn forget(
    State(state): State<ApiState>,
    Query(params): Query<ForgetParams>,
) -> Response {
    match state.cluster.membership.forget(&params.node) {
        Ok(()) => {
            tracing::info!(node = %params.node, "forgot a dead node at an operator's request");
            (StatusCode::OK, format!("forgot node {}\n", params.node)).into_response()
        }
        Err(e @ ForgetError::Unknown { .. }) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ (ForgetError::Live { .. } | ForgetError::IsSelf { .. })) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
    }
}
