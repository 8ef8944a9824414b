//! Header parsing across formats, through [`parse`]: frames as common
//! senders write them, PRI and topic rules, frames from the framer, and
//! random bytes. Also the helpers the format modules' tests share.

use jiff::Timestamp;
use proptest::prelude::*;
use sluice_record::is_valid_topic;

use super::*;

pub(super) fn ms(rfc3339: &str) -> i64 {
    rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
}

/// The receiver's clock in most tests: 2026-11-21T12:00:00Z.
pub(super) fn now() -> i64 {
    ms("2026-11-21T12:00:00Z")
}

pub(super) fn p(frame: &[u8]) -> Parsed<'_> {
    parse(frame, now())
}

pub(super) fn rfc5424_parsed(topic: Option<&str>, time: Option<&str>, pri: u8) -> Parsed<'static> {
    Parsed {
        format: Format::Rfc5424,
        topic: topic.map(|t| Box::leak(t.to_owned().into_boxed_str()) as &str),
        time_ms: time.map(ms),
        pri: Some(pri),
    }
}

pub(super) fn rfc3164_parsed(topic: Option<&str>, time: Option<&str>, pri: u8) -> Parsed<'static> {
    Parsed {
        format: Format::Rfc3164,
        ..rfc5424_parsed(topic, time, pri)
    }
}

#[test]
fn rsyslog_templates() {
    // RSYSLOG_SyslogProtocol23Format (its trailing "\n" is trimmed by the framer).
    assert_eq!(
        p(b"<13>1 2026-11-21T10:00:00.123456+00:00 host app 123 - - msg"),
        rfc5424_parsed(Some("app"), Some("2026-11-21T10:00:00.123Z"), 13)
    );
    // RSYSLOG_TraditionalForwardFormat.
    assert_eq!(
        p(b"<13>Nov 21 10:00:00 myhost myapp[123]: hello"),
        rfc3164_parsed(Some("myapp"), Some("2026-11-21T10:00:00Z"), 13)
    );
    // RSYSLOG_ForwardFormat: RFC 3339 time in a 3164 header.
    assert_eq!(
        p(b"<13>2026-11-21T10:00:00.123456+00:00 host tag: msg"),
        rfc3164_parsed(Some("tag"), Some("2026-11-21T10:00:00.123Z"), 13)
    );
    assert_eq!(
        p(b"<86>2026-11-21T10:00:00.999999-05:30 web-1 sshd[4242]: Accepted publickey"),
        rfc3164_parsed(Some("sshd"), Some("2026-11-21T15:30:00.999Z"), 86)
    );
    // Typical system tags.
    for (frame, tag) in [
        (
            &b"<22>Nov 21 10:00:00 mx postfix/smtpd[123]: connect from x"[..],
            "postfix/smtpd",
        ),
        (
            b"<6>Nov 21 10:00:00 host kernel: [ 0.000000] Linux version",
            "kernel",
        ),
        (
            b"<30>Nov 21 10:00:00 host systemd-resolved[1]: ok",
            "systemd-resolved",
        ),
        (
            b"<30>Nov 21 10:00:00 host com.apple.xpc.launchd[1] (x) y",
            "com.apple.xpc.launchd",
        ),
        (b"<30>Nov 21 10:00:00 host my_app.v2[pid-7]:", "my_app.v2"),
    ] {
        assert_eq!(
            p(frame).topic,
            Some(tag),
            "{}",
            String::from_utf8_lossy(frame)
        );
    }
}

