//! The Fluentd forward protocol: frames as Fluent Bit, Fluentd and Docker
//! write them, byte for byte; acks; bad input; and `sluice forward
//! fluent://`.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpStream, UdpSocket},
};

use crate::harness::*;

// Hand-rolled msgpack on purpose: these are the exact bytes real senders
// write (map32 headers, str32 packed entries, fixext8 EventTime).
fn fixstr(s: &str) -> Vec<u8> {
    assert!(s.len() < 32);
    [&[0xa0 | s.len() as u8][..], s.as_bytes()].concat()
}
fn str32(b: &[u8]) -> Vec<u8> {
    [&[0xdb][..], &(b.len() as u32).to_be_bytes(), b].concat()
}
fn bin32(b: &[u8]) -> Vec<u8> {
    [&[0xc6][..], &(b.len() as u32).to_be_bytes(), b].concat()
}
fn map32(n: u32) -> Vec<u8> {
    [&[0xdf][..], &n.to_be_bytes()].concat()
}
fn event_time(secs: u32, nanos: u32) -> Vec<u8> {
    [&[0xd7, 0x00][..], &secs.to_be_bytes(), &nanos.to_be_bytes()].concat()
}
fn uint32(v: u32) -> Vec<u8> {
    [&[0xce][..], &v.to_be_bytes()].concat()
}
/// `{"message": text}` as a fixmap.
fn message(text: &str) -> Vec<u8> {
    [vec![0x81], fixstr("message"), str32(text.as_bytes())].concat()
}
/// The ack a server must send for `chunk`: `{"ack": chunk}`.
fn ack(chunk: &str) -> Vec<u8> {
    [vec![0x81], fixstr("ack"), fixstr(chunk)].concat()
}
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn now_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

/// Send `bytes`, half-close, and read until the server closes.
fn exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(bytes).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut replies = Vec::new();
    let _ = stream.read_to_end(&mut replies);
    replies
}

/// `(ulid time in ms, payload)` of every record of `topic`.
fn records(node: &Node, topic: &str) -> Vec<(u64, serde_json::Value)> {
    let out = node.query(&["--topic", topic, "--ulid"]);
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (id, payload) = l.split_once(' ').unwrap();
            let id: ulid::Ulid = id.parse().unwrap();
            (id.timestamp_ms(), serde_json::from_str(payload).unwrap())
        })
        .collect()
}

#[test]
fn frames_as_fluent_bit_fluentd_and_docker_write_them_are_stored_and_acked() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let t = now_secs() - 30;
    let mut stream = Vec::new();
    // Fluent Bit: Forward mode, map32 record and options, a chunk.
    stream.extend([0x93]);
    stream.extend(fixstr("fb.app"));
    stream.extend([0x91, 0x92]);
    stream.extend(event_time(t, 5_000_000));
    stream.extend(map32(2));
    stream.extend(
        [
            fixstr("log"),
            fixstr("hello from fluent bit"),
            fixstr("n"),
            uint32(7),
        ]
        .concat(),
    );
    stream.extend(map32(2));
    stream.extend([fixstr("chunk"), fixstr("fb-1"), fixstr("size"), uint32(1)].concat());
    // Fluentd out_forward: PackedForward, entries as str32, chunk ending in "\n".
    let entries: Vec<u8> = (0..3)
        .flat_map(|i| {
            [
                vec![0x92],
                event_time(t + 1, 0),
                message(&format!("packed {i}")),
            ]
            .concat()
        })
        .collect();
    stream.extend([0x93]);
    stream.extend(fixstr("fd.packed"));
    stream.extend(str32(&entries));
    stream.extend([0x82]);
    stream.extend(
        [
            fixstr("chunk"),
            fixstr("cGFja2Vk\n"),
            fixstr("size"),
            uint32(3),
        ]
        .concat(),
    );
    // CompressedPackedForward: two gzip members in one bin32.
    let part = |range: std::ops::Range<u32>| -> Vec<u8> {
        range
            .flat_map(|i| {
                [
                    vec![0x92],
                    event_time(t + 2, 0),
                    message(&format!("gz {i}")),
                ]
                .concat()
            })
            .collect()
    };
    stream.extend([0x93]);
    stream.extend(fixstr("fd.gzip"));
    stream.extend(bin32(&[gzip(&part(0..2)), gzip(&part(2..5))].concat()));
    stream.extend([0x83]);
    stream.extend(
        [
            fixstr("compressed"),
            fixstr("gzip"),
            fixstr("chunk"),
            fixstr("gz-1"),
            fixstr("size"),
            uint32(5),
        ]
        .concat(),
    );
    // Docker's fluentd driver: 4-element Message, `{}` options, then with a chunk.
    for options in [
        vec![0x80],
        [vec![0x81], fixstr("chunk"), fixstr("dk-1")].concat(),
    ] {
        stream.extend([0x94]);
        stream.extend(fixstr("docker.web"));
        stream.extend(uint32(t + 3));
        stream.extend([0x84]);
        stream.extend(
            [
                fixstr("container_id"),
                fixstr("abc123"),
                fixstr("container_name"),
                fixstr("/web"),
                fixstr("source"),
                fixstr("stdout"),
                fixstr("log"),
                fixstr("GET / 200"),
            ]
            .concat(),
        );
        stream.extend(options);
    }
    // A nil heartbeat is ignored.
    stream.push(0xc0);
    let replies = exchange(&node.fluent, &stream);
    assert_eq!(
        replies,
        [ack("fb-1"), ack("cGFja2Vk\n"), ack("gz-1"), ack("dk-1")].concat(),
        "one byte-identical ack per chunk, in order"
    );
    node.wait_records(1 + 3 + 5 + 2);
    let fb = records(&node, "fb.app");
    assert_eq!(fb.len(), 1);
    assert_eq!(
        fb[0].0,
        t as u64 * 1000 + 5,
        "EventTime becomes the ULID time"
    );
    assert_eq!(
        fb[0].1,
        serde_json::json!({"log": "hello from fluent bit", "n": 7})
    );
    let packed: Vec<_> = records(&node, "fd.packed")
        .into_iter()
        .map(|r| r.1["message"].clone())
        .collect();
    assert_eq!(packed, ["packed 0", "packed 1", "packed 2"]);
    let gz: Vec<_> = records(&node, "fd.gzip")
        .into_iter()
        .map(|r| r.1["message"].clone())
        .collect();
    assert_eq!(gz, ["gz 0", "gz 1", "gz 2", "gz 3", "gz 4"]);
    let docker = records(&node, "docker.web");
    assert_eq!(docker.len(), 2);
    assert_eq!(docker[0].0, (t as u64 + 3) * 1000, "integer seconds");
    assert_eq!(
        docker[0].1,
        serde_json::json!({"container_id": "abc123", "container_name": "/web", "source": "stdout", "log": "GET / 200"})
    );
}

