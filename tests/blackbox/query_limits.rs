//! Queries under load: at most `--max-queries` scan at once and
//! `--query-queue` more wait; the rest are refused with 503 and
//! `Retry-After` while the node stays healthy and its threads bounded; a
//! client that goes away cancels its scan.

use std::{
    io::{Read, Write},
    net::TcpStream,
};

use crate::harness::*;

/// Send `GET path` and read nothing: a client that holds its query open
/// (its scan blocks once the result fills the socket and the node's
/// channel).
fn hold_query(api: &str, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(api).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    stream
}

/// The status line and headers of a response, lowercased.
fn head_of(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "response cut short");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap().to_lowercase()
}

/// The node's thread count, from `/proc/PID/status`.
fn threads(node: &Node) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn queries_beyond_the_limit_and_the_line_get_503_while_the_node_stays_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        dir.path(),
        &["--max-queries", "2", "--query-queue", "1", "--no-compact"],
    );
    // About 30 MiB: a query of all of it outlasts any socket buffer.
    send_and_wait_close(&node.fast, &numbered_lines(300_000, "load"));
    node.wait_records(300_000);
    let before = threads(&node);

    // Two clients that hold their queries open take both slots.
    let all = "/query?from=24h&q=";
    let held: Vec<TcpStream> = (0..2).map(|_| hold_query(&node.api, all)).collect();
    wait_for("two queries running", || {
        (node.metric("sluice_queries_running") == 2.0).then_some(())
    });
    // A third waits in line: a stats query, answered once a slot frees.
    let mut waiting = hold_query(&node.api, "/query?from=24h&q=load&stats=true");
    wait_for("one query waiting", || {
        (node.metric("sluice_queries_queued") == 1.0).then_some(())
    });
    // Twenty more are refused at once, with a time to retry.
    for _ in 0..20 {
        let mut refused = hold_query(&node.api, all);
        let head = head_of(&mut refused);
        assert!(head.starts_with("http/1.1 503"), "{head}");
        assert!(head.contains("\r\nretry-after: 1\r\n"), "{head}");
    }
    assert_eq!(node.metric("sluice_queries_rejected_total"), 20.0);
    // The node answers meanwhile, and the burst cost no thread per query.
    assert_eq!(http_get(&node.api, "/health").map(|r| r.0), Some(200));
    // Two scans hold a blocking thread each, the store's lending call may
    // take a third; one thread a query would be 23 more.
    let during = threads(&node);
    assert!(
        during <= before + 4,
        "threads went from {before} to {during} under 23 queries"
    );
    // The CLI says why.
    let out = node.query(&["-q", "load"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("busy") && stderr.contains("--max-queries") && stderr.contains("retry"),
        "{stderr}"
    );

    // The holders go away: their scans are cancelled and the one in line
    // runs to its answer.
    drop(held);
    let head = head_of(&mut waiting);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let mut body = String::new();
    waiting.read_to_string(&mut body).ok();
    assert!(body.contains("\"records_matched\":300000"), "{body}");
    wait_for("every query to end", || {
        (node.metric("sluice_queries_running") == 0.0).then_some(())
    });
    assert_eq!(node.metric("sluice_queries_cancelled_total"), 2.0);
}
