//! `POST /loki/api/v1/push`: see [`sluice_push::loki`] for the decoding
//! and the mapping to records, and the parent module for the flow.

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use sluice_ingest::PushProtocol;
use sluice_push::{
    encoding::ContentEncoding,
    loki::{self, BodyFormat},
};

use super::{Failure, Peer, admit, count, decode_on_pool, write};
use crate::ApiState;

const PROTOCOL: PushProtocol = PushProtocol::Loki;

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(crate) async fn push(
    State(state): State<ApiState>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let format = BodyFormat::from_content_type(header_str(&headers, header::CONTENT_TYPE));
    let encoding =
        ContentEncoding::parse(header_str(&headers, header::CONTENT_ENCODING)).map_err(|err| {
            super::metrics::refused(PROTOCOL, err.kind());
            Failure::new(StatusCode::BAD_REQUEST, err.to_string())
        })?;
    let admitted = admit(&state, PROTOCOL, &peer, &headers, body).await?;
    let limits = admitted.push.config.limits;
    let body = admitted.body.clone();
    let (batch, stats) = decode_on_pool(&admitted, PROTOCOL, move |batch| {
        let now = sluice_record::now_ms();
        // Stamped in time order when written: Loki answers no ids.
        loki::decode(format, encoding, &body, &limits, now, &mut |record| {
            batch.push_unstamped(record);
        })
    })
    .await?;
    count(PROTOCOL, &stats);
    write(&admitted.push, batch).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
