//! syslog over TCP: RFC 5424 and 3164, octet counting and LF framing.

use crate::harness::*;

#[test]
fn syslog_frames_of_both_formats_and_framings_are_stored_with_topic_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    // An hour ago, to the millisecond (a time in the future would be clamped).
    let then =
        jiff::Timestamp::from_millisecond(jiff::Timestamp::now().as_millisecond() - 3_600_000)
            .unwrap();
    let then_ms = then.as_millisecond() as u64;
    let rfc5424 = format!(
        "<165>1 {} host1 billing 42 ID7 - charged card 1234",
        then.strftime("%Y-%m-%dT%H:%M:%S.%3fZ")
    );
    // As rsyslog sends RSYSLOG_SyslogProtocol23Format: counted, LF inside.
    let counted = format!("{} {rfc5424}\n", rfc5424.len() + 1);
    let rfc3164 = format!(
        "<13>{} host2 nginx[77]: GET /index.html 200",
        then.strftime("%b %e %H:%M:%S")
    );
    let multiline = format!(
        "<13>1 {} host1 java - - - Exception\n\tat Foo.bar",
        then.strftime("%Y-%m-%dT%H:%M:%SZ")
    );
    let stream = format!(
        "{counted}{rfc3164}\n{} {multiline}no header at all\n",
        multiline.len()
    );
    send_and_wait_close(&node.syslog, stream.as_bytes());
    node.wait_records(4);
    let query = |topic: &str| -> Vec<String> {
        let out = node.query(&["--topic", topic, "--ulid"]);
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let time_of = |line: &str| -> u64 { line[..26].parse::<ulid::Ulid>().unwrap().timestamp_ms() };
    let billing = query("billing");
    assert_eq!(billing.len(), 1);
    assert_eq!(
        &billing[0][27..],
        rfc5424,
        "the payload is the message as sent"
    );
    assert_eq!(time_of(&billing[0]), then_ms, "RFC 5424 time");
    let nginx = query("nginx");
    assert_eq!(&nginx[0][27..], rfc3164);
    assert_eq!(
        time_of(&nginx[0]),
        then_ms / 1000 * 1000,
        "RFC 3164 time, this year, UTC"
    );
    let java = query("java");
    assert_eq!(
        &java[0][27..],
        multiline.replace('\n', " "),
        "one line per record"
    );
    let raw = query("syslog");
    assert_eq!(
        &raw[0][27..],
        "no header at all",
        "a line without a header is kept"
    );
    assert_eq!(node.metric("sluice_ingest_syslog_unparsed_total"), 1.0);
}
