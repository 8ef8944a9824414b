//! Whole frames, byte for byte as real senders write them, through
//! `frame_len` and `decode_frame`; plus property tests.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use proptest::prelude::*;
use serde_json::{Value as Json, json};

use crate::*;

/// A msgpack writer choosing encodings explicitly.
#[derive(Default, Clone)]
struct W(Vec<u8>);

impl W {
    fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    /// fixstr (short strings).
    fn s(self, s: &str) -> Self {
        assert!(s.len() < 32);
        self.raw(&[0xa0 | s.len() as u8]).raw(s.as_bytes())
    }
    fn str8(self, b: &[u8]) -> Self {
        self.raw(&[0xd9, b.len() as u8]).raw(b)
    }
    fn str32(self, b: &[u8]) -> Self {
        self.raw(&[0xdb])
            .raw(&(b.len() as u32).to_be_bytes())
            .raw(b)
    }
    fn bin8(self, b: &[u8]) -> Self {
        self.raw(&[0xc4, b.len() as u8]).raw(b)
    }
    fn bin32(self, b: &[u8]) -> Self {
        self.raw(&[0xc6])
            .raw(&(b.len() as u32).to_be_bytes())
            .raw(b)
    }
    fn arr(self, n: u8) -> Self {
        self.raw(&[0x90 | n])
    }
    fn map(self, n: u8) -> Self {
        self.raw(&[0x80 | n])
    }
    fn map32(self, n: u32) -> Self {
        self.raw(&[0xdf]).raw(&n.to_be_bytes())
    }
    fn arr32(self, n: u32) -> Self {
        self.raw(&[0xdd]).raw(&n.to_be_bytes())
    }
    /// EventTime as fixext8.
    fn et(self, secs: u32, nanos: u32) -> Self {
        self.raw(&[0xd7, 0])
            .raw(&secs.to_be_bytes())
            .raw(&nanos.to_be_bytes())
    }
    /// EventTime as ext8 of length 8.
    fn et8(self, secs: u32, nanos: u32) -> Self {
        self.raw(&[0xc7, 8, 0])
            .raw(&secs.to_be_bytes())
            .raw(&nanos.to_be_bytes())
    }
    fn u32(self, v: u32) -> Self {
        self.raw(&[0xce]).raw(&v.to_be_bytes())
    }
    fn f64(self, v: f64) -> Self {
        self.raw(&[0xcb]).raw(&v.to_bits().to_be_bytes())
    }
    fn nil(self) -> Self {
        self.raw(&[0xc0])
    }
}

#[derive(Debug, PartialEq)]
struct Got {
    tag: String,
    time_ns: Option<i64>,
    record: Json,
    raw: String,
}

/// Decodes a frame after checking that `frame_len` finds exactly it and
/// that every proper prefix asks for more bytes.
fn decode_with(frame: &[u8], limits: &Limits) -> Result<(FrameInfo, Vec<Got>), FluentError> {
    let mut with_next = frame.to_vec();
    with_next.push(0xc0);
    assert_eq!(frame_len(&with_next, limits), Ok(Some(frame.len())));
    for end in 0..frame.len() {
        assert_eq!(
            frame_len(&frame[..end], limits),
            Ok(None),
            "prefix of {end} bytes"
        );
    }
    let mut got = Vec::new();
    let info = decode_frame(frame, limits, &mut Scratch::new(), |e| {
        let raw = std::str::from_utf8(e.payload)
            .expect("payload is UTF-8")
            .to_owned();
        assert!(!raw.contains('\n'));
        let record: Json = serde_json::from_str(&raw).expect("payload is JSON");
        assert!(record.is_object());
        got.push(Got {
            tag: e.tag.to_owned(),
            time_ns: e.time_ns,
            record,
            raw,
        });
    })?;
    assert_eq!(info.events, got.len() as u64);
    Ok((info, got))
}

