use std::io::Write;

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;
use sluice_record::OwnedRecord;

use super::{proto::*, *};
use crate::MAX_LABELS_TEXT_BYTES;

/// The decoder before the one-pass walk: prost's messages, the oracle
/// the walk must agree with.
fn prost_oracle(
    raw: Vec<u8>,
    limits: &Limits,
    now_ms: u64,
    emit: &mut dyn FnMut(Unstamped<'_>),
) -> Result<PushStats, PushError> {
    scan::check(&raw, limits)?;
    let request =
        proto::PushRequest::decode(Bytes::from(raw)).map_err(|err| PushError::BadProtobuf {
            why: err.to_string(),
        })?;
    let mut stats = PushStats::default();
    let mut scratch = Vec::new();
    for stream in &request.streams {
        let text = String::from_utf8_lossy(&stream.labels);
        if stream.labels.len() > MAX_LABELS_TEXT_BYTES {
            return Err(PushError::BadLabels {
                stream: cut(&text, 200),
                error: sluice_record::labels::LabelError::TooLong {
                    start: cut(&text, 60),
                    len: stream.labels.len(),
                    max: sluice_record::MAX_TOPIC_BYTES,
                },
            });
        }
        let labels = Labels::parse_selector(&text).map_err(|error| PushError::BadLabels {
            stream: cut(&text, 200),
            error,
        })?;
        let topic = stream_topic(&labels, &text, limits)?;
        stats.streams += 1;
        for entry in &stream.entries {
            let ms = match entry.timestamp {
                Some(ts) if ts.seconds >= 0 && (0..1_000_000_000).contains(&ts.nanos) => {
                    (ts.seconds as u64)
                        .saturating_mul(1000)
                        .saturating_add(ts.nanos as u64 / 1_000_000)
                }
                other => {
                    return Err(PushError::BadTimestamp {
                        stream: cut(&text, 200),
                        value: format!("{other:?}"),
                    });
                }
            };
            let pairs = entry.structured_metadata.len() as u64;
            one_entry(
                &topic,
                ms,
                &entry.line,
                pairs,
                limits,
                now_ms,
                &mut scratch,
                &mut stats,
                emit,
            );
        }
    }
    Ok(stats)
}

const NOW: u64 = 1_733_011_200_000;

/// A decoder run on a callback.
type Decoder<'a> = dyn Fn(&mut dyn FnMut(Unstamped<'_>)) -> Result<PushStats, PushError> + 'a;

/// A record as emitted: topic, time, flags, payload.
type Emitted = (String, u64, u8, Vec<u8>);
/// A generated stream: labels, and entries of (ns, line).
type GenStream = (Vec<(String, String)>, Vec<(u64, String)>);

/// What `decode` emitted, as owned records with a zero id.
fn run(
    format: BodyFormat,
    encoding: ContentEncoding,
    body: &[u8],
    limits: &Limits,
) -> Result<(Vec<Emitted>, PushStats), PushError> {
    let mut out = Vec::new();
    let stats = decode(format, encoding, body, limits, NOW, &mut |r| {
        out.push((
            String::from_utf8(r.topic.to_vec()).unwrap(),
            r.time_ms,
            r.flags,
            r.payload.to_vec(),
        ))
    })?;
    Ok((out, stats))
}