#[test]
fn a_bad_frame_closes_only_its_connection_and_what_was_acked_stays() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let good = |chunk: &str, text: &str| -> Vec<u8> {
        [
            vec![0x93],
            fixstr("bad.test"),
            vec![0x91, 0x92],
            event_time(now_secs(), 0),
            message(text),
            vec![0x81],
            fixstr("chunk"),
            fixstr(chunk),
        ]
        .concat()
    };
    // A good frame, then a byte msgpack never uses: the good one is acked,
    // the connection closes, and nothing after the bad byte is read.
    let replies = exchange(
        &node.fluent,
        &[good("c1", "before"), vec![0xc1], good("c2", "after")].concat(),
    );
    assert_eq!(replies, ack("c1"));
    // A frame cut short at the end of the stream is discarded.
    let whole = good("c3", "whole");
    let cut = good("c4", "cut");
    let replies = exchange(
        &node.fluent,
        &[whole, cut[..cut.len() - 3].to_vec()].concat(),
    );
    assert_eq!(replies, ack("c3"));
    // The listener is still serving.
    assert_eq!(exchange(&node.fluent, &good("c5", "later")), ack("c5"));
    node.wait_records(3);
    let texts: Vec<_> = records(&node, "bad.test")
        .into_iter()
        .map(|r| r.1["message"].clone())
        .collect();
    let mut texts: Vec<String> = texts
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    // Same-second event times from three connections: compare as a set.
    texts.sort();
    assert_eq!(texts, ["before", "later", "whole"]);
    assert!(node.metric("sluice_ingest_fluent_errors_total") >= 2.0);
}

/// An event whose JSON passes `--max-line` is cut there, flagged and
/// counted, as a long line is; the chunk is still acked, and the events
/// around it are whole.
#[test]
fn an_event_longer_than_the_line_limit_is_cut_and_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["--max-line", "100"]);
    // Control bytes: 300 bytes of msgpack render as 1,800 bytes of JSON.
    let long: String = "\u{1}".repeat(300);
    let frame = [
        vec![0x93],
        fixstr("cut.test"),
        vec![0x93],
        [
            vec![0x92],
            event_time(now_secs(), 0),
            message("short before"),
        ]
        .concat(),
        [vec![0x92], event_time(now_secs(), 1), message(&long)].concat(),
        [
            vec![0x92],
            event_time(now_secs(), 2),
            message("short after"),
        ]
        .concat(),
        vec![0x81],
        fixstr("chunk"),
        fixstr("k1"),
    ]
    .concat();
    assert_eq!(exchange(&node.fluent, &frame), ack("k1"));
    node.wait_records(3);
    let out = node.query(&["--topic", "cut.test"]);
    assert!(out.status.success());
    let lines: Vec<&[u8]> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], br#"{"message":"short before"}"#);
    assert_eq!(lines[1].len(), 100, "the long event is cut at --max-line");
    assert!(lines[1].starts_with(br#"{"message":"\u0001"#));
    assert_eq!(lines[2], br#"{"message":"short after"}"#);
    assert_eq!(node.metric("sluice_ingest_lines_truncated_total"), 1.0);
    let json = node.query(&["--topic", "cut.test", "--json"]);
    let flagged: Vec<bool> = String::from_utf8(json.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["truncated"] == true)
        .collect();
    assert_eq!(flagged, [false, true, false]);
}

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_gzip_bomb_and_a_4_gb_length_are_refused_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["--fluent-max-decompressed", "8MiB"]);
    // A str32 that claims 4 GiB: refused from its header.
    let huge = [
        vec![0x93],
        fixstr("bomb"),
        vec![0xdb, 0xff, 0xff, 0xff, 0xff],
        vec![0; 64],
    ]
    .concat();
    assert_eq!(exchange(&node.fluent, &huge), b"");
    // 256 MiB of one entry repeated, gzipped to well under a megabyte.
    let entry = [vec![0x92], event_time(now_secs(), 0), message("boom")].concat();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let block = entry.repeat((1 << 20) / entry.len());
    for _ in 0..256 {
        gz.write_all(&block).unwrap();
    }
    let bomb = gz.finish().unwrap();
    let frame = [
        vec![0x93],
        fixstr("bomb"),
        bin32(&bomb),
        vec![0x82],
        fixstr("compressed"),
        fixstr("gzip"),
        fixstr("chunk"),
        fixstr("b-1"),
    ]
    .concat();
    assert_eq!(exchange(&node.fluent, &frame), b"", "no ack for a bomb");
    assert_eq!(node.stats(&["--topic", "bomb"])["records_matched"], 0);
    assert!(node.metric("sluice_ingest_fluent_errors_total") >= 2.0);
    let peak = peak_rss_kib(node.pid());
    assert!(
        peak < 128 << 10,
        "peak RSS {peak} KiB: the bomb was not inflated"
    );
}