#[test]
fn logger_outputs() {
    // logger --rfc3164 -n host (hostname included).
    assert_eq!(
        p(b"<13>Nov 21 10:00:00 myhost alice: hello"),
        rfc3164_parsed(Some("alice"), Some("2026-11-21T10:00:00Z"), 13)
    );
    // logger to a local socket: no hostname, with and without a pid.
    assert_eq!(
        p(b"<13>Nov 21 10:00:00 alice: hello"),
        rfc3164_parsed(Some("alice"), Some("2026-11-21T10:00:00Z"), 13)
    );
    assert_eq!(
        p(b"<13>Nov  5 10:00:00 myapp[123]: hello"),
        rfc3164_parsed(Some("myapp"), Some("2026-11-05T10:00:00Z"), 13)
    );
    // logger --rfc5424 (the default over TCP), with its timeQuality SD.
    assert_eq!(
        p(b"<13>1 2026-11-21T11:00:00.123456+01:00 myhost alice - - [timeQuality tzKnown=\"1\" isSynced=\"1\" syncAccuracy=\"187500\"] hello"),
        rfc5424_parsed(Some("alice"), Some("2026-11-21T10:00:00.123Z"), 13)
    );
    // logger --rfc5424=notq,notime --id=42.
    assert_eq!(
        p(b"<13>1 - myhost alice 42 - - hello"),
        rfc5424_parsed(Some("alice"), None, 13)
    );
}

#[test]
fn syslog_ng_drivers() {
    // syslog() driver: RFC 5424, with syslog-ng's meta SD.
    assert_eq!(
        p(b"<13>1 2026-11-21T10:00:00+00:00 host app 1 - [meta sequenceId=\"1\"] msg"),
        rfc5424_parsed(Some("app"), Some("2026-11-21T10:00:00Z"), 13)
    );
    // network() driver: 3164-like.
    assert_eq!(
        p(b"<13>Nov 21 10:00:00 host app[1]: msg"),
        rfc3164_parsed(Some("app"), Some("2026-11-21T10:00:00Z"), 13)
    );
}

#[test]
fn pri_rules() {
    assert_eq!(p(b"<0>1 - - - - - -").pri, Some(0));
    assert_eq!(p(b"<191>1 - - - - - -").pri, Some(191));
    assert_eq!(p(b"<007>1 - - - - - -").pri, Some(7));
    for frame in [
        &b"<192>1 - - - - - -"[..],
        b"<999>1 - - - - - -",
        b"<1000>1 - - - - - -",
        b"<>1 - - - - - -",
        b"<13 1 - - - - - -",
        b"<13",
        b"<",
        b"",
        b" <13>1 - - - - - -",
        b"13>1 - - - - - -",
    ] {
        assert_eq!(
            p(frame),
            Parsed::UNKNOWN,
            "{}",
            String::from_utf8_lossy(frame)
        );
    }
    let parsed = p(b"<165>1 - - - - - -");
    assert_eq!((parsed.facility(), parsed.severity()), (Some(20), Some(5)));
}

#[test]
fn topics_are_valid_sluice_topics_or_none() {
    let app = "a".repeat(255);
    let frame = format!("<13>1 - h {app} - - -");
    assert_eq!(p(frame.as_bytes()).topic, Some(app.as_str()));
    let frame = format!("<13>1 - h {app}b - - -");
    assert_eq!(p(frame.as_bytes()), rfc5424_parsed(None, None, 13));
    assert_eq!(p(frame.as_bytes()).topic_or_default(), "syslog");
    // A 5424 APP-NAME may hold any printable ASCII.
    assert_eq!(p(b"<13>1 - h a@b:c - - -").topic, Some("a@b:c"));
    assert_eq!(p("<13>1 - h äpp - - -".as_bytes()).topic, None);

    let frame = format!("<13>Nov 21 10:00:00 h {app}: x");
    assert_eq!(p(frame.as_bytes()).topic, Some(app.as_str()));
    let frame = format!("<13>Nov 21 10:00:00 h {app}b: x");
    assert_eq!(p(frame.as_bytes()).topic, None);
    // Words that are not tags.
    for frame in [
        &b"<13>Nov 21 10:00:00 h a@b: x"[..],
        b"<13>Nov 21 10:00:00 h app x",
        b"<13>Nov 21 10:00:00 h app:x",
        b"<13>Nov 21 10:00:00 h app[1",
        b"<13>Nov 21 10:00:00 h app[1]x",
        b"<13>Nov 21 10:00:00 h app[1 2]: x",
        b"<13>Nov 21 10:00:00 h :x",
        b"<13>Nov 21 10:00:00 h [1]: x",
        b"<13>Nov 21 10:00:00 h  app: x",
        b"<13>Nov 21 10:00:00 fe80::1 x",
        b"<13>Nov 21 10:00:00  app: x",
        b"<13>Nov 21 10:00:00 ",
    ] {
        let parsed = p(frame);
        assert_eq!(
            parsed.format,
            Format::Rfc3164,
            "{}",
            String::from_utf8_lossy(frame)
        );
        assert_eq!(parsed.topic, None, "{}", String::from_utf8_lossy(frame));
        assert_eq!(parsed.topic_or_default(), DEFAULT_TOPIC);
        assert_eq!(topic_or_default(&parsed), "syslog");
    }
    // An IPv6 hostname is skipped like any other.
    assert_eq!(p(b"<13>Nov 21 10:00:00 fe80::1 app: x").topic, Some("app"));
    assert_eq!(p(b"<13>Nov 21 10:00:00 h app: x").topic_or_default(), "app");
}