fn decode(frame: &[u8]) -> (FrameInfo, Vec<Got>) {
    decode_with(frame, &Limits::default()).unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

const T: u32 = 1_700_000_000;
const T_NS: i64 = 1_700_000_000_000_000_000;

#[test]
fn fluent_bit_forward_mode_with_map32_options_and_chunk() {
    let frame = W::default()
        .arr(3)
        .s("kube.var.log")
        .arr(2)
        .arr(2)
        .et(T, 5)
        .map32(2)
        .s("log")
        .s("first line")
        .s("stream")
        .s("stdout")
        .arr(2)
        .et(T + 1, 999_999_999)
        .map32(1)
        .s("log")
        .str8(b"second")
        .map32(2)
        .s("size")
        .raw(&[0xd3, 0, 0, 0, 0, 0, 0, 0, 2]) // int64 holding 2
        .s("chunk")
        .s("qnm4yBO5JUZ0wRIUUXTUjQ==")
        .0;
    let (info, got) = decode(&frame);
    assert_eq!(info.mode, Some(Mode::Forward));
    assert_eq!(info.size, Some(2));
    assert_eq!(
        info.chunk_bytes(&frame),
        Some(&b"qnm4yBO5JUZ0wRIUUXTUjQ=="[..])
    );
    assert_eq!(got[0].tag, "kube.var.log");
    assert_eq!(got[0].time_ns, Some(T_NS + 5));
    assert_eq!(got[0].raw, r#"{"log":"first line","stream":"stdout"}"#);
    assert_eq!(got[1].time_ns, Some(T_NS + 1_999_999_999));
    assert_eq!(got[1].record, json!({"log": "second"}));
}

#[test]
fn compressed_packed_forward_with_two_gzip_members() {
    let entry = |secs, msg: &str| W::default().arr(2).et(secs, 0).map(1).s("message").s(msg).0;
    let mut gz = gzip(&entry(T, "one"));
    gz.extend_from_slice(&gzip(
        &[entry(T + 1, "two"), entry(T + 2, "three")].concat(),
    ));
    let frame = W::default()
        .arr(3)
        .s("app")
        .bin32(&gz)
        .map(3)
        .s("size")
        .raw(&[3])
        .s("compressed")
        .s("gzip")
        .s("chunk")
        .bin8(b"\x01\x02id")
        .0;
    let (info, got) = decode(&frame);
    assert_eq!(info.mode, Some(Mode::CompressedPackedForward));
    assert_eq!(info.chunk_bytes(&frame), Some(&b"\x01\x02id"[..]));
    let msgs: Vec<_> = got
        .iter()
        .map(|g| (g.time_ns, g.record["message"].clone()))
        .collect();
    assert_eq!(
        msgs,
        vec![
            (Some(T_NS), json!("one")),
            (Some(T_NS + 1_000_000_000), json!("two")),
            (Some(T_NS + 2_000_000_000), json!("three")),
        ]
    );
    // The same chunk as a str, as Fluentd's out_forward with `compress gzip` sends it.
    let frame = W::default()
        .arr(3)
        .s("app")
        .str32(&gz)
        .map(1)
        .s("compressed")
        .s("gzip")
        .0;
    assert_eq!(decode(&frame).1.len(), 3);
}

#[test]
fn fluentd_packed_forward_as_str32_with_text_and_base64_chunk() {
    // Fluentd out_forward: entries as str32, EventTime or (time_as_integer)
    // an int, options {"size", "compressed": "text", "chunk": base64 + "\n"}.
    let entries = W::default()
        .arr(2)
        .et(T, 250_000_000)
        .map(1)
        .s("msg")
        .s("a")
        .arr(2)
        .u32(T)
        .map(1)
        .s("msg")
        .s("b")
        .0;
    let frame = W::default()
        .arr(3)
        .s("fluentd.test")
        .str32(&entries)
        .map(3)
        .s("size")
        .raw(&[2])
        .s("compressed")
        .s("text")
        .s("chunk")
        .s("YWJjZGVmZ2hpamtsbW5vcA==\n")
        .0;
    let (info, got) = decode(&frame);
    assert_eq!(info.mode, Some(Mode::PackedForward));
    assert_eq!(
        info.chunk_bytes(&frame),
        Some(&b"YWJjZGVmZ2hpamtsbW5vcA==\n"[..])
    );
    assert_eq!(got[0].time_ns, Some(T_NS + 250_000_000));
    assert_eq!(got[1].time_ns, Some(T_NS));
    assert_eq!(got[1].record, json!({"msg": "b"}));
    // Without options at all, and with nil options.
    let frame = W::default().arr(2).s("t").bin8(&entries).0;
    assert_eq!(decode(&frame).1.len(), 2);
    let frame = W::default().arr(3).s("t").bin8(&entries).nil().0;
    assert_eq!(decode(&frame).0.chunk, None);
}

#[test]
fn docker_driver_message_mode() {
    let record = |w: W| {
        w.map(4)
            .s("container_id")
            .str8(b"3f2a9c0d1e2b3f2a9c0d1e2b3f2a9c0d1e2b3f2a9c0d1e2b3f2a9c0d1e2b3f2a")
            .s("container_name")
            .s("/web-1")
            .s("source")
            .s("stderr")
            .s("log")
            .s("GET /health 200")
    };
    // fluentd-sub-second-precision: EventTime; empty options map.
    let frame = record(W::default().arr(4).s("docker.web").et(T, 42))
        .map(0)
        .0;
    let (info, got) = decode(&frame);
    assert_eq!((info.mode, info.chunk.clone()), (Some(Mode::Message), None));
    assert_eq!(got[0].time_ns, Some(T_NS + 42));
    assert_eq!(got[0].record["container_name"], "/web-1");
    assert!(got[0].raw.starts_with(r#"{"container_id":"3f2a"#));
    assert!(
        got[0]
            .raw
            .ends_with(r#""source":"stderr","log":"GET /health 200"}"#)
    );
    // fluentd-async + RequestAck: options {"chunk": id}; integer time.
    let frame = record(W::default().arr(4).s("docker.web").u32(T))
        .map(1)
        .s("chunk")
        .s("MTIzNDU2Nzg5MA==")
        .0;
    let (info, got) = decode(&frame);
    assert_eq!(info.chunk_bytes(&frame), Some(&b"MTIzNDU2Nzg5MA=="[..]));
    assert_eq!(got[0].time_ns, Some(T_NS));
}

#[test]
fn message_mode_time_forms() {
    let frame = |time: W| time.map(1).s("k").s("v").0;
    let prefix = || W::default().arr(3).s("t");
    assert_eq!(
        decode(&frame(prefix().raw(&[0x7f]))).1[0].time_ns,
        Some(127_000_000_000)
    );
    assert_eq!(
        decode(&frame(prefix().raw(&[0xd2, 0xff, 0xff, 0xff, 0xfe]))).1[0].time_ns,
        Some(-2_000_000_000)
    );
    assert_eq!(
        decode(&frame(prefix().f64(1.7e9 + 0.5))).1[0].time_ns,
        Some(T_NS + 500_000_000)
    );
    assert_eq!(
        decode(&frame(
            prefix().raw(&[0xca]).raw(&4.0f32.to_bits().to_be_bytes())
        ))
        .1[0]
            .time_ns,
        Some(4_000_000_000)
    );
    assert_eq!(
        decode(&frame(prefix().et8(T, 7))).1[0].time_ns,
        Some(T_NS + 7)
    );
    assert_eq!(decode(&frame(prefix().nil())).1[0].time_ns, None);
    assert_eq!(decode(&frame(prefix().raw(&[0]))).1[0].time_ns, None);
    // A nil record is skipped, as Fluentd does.
    let (info, got) = decode(&W::default().arr(3).s("t").u32(T).nil().0);
    assert_eq!((info.events, info.skipped, got.len()), (0, 1, 0));
}

#[test]
fn fluent_bit_metadata_entries_and_group_markers() {
    let frame = W::default()
        .arr(3)
        .s("otel")
        .arr32(4)
        // Group start: time -1, metadata, group attributes.
        .arr(2)
        .arr(2)
        .raw(&[0xff])
        .map(1)
        .s("schema")
        .s("otlp")
        .map(1)
        .s("resource")
        .map(0)
        .arr(2)
        .arr(2)
        .et(T, 1)
        .map32(1)
        .s("otlp")
        .map(1)
        .s("severity")
        .s("INFO")
        .map32(1)
        .s("message")
        .s("hello")
        .arr(2)
        .arr(2)
        .et(T, 2)
        .map(0)
        .map(1)
        .s("message")
        .s("again")
        // Group end: time -2.
        .arr(2)
        .arr(2)
        .raw(&[0xfe])
        .map(0)
        .map(0)
        .map32(1)
        .s("fluent_signal")
        .raw(&[0])
        .0;
    let (info, got) = decode(&frame);
    assert_eq!((info.events, info.skipped), (2, 2));
    assert_eq!(got[0].time_ns, Some(T_NS + 1));
    assert_eq!(got[0].raw, r#"{"message":"hello"}"#);
    assert_eq!(got[1].record, json!({"message": "again"}));
}

#[test]
fn heartbeat_and_empty_frames() {
    let (info, got) = decode(&[0xc0]);
    assert!(info.heartbeat && got.is_empty() && info.mode.is_none());
    let (info, _) = decode(&W::default().arr(2).s("t").arr(0).0);
    assert_eq!((info.mode, info.events), (Some(Mode::Forward), 0));
    let (info, _) = decode(&W::default().arr(2).s("t").bin8(b"").0);
    assert_eq!((info.mode, info.events), (Some(Mode::PackedForward), 0));
    let frame = W::default()
        .arr(3)
        .s("t")
        .bin8(b"")
        .map(1)
        .s("compressed")
        .s("gzip")
        .0;
    assert_eq!(decode(&frame).0.mode, Some(Mode::CompressedPackedForward));
}

#[test]
fn records_become_valid_json() {
    let frame = W::default()
        .arr(3)
        .s("t")
        .u32(T)
        .map(9)
        .s("quote\"key")
        .s("a \"b\" \\ c")
        .s("ctl")
        .raw(&[0xa5, b'\n', b'\t', 0x01, 0x1f, 0x7f])
        .s("bin")
        .bin8(b"\x00raw\xff")
        .s("bad")
        .raw(&[0xa4, b'o', 0xc3, 0x28, b'k'])
        .s("nested")
        .map(2)
        .s("a")
        .arr(3)
        .raw(&[1, 0xff])
        .f64(0.25)
        .s("b")
        .map(1)
        .s("c")
        .raw(&[0xc3])
        .s("nan")
        .f64(f64::NAN)
        .raw(&[42])
        .s("int key")
        .s("utf8")
        .s("héllo ✓")
        .s("big")
        .raw(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
        .0;
    let (_, got) = decode(&frame);
    let r = &got[0].record;
    assert_eq!(r["quote\"key"], "a \"b\" \\ c");
    assert_eq!(r["ctl"], "\n\t\u{1}\u{1f}\u{7f}");
    assert_eq!(r["bin"], "\u{0}raw\u{FFFD}");
    assert_eq!(r["bad"], "o\u{FFFD}(k");
    assert_eq!(r["nested"], json!({"a": [1, -1, 0.25], "b": {"c": true}}));
    assert_eq!(r["nan"], Json::Null);
    assert_eq!(r["42"], "int key");
    assert_eq!(r["utf8"], "héllo ✓");
    assert_eq!(r["big"], json!(u64::MAX));
    // Key order is the sender's.
    let keys: Vec<_> = [
        "quote\\\"key",
        "ctl",
        "bin",
        "bad",
        "nested",
        "nan",
        "42",
        "utf8",
        "big",
    ]
    .iter()
    .map(|k| got[0].raw.find(&format!("\"{k}\":")).unwrap())
    .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{}", got[0].raw);
}

fn err_of(frame: &[u8], limits: &Limits) -> String {
    decode_frame(frame, limits, &mut Scratch::new(), |_| {})
        .unwrap_err()
        .to_string()
}

#[test]
fn errors_say_what_is_wrong() {
    let l = Limits::default();
    assert_eq!(
        err_of(&W::default().arr(2).s("t").map(0).0, &l),
        "unknown event mode: second element is a map"
    );
    assert_eq!(
        err_of(&W::default().arr(3).raw(&[1]).u32(T).map(0).0, &l),
        "tag is not a string (got a int)"
    );
    assert_eq!(
        err_of(&W::default().arr(3).raw(&[0xa1, 0xff]).u32(T).map(0).0, &l),
        "tag is not valid utf-8"
    );
    assert_eq!(
        err_of(&[0x01], &l),
        "frame is a int, expected an array (or nil for a heartbeat)"
    );
    assert_eq!(
        err_of(b"[", &l),
        "frame starts with '[' or '{': JSON forward frames are not supported, send msgpack"
    );
    assert_eq!(
        err_of(&W::default().arr(2).s("t").u32(T).0, &l),
        "Message frame has 2 elements, expected 3 or 4"
    );
    assert_eq!(
        err_of(&W::default().arr(3).s("t").u32(T).s("x").0, &l),
        "record is a str, expected a map"
    );
    assert_eq!(
        err_of(&W::default().arr(3).s("t").s("x").map(0).0, &l),
        "entry is a int, expected [time, record]"
    );
    assert_eq!(
        err_of(&W::default().arr(3).s("t").bin8(&[0x92, 0x01]).map(0).0, &l),
        "msgpack value truncated at offset 2 of the packed entries"
    );
    assert_eq!(
        err_of(
            &W::default().arr(2).s("t").arr(1).arr(2).s("now").map(0).0,
            &l
        ),
        "event time is a str, expected EventTime (ext 0), an integer or a float"
    );
    assert_eq!(
        err_of(
            &W::default()
                .arr(3)
                .s("t")
                .bin8(b"")
                .map(1)
                .s("compressed")
                .s("zstd")
                .0,
            &l
        ),
        "unsupported compression \"zstd\": only \"gzip\" (and \"text\") are supported"
    );
    assert_eq!(
        err_of(&W::default().arr(3).s("t").bin8(b"").s("x").0, &l),
        "options is a str, expected a map or nil"
    );
    assert_eq!(
        err_of(&[0xc0, 0xc0], &l),
        "1 trailing bytes after the frame's value"
    );
    let few = Limits {
        max_entries_per_frame: 1,
        ..l
    };
    let two = W::default()
        .arr(2)
        .s("t")
        .arr(2)
        .arr(2)
        .raw(&[1])
        .map(0)
        .arr(2)
        .raw(&[1])
        .map(0)
        .0;
    assert!(
        err_of(&two, &few)
            .starts_with("frame carries at least 2 entries, more than the limit of 1")
    );
    let packed_two = W::default()
        .arr(2)
        .s("t")
        .bin8(
            &W::default()
                .arr(2)
                .raw(&[1])
                .map(0)
                .arr(2)
                .raw(&[1])
                .map(0)
                .0,
        )
        .0;
    assert!(err_of(&packed_two, &few).starts_with("frame carries at least 2 entries"));
    let shallow = Limits { max_depth: 5, ..l };
    let deep = W::default()
        .arr(3)
        .s("t")
        .u32(T)
        .map(1)
        .s("a")
        .map(1)
        .s("b")
        .map(1)
        .s("c")
        .map(1)
        .s("d")
        .map(0)
        .0;
    assert_eq!(
        err_of(&deep, &shallow),
        "map or array nesting deeper than 5 levels (--fluent-max-depth)"
    );
    assert_eq!(
        frame_len(&deep, &shallow),
        Err(FluentError::TooDeep { limit: 5 })
    );
    let signal = W::default()
        .arr(3)
        .s("t")
        .bin8(b"")
        .map(1)
        .s("fluent_signal")
        .raw(&[1])
        .0;
    assert!(
        err_of(&signal, &l).starts_with("fluent_signal 1 (metrics or traces) is not supported")
    );
}

#[test]
fn gzip_bomb_is_refused_quickly_with_bounded_memory() {
    let bomb = gzip(&vec![b'a'; 32 << 20]);
    let frame = W::default()
        .arr(3)
        .s("t")
        .bin32(&bomb)
        .map(1)
        .s("compressed")
        .s("gzip")
        .0;
    let limits = Limits {
        max_decompressed_bytes: 1 << 20,
        ..Limits::default()
    };
    let mut scratch = Scratch::new();
    let start = std::time::Instant::now();
    let err = decode_frame(&frame, &limits, &mut scratch, |_| panic!("no events")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "decompressed chunk exceeds 1048576 bytes (possible gzip bomb); \
         raise --fluent-max-decompressed if the sender is trusted"
    );
    assert!(
        scratch.capacity() <= (1 << 20) + (128 << 10),
        "{}",
        scratch.capacity()
    );
    eprintln!(
        "a {}-byte bomb refused in {:?}",
        bomb.len(),
        start.elapsed()
    );
    scratch.trim(64 << 10);
    assert_eq!(scratch.capacity(), 0);
}

#[test]
fn scratch_is_reused_across_frames() {
    let frame = W::default().arr(3).s("t").u32(T).map(1).s("k").s("value").0;
    let mut scratch = Scratch::new();
    decode_frame(&frame, &Limits::default(), &mut scratch, |_| {}).unwrap();
    let cap = scratch.capacity();
    for _ in 0..100 {
        decode_frame(&frame, &Limits::default(), &mut scratch, |_| {}).unwrap();
    }
    assert_eq!(scratch.capacity(), cap);
}

/// A sanity check of the hot path, not a benchmark: run with
/// `cargo test --release -p sluice-fluent -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_of_200_byte_records() {
    let mut enc = ForwardEncoder::new("bench");
    let line = "x".repeat(170);
    for i in 0..10_000 {
        enc.push(T_NS + i, line.as_bytes());
    }
    let frame = enc.seal("c");
    let mut scratch = Scratch::new();
    let mut total = 0u64;
    let start = std::time::Instant::now();
    for _ in 0..100 {
        let info = decode_frame(&frame, &Limits::default(), &mut scratch, |e| {
            total += e.payload.len() as u64
        })
        .unwrap();
        assert_eq!(info.events, 10_000);
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{:.2} M events/s, {:.0} MB/s of JSON",
        1e6 / secs / 1e6,
        total as f64 / secs / 1e6
    );
}

// ---- property tests ----

/// A msgpack value model, with a flag choosing wide (non-minimal) encodings.
#[derive(Debug, Clone)]
enum Mv {
    Nil,
    Bool(bool),
    Int(i64),
    F64(f64),
    Str(String, bool),
    Bin(Vec<u8>),
    Arr(Vec<Mv>, bool),
    Map(Vec<(String, Mv)>, bool),
    Time(u32, u32),
}

fn mv() -> impl Strategy<Value = Mv> {
    let leaf = prop_oneof![
        Just(Mv::Nil),
        any::<bool>().prop_map(Mv::Bool),
        any::<i64>().prop_map(Mv::Int),
        any::<f64>().prop_map(Mv::F64),
        (".{0,40}", any::<bool>()).prop_map(|(s, w)| Mv::Str(s, w)),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Mv::Bin),
        (any::<u32>(), 0u32..1_000_000_000).prop_map(|(s, n)| Mv::Time(s, n)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            (
                proptest::collection::vec(inner.clone(), 0..6),
                any::<bool>()
            )
                .prop_map(|(v, w)| Mv::Arr(v, w)),
            (proptest::collection::vec(inner, 0..6), any::<bool>()).prop_map(|(v, w)| Mv::Map(
                v.into_iter()
                    .enumerate()
                    .map(|(i, v)| (format!("k{i}"), v))
                    .collect(),
                w
            )),
        ]
    })
}

fn enc(v: &Mv, out: &mut Vec<u8>) {
    match v {
        Mv::Nil => out.push(0xc0),
        Mv::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Mv::Int(i) => {
            rmp::encode::write_sint(out, *i).unwrap();
        }
        Mv::F64(f) => rmp::encode::write_f64(out, *f).unwrap(),
        Mv::Str(s, wide) => {
            if *wide {
                out.push(0xdb);
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            } else {
                rmp::encode::write_str(out, s).unwrap();
            }
        }
        Mv::Bin(b) => rmp::encode::write_bin(out, b).unwrap(),
        Mv::Time(s, n) => out.extend_from_slice(&W::default().et(*s, *n).0),
        Mv::Arr(items, wide) => {
            if *wide {
                out.push(0xdd);
                out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            } else {
                rmp::encode::write_array_len(out, items.len() as u32).unwrap();
            }
            items.iter().for_each(|i| enc(i, out));
        }
        Mv::Map(pairs, wide) => {
            if *wide {
                out.push(0xdf);
                out.extend_from_slice(&(pairs.len() as u32).to_be_bytes());
            } else {
                rmp::encode::write_map_len(out, pairs.len() as u32).unwrap();
            }
            for (k, v) in pairs {
                rmp::encode::write_str(out, k).unwrap();
                enc(v, out);
            }
        }
    }
}

/// What the record JSON should hold for a value.
fn expected(v: &Mv) -> Json {
    match v {
        Mv::Nil => Json::Null,
        Mv::Bool(b) => json!(b),
        Mv::Int(i) => json!(i),
        // Through serde_json's own float parser, as the decoded side is.
        Mv::F64(f) if f.is_finite() => serde_json::from_str(&format!("{f:?}")).unwrap(),
        Mv::F64(_) => Json::Null,
        Mv::Str(s, _) => json!(s),
        Mv::Bin(b) => json!(String::from_utf8_lossy(b)),
        Mv::Time(s, n) => serde_json::from_str(&format!("{s}.{n:09}")).unwrap(),
        Mv::Arr(items, _) => Json::Array(items.iter().map(expected).collect()),
        Mv::Map(pairs, _) => Json::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), expected(v)))
                .collect(),
        ),
    }
}

