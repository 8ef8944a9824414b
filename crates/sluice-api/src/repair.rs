//! Repair's endpoints (see `sluice_store::repair`):
//!
//! - `GET /store/manifest?epoch=E&since=N&max_bytes=B`: the manifest
//!   entries this store wrote from cursor `N` of epoch `E` on (0 and 0:
//!   from the start), as JSON `{epoch, next, entries}`. Stores pull each
//!   other's so each knows who else holds its batches.
//! - `POST /store/repair/copy?min=ULID&max=ULID&to=ID,ID`: copy this
//!   store's records in `min..=max` to the named stores, all of which must
//!   take it; `sluice repair` asks it of a store that holds records with
//!   fewer than RF copies. Answers 200 with `{name, records, bytes,
//!   targets}`, 400 for a bad request, 404 on a node that repairs nothing
//!   (no store role, or RF 1), 409 for a target that is not a live, ready
//!   store in this node's view, 422 when this store holds no record of the
//!   range, 502 when a target refused or failed, 500 for a local failure.

use axum::{
    Json,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use sluice_record::Ulid;
use sluice_store::repair::{self, RepairError};

use crate::{ApiState, error};

#[derive(Deserialize)]
pub(crate) struct ManifestParams {
    #[serde(default)]
    epoch: u64,
    #[serde(default)]
    since: u64,
    #[serde(default = "default_page_bytes")]
    max_bytes: u64,
}

fn default_page_bytes() -> u64 {
    1 << 20
}

pub(crate) async fn manifest(
    State(state): State<ApiState>,
    Query(params): Query<ManifestParams>,
) -> Response {
    let Some(store) = state.store.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "this node does not run the store role",
        );
    };
    let page = tokio::task::spawn_blocking(move || {
        repair::manifest_page(&store, params.epoch, params.since, params.max_bytes)
    })
    .await;
    match page {
        Ok(Ok(page)) => Json(page).into_response(),
        Ok(Err(err)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("read the manifest: {err}"),
        ),
        Err(err) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("manifest task failed: {err}"),
        ),
    }
}

#[derive(Deserialize)]
pub(crate) struct CopyParams {
    min: String,
    max: String,
    to: String,
}

pub(crate) async fn copy(
    State(state): State<ApiState>,
    Query(params): Query<CopyParams>,
) -> Response {
    let Some(repairer) = state.repair.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "this node repairs nothing: it does not run the store role, or its \
             --replication-factor is 1",
        );
    };
    let parse = |what: &str, text: &str| {
        Ulid::from_string(text).map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                format!(
                    "{what}={text:?} is not a ULID; give the range's first and last record ids"
                ),
            )
        })
    };
    let (min, max) = match (parse("min", &params.min), parse("max", &params.max)) {
        (Ok(min), Ok(max)) => (min, max),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    if min > max {
        return error(
            StatusCode::BAD_REQUEST,
            format!("min {min} is after max {max}; give min <= max"),
        );
    }
    let to: Vec<String> = params
        .to
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect();
    if to.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "to= names no store; give the node ids to copy to, comma-separated",
        );
    }
    match repairer.copy_range(min, max, &to).await {
        Ok(copied) => Json(copied).into_response(),
        Err(err) => {
            let status = match &err {
                RepairError::UnknownTarget { .. } => StatusCode::CONFLICT,
                RepairError::Nothing { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                RepairError::Replicate(_) => StatusCode::BAD_GATEWAY,
                RepairError::Read { .. } | RepairError::Task(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            error(status, err.to_string())
        }
    }
}
