//! The Loki push and Elasticsearch endpoints of a real node, driven with the
//! golden requests in `tests/fixtures/push/` (see its README) and checked
//! with `sluice query`.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    time::Duration,
};

use crate::harness::*;

/// Every fixture's times are on 2026-11-30; queries start before.
pub const FROM: &str = "2026-11-29T00:00:00Z";
/// 2026-11-30T12:00:00Z in ms.
const BASE_MS: u64 = 1_796_040_000_000;

pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/push")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// An HTTP answer.
pub struct Answer {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request over std, with the exact bytes given, read until
/// the server closes (`Connection: close`).
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_answer(&raw, method == "HEAD")
}

fn parse_answer(raw: &[u8], head: bool) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head_text = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if head {
        body.clear();
    }
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
            let len = usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap().trim(), 16)
                .unwrap();
            if len == 0 {
                break;
            }
            out.extend_from_slice(&rest[end + 2..end + 2 + len]);
            rest = &rest[end + 4 + len..];
        }
        body = out;
    }
    Answer {
        status,
        headers,
        body,
    }
}

/// Wait until `n` records from `FROM` on are queryable.
pub fn wait_matched(node: &Node, n: u64) {
    wait_for(&format!("{n} records to be queryable"), || {
        let got = node.stats(&["--from", FROM])["records_matched"]
            .as_u64()
            .unwrap();
        assert!(got <= n, "more records than sent: {got} > {n}");
        (got == n).then_some(())
    });
}

/// `(ulid ms, payload)` of a topic's records, in id order.
pub fn topic_lines(node: &Node, topic: &str) -> Vec<(u64, String)> {
    let out = node.query(&["--from", FROM, "--topic", topic, "--ulid"]);
    assert!(
        out.status.success(),
        "query failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (id, payload) = l.split_once(' ').unwrap();
            (
                id.parse::<ulid::Ulid>().unwrap().timestamp_ms(),
                payload.to_string(),
            )
        })
        .collect()
}

#[test]
fn alloy_protobuf_snappy_push_is_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let answer = http(
        &node.api,
        "POST",
        "/loki/api/v1/push",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("User-Agent", "Alloy/v1.5.0 (linux; binary)"),
            ("X-Scope-OrgID", "tenant-a"),
        ],
        &fixture("alloy-push.pb.snappy"),
    );
    assert_eq!(answer.status, 204, "{}", answer.text());
    assert!(answer.body.is_empty());
    wait_matched(&node, 5);
    assert_eq!(
        topic_lines(
            &node,
            r#"{filename="/var/log/app/api.log",job="loki.source.file",service_name="api"}"#
        ),
        vec![
            (
                BASE_MS,
                "level=info msg=\"request served\" path=/health status=200".to_string()
            ),
            (
                BASE_MS + 250,
                "level=error msg=\"upstream timeout\" path=/orders status=504".to_string()
            ),
            (
                BASE_MS + 500,
                "level=info msg=\"caf\u{e9} \u{2713}\" path=/menu status=200".to_string()
            ),
        ]
    );
    assert_eq!(
        topic_lines(
            &node,
            r#"{container="web",namespace="prod",pod="web-7d9f",service_name="web"}"#
        )
        .len(),
        2
    );
    // The same request again with Vector's marker encoding and gzip on top
    // (gzip(snappy(proto))): both read.
    let again = http(
        &node.api,
        "POST",
        "/loki/api/v1/push",
        &[("Content-Encoding", "snappy")],
        &fixture("alloy-push.pb.snappy"),
    );
    assert_eq!(again.status, 204, "{}", again.text());
    let gz = http(
        &node.api,
        "POST",
        "/loki/api/v1/push",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "gzip"),
        ],
        &gzip(&fixture("alloy-push.pb.snappy")),
    );
    assert_eq!(gz.status, 204, "{}", gz.text());
    wait_matched(&node, 15);
    assert!(node.metric("sluice_push_structured_metadata_dropped_total") >= 3.0);
}

