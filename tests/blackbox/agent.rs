//! `sluice forward --listen`: the local agent for fluent and syslog clients.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use crate::harness::*;

/// An agent that spools to `spool` and forwards to a destination that
/// never answers: whatever it acks, it acked from its spool.
fn spooling_to_a_black_hole(spool: &std::path::Path) -> Forwarder {
    let hole = black_hole();
    Forwarder::agent(
        &format!("sluice://{hole}"),
        &["--spool", spool.to_str().unwrap()],
    )
}

/// Event time for records sent now: a minute ago, in nanoseconds.
fn a_minute_ago_ns() -> i64 {
    (jiff::Timestamp::now().as_millisecond() - 60_000) * 1_000_000
}

/// A connection to the agent's Fluent port that waits at most a minute for
/// an ack.
fn fluent_client(agent: &Forwarder) -> TcpStream {
    let client = TcpStream::connect(&agent.fluent).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    client
}

/// `read = acked + dropped + queued + spooled + in_flight` in final counts.
fn assert_balances(counts: &serde_json::Value) {
    let n = |key: &str| {
        counts[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {counts}"))
    };
    let dropped = n("dropped_queue_full")
        + n("dropped_spool_full")
        + n("dropped_rejected")
        + n("dropped_spool_corrupt");
    assert_eq!(
        n("read"),
        n("acked") + dropped + n("queued") + n("spooled") + n("in_flight"),
        "the counts balance: {counts}"
    );
}

/// A Forward-mode frame of `n` events with a chunk, as fluent-logger and
/// Fluent Bit send them.
fn forward_frame(tag: &str, first: usize, n: usize, time_ns: i64, chunk: &str) -> Vec<u8> {
    let mut encoder = sluice_fluent::ForwardEncoder::new(tag);
    for i in first..first + n {
        encoder.push(time_ns, format!("event {i}").as_bytes());
    }
    encoder.seal(chunk)
}

fn expected_ack(chunk: &str) -> Vec<u8> {
    let mut ack = Vec::new();
    sluice_fluent::encode_ack(chunk.as_bytes(), &mut ack);
    ack
}

/// Read exactly `want.len()` bytes (bounded by the socket's timeout).
fn read_ack(stream: &mut TcpStream, want: &[u8]) {
    let mut got = vec![0u8; want.len()];
    stream.read_exact(&mut got).expect("an ack");
    assert_eq!(got, want, "the ack echoes the chunk byte for byte");
}

#[test]
fn the_agent_acks_a_fluent_chunk_only_once_an_ingester_acked_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let release = Gate::default();
    let gate = reply_gate(node.batch.clone(), release.clone());
    let agent = Forwarder::agent(&format!("sluice://{gate}"), &[]);

    let when_ns = (jiff::Timestamp::now().as_millisecond() - 3_600_000) * 1_000_000;
    let mut client = fluent_client(&agent);
    let chunks = ["chunk-one\n", "chunk-two\n"];
    for (i, chunk) in chunks.iter().enumerate() {
        client
            .write_all(&forward_frame("app.web", i * 500, 500, when_ns, chunk))
            .unwrap();
    }
    // The ingester stored both chunks' events, and its replies are held.
    node.wait_records(1000);
    wait_for("the agent to send both chunks", || {
        (agent.metric("sluice_forward_records_sent_total") >= 1000.0).then_some(())
    });
    client.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let early = client.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no ack may reach the client before the ingester's ack reaches the agent: {early:?}"
    );
    client.set_nonblocking(false).unwrap();

    release.open();
    for chunk in chunks {
        read_ack(&mut client, &expected_ack(chunk));
    }
    drop(client);

    let out = node.query(&["--topic", "app.web", "--ulid"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut seen: Vec<usize> = text
        .lines()
        .map(|line| {
            let (id, payload) = line.split_once(' ').unwrap();
            let ms = id.parse::<ulid::Ulid>().unwrap().timestamp_ms();
            assert_eq!(
                ms as i64,
                when_ns / 1_000_000,
                "the event time is the ULID time"
            );
            let event: serde_json::Value = serde_json::from_str(payload).unwrap();
            let text = event.as_object().unwrap().values().next().unwrap();
            text.as_str()
                .unwrap()
                .strip_prefix("event ")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, (0..1000).collect::<Vec<_>>(), "every event once");
    let (status, counts) = agent.stop();
    assert!(status.success(), "{counts}");
    assert_eq!(counts["read"], 1000);
    assert_eq!(counts["acked"], 1000);
}

#[test]
fn with_a_spool_the_agent_acks_what_is_on_disk_and_delivers_it_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let spool_arg = spool.to_str().unwrap();
    let agent = spooling_to_a_black_hole(&spool);
    let when_ns = a_minute_ago_ns();
    let mut client = fluent_client(&agent);
    for i in 0..4 {
        let chunk = format!("spooled-{i}");
        client
            .write_all(&forward_frame("app.spooled", i * 250, 250, when_ns, &chunk))
            .unwrap();
        // Acked although no ingester has it: it is durable in the spool.
        read_ack(&mut client, &expected_ack(&chunk));
    }
    drop(client);
    agent.kill9();

    // A new agent on the same spool, with a real ingester, delivers it all.
    let node = Node::start(dir.path(), &[]);
    let agent = Forwarder::agent(&format!("sluice://{}", node.batch), &["--spool", spool_arg]);
    node.wait_records(1000);
    let (status, counts) = agent.stop();
    assert!(status.success(), "{counts}");
    assert_eq!(counts["recovered"], 1000);
    let out = node.query(&["--topic", "app.spooled"]);
    let mut seen: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 1000, "every acked event arrives, once");
}

