//! The batch protocol on port 7653, driven over a raw socket.

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpStream,
};

use sluice_record::wire::{BatchBuilder, Guarantee, Reply, parse_reply};

use crate::harness::*;

struct Client {
    stream: TcpStream,
    replies: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let replies = BufReader::new(stream.try_clone().unwrap());
        Client { stream, replies }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn reply(&mut self) -> Reply {
        let mut line = String::new();
        self.replies.read_line(&mut line).unwrap();
        parse_reply(line.trim_end().as_bytes())
            .unwrap_or_else(|| panic!("unparseable reply {line:?}"))
    }

    /// Read to EOF: the server closed the connection.
    fn closed(&mut self) -> bool {
        let mut rest = String::new();
        matches!(self.replies.read_line(&mut rest), Ok(0))
    }
}

fn batch(
    seq: u64,
    topic: &str,
    guarantee: Guarantee,
    base: Option<ulid::Ulid>,
    payloads: &[&str],
) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for p in payloads {
        builder.push(None, p.as_bytes());
    }
    let mut out = Vec::new();
    builder.encode(&mut out, seq, topic, guarantee, base);
    out
}

#[test]
fn every_guarantee_is_acknowledged_with_the_batch_ulid_range() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let mut client = Client::connect(&node.batch);
    let guarantees = [
        Guarantee::None,
        Guarantee::Write,
        Guarantee::Fsync,
        Guarantee::Replicated,
    ];
    for (i, g) in guarantees.iter().enumerate() {
        let seq = i as u64 + 1;
        client.send(&batch(
            seq,
            "app",
            *g,
            None,
            &[&format!("{} one", g.name()), &format!("{} two", g.name())],
        ));
        match client.reply() {
            Reply::Ok {
                seq: got,
                first,
                last,
            } => {
                assert_eq!(got, seq);
                assert!(first < last, "two records, two ids");
            }
            other => panic!("{other:?}"),
        }
    }
    // `replicated` was acked, so the store already has it: no waiting.
    let out = node.query(&["--topic", "app", "-q", "replicated"]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "replicated one\nreplicated two\n"
    );
    node.wait_records(8);
    let json = node.query(&["--json", "--topic", "app"]).stdout;
    assert_eq!(
        json.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        8
    );
    assert_eq!(node.stats(&["--topic", "default"])["records_matched"], 0);
}

#[test]
fn malformed_batches_get_err_and_a_counter_and_earlier_batches_are_safe() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let mut client = Client::connect(&node.batch);
    client.send(&batch(1, "app", Guarantee::Write, None, &["kept"]));
    assert!(matches!(client.reply(), Reply::Ok { seq: 1, .. }));

    // A CRC mismatch.
    let mut bad = batch(2, "app", Guarantee::Write, None, &["flipped"]);
    let at = bad.len() - 3;
    bad[at] ^= 0x20;
    client.send(&bad);
    assert!(
        matches!(client.reply(), Reply::Err { seq: Some(2), reason } if reason.contains("crc mismatch"))
    );
    // A record length past the end of the section.
    client.send(b"BATCH 3 app 1 8 - write\n99 - abc\n");
    assert!(
        matches!(client.reply(), Reply::Err { seq: Some(3), reason } if reason.contains("runs past"))
    );
    // A huge count.
    client.send(b"BATCH 4 app 4000000000 6 - write\n1 - x\n");
    assert!(
        matches!(client.reply(), Reply::Err { seq: Some(4), reason } if reason.contains("exceeds the limit"))
    );
    // The connection goes on, typed by hand with no CRC.
    client.send(b"BATCH 5 app 1 10 - write\n5 - hello\n");
    assert!(matches!(client.reply(), Reply::Ok { seq: 5, .. }));
    client.send(b"PING\n");
    assert_eq!(client.reply(), Reply::Pong);
    // A bad header loses the framing: ERR, then the server closes.
    client.send(b"HELLO there\n");
    assert!(
        matches!(client.reply(), Reply::Err { seq: None, reason } if reason.contains("bad header"))
    );
    assert!(client.closed());

    node.wait_records(2);
    assert_eq!(
        node.all_payloads(),
        vec![b"kept".to_vec(), b"hello".to_vec()]
    );
    assert_eq!(node.metric("sluice_ingest_batch_errors_total"), 4.0);
    let (status, _) = http_get(&node.api, "/health").unwrap();
    assert_eq!(status, 200);
}

#[test]
fn a_batch_sent_again_with_the_same_base_is_shown_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let base = ulid::Ulid::new();
    let mut acks = Vec::new();
    for _ in 0..2 {
        // A new connection, as after a lost ack.
        let mut client = Client::connect(&node.batch);
        client.send(&batch(
            1,
            "app",
            Guarantee::Replicated,
            Some(base),
            &["a", "b", "c"],
        ));
        acks.push(client.reply());
    }
    assert_eq!(acks[0], acks[1], "the same ids both times");
    let stats = node.stats(&[]);
    // Once failed in CI with 6 matched; say all there is to know if it
    // does again (a query whose merge met ids out of order logs the input
    // and the plan).
    let listing = |dir: &str| {
        let mut names: Vec<String> = std::fs::read_dir(node.data().join(dir))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    assert_eq!(
        stats["records_matched"],
        3,
        "stats {stats}\nstore {:?}\ningest {:?}\nlog:\n{}",
        listing("store"),
        listing("ingest"),
        node.log()
    );
    // The query dropped the second copy, or compaction merged the two
    // copies before the query ran (a maintenance pass may come between
    // the second ack and the query on a slow machine).
    assert!(
        [0, 3].contains(&stats["duplicates_removed"].as_u64().unwrap()),
        "{stats}"
    );
    assert_eq!(
        node.all_payloads(),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
}

#[test]
fn origin_times_become_record_times() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let mut client = Client::connect(&node.batch);
    let mut builder = BatchBuilder::new();
    let hour_ago = sluice_record::now_ms() - 3_600_000;
    builder.push(Some(hour_ago), b"an hour ago");
    builder.push(Some(hour_ago - 1000), b"a second before that");
    builder.push(Some(u64::MAX / 1024), b"far future, clamped");
    let mut bytes = Vec::new();
    builder.encode(&mut bytes, 1, "app", Guarantee::Replicated, None);
    client.send(&bytes);
    assert!(matches!(client.reply(), Reply::Ok { .. }));
    let out = String::from_utf8(node.query(&["--from", "2h", "--to", "30m"]).stdout).unwrap();
    assert_eq!(out, "a second before that\nan hour ago\n", "sorted by time");
    // Clamped to at most a minute ahead, so a query up to now + 2 minutes finds it.
    let later = (sluice_record::now_ms() + 120_000).to_string();
    let future = node
        .query(&["--from", "1m", "--to", &later, "-q", "far future", "--json"])
        .stdout;
    let record: serde_json::Value = serde_json::from_slice(&future).unwrap();
    assert_eq!(record["payload"], "far future, clamped");
    let time = humantime::parse_rfc3339(record["time"].as_str().unwrap()).unwrap();
    let ahead = time
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        ahead <= std::time::Duration::from_secs(61),
        "clamped to a minute ahead, not {ahead:?}"
    );
}
