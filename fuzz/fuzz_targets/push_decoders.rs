//! The HTTP push decoders (`sluice_push`) on arbitrary bytes: Loki push as
//! JSON and as protobuf (snappy block, and already uncompressed), under
//! every content encoding, and Elasticsearch `_bulk`. None may panic; every
//! record handed out must have a valid topic, no newline, a payload within
//! the line limit and a time no more than a minute ahead; the entry limit
//! must hold; and a bulk response must be JSON with one item per action.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_push::{
    Limits,
    elastic::{self, BulkConfig},
    encoding::ContentEncoding,
    loki::{self, BodyFormat},
};
use sluice_record::{MAX_FUTURE_MS, Ulid, Unstamped, is_valid_topic};

const NOW: u64 = 1_796_040_000_000;
const LIMITS: Limits = Limits {
    max_body_bytes: 1 << 20,
    max_decompressed_bytes: 1 << 20,
    max_entries: 64,
    max_line_bytes: 128,
    max_labels: 8,
};

fn check(record: &Unstamped<'_>) {
    assert!(is_valid_topic(record.topic), "{:?}", record.topic);
    assert!(!record.payload.contains(&b'\n'));
    assert!(record.payload.len() <= LIMITS.max_line_bytes);
    assert!(record.time_ms <= NOW + MAX_FUTURE_MS);
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let encoding = [
        ContentEncoding::Identity,
        ContentEncoding::Gzip,
        ContentEncoding::Deflate,
    ][usize::from(selector % 3)];
    let mut records = 0usize;
    match selector / 3 % 4 {
        0 | 1 => {
            let format = if selector / 3 % 4 == 0 {
                BodyFormat::Json
            } else {
                BodyFormat::Protobuf
            };
            let _ = loki::decode(format, encoding, body, &LIMITS, NOW, &mut |r| {
                check(&r);
                records += 1;
            });
        }
        2 => {
            let _ = loki::decode_protobuf(body, &LIMITS, NOW, &mut |r| {
                check(&r);
                records += 1;
            });
        }
        _ => {
            let decoded = elastic::decode(
                encoding,
                body,
                Some("fuzz"),
                &BulkConfig::default(),
                &LIMITS,
                NOW,
                &mut |r| {
                    check(&r);
                    records += 1;
                    Ulid(records as u128)
                },
            );
            if let Ok((items, _)) = decoded {
                assert!(items.len() <= LIMITS.max_entries);
                let mut out = Vec::new();
                elastic::write_response(1, &items, &mut out);
                let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
                assert_eq!(parsed["items"].as_array().unwrap().len(), items.len());
            }
        }
    }
    assert!(records <= LIMITS.max_entries);
});
