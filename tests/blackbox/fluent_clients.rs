//! Real Fluentd client libraries against the fluent listener, installed by
//! `scripts/setup-test-deps` (the test command runs it).

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

const SCRIPT: &str = r#"
import logging, sys
from fluent import sender, handler
host, port, when = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = sender.FluentSender('py', host=host, port=port)
for i in range(5000):
    if not s.emit_with_time('sender', when, {'i': i, 'msg': 'sender %d' % i}):
        sys.exit('emit failed: %r' % s.last_error)
s.close()
h = handler.FluentHandler('py.handler', host=host, port=port)
h.setFormatter(handler.FluentRecordFormatter({'level': '%(levelname)s'}))
log = logging.getLogger('sluice-test')
log.addHandler(h)
log.setLevel(logging.INFO)
for i in range(5000):
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
        .args(["-c", SCRIPT, host, port, &when.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.wait_records(10_000);
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
            (0..5000).collect::<Vec<u64>>(),
            "{topic}: every event once"
        );
    }
}