#[test]
fn syslog_through_the_agent_keeps_topic_time_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let agent = Forwarder::agent(&format!("sluice://{}", node.batch), &[]);
    let then =
        jiff::Timestamp::from_millisecond(jiff::Timestamp::now().as_millisecond() - 7_200_000)
            .unwrap();
    let mut stream = String::new();
    for i in 0..300 {
        // Two apps interleaved, counted RFC 5424 and LF-framed RFC 3164.
        let rfc5424 = format!(
            "<165>1 {} host1 billing 42 ID7 - charged card {i}",
            then.strftime("%Y-%m-%dT%H:%M:%S.%3fZ")
        );
        stream.push_str(&format!("{} {rfc5424}", rfc5424.len()));
        stream.push_str(&format!(
            "<13>{} host2 nginx[77]: GET /page/{i} 200\n",
            then.strftime("%b %e %H:%M:%S")
        ));
    }
    stream.push_str("no header at all\n");
    send_and_wait_close(&agent.syslog, stream.as_bytes());
    node.wait_records(601);
    for (topic, needle, ms) in [
        ("billing", "charged card ", then.as_millisecond()),
        ("nginx", "GET /page/", then.as_millisecond() / 1000 * 1000),
    ] {
        let out = node.query(&["--topic", topic, "--ulid"]);
        let text = String::from_utf8(out.stdout).unwrap();
        let mut seen = Vec::new();
        for line in text.lines() {
            let (id, payload) = line.split_once(' ').unwrap();
            assert_eq!(
                id.parse::<ulid::Ulid>().unwrap().timestamp_ms() as i64,
                ms,
                "{topic}: the header's time is the ULID time"
            );
            let at = payload.find(needle).expect("the line as sent");
            let rest = &payload[at + needle.len()..];
            seen.push(rest.split(' ').next().unwrap().parse::<u32>().unwrap());
        }
        seen.sort();
        assert_eq!(
            seen,
            (0..300).collect::<Vec<_>>(),
            "{topic}: every line once"
        );
    }
    let out = node.query(&["--topic", "syslog"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "no header at all\n");
    let (status, counts) = agent.stop();
    assert!(status.success(), "{counts}");
    assert_eq!(counts["acked"], 601);
}

