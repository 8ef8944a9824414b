//! Frames byte for byte as real senders write them.

use serde_json::{Value as Json, json};

use super::*;

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
