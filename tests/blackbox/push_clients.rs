//! Real Loki and Elasticsearch client libraries against a real node,
//! installed by `scripts/setup-test-deps` (the test command runs it):
//! Python's `python-logging-loki-v2` (JSON push) and the official
//! `elasticsearch` client's `helpers.bulk` (which checks the product header
//! and reads every item). A missing install fails these tests.

use std::{path::PathBuf, process::Command};

use crate::{harness::*, push::topic_lines};

/// The virtualenv's python, with both clients installed.
fn python() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-deps/py/bin/python");
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/setup-test-deps` (the test command does)",
        path.display()
    );
    path
}

fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const LOKI_LINES: usize = 300;

/// Logs through `LokiHandler` (emitter version 1: the JSON push); a failed
/// push reaches `handleError`, which exits non-zero.
const LOKI_SCRIPT: &str = r#"
import logging, sys
import logging_loki
url, n = sys.argv[1], int(sys.argv[2])
failures = []
handler = logging_loki.LokiHandler(url=url, tags={"application": "py-loki"}, version="1",
                                   headers={"X-Scope-OrgID": "tenant-a"})
handler.handleError = lambda record: failures.append(sys.exc_info()[1])
log = logging.getLogger("sluice-test")
log.addHandler(handler)
log.setLevel(logging.INFO)
for i in range(n):
    if i % 3 == 0:
        log.warning("warning line %d", i)
    else:
        log.info("info line %d", i, extra={"tags": {"service": "checkout"}})
handler.close()
if failures:
    sys.exit("push failed: %r" % failures[:3])
print("sent", n)
"#;

#[test]
fn python_logging_loki_lines_are_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let url = format!("http://{}/loki/api/v1/push", node.api);
    run_python(LOKI_SCRIPT, &[&url, &LOKI_LINES.to_string()]);
    node.wait_records(LOKI_LINES as u64);
    let warnings = topic_lines(
        &node,
        r#"{application="py-loki",logger="sluice-test",severity="warning"}"#,
    );
    let infos = topic_lines(
        &node,
        r#"{application="py-loki",logger="sluice-test",service="checkout",severity="info"}"#,
    );
    assert_eq!(warnings.len(), LOKI_LINES.div_ceil(3));
    assert_eq!(warnings.len() + infos.len(), LOKI_LINES);
    let mut seen: Vec<usize> = warnings
        .iter()
        .chain(&infos)
        .map(|(_, line)| line.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, (0..LOKI_LINES).collect::<Vec<_>>(), "every line once");
    assert!(infos.iter().all(|(_, l)| l.starts_with("info line ")));

    // And through the Loki read API, as Grafana would ask.
    let selector = crate::loki_query::enc(r#"{application="py-loki"}"#);
    let all = crate::loki_query::get_json(
        &node.api,
        &format!("/loki/api/v1/query_range?query={selector}&limit=1000&direction=forward&since=1h"),
    );
    assert_eq!(crate::loki_query::entries(&all).len(), LOKI_LINES, "{all}");
    let warned = crate::loki_query::enc(r#"{application="py-loki"} |= "warning line""#);
    let warned = crate::loki_query::get_json(
        &node.api,
        &format!("/loki/api/v1/query_range?query={warned}&limit=1000&since=1h"),
    );
    assert_eq!(
        crate::loki_query::entries(&warned).len(),
        warnings.len(),
        "{warned}"
    );
}

const ES_DOCS: usize = 1000;

/// The client's own product check (`info()`), then `helpers.bulk`, which
/// raises on any failed item.
const ES_SCRIPT: &str = r#"
import sys
from elasticsearch import Elasticsearch, helpers
url, n, base_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
es = Elasticsearch(url, request_timeout=60)
info = es.info()
assert info["version"]["number"] == "8.17.0", info
def docs():
    for i in range(n):
        op = "create" if i % 2 else "index"
        yield {"_op_type": op, "_index": "py-es", "message": "es doc %d" % i,
               "@timestamp": base_ms + i, "level": "info"}
ok, errors = helpers.bulk(es, docs(), chunk_size=250)
assert ok == n and not errors, (ok, errors)
print("indexed", ok)
"#;

#[test]
fn python_elasticsearch_helpers_bulk_is_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let url = format!("http://{}", node.api);
    let base_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 600_000;
    let out = run_python(
        ES_SCRIPT,
        &[&url, &ES_DOCS.to_string(), &base_ms.to_string()],
    );
    assert!(out.contains(&format!("indexed {ES_DOCS}")), "{out}");
    node.wait_records(ES_DOCS as u64);
    let lines = topic_lines(&node, "py-es");
    assert_eq!(lines.len(), ES_DOCS);
    for (i, (ms, line)) in lines.iter().enumerate() {
        assert_eq!(*ms, base_ms + i as u64, "the @timestamp is the record time");
        assert_eq!(line, &format!("es doc {i}"));
    }
}