/// The agent maps fluent events as the ingester does: an event whose JSON
/// passes `--max-line` is cut there and counted as truncated.
#[test]
fn the_agent_cuts_a_fluent_event_past_max_line_as_the_ingester_does() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let agent = Forwarder::agent(&format!("sluice://{}", node.batch), &["--max-line", "100"]);
    let mut encoder = sluice_fluent::ForwardEncoder::new("app.long");
    encoder.push(a_minute_ago_ns(), b"short");
    encoder.push(a_minute_ago_ns(), "x".repeat(500).as_bytes());
    let mut client = fluent_client(&agent);
    client.write_all(&encoder.seal("long-chunk")).unwrap();
    read_ack(&mut client, &expected_ack("long-chunk"));
    drop(client);

    node.wait_records(2);
    let out = node.query(&["--topic", "app.long"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lengths: Vec<usize> = text.lines().map(str::len).collect();
    lengths.sort();
    assert_eq!(lengths.len(), 2, "{text}");
    assert!(lengths[0] < 100, "the short event is whole: {text}");
    assert_eq!(lengths[1], 100, "the long event is cut at --max-line");
    let (status, counts) = agent.stop();
    assert!(status.success(), "{counts}");
    assert_eq!(counts["read"], 2);
    assert_eq!(counts["truncated"], 1);
    assert_balances(&counts);
}

#[test]
fn a_stop_is_not_held_up_by_a_destination_that_never_acks() {
    let hole = black_hole();
    // One record a batch: 16 (the window) in flight fill it.
    let agent = Forwarder::agent(
        &format!("sluice://{hole}"),
        &["--batch-size", "1", "--drain-timeout", "1s"],
    );
    send_and_wait_close(&agent.syslog, &numbered_lines(100, "unacked"));
    wait_for("a full window of batches in flight", || {
        (agent.metric("sluice_forward_records_sent_total") >= 16.0).then_some(())
    });
    let (status, counts) = agent.stop();
    assert_eq!(status.code(), Some(3), "nothing was acked: {counts}");
    assert_eq!(counts["read"], 100);
    assert_eq!(counts["in_flight"], 0, "given back to the queue: {counts}");
    assert_balances(&counts);
}

#[test]
fn a_stop_is_not_held_up_by_a_full_queue_and_the_counts_balance() {
    // Nothing is ever acked: the queue fills and holds the syslog reader.
    let hole = black_hole();
    let agent = Forwarder::agent(
        &format!("sluice://{hole}"),
        &[
            "--queue-max",
            "4KiB",
            "--batch-size",
            "1KiB",
            "--drain-timeout",
            "1s",
        ],
    );
    let syslog = agent.syslog.clone();
    // The client may block once the agent stops reading; it ends when the
    // agent does.
    std::thread::spawn(move || {
        let mut stream = TcpStream::connect(&syslog).unwrap();
        let _ = stream.write_all(&numbered_lines(20_000, "held"));
    });
    wait_for("the full queue to hold the syslog reader", || {
        (agent.metric("sluice_forward_queue_blocked") == 1.0).then_some(())
    });
    let (status, counts) = agent.stop();
    // Not everything read was acked: exit 3, with every record accounted.
    assert_eq!(status.code(), Some(3), "{counts}");
    assert!(counts["read"].as_u64().unwrap() > 0, "{counts}");
    assert_balances(&counts);
}

#[test]
fn a_client_that_never_reads_its_acks_does_not_hold_up_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let agent = spooling_to_a_black_hole(&dir.path().join("spool"));
    let when_ns = a_minute_ago_ns();
    let client = TcpStream::connect(&agent.fluent).unwrap();
    let mut writer = client.try_clone().unwrap();
    // Long chunk ids make long acks, which soon fill the socket's buffers
    // since this client never reads them. It writes until the agent ends.
    std::thread::spawn(move || {
        let pad = "p".repeat(900);
        for i in 0..100_000 {
            let frame = forward_frame("app.deaf", i, 1, when_ns, &format!("{pad}-{i}"));
            if writer.write_all(&frame).is_err() {
                return;
            }
        }
    });
    // One record a chunk: the reader is held once 1024 chunks wait behind
    // the one whose ack cannot be written.
    wait_for("the reader to be held by unsent acks", || {
        let read = agent.metric("sluice_forward_records_read_total");
        let acked = agent.metric("sluice_forward_listen_chunks_acked_total");
        (read - acked > 1024.0).then_some(())
    });
    let (status, counts) = agent.stop();
    drop(client);
    assert!(status.success(), "all of it is in the spool: {counts}");
    assert_eq!(counts["left_in_spool"], counts["read"], "{counts}");
    assert_balances(&counts);
}

#[test]
fn a_chunk_id_past_the_limit_closes_its_connection_unacked() {
    let dir = tempfile::tempdir().unwrap();
    let agent = spooling_to_a_black_hole(&dir.path().join("spool"));
    let when_ns = a_minute_ago_ns();
    let mut client = fluent_client(&agent);
    let long = "c".repeat(4096);
    client
        .write_all(&forward_frame("app.long", 0, 10, when_ns, &long))
        .unwrap();
    let mut got = Vec::new();
    let closed = client.read_to_end(&mut got);
    assert!(
        got.is_empty() && closed.is_ok(),
        "closed without an ack: {closed:?}, {} bytes",
        got.len()
    );
    assert_eq!(
        agent.metric(
            "sluice_forward_listen_errors_total{listener=\"fluent\",reason=\"chunk_too_long\"}"
        ),
        1.0
    );
    // A chunk id of the usual size is taken.
    let mut client = fluent_client(&agent);
    let usual = "X2Y3dXpUQlN4Vk1mZ2hKaw==";
    client
        .write_all(&forward_frame("app.long", 10, 10, when_ns, usual))
        .unwrap();
    read_ack(&mut client, &expected_ack(usual));
    let (status, counts) = agent.stop();
    assert!(status.success(), "{counts}");
    assert_eq!(counts["read"], 10, "nothing of the refused frame: {counts}");
}

#[test]
fn without_a_spool_a_stop_still_acks_a_chunk_acked_upstream_while_draining() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let release = Gate::default();
    let gate = reply_gate(node.batch.clone(), release.clone());
    let agent = Forwarder::agent(&format!("sluice://{gate}"), &["--drain-timeout", "60s"]);
    let when_ns = a_minute_ago_ns();
    let mut client = fluent_client(&agent);
    let chunk = "drained-chunk";
    client
        .write_all(&forward_frame("app.drain", 0, 500, when_ns, chunk))
        .unwrap();
    node.wait_records(500);
    agent.sigterm();
    // The stop has begun once the agent refuses new clients (its listeners
    // close as it starts to drain); only then does the ingester's ack reach
    // it: the drain still waits for it.
    wait_for("the agent to stop taking clients", || {
        TcpStream::connect(&agent.fluent).is_err().then_some(())
    });
    release.open();
    read_ack(&mut client, &expected_ack(chunk));
    drop(client);
    let (status, counts) = agent.exited();
    assert!(status.success(), "{counts}");
    assert_eq!(
        (&counts["read"], &counts["acked"]),
        (&500.into(), &500.into())
    );
}