#[test]
fn frames_through_the_framer_parse() {
    use crate::SyslogFramer;
    let msg = b"<13>1 2026-11-21T10:00:00.123456+00:00 host app 123 - - msg\n";
    let mut input = format!("{} ", msg.len()).into_bytes();
    input.extend_from_slice(msg);
    input.extend_from_slice(b"<13>Nov 21 10:00:00 host tag[1]: lf\r\nplain text\n");
    let mut framer = SyslogFramer::new(1024, 4096);
    framer.spare()[..input.len()].copy_from_slice(&input);
    framer.filled(input.len());
    let mut got = Vec::new();
    framer.drain(|f| {
        let parsed = parse(f.bytes, now());
        got.push((
            parsed.format,
            parsed.topic_or_default().to_owned(),
            parsed.time_ms,
        ));
    });
    assert_eq!(
        got,
        vec![
            (
                Format::Rfc5424,
                "app".to_owned(),
                Some(ms("2026-11-21T10:00:00.123Z"))
            ),
            (
                Format::Rfc3164,
                "tag".to_owned(),
                Some(ms("2026-11-21T10:00:00Z"))
            ),
            (Format::Unknown, "syslog".to_owned(), None),
        ]
    );
}

proptest! {
    #[test]
    fn random_bytes_never_panic_and_topics_are_valid(
        frame in proptest::collection::vec(any::<u8>(), 0..200),
        now_ms in any::<i64>(),
    ) {
        let parsed = parse(&frame, now_ms);
        if let Some(topic) = parsed.topic {
            prop_assert!(is_valid_topic(topic.as_bytes()));
        }
        if parsed.format == Format::Unknown {
            prop_assert_eq!(parsed, Parsed::UNKNOWN);
        }
    }

    #[test]
    fn header_like_bytes_never_panic(
        head in prop_oneof![
            Just(&b"<13>1 "[..]), Just(&b"<13>Nov 21 10:00:00 "[..]), Just(&b"<13>"[..]),
            Just(&b"<13>2026-11-21T10:00:00Z "[..]), Just(&b"<191>1 - h a - - ["[..]),
        ],
        tail in proptest::collection::vec(prop_oneof![
            Just(b' '), Just(b'-'), Just(b'['), Just(b']'), Just(b'"'), Just(b'\\'),
            Just(b'='), Just(b':'), b'0'..=b'9', b'a'..=b'z', any::<u8>(),
        ], 0..80),
    ) {
        let mut frame = head.to_vec();
        frame.extend_from_slice(&tail);
        let parsed = parse(&frame, now());
        if let Some(topic) = parsed.topic {
            prop_assert!(is_valid_topic(topic.as_bytes()));
        }
    }
}