#[test]
fn fluent_bit_json_gzip_push_with_structured_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let answer = http(
        &node.api,
        "POST",
        "/loki/api/v1/push",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
            ("User-Agent", "Fluent-Bit"),
        ],
        &gzip(&fixture("fluent-bit-loki.json")),
    );
    assert_eq!(answer.status, 204, "{}", answer.text());
    wait_matched(&node, 4);
    assert_eq!(
        topic_lines(&node, r#"{host="web-1",job="fluent-bit"}"#),
        vec![
            (
                BASE_MS,
                r#"{"log":"GET /index.html 200","stream":"stdout"}"#.to_string()
            ),
            (
                BASE_MS + 500,
                r#"{"log":"GET /missing 404","stream":"stderr"}"#.to_string()
            ),
            (
                BASE_MS + 1000,
                r#"{"log":"healthy","stream":"stdout"}"#.to_string()
            ),
        ]
    );
    // Three pairs on two entries were dropped, and counted.
    assert_eq!(
        node.metric("sluice_push_structured_metadata_dropped_total"),
        3.0
    );
    assert_eq!(
        node.metric("sluice_push_structured_metadata_entries_total"),
        2.0
    );
}

#[test]
fn bad_and_oversized_pushes_get_400_and_413_and_a_held_slot_429() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        dir.path(),
        &[
            "--push-max-body",
            "2KiB",
            "--push-max-entries",
            "2",
            "--push-max-in-flight",
            "1",
        ],
    );
    let post = |headers: &[(&str, &str)], body: &[u8]| {
        http(&node.api, "POST", "/loki/api/v1/push", headers, body)
    };
    let json = [("Content-Type", "application/json")];
    let answer = post(
        &json,
        br#"{"streams":[{"stream":{"a":"b"},"values":[[1,"x"]]}]}"#,
    );
    assert_eq!(answer.status, 400);
    assert!(
        answer.text().starts_with("bad json push request"),
        "{}",
        answer.text()
    );
    let answer = post(
        &json,
        br#"{"streams":[{"stream":{"bad-name":"b"},"values":[]}]}"#,
    );
    assert_eq!(answer.status, 400);
    assert!(answer.text().contains("bad-name"), "{}", answer.text());
    let answer = post(&[("Content-Encoding", "br")], b"x");
    assert_eq!(answer.status, 400);
    assert!(answer.text().contains("\"br\""), "{}", answer.text());
    let answer = post(&[], b"not a snappy block");
    assert_eq!(answer.status, 400, "{}", answer.text());
    let answer = post(&json, &vec![b' '; 4096]);
    assert_eq!(answer.status, 413, "{}", answer.text());
    let answer = post(
        &json,
        br#"{"streams":[{"stream":{"a":"b"},"values":[["1","x"],["2","y"],["3","z"]]}]}"#,
    );
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert!(answer.text().contains("more than 2 entries"));
    // A request that sends half its body holds the only decode slot; the
    // next one waits its bounded time for it and is told to retry.
    let mut held = TcpStream::connect(&node.api).unwrap();
    write!(
        held,
        "POST /loki/api/v1/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"streams\""
    )
    .unwrap();
    held.flush().unwrap();
    let busy = wait_for("a push refused as busy", || {
        let answer = post(&json, br#"{"streams":[]}"#);
        (answer.status == 429).then_some(answer)
    });
    assert_eq!(busy.header("retry-after"), Some("1"));
    drop(held);
    // Nothing of all that was written; every refusal was counted.
    let (_, metrics) = http_get(&node.api, "/metrics").unwrap();
    assert!(metric_in(&metrics, "sluice_push_requests_refused_total") >= 7.0);
    assert_eq!(node.stats(&["--from", FROM])["records_matched"], 0);
    // An empty push is a success.
    wait_for("the slot to be free again", || {
        (post(&json, br#"{"streams":[]}"#).status == 204).then_some(())
    });
}

#[test]
fn inputs_turned_off_by_flags_answer_404() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["--no-loki-push", "--no-elasticsearch"]);
    for (method, path) in [
        ("POST", "/loki/api/v1/push"),
        ("GET", "/"),
        ("POST", "/_bulk"),
        ("POST", "/logs/_bulk"),
        ("GET", "/_license"),
    ] {
        let answer = http(&node.api, method, path, &[], b"");
        assert_eq!(answer.status, 404, "{method} {path}");
    }
}

