//! The Loki read API (`/loki/api/v1/*`) as Grafana and logcli call it,
//! against a real node: golden answers (Grafana's health check, its logs
//! volume query, logcli's paging, series with plain `match`), and
//! semantics checked against a model of what was written (label
//! matchers, line filters, backward + limit, count_over_time by label),
//! plus the WebSocket tail.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sluice_client::{Guarantee, Writer, WriterConfig};

use crate::harness::*;

const PROD: &str = r#"{app="api",env="prod"}"#;
const DEV: &str = r#"{app="api",env="dev"}"#;

/// Percent-encode a query parameter.
pub(crate) fn enc(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An HTTP/1.0 request with headers and a body: status and body.
pub(crate) fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

fn get(api: &str, path: &str) -> (u16, String) {
    // Grafana always sends these; X-Scope-OrgID is accepted and ignored.
    request(
        api,
        "GET",
        path,
        &[
            "X-Scope-OrgID: tenant-1",
            "X-Loki-Response-Encoding-Flags: categorize-labels",
        ],
        "",
    )
}

pub(crate) fn get_json(api: &str, path: &str) -> Value {
    let (status, body) = get(api, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// One record as the node stored it.
#[derive(Debug, Clone)]
struct Rec {
    ns: u128,
    topic: String,
    line: String,
}

fn write(node: &Node, topic: &str, lines: &[String]) {
    let mut config = WriterConfig::new(node.batch.clone());
    config.guarantee = Guarantee::Fsync;
    config.topic = topic.into();
    let mut writer = Writer::new(config);
    for line in lines {
        writer.write_all(format!("{line}\n").as_bytes()).unwrap();
        writer.flush().unwrap();
        // Records a ms apart or more: logcli's paging (the next end is
        // the last ts + 1 ns) cannot get past more ties than its limit,
        // with Loki as with sluice.
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Every record of the last hour, from sluice's own `/query`.
fn model(node: &Node) -> Vec<Rec> {
    let (status, body) = get(&node.api, "/query?from=1h&to=now&format=json");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let id = ulid::Ulid::from_string(v["id"].as_str().unwrap()).unwrap();
            Rec {
                ns: u128::from(id.timestamp_ms()) * 1_000_000,
                topic: v["topic"].as_str().unwrap().into(),
                line: v["payload"].as_str().unwrap().into(),
            }
        })
        .collect()
}

/// (ns, line) pairs of a streams answer, with each stream's labels.
pub(crate) fn entries(answer: &Value) -> Vec<(BTreeMap<String, String>, u128, String)> {
    assert_eq!(answer["data"]["resultType"], "streams", "{answer}");
    let mut out = Vec::new();
    for stream in answer["data"]["result"].as_array().unwrap() {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(stream["stream"].clone()).unwrap();
        for v in stream["values"].as_array().unwrap() {
            let ns: u128 = v[0].as_str().expect("ns as a string").parse().unwrap();
            out.push((labels.clone(), ns, v[1].as_str().unwrap().to_string()));
        }
    }
    out
}

fn labels_of(topic: &str) -> BTreeMap<String, String> {
    sluice_record::labels::Labels::from_topic(topic.as_bytes())
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn grafana_and_logcli_read_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let api = node.api.clone();
    let prod: Vec<String> = (0..30)
        .map(|i| {
            format!(
                "level={} req {i} prod",
                if i % 3 == 0 { "error" } else { "info" }
            )
        })
        .collect();
    let dev: Vec<String> = (0..20).map(|i| format!("WARN req {i} dev")).collect();
    let web: Vec<String> = (0..10).map(|i| format!("GET /x {i}")).collect();
    write(&node, PROD, &prod[..15]);
    write(&node, DEV, &dev);
    write(&node, "web", &web);
    write(&node, PROD, &prod[15..]);
    node.wait_records(60);
    let all = model(&node);
    assert_eq!(all.len(), 60);
    let end_ns = all.iter().map(|r| r.ns).max().unwrap() + 1_000_000_000;
    let start_ns = end_ns - 600 * 1_000_000_000;
    let range = format!("start={start_ns}&end={end_ns}");

    // Grafana's Save & test: byte for byte.
    let (status, body) = get(
        &api,
        "/loki/api/v1/query?query=vector(1)%2Bvector(1)&time=4000000000&direction=backward",
    );
    assert_eq!(status, 200);
    assert_eq!(
        body,
        include_str!("../fixtures/loki-query/grafana_health.json").trim_end()
    );

    // Explore: backward + limit gives the newest N, newest first per
    // stream; resultType comes before result.
    let q = enc(r#"{app="api"}"#);
    let (status, body) = get(
        &api,
        &format!(
            "/loki/api/v1/query_range?query={q}&direction=backward&limit=7&{range}&step=1000ms"
        ),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with(r#"{"status":"success","data":{"resultType":"streams","result":["#));
    let got = entries(&serde_json::from_str(&body).unwrap());
    let mut api_recs: Vec<&Rec> = all.iter().filter(|r| r.topic != "web").collect();
    api_recs.sort_by_key(|r| r.ns);
    let newest: BTreeSet<String> = api_recs
        .iter()
        .rev()
        .take(7)
        .map(|r| r.line.clone())
        .collect();
    assert_eq!(
        got.iter().map(|e| e.2.clone()).collect::<BTreeSet<_>>(),
        newest
    );
    for (labels, _, line) in &got {
        let want = if line.ends_with("prod") { PROD } else { DEV };
        assert_eq!(labels, &labels_of(want));
    }
    for pair in got.windows(2).filter(|p| p[0].0 == p[1].0) {
        assert!(pair[0].1 >= pair[1].1, "newest first within a stream");
    }

    // logcli's paging, backward: the next end is the last ts + 1 ns; it
    // drops the entries it saw already. The pages cover every match once.
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut end = end_ns;
    for _ in 0..100 {
        let answer = get_json(
            &api,
            &format!(
                "/loki/api/v1/query_range?query={q}&limit=8&start={start_ns}&end={end}&direction=BACKWARD"
            ),
        );
        let page = entries(&answer);
        let new: Vec<_> = page.iter().filter(|e| !seen.contains(&e.2)).collect();
        if new.is_empty() {
            break;
        }
        for e in &new {
            seen.insert(e.2.clone());
        }
        end = page.iter().map(|e| e.1).min().unwrap() + 1;
    }
    let want: BTreeSet<String> = api_recs.iter().map(|r| r.line.clone()).collect();
    assert_eq!(seen, want);

    // Forward: the oldest first, across streams.
    let answer = get_json(
        &api,
        &format!("/loki/api/v1/query_range?query={q}&limit=3&{range}&direction=forward"),
    );
    let oldest: BTreeSet<String> = api_recs.iter().take(3).map(|r| r.line.clone()).collect();
    assert_eq!(
        entries(&answer)
            .into_iter()
            .map(|e| e.2)
            .collect::<BTreeSet<_>>(),
        oldest
    );

    // Matchers select topics; chained line filters AND together; POST
    // forms work as GET.
    type Keep = Box<dyn Fn(&Rec) -> bool>;
    let cases: Vec<(&str, Keep)> = vec![
        (r#"{env=~"pro.*"}"#, Box::new(|r| r.topic == PROD)),
        (r#"{topic="web"}"#, Box::new(|r| r.topic == "web")),
        (r#"{app="api", env!="prod"}"#, Box::new(|r| r.topic == DEV)),
        (
            r#"{app=~".+"} |= "req" != "prod""#,
            Box::new(|r| r.topic == DEV),
        ),
        (
            r#"{app="api"} |~ "level=(error|x)" or `WARN req 1\d` != "req 3 ""#,
            Box::new(|r| {
                (r.line.contains("level=error")
                    || (r.line.starts_with("WARN req 1")
                        && r.line.as_bytes().get(10).is_some_and(u8::is_ascii_digit)))
                    && !r.line.contains("req 3 ")
            }),
        ),
        (r#"{nope="x"}"#, Box::new(|_| false)),
    ];
    for (query, keep) in cases {
        let form = format!("query={}&limit=1000&{range}", enc(query));
        let (status, body) = request(
            &api,
            "POST",
            "/loki/api/v1/query_range",
            &["Content-Type: application/x-www-form-urlencoded"],
            &form,
        );
        assert_eq!(status, 200, "{query}: {body}");
        let got: BTreeSet<String> = entries(&serde_json::from_str(&body).unwrap())
            .into_iter()
            .map(|e| e.2)
            .collect();
        let want: BTreeSet<String> = all
            .iter()
            .filter(|r| keep(r))
            .map(|r| r.line.clone())
            .collect();
        assert_eq!(got, want, "{query}");
    }

    // count_over_time by label equals the model, window (t - 1m, t].
    let step = 60_000_000_000u128;
    let start = (start_ns / 1_000_000_000) * 1_000_000_000;
    let answer = get_json(
        &api,
        &format!(
            "/loki/api/v1/query_range?query={}&start={start}&end={end_ns}&step=60s",
            enc(r#"sum by (env) (count_over_time({app="api"}[1m]))"#)
        ),
    );
    assert_eq!(answer["data"]["resultType"], "matrix", "{answer}");
    let mut want: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut t = start;
    while t <= end_ns {
        for env in ["dev", "prod"] {
            let n = api_recs
                .iter()
                .filter(|r| labels_of(&r.topic)["env"] == env && r.ns + step > t && r.ns <= t)
                .count();
            if n > 0 {
                want.entry(env.into())
                    .or_default()
                    .push(json!([(t / 1_000_000_000) as u64, n.to_string()]));
            }
        }
        t += step;
    }
    let got: BTreeMap<String, Vec<Value>> = answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"]["env"].as_str().unwrap().to_string(),
                s["values"].as_array().unwrap().clone(),
            )
        })
        .collect();
    assert_eq!(got, want, "{answer}");

    // Grafana's logs volume query splits by the lines' level words.
    let volume_query =
        r#"sum by (level, detected_level) (count_over_time({app="api"} | drop __error__[10m]))"#;
    let answer = get_json(
        &api,
        &format!(
            "/loki/api/v1/query?query={}&time={end_ns}",
            enc(volume_query)
        ),
    );
    let got: BTreeMap<String, String> = answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"]["detected_level"].as_str().unwrap().to_string(),
                s["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let golden: Value =
        serde_json::from_str(include_str!("../fixtures/loki-query/volume_levels.json")).unwrap();
    let golden: BTreeMap<String, String> = serde_json::from_value(golden).unwrap();
    assert_eq!(got, golden, "{answer}");

    // Labels, values, series (logcli's plain match and Grafana's match[]).
    let labels = get_json(&api, &format!("/loki/api/v1/labels?{range}"));
    assert_eq!(
        labels,
        json!({"status":"success","data":["app","env","topic"]})
    );
    let values = get_json(&api, &format!("/loki/api/v1/label/env/values?{range}"));
    assert_eq!(values["data"], json!(["dev", "prod"]));
    let values = get_json(
        &api,
        &format!(
            "/loki/api/v1/label/env/values?{range}&query={}",
            enc(r#"{env="dev"}"#)
        ),
    );
    assert_eq!(values["data"], json!(["dev"]));
    let golden: Value =
        serde_json::from_str(include_str!("../fixtures/loki-query/series_match.json")).unwrap();
    for key in ["match", "match%5B%5D"] {
        let series = get_json(
            &api,
            &format!(
                "/loki/api/v1/series?{range}&{key}={}",
                enc(r#"{app="api"}"#)
            ),
        );
        assert_eq!(series, golden, "{key}");
    }
    let stats = get_json(
        &api,
        &format!(
            "/loki/api/v1/index/stats?{range}&query={}",
            enc(r#"{app="api"}"#)
        ),
    );
    assert_eq!(
        stats,
        json!({"streams": 2, "chunks": 0, "bytes": 0, "entries": 50})
    );
    let volume = get_json(
        &api,
        &format!(
            "/loki/api/v1/index/volume?{range}&query={}",
            enc(r#"{app=~".+"}"#)
        ),
    );
    let result = volume["data"]["result"].as_array().unwrap();
    assert_eq!(result[0]["metric"], json!({"app":"api","env":"prod"}));
    assert_eq!(result[0]["value"][1], "30");
    assert_eq!(result[1]["value"][1], "20");
    let info = get_json(&api, "/loki/api/v1/status/buildinfo");
    assert!(info["version"].is_string());

    // What Grafana probes and must find missing, and what is outside the
    // subset.
    for path in [
        "/loki/api/v1/detected_labels?start=1&end=2",
        "/loki/api/v1/detected_fields?query=x",
        "/loki/api/v1/detected_field/level/values",
        "/loki/api/v1/patterns?query=x",
        "/loki/api/v1/index/volume_range?query=x",
        "/loki/api/v2alpha/tail?query=x",
    ] {
        assert_eq!(get(&api, path).0, 404, "{path}");
    }
    for query in [
        r#"{app="api"} | json"#,
        "{}",
        r#"topk(1, rate({a="b"}[1m]))"#,
    ] {
        let (status, body) = get(
            &api,
            &format!("/loki/api/v1/query_range?query={}&{range}", enc(query)),
        );
        assert_eq!(status, 400, "{query}");
        assert!(body.contains("sluice supports this LogQL subset"), "{body}");
    }
    let (status, body) = get(&api, &format!("/loki/api/v1/query?query={q}"));
    assert_eq!(status, 400);
    assert!(body.contains("instant query"), "{body}");
}

/// A minimal WebSocket client: the handshake, then the next text
/// message's payload within the deadline (pings and empty reads skipped).
struct WsClient {
    stream: TcpStream,
}

impl WsClient {
    fn connect(addr: &str, path: &str) -> WsClient {
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
            assert!(head.len() < 8192, "no end of the upgrade's headers");
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        WsClient { stream }
    }

    fn next_text(&mut self, deadline: Instant) -> String {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no text message in time");
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut h = [0u8; 2];
            self.stream.read_exact(&mut h).unwrap();
            let opcode = h[0] & 0x0f;
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).unwrap();
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).unwrap();
                len = u64::from_be_bytes(b);
            }
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload).unwrap();
            match opcode {
                1 => return String::from_utf8(payload).unwrap(),
                8 => panic!("closed: {}", String::from_utf8_lossy(&payload)),
                _ => {}
            }
        }
    }
}

#[test]
fn the_tail_websocket_delivers_a_line_written_after_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let topic = r#"{app="tailed"}"#;
    write(&node, topic, &["before the tail".to_string()]);
    write(&node, "other", &["not selected".to_string()]);
    node.wait_records(2);
    let query = enc(r#"{app="tailed"} != "skip""#);
    // A bad query is refused before the upgrade.
    let (status, _) = get(&node.api, "/loki/api/v1/tail?query=%7B%7D");
    assert_eq!(status, 400);
    let mut ws = WsClient::connect(&node.api, &format!("/loki/api/v1/tail?query={query}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    // The catch-up: the line of the last hour.
    let first: Value = serde_json::from_str(&ws.next_text(deadline)).unwrap();
    assert_eq!(first["streams"][0]["stream"], json!({"app": "tailed"}));
    assert_eq!(first["streams"][0]["values"][0][1], "before the tail");
    write(&node, "other", &["not selected either".to_string()]);
    write(
        &node,
        topic,
        &[
            "skip this".to_string(),
            "written after connecting".to_string(),
        ],
    );
    let next: Value = serde_json::from_str(&ws.next_text(deadline)).unwrap();
    let values = next["streams"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 1, "{next}");
    assert_eq!(values[0][1], "written after connecting");
    assert!(values[0][0].as_str().unwrap().parse::<u128>().is_ok());
}