fn small_limits() -> Limits {
    Limits {
        max_frame_bytes: 4096,
        max_decompressed_bytes: 8192,
        max_entries_per_frame: 64,
        max_depth: 8,
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut scratch = Scratch::new();
        for limits in [Limits::default(), small_limits()] {
            let mut rest = &data[..];
            while let Ok(Some(n)) = frame_len(rest, &limits) {
                prop_assert!(n > 0 && n <= rest.len());
                let _ = decode_frame(&rest[..n], &limits, &mut scratch, |e| {
                    assert!(serde_json::from_slice::<Json>(e.payload).is_ok());
                });
                rest = &rest[n..];
            }
            let _ = decode_frame(&data, &limits, &mut scratch, |_| {});
        }
    }

    #[test]
    fn random_frames_split_anywhere_are_found_exactly(
        values in proptest::collection::vec(mv(), 1..6),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
    ) {
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for v in &values {
            enc(v, &mut stream);
            ends.push(stream.len());
        }
        // Feed the stream in pieces cut at random points through one
        // resumable scanner, draining each frame it reports.
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let limits = Limits::default();
        let mut scanner = FrameScanner::new();
        let (mut start, mut found) = (0, Vec::new());
        for cut in cuts {
            while let Some(n) = scanner.scan(&stream[start..cut], &limits).unwrap() {
                start += n;
                found.push(start);
            }
        }
        prop_assert_eq!(&found, &ends);
        // And the stateless frame_len agrees on every frame and prefix.
        let mut begin = 0;
        for &end in &ends {
            prop_assert_eq!(frame_len(&stream[begin..], &limits), Ok(Some(end - begin)));
            let mid = begin + (end - begin) / 2;
            if mid > begin {
                prop_assert_eq!(frame_len(&stream[begin..mid], &limits), Ok(None));
            }
            begin = end;
        }
    }

    #[test]
    fn forward_frames_of_random_records_decode_to_the_same_json(
        records in proptest::collection::vec(proptest::collection::vec(mv(), 0..6), 0..5),
        times in proptest::collection::vec(1u32..u32::MAX, 5),
        wide in any::<bool>(),
    ) {
        let maps: Vec<Mv> = records
            .into_iter()
            .map(|v| Mv::Map(v.into_iter().enumerate().map(|(i, v)| (format!("f{i}"), v)).collect(), wide))
            .collect();
        let mut frame = W::default().arr(3).s("prop").0;
        rmp::encode::write_array_len(&mut frame, maps.len() as u32).unwrap();
        for (m, t) in maps.iter().zip(&times) {
            frame.extend_from_slice(&W::default().arr(2).et(*t, 0).0);
            enc(m, &mut frame);
        }
        frame.extend_from_slice(&W::default().map(1).s("chunk").s("c").0);
        let limits = Limits { max_depth: 16, ..Limits::default() };
        let (info, got) = decode_with(&frame, &limits).unwrap();
        prop_assert_eq!(info.events as usize, maps.len());
        for ((g, m), t) in got.iter().zip(&maps).zip(&times) {
            prop_assert_eq!(&g.record, &expected(m));
            prop_assert_eq!(g.time_ns, Some(i64::from(*t) * 1_000_000_000));
        }
    }
}
