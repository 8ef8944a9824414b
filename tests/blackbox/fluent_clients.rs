//! Real Fluentd client libraries against the fluent listener, installed by
//! `scripts/setup-test-deps` (the test command runs it): Python's
//! fluent-logger and Node's @fluent-org/logger.

use std::{path::PathBuf, process::Command};

use crate::harness::*;

/// The virtualenv's python, with fluent-logger installed.
fn python() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-deps/py/bin/python");
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/setup-test-deps` (the test command does)",
        path.display()
    );
    path
}

/// Events through each of the sender and the logging handler.
const PY_EVENTS: u64 = 10_000;

const SCRIPT: &str = r#"
import logging, sys
from fluent import sender, handler
host, port, when, N = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = sender.FluentSender('py', host=host, port=port)
for i in range(N):
    if not s.emit_with_time('sender', when, {'i': i, 'msg': 'sender %d' % i}):
        sys.exit('emit failed: %r' % s.last_error)
s.close()
h = handler.FluentHandler('py.handler', host=host, port=port)
h.setFormatter(handler.FluentRecordFormatter({'level': '%(levelname)s'}))
log = logging.getLogger('sluice-test')
log.addHandler(h)
log.setLevel(logging.INFO)
for i in range(N):
    log.info({'i': i, 'msg': 'handler %d' % i})
h.close()
"#;

#[test]
fn python_fluent_logger_sender_and_logging_handler() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let (host, port) = node.fluent.split_once(':').unwrap();
    let when = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    let out = Command::new(python())
        .args(["-c", SCRIPT, host, port])
        .args([when.to_string(), PY_EVENTS.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.wait_records(2 * PY_EVENTS);
    for (topic, kind) in [("py.sender", "sender"), ("py.handler", "handler")] {
        let out = node.query(&["--topic", topic, "--ulid"]);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let mut seen: Vec<u64> = Vec::new();
        for line in text.lines() {
            let (id, payload) = line.split_once(' ').unwrap();
            let event: serde_json::Value = serde_json::from_str(payload).unwrap();
            let i = event["i"].as_u64().unwrap();
            assert_eq!(event["msg"], format!("{kind} {i}"));
            if kind == "sender" {
                let ms = id.parse::<ulid::Ulid>().unwrap().timestamp_ms();
                assert_eq!(ms, when * 1000, "the event time is the ULID time");
            } else {
                assert_eq!(event["level"], "INFO");
            }
            seen.push(i);
        }
        seen.sort();
        assert_eq!(
            seen,
            (0..PY_EVENTS).collect::<Vec<u64>>(),
            "{topic}: every event once"
        );
    }
}

/// Node's @fluent-org/logger, as `npm install` put it.
fn node_modules() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-deps/node/node_modules");
    assert!(
        path.join("@fluent-org/logger").exists(),
        "{} has no @fluent-org/logger: run `bash scripts/setup-test-deps` (the test command does)",
        path.display()
    );
    path
}

/// Events the Node client sends.
const JS_EVENTS: u64 = 5000;

/// Sends the events in rounds of 100 with acknowledgements on, awaiting every
/// emit's promise, which resolves only once the node has acked the chunk
/// that carried it; exits non-zero if any is rejected (an ack timeout, a
/// lost connection). (This client's option is `ack`; `requireAckResponse`
/// is the older fluent-logger-node's.) The timeouts are only bounds, as the
/// harness's deadline. No `eventRetry`: a retry could store an event twice,
/// and a failure should fail the test. Event `i` is at `base_ms + i`, with
/// nanoseconds below the millisecond.
const JS_SCRIPT: &str = r#"
const { FluentClient, EventTime } = require("@fluent-org/logger");
const [host, port, baseMs, n] = process.argv.slice(1);
const client = new FluentClient("js", {
  socket: { host, port: Number(port), timeout: 120000 },
  ack: { ackTimeout: 120000 },
});
(async () => {
  for (let start = 0; start < Number(n); start += 100) {
    const acked = [];
    for (let i = start; i < Math.min(Number(n), start + 100); i++) {
      const ms = Number(baseMs) + i;
      const time = new EventTime(Math.floor(ms / 1000), (ms % 1000) * 1000000 + 123456);
      const record = { i, msg: `node ${i}`, nested: { list: [i, "two", null], ok: true }, text: "h\u00e9llo \u2713" };
      acked.push(client.emit("acked", record, time));
    }
    await Promise.all(acked);
  }
  await client.disconnect();
  console.log(`acked ${n}`);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
"#;

#[test]
fn node_fluent_logger_events_are_acked_only_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &["--fluent-ack", "fsync"]);
    let (host, port) = node.fluent.split_once(':').unwrap();
    // A minute ago: a time ahead of the node's clock would be clamped.
    let base_ms = jiff::Timestamp::now().as_millisecond() as u64 - 60_000;
    let out = Command::new("node")
        .args(["-e", JS_SCRIPT, host, port])
        .args([base_ms.to_string(), JS_EVENTS.to_string()])
        .env("NODE_PATH", node_modules())
        .output()
        .expect("run node (Node.js)");
    assert!(
        out.status.success(),
        "node: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("acked {JS_EVENTS}")
    );
    // Every emit was acked: the node must have every event on disk, so a
    // kill -9 right now loses none.
    node.kill9();
    node.restart();
    node.wait_records(JS_EVENTS);
    let out = node.query(&["--topic", "js.acked", "--ulid"]);
    assert!(
        out.status.success(),
        "query: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut seen: Vec<u64> = Vec::new();
    for line in text.lines() {
        let (id, payload) = line.split_once(' ').unwrap();
        let event: serde_json::Value = serde_json::from_str(payload).unwrap();
        let i = event["i"].as_u64().unwrap();
        assert_eq!(
            event,
            serde_json::json!({
                "i": i,
                "msg": format!("node {i}"),
                "nested": { "list": [i, "two", null], "ok": true },
                "text": "h\u{e9}llo \u{2713}",
            }),
            "the record's fields as sent"
        );
        let ms = id.parse::<ulid::Ulid>().unwrap().timestamp_ms();
        assert_eq!(ms, base_ms + i, "the event time is the ULID time");
        seen.push(i);
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..JS_EVENTS).collect::<Vec<u64>>(),
        "js.acked: every event once"
    );
}
