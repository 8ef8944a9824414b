use std::{
    io::Read,
    process::{Command, Stdio},
};

use crate::harness::*;

fn node_with(lines: &[&str]) -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let mut input = lines.join("\n").into_bytes();
    input.push(b'\n');
    send_and_wait_close(&node.fast, &input);
    node.wait_records(lines.len() as u64);
    (dir, node)
}

fn stdout(output: std::process::Output) -> String {
    assert!(
        output.status.success(),
        "query failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn literal_regex_case_and_output_forms() {
    let (_dir, node) = node_with(&[
        "GET /a status=200",
        "GET /b status=503 ERROR",
        "error lower",
        "POST /c status=502 ERROR",
    ]);
    assert_eq!(
        stdout(node.query(&["-q", "ERROR"])),
        "GET /b status=503 ERROR\nPOST /c status=502 ERROR\n"
    );
    assert_eq!(
        stdout(node.query(&["-q", "status=50[0-9]", "--regex"])),
        "GET /b status=503 ERROR\nPOST /c status=502 ERROR\n"
    );
    assert_eq!(
        stdout(node.query(&["-q", "error", "-i"])).lines().count(),
        3
    );
    assert_eq!(
        stdout(node.query(&["-q", "ERROR", "--limit", "1"])),
        "GET /b status=503 ERROR\n"
    );
    for line in stdout(node.query(&["-q", "ERROR", "--ulid"])).lines() {
        let (id, rest) = line.split_once(' ').unwrap();
        assert!(ulid::Ulid::from_string(id).is_ok() && rest.ends_with("ERROR"));
    }
    for line in stdout(node.query(&["-q", "ERROR", "--time"])).lines() {
        let (time, _) = line.split_once(' ').unwrap();
        assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
    }
    for line in stdout(node.query(&["-q", "ERROR", "--json"])).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["topic"], "default");
        assert!(v["payload"].as_str().unwrap().contains("ERROR"));
        assert!(v["id"].is_string() && v["time"].is_string());
    }
    let stats = node.stats(&["-q", "ERROR"]);
    assert_eq!(stats["records_matched"], 2);
    assert_eq!(stats["records_scanned"], 4);
    assert!(stats["segments"].as_u64().unwrap() >= 1 && stats["bytes"].as_u64().unwrap() > 0);
}

#[test]
fn a_scanner_resumes_after_its_cursor_without_gaps_or_repeats() {
    let (_dir, node) = node_with(&["one", "two", "three", "four", "five"]);
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let mut args = vec!["--ulid", "--limit", "2"];
        if let Some(after) = &cursor {
            args.extend(["--after", after.as_str()]);
        }
        let page = stdout(node.query(&args));
        if page.is_empty() {
            break;
        }
        for line in page.lines() {
            let (id, payload) = line.split_once(' ').unwrap();
            cursor = Some(id.to_string());
            seen.push(payload.to_string());
        }
    }
    assert_eq!(seen, ["one", "two", "three", "four", "five"]);
    let out = node.query(&["--after", "not-a-ulid"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a ULID"));
}

#[test]
fn a_time_range_outside_the_data_reads_no_segment() {
    let (_dir, node) = node_with(&["only line"]);
    let out = node.query(&[
        "--stats",
        "--from",
        "2000-01-01T00:00:00Z",
        "--to",
        "2000-01-02T00:00:00Z",
    ]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["segments"], 0);
    assert_eq!(stats["records_matched"], 0);
    let (status, _) = http_get(&node.api, "/query?from=1h&q=only").unwrap();
    assert_eq!(status, 200);
}

#[test]
fn bad_input_gets_a_clear_error_and_nonzero_exit() {
    let (_dir, node) = node_with(&["x"]);
    let out = node.query(&["-q", "(", "--regex"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid regex"));
    let out = node.query(&["--to", "not-a-time"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot parse time"));
    let out = Command::new(&*BIN)
        .args(["query", "--api", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach sluice"));
}

#[test]
fn a_closed_stdout_is_a_quiet_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    send_and_wait_close(&node.fast, &numbered_lines(50_000, "pipe"));
    node.wait_records(50_000);
    let mut query = Command::new(&*BIN)
        .args(["query", "--api", &node.api, "--from", "1h"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    query
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(query.stdout.take());
    let output = query.wait_with_output().unwrap();
    assert!(output.status.success(), "exit status {}", output.status);
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}

#[test]
fn head_returns_the_plan_in_headers() {
    let (_dir, node) = node_with(&["a", "b"]);
    let mut stream = std::net::TcpStream::connect(&node.api).unwrap();
    use std::io::Write;
    write!(stream, "HEAD /query?from=1h HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    assert!(
        response
            .to_ascii_lowercase()
            .contains("x-sluice-segments: 1"),
        "{response}"
    );
}