fn entry(ns: u64, line: &str, metadata: &[(&str, &str)]) -> EntryAdapter {
    EntryAdapter {
        timestamp: Some(Timestamp {
            seconds: (ns / 1_000_000_000) as i64,
            nanos: (ns % 1_000_000_000) as i32,
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

fn snappy_proto(request: &PushRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap()
}

#[test]
fn content_types_choose_json_only_for_application_json() {
    assert_eq!(
        BodyFormat::from_content_type(Some("application/json; charset=utf-8")),
        BodyFormat::Json
    );
    assert_eq!(
        BodyFormat::from_content_type(Some("Application/JSON")),
        BodyFormat::Json
    );
    for other in [None, Some("application/x-protobuf"), Some("text/plain")] {
        assert_eq!(BodyFormat::from_content_type(other), BodyFormat::Protobuf);
    }
}

#[test]
fn protobuf_streams_become_topics_and_timestamps_record_times() {
    let request = PushRequest {
        streams: vec![
            StreamAdapter {
                labels: Bytes::from_static(b"{job=\"api\", env=\"prod\"}"),
                entries: vec![
                    entry(1_733_011_200_123_456_789, "first", &[]),
                    entry(
                        1_733_011_201_000_000_000,
                        "second\n",
                        &[("trace_id", "abc")],
                    ),
                ],
                hash: 7,
            },
            StreamAdapter {
                labels: Bytes::from_static(b"{topic=\"plain\"}"),
                entries: vec![entry(1_733_011_202_000_000_000, "a\nb", &[])],
                hash: 0,
            },
        ],
        format: Bytes::new(),
    };
    let (records, stats) = run(
        BodyFormat::Protobuf,
        ContentEncoding::Identity,
        &snappy_proto(&request),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(
        records,
        vec![
            (
                "{env=\"prod\",job=\"api\"}".into(),
                1_733_011_200_123,
                0,
                b"first".to_vec()
            ),
            (
                "{env=\"prod\",job=\"api\"}".into(),
                1_733_011_201_000,
                0,
                b"second".to_vec()
            ),
            ("plain".into(), 1_733_011_202_000, 0, b"a b".to_vec()),
        ]
    );
    assert_eq!(stats.streams, 2);
    assert_eq!(stats.records, 3);
    assert_eq!(stats.multiline, 1);
    assert_eq!((stats.metadata_entries, stats.metadata_pairs), (1, 1));
}

#[test]
fn json_push_with_metadata_gzip_and_future_clamp() {
    let body = br#"{"streams":[{"values":[["1733011200000000000","hello"],["4000000000000000000","future",{"trace_id":"t","user":"u"}]],"stream":{"job":"fluent-bit","host":"h1"}}]}"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body).unwrap();
    let gz = gz.finish().unwrap();
    let (records, stats) = run(
        BodyFormat::Json,
        ContentEncoding::Gzip,
        &gz,
        &Limits::default(),
    )
    .unwrap();
    let topic = "{host=\"h1\",job=\"fluent-bit\"}";
    assert_eq!(
        records[0],
        (topic.into(), 1_733_011_200_000, 0, b"hello".to_vec())
    );
    assert_eq!(
        records[1],
        (
            topic.into(),
            NOW + sluice_record::MAX_FUTURE_MS,
            0,
            b"future".to_vec()
        )
    );
    assert_eq!((stats.metadata_entries, stats.metadata_pairs), (1, 2));
}

#[test]
fn bad_requests_get_errors_naming_what_is_wrong() {
    let limits = Limits::default();
    let json = |body: &str| {
        run(
            BodyFormat::Json,
            ContentEncoding::Identity,
            body.as_bytes(),
            &limits,
        )
    };
    let err = json(r#"{"streams":[{"stream":{"a":"b"},"values":[[1733011200000000000,"x"]]}]}"#)
        .unwrap_err();
    assert!(matches!(err, PushError::BadJson { .. }), "{err}");
    let err = json(r#"{"streams":[{"stream":{"a":"b"},"values":[["-5","x"]]}]}"#).unwrap_err();
    assert!(err.to_string().contains("bad timestamp \"-5\""), "{err}");
    let err = json(r#"{"streams":[{"stream":{},"values":[]}]}"#).unwrap_err();
    assert!(matches!(err, PushError::BadLabels { .. }), "{err}");
    let long = "v".repeat(300);
    let err = json(&format!(
        r#"{{"streams":[{{"stream":{{"a":"{long}"}},"values":[["1","x"]]}}]}}"#
    ))
    .unwrap_err();
    assert!(
        err.to_string().contains("stream {a=\"vvv") && err.to_string().contains("at most 255"),
        "{err}"
    );
    assert!(!err.too_large());
    let err = json(r#"{"nostreams":[]}"#).unwrap_err();
    assert!(err.to_string().contains("streams"), "{err}");
    let err = run(
        BodyFormat::Protobuf,
        ContentEncoding::Identity,
        b"not snappy",
        &limits,
    )
    .unwrap_err();
    assert!(matches!(err, PushError::BadCompression { .. }), "{err}");
}

#[test]
fn limits_refuse_with_413_before_decoding() {
    let limits = Limits {
        max_entries: 2,
        max_labels: 2,
        max_body_bytes: 10_000,
        ..Limits::default()
    };
    let three = PushRequest {
        streams: vec![StreamAdapter {
            labels: Bytes::from_static(b"{a=\"b\"}"),
            entries: vec![entry(1, "a", &[]), entry(2, "b", &[]), entry(3, "c", &[])],
            hash: 0,
        }],
        format: Bytes::new(),
    };
    let err = run(
        BodyFormat::Protobuf,
        ContentEncoding::Identity,
        &snappy_proto(&three),
        &limits,
    )
    .unwrap_err();
    assert_eq!(err, PushError::TooManyEntries { limit: 2 });
    assert!(err.too_large());
    let err = run(
        BodyFormat::Json,
        ContentEncoding::Identity,
        br#"{"streams":[{"stream":{"a":"b"},"values":[["1","a"],["2","b"],["3","c"]]}]}"#,
        &limits,
    )
    .unwrap_err();
    assert_eq!(err, PushError::TooManyEntries { limit: 2 });
    let err = run(
        BodyFormat::Json,
        ContentEncoding::Identity,
        br#"{"streams":[{"stream":{"a":"1","b":"2","c":"3"},"values":[]}]}"#,
        &limits,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PushError::TooManyLabels {
                count: 3,
                limit: 2,
                ..
            }
        ),
        "{err}"
    );
    let big = vec![b' '; 10_001];
    let err = run(BodyFormat::Json, ContentEncoding::Identity, &big, &limits).unwrap_err();
    assert!(matches!(err, PushError::BodyTooLarge { .. }));
}

#[test]
fn lines_over_the_limit_are_cut_and_flagged() {
    let limits = Limits {
        max_line_bytes: 4,
        ..Limits::default()
    };
    let (records, stats) = run(
        BodyFormat::Json,
        ContentEncoding::Identity,
        br#"{"streams":[{"stream":{"a":"b"},"values":[["1000000","abcdefgh"]]}]}"#,
        &limits,
    )
    .unwrap();
    assert_eq!(records[0].3, b"abcd");
    assert_eq!(records[0].2, sluice_record::FLAG_TRUNCATED);
    assert_eq!(stats.truncated, 1);
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,8}"
}

fn stream() -> impl Strategy<Value = GenStream> {
    (
        proptest::collection::btree_map(label_name(), "[ -~]{0,10}", 1..4)
            .prop_map(|m| m.into_iter().collect::<Vec<_>>()),
        proptest::collection::vec((0u64..2_000_000_000_000_000_000, "[^\n]{0,30}"), 0..5),
    )
}

fn owned(records: Vec<Emitted>) -> Vec<OwnedRecord> {
    records
        .into_iter()
        .map(|(topic, ms, flags, payload)| OwnedRecord {
            id: sluice_record::Ulid::from_parts(ms, 0),
            flags,
            topic: topic.into_bytes(),
            payload,
        })
        .collect()
}

proptest! {
    /// The same streams pushed as JSON and as protobuf make the same
    /// records.
    #[test]
    fn json_and_protobuf_agree(streams in proptest::collection::vec(stream(), 0..4)) {
        let mut json_streams = Vec::new();
        let mut request = PushRequest::default();
        for (labels, entries) in &streams {
            let labels_json: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            let values: Vec<serde_json::Value> = entries
                .iter()
                .map(|(ns, line)| serde_json::json!([ns.to_string(), line]))
                .collect();
            json_streams.push(serde_json::json!({"stream": labels_json, "values": values}));
            let text = labels
                .iter()
                .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap()))
                .collect::<Vec<_>>()
                .join(", ");
            request.streams.push(StreamAdapter {
                labels: Bytes::from(format!("{{{text}}}")),
                entries: entries.iter().map(|(ns, line)| entry(*ns, line, &[])).collect(),
                hash: 0,
            });
        }
        let json = serde_json::to_vec(&serde_json::json!({"streams": json_streams})).unwrap();
        let limits = Limits::default();
        let from_json = run(BodyFormat::Json, ContentEncoding::Identity, &json, &limits).unwrap();
        let from_proto = run(BodyFormat::Protobuf, ContentEncoding::Identity, &snappy_proto(&request), &limits).unwrap();
        prop_assert_eq!(owned(from_json.0), owned(from_proto.0));
        prop_assert_eq!(from_json.1, from_proto.1);
    }

    /// Any bytes, as any format and encoding: an answer, never a panic,
    /// and never more records than the entry limit.
    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), json in any::<bool>(), enc in 0u8..3) {
        let limits = Limits { max_entries: 8, ..Limits::default() };
        let format = if json { BodyFormat::Json } else { BodyFormat::Protobuf };
        let encoding = [ContentEncoding::Identity, ContentEncoding::Gzip, ContentEncoding::Deflate][enc as usize];
        if let Ok((records, _)) = run(format, encoding, &body, &limits) {
            prop_assert!(records.len() <= 8);
        }
        // The same bytes as the uncompressed protobuf.
        let mut n = 0;
        let _ = decode_protobuf(&body, &limits, NOW, &mut |_| n += 1);
        prop_assert!(n <= 8);
    }

    /// The one-pass decoder agrees with prost's: on any well-formed
    /// request (streams with labels before or after their entries,
    /// metadata, unknown fields) the same records and counts; on any bytes,
    /// both accept or both refuse, and what both accept they decode alike.
    #[test]
    fn the_wire_walk_agrees_with_prost(
        streams in proptest::collection::vec(
            (
                proptest::sample::select(vec!["{job=\"a\"}", "{job=\"b\", x=\"y\"}", "{}", "{topic=\"t\"}", "nope"]),
                proptest::collection::vec((0u64..4_000_000_000_000_000_000, "[ -~]{0,30}", 0usize..3), 0..6),
                any::<bool>(),
            ),
            0..4,
        ),
        noise in proptest::collection::vec(any::<u8>(), 0..64),
        cut_at in any::<proptest::sample::Index>(),
    ) {
        let limits = Limits::default();
        let mut raw = Vec::new();
        for (labels, entries, labels_last) in &streams {
            let stream = StreamAdapter {
                labels: Bytes::copy_from_slice(labels.as_bytes()),
                entries: entries
                    .iter()
                    .map(|(ns, line, pairs)| entry(*ns, line, &[("k", "v"), ("k2", "v2")][..*pairs]))
                    .collect(),
                hash: 7,
            };
            let mut body = Vec::new();
            if *labels_last {
                // Entries first, then the labels: protobuf allows any order.
                for e in &stream.entries {
                    prost::encoding::message::encode(2, e, &mut body);
                }
                prost::encoding::bytes::encode(1, &stream.labels, &mut body);
            } else {
                stream.encode(&mut body).unwrap();
            }
            prost::encoding::bytes::encode(1, &body, &mut raw);
        }
        let collect = |f: &Decoder<'_>| {
            let mut out = Vec::new();
            f(&mut |r| out.push((r.topic.to_vec(), r.time_ms, r.flags, r.payload.to_vec())))
                .map(|stats| (out, stats))
        };
        let walk = collect(&|emit| decode_protobuf(&raw, &limits, NOW, emit));
        let oracle = collect(&|emit| prost_oracle(raw.clone(), &limits, NOW, emit));
        prop_assert_eq!(walk.is_ok(), oracle.is_ok(), "walk {:?} prost {:?}", walk, oracle);
        if let (Ok(walk), Ok(oracle)) = (&walk, &oracle) {
            prop_assert_eq!(walk, oracle);
        }
        // Damaged: cut short, or with noise appended.
        for bytes in [raw[..cut_at.index(raw.len() + 1)].to_vec(), [raw.clone(), noise.clone()].concat()] {
            let walk = collect(&|emit| decode_protobuf(&bytes, &limits, NOW, emit));
            let oracle = collect(&|emit| prost_oracle(bytes.clone(), &limits, NOW, emit));
            prop_assert_eq!(walk.is_ok(), oracle.is_ok(), "walk {:?} prost {:?}", walk, oracle);
            if let (Ok(walk), Ok(oracle)) = (&walk, &oracle) {
                prop_assert_eq!(walk, oracle);
            }
        }
    }
}
