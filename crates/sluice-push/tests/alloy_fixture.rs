//! The Alloy-shaped push request in `tests/fixtures/push/alloy-push.pb.snappy`,
//! built here with the prost messages the decoder reads.
//!
//! Alloy's `loki.write` (grafana/alloy `internal/component/common/loki/client`)
//! sends one `PushRequest` per batch: each stream's `labels` is Prometheus'
//! `Labels.String()` (keys sorted, `", "` between pairs, values quoted as Go
//! does), entries with a timestamp, a line and optional structured metadata,
//! no `hash`; marshalled and compressed as one snappy block, sent with
//! `Content-Type: application/x-protobuf` and no `Content-Encoding`. Alloy
//! cannot be installed here, so the request is built from that shape, not
//! captured; the file is checked byte for byte against what these messages
//! encode to (set `SLUICE_WRITE_FIXTURES=1` to write it again), and the
//! black-box test `push::alloy_protobuf_snappy_push_is_queryable` sends it
//! to a real node.

use bytes::Bytes;
use prost::Message;
use sluice_push::loki::proto::*;

/// 2026-11-30T12:00:00Z.
const BASE_S: i64 = 1_796_040_000;

fn entry(offset_ms: i64, line: &str, metadata: &[(&str, &str)]) -> EntryAdapter {
    EntryAdapter {
        timestamp: Some(Timestamp {
            seconds: BASE_S + offset_ms / 1000,
            nanos: ((offset_ms % 1000) * 1_000_000 + 123) as i32,
        }),
        line: Bytes::copy_from_slice(line.as_bytes()),
        structured_metadata: metadata
            .iter()
            .map(|(k, v)| LabelPairAdapter {
                name: Bytes::copy_from_slice(k.as_bytes()),
                value: Bytes::copy_from_slice(v.as_bytes()),
            })
            .collect(),
        parsed: vec![],
    }
}

/// The request the fixture holds.
pub fn alloy_request() -> PushRequest {
    PushRequest {
        streams: vec![
            StreamAdapter {
                labels: Bytes::from_static(
                    b"{filename=\"/var/log/app/api.log\", job=\"loki.source.file\", service_name=\"api\"}",
                ),
                entries: vec![
                    entry(0, "level=info msg=\"request served\" path=/health status=200", &[]),
                    entry(
                        250,
                        "level=error msg=\"upstream timeout\" path=/orders status=504",
                        &[("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")],
                    ),
                    entry(500, "level=info msg=\"caf\u{e9} \u{2713}\" path=/menu status=200", &[]),
                ],
                hash: 0,
            },
            StreamAdapter {
                labels: Bytes::from_static(
                    b"{container=\"web\", namespace=\"prod\", pod=\"web-7d9f\", service_name=\"web\"}",
                ),
                entries: vec![
                    entry(1000, "GET /index.html 200 512", &[]),
                    entry(1001, "GET /missing 404 0", &[]),
                ],
                hash: 0,
            },
        ],
        format: Bytes::new(),
    }
}

#[test]
fn the_alloy_fixture_is_what_the_messages_encode_to() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/push/alloy-push.pb.snappy"
    );
    let built = snap::raw::Encoder::new()
        .compress_vec(&alloy_request().encode_to_vec())
        .unwrap();
    if std::env::var_os("SLUICE_WRITE_FIXTURES").is_some() {
        std::fs::write(path, &built).unwrap();
    }
    let saved = std::fs::read(path).expect("the fixture (write it with SLUICE_WRITE_FIXTURES=1)");
    assert_eq!(saved, built, "{path} differs from the messages");
    // And it reads back to the same messages.
    let raw = snap::raw::Decoder::new().decompress_vec(&saved).unwrap();
    assert_eq!(
        PushRequest::decode(raw.as_slice()).unwrap(),
        alloy_request()
    );
}