#[test]
fn udp_heartbeats_are_answered_and_empty_connections_are_fine() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    socket.send_to(b"\0", &node.fluent).unwrap();
    let mut reply = [0u8; 8];
    let (n, _) = socket.recv_from(&mut reply).unwrap();
    assert_eq!(&reply[..n], b"\0");
    assert_eq!(exchange(&node.fluent, b""), b"");
    assert_eq!(node.metric("sluice_ingest_fluent_errors_total"), 0.0);
}

#[test]
fn the_shared_key_handshake_guards_the_listener() {
    use sluice_fluent::handshake;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["--fluent-shared-key", "s3cret"]);
    let read_frame = |stream: &mut TcpStream| -> Vec<u8> {
        let mut buf = Vec::new();
        let mut byte = [0u8; 4096];
        loop {
            if let Ok(Some(n)) = sluice_fluent::frame_len(&buf, &Default::default()) {
                return buf[..n].to_vec();
            }
            let n = stream.read(&mut byte).unwrap();
            assert!(n > 0, "server closed before a whole frame");
            buf.extend_from_slice(&byte[..n]);
        }
    };
    for (key, accepted) in [("s3cret", true), ("wrong", false)] {
        let mut stream = TcpStream::connect(&node.fluent).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let helo = handshake::decode_helo(&read_frame(&mut stream)).unwrap();
        let mut ping = Vec::new();
        handshake::encode_ping(&helo, "client", b"salt", key.as_bytes(), None, &mut ping);
        stream.write_all(&ping).unwrap();
        let pong = handshake::decode_pong(&read_frame(&mut stream)).unwrap();
        assert_eq!(pong.verify(b"salt", &helo.nonce, b"s3cret"), accepted);
        if accepted {
            let frame = [
                vec![0x93],
                fixstr("secure"),
                vec![0x91, 0x92],
                event_time(now_secs(), 0),
                message("authenticated"),
                vec![0x81],
                fixstr("chunk"),
                fixstr("s-1"),
            ]
            .concat();
            stream.write_all(&frame).unwrap();
            assert_eq!(read_frame(&mut stream), ack("s-1"));
        }
    }
    // Without the handshake, events are refused.
    let frame = [
        vec![0x93],
        fixstr("secure"),
        vec![0x91, 0x92],
        event_time(now_secs(), 0),
        message("anonymous"),
        vec![0x81],
        fixstr("chunk"),
        fixstr("s-2"),
    ]
    .concat();
    let mut stream = TcpStream::connect(&node.fluent).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let _helo = read_frame(&mut stream);
    stream.write_all(&frame).unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no ack without the handshake");
    node.wait_records(1);
}

#[test]
fn forward_to_a_fluent_destination_delivers_every_line_acked() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["--fluent-ack", "fsync"]);
    let input = numbered_lines(50_000, "to-fluent");
    let forwarder = Forwarder::stdin(
        &[&format!("fluent://{}", node.fluent)],
        &["--topic", "app.fluent"],
    );
    let counts = forwarder.feed(input.clone(), || {});
    assert_eq!(
        (counts["read"].as_u64(), counts["acked"].as_u64()),
        (Some(50_000), Some(50_000))
    );
    node.wait_records(50_000);
    let got: Vec<Vec<u8>> = records(&node, "app.fluent")
        .into_iter()
        .map(|r| r.1["message"].as_str().unwrap().as_bytes().to_vec())
        .collect();
    assert_eq!(got, lines_of(&input));
}
