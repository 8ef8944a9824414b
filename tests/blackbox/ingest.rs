use std::{
    io::Write,
    process::{Command, Stdio},
};

use crate::harness::*;

#[test]
fn lines_through_sluice_forward_come_back_exactly_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let input = numbered_lines(100_000, "fwd");
    let forward = Forwarder::stdin(&[&format!("tcp://{}", node.fast)], &[]);
    forward.feed(input.clone(), || {});
    node.wait_records(100_000);
    assert_eq!(node.all_payloads(), lines_of(&input));
}

#[test]
fn lines_over_a_raw_socket_come_back_exactly_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &[]);
    let input = numbered_lines(100_000, "raw");
    send_and_wait_close(&node.fast, &input);
    node.wait_records(100_000);
    let before = node.all_payloads();
    assert_eq!(before, lines_of(&input));
    let ids_before = node.query(&["--ulid"]).stdout;
    node.stop();
    node.restart();
    assert_eq!(node.all_payloads(), before);
    assert_eq!(
        node.query(&["--ulid"]).stdout,
        ids_before,
        "ids are stable across a restart"
    );
}

#[test]
fn netcat_is_a_sender() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let (host, port) = node.fast.split_once(':').unwrap();
    let mut nc = Command::new("nc")
        .args(["-N", host, port])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nc (netcat-openbsd) is installed by the test command");
    nc.stdin
        .take()
        .unwrap()
        .write_all(b"from nc 1\nfrom nc 2\n")
        .unwrap();
    assert!(nc.wait().unwrap().success());
    node.wait_records(2);
    assert_eq!(
        node.all_payloads(),
        vec![b"from nc 1".to_vec(), b"from nc 2".to_vec()]
    );
}

#[test]
fn over_long_lines_are_cut_flagged_and_counted_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["--max-line", "1KiB"]);
    let mut input = Vec::new();
    input.extend_from_slice(&vec![b'x'; 5000]);
    input.extend_from_slice(b"\nafter the long one\n");
    input.extend_from_slice(&vec![b'y'; 3 << 20]);
    input.extend_from_slice(b"\nlast\n");
    send_and_wait_close(&node.fast, &input);
    node.wait_records(4);
    let payloads = node.all_payloads();
    assert_eq!(payloads[0], vec![b'x'; 1024]);
    assert_eq!(payloads[1], b"after the long one");
    assert_eq!(payloads[2], vec![b'y'; 1024]);
    assert_eq!(payloads[3], b"last");
    let json = node.query(&["--json"]).stdout;
    let flags: Vec<bool> = json
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap()["truncated"] == true)
        .collect();
    assert_eq!(flags, [true, false, true, false]);
    assert_eq!(node.metric("sluice_ingest_lines_truncated_total"), 2.0);
    assert_eq!(
        node.log().matches("line longer than the limit").count(),
        1,
        "logged once per connection"
    );
}

#[test]
fn binary_nul_invalid_utf8_and_crlf_are_stored_as_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let mut garbage: Vec<u8> = (0u8..=255).filter(|&b| b != b'\n').collect();
    garbage.extend_from_slice(b"\xc3\x28\xf0\x28\x8c\xbc");
    let mut input = Vec::new();
    input.extend_from_slice(b"crlf line\r\n");
    input.extend_from_slice(&garbage);
    input.extend_from_slice(b"\n\x00\x00nul\x00\n");
    input.extend_from_slice(b"no newline at the end");
    send_and_wait_close(&node.fast, &input);
    node.wait_records(4);
    let payloads = node.all_payloads();
    assert_eq!(payloads[0], b"crlf line");
    // The '\r' inside the garbage line is kept; only a trailing one is dropped.
    assert_eq!(payloads[1], garbage);
    assert_eq!(payloads[2], b"\x00\x00nul\x00");
    assert_eq!(payloads[3], b"no newline at the end");
    let (status, _) = http_get(&node.api, "/health").unwrap();
    assert_eq!(status, 200, "the node is still healthy");
}

/// OK Log's `oklog forward` writes `prefix + line + "\n"` with one write per
/// line (cmd/oklog/forward.go); the fast port must take that unchanged.
#[test]
fn an_oklog_style_forwarder_with_one_write_per_line_is_a_sender() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let mut stream = std::net::TcpStream::connect(&node.fast).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut expected = Vec::new();
    for i in 0..2000 {
        let record = format!("prefix oklog line {i}\n");
        stream.write_all(record.as_bytes()).unwrap();
        expected.push(record.trim_end().as_bytes().to_vec());
    }
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    node.wait_records(2000);
    assert_eq!(node.all_payloads(), expected);
}