#[test]
fn filebeat_probe_sequence_then_bulk() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let probes = String::from_utf8(fixture("filebeat-probes.txt")).unwrap();
    for line in probes
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (method, path) = line.split_once(' ').unwrap();
        let body: &[u8] = if method == "PUT" {
            b"{\"policy\":{}}"
        } else {
            b""
        };
        let answer = http(
            &node.api,
            method,
            path,
            &[
                ("Content-Type", "application/json"),
                ("User-Agent", "Go-http-client/1.1"),
            ],
            body,
        );
        assert_eq!(answer.status, 200, "{line}: {}", answer.text());
        assert_eq!(
            answer.header("x-elastic-product"),
            Some("Elasticsearch"),
            "{line}"
        );
        if method == "HEAD" {
            continue;
        }
        let json = answer.json();
        match path {
            "/" => assert_eq!(json["version"]["number"], "8.17.0"),
            p if p.starts_with("/_license") => assert_eq!(json["license"]["status"], "active"),
            "/_cluster/health" => assert_eq!(json["status"], "green"),
            _ => assert_eq!(json, serde_json::json!({})),
        }
    }
    let answer = http(
        &node.api,
        "POST",
        "/_bulk",
        &[("Content-Type", "application/json")],
        &fixture("filebeat-bulk.ndjson"),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("x-elastic-product"), Some("Elasticsearch"));
    let json = answer.json();
    assert_eq!(json["errors"], false);
    let items = json["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|i| i.as_object().unwrap().keys().next().unwrap().as_str())
        .collect();
    assert_eq!(actions, ["create", "create", "index"]);
    for item in items {
        let (_, body) = item.as_object().unwrap().iter().next().unwrap();
        assert_eq!(body["status"], 201);
        assert_eq!(body["_index"], "filebeat-8.17.0");
    }
    wait_matched(&node, 3);
    assert_eq!(
        topic_lines(&node, "filebeat-8.17.0"),
        vec![
            (BASE_MS, "level=info msg=\"filebeat line one\"".to_string()),
            (
                BASE_MS + 1250,
                "level=error msg=\"filebeat line two\"".to_string()
            ),
            (
                BASE_MS + 2000,
                "filebeat line three (index action, old client)".to_string()
            ),
        ]
    );
    // Record ids are the ids the response gave.
    let first_id = items[0]["create"]["_id"].as_str().unwrap();
    let out = node.query(&[
        "--from",
        FROM,
        "--topic",
        "filebeat-8.17.0",
        "--ulid",
        "--limit",
        "1",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(first_id));
}

#[test]
fn fluent_bit_bulk_response_prefix_is_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let answer = http(
        &node.api,
        "POST",
        "/_bulk",
        &[
            ("Content-Type", "application/x-ndjson"),
            ("Content-Encoding", "gzip"),
            ("User-Agent", "Fluent-Bit"),
        ],
        &gzip(&fixture("fluent-bit-bulk.ndjson")),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    // Fluent Bit scans a long response for exactly these bytes.
    let text = answer.text();
    let rest = text.strip_prefix("{\"took\":").expect(&text);
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    assert!(digits > 0, "{text}");
    assert!(
        rest[digits..].starts_with(
            ",\"errors\":false,\"items\":[{\"create\":{\"_index\":\"fluent-bit\",\"_id\":\""
        ),
        "{text}"
    );
    assert_eq!(answer.json()["items"].as_array().unwrap().len(), 3);
    wait_matched(&node, 3);
    let lines: Vec<String> = topic_lines(&node, "fluent-bit")
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(
        lines,
        [
            "fluent bit es line one",
            "fluent bit es line two",
            "fluent bit es line three"
        ]
    );
    // An index in the URL, a failed item among good ones.
    let answer = http(
        &node.api,
        "PUT",
        "/from-url/_bulk?refresh=false",
        &[("Content-Type", "application/x-ndjson")],
        b"{\"index\":{}}\n{\"message\":\"url index\"}\n{\"create\":{}}\nnot json\n",
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let json = answer.json();
    assert_eq!(json["errors"], true);
    assert_eq!(json["items"][0]["index"]["status"], 201);
    assert_eq!(json["items"][1]["create"]["status"], 400);
    assert_eq!(
        json["items"][1]["create"]["error"]["type"],
        "document_parsing_exception"
    );
    // A malformed action line fails the request, as Elasticsearch does.
    let answer = http(&node.api, "POST", "/_bulk", &[], b"{\"bogus\":{}}\n{}\n");
    assert_eq!(answer.status, 400);
    assert_eq!(answer.header("x-elastic-product"), Some("Elasticsearch"));
    assert_eq!(answer.json()["status"], 400);
}
