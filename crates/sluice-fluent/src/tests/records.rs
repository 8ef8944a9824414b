//! Events as records ([`Frame::records`]), through [`FluentFramer`]: the
//! mapping the ingester and the agent share.

use sluice_record::{FLAG_TRUNCATED, MAX_FUTURE_MS, Unstamped};

use super::*;

/// Feed `stream` to a framer in pieces of `piece` bytes; every record made
/// at `now_ms`, as (topic, time, flags, payload), and each frame's event
/// count.
fn records(
    stream: &[u8],
    max_line: usize,
    piece: usize,
    now_ms: u64,
) -> Vec<(String, u64, u8, String)> {
    let mut framer = FluentFramer::new(Limits::default(), max_line, piece);
    let mut out = Vec::new();
    for chunk in stream.chunks(piece) {
        let spare = framer.spare();
        spare[..chunk.len()].copy_from_slice(chunk);
        framer.filled(chunk.len());
        framer
            .drain::<FluentError>(|mut frame| {
                let info = frame.records(now_ms, |r: Unstamped<'_>| {
                    out.push((
                        String::from_utf8(r.topic.to_vec()).unwrap(),
                        r.time_ms,
                        r.flags,
                        String::from_utf8(r.payload.to_vec()).unwrap(),
                    ))
                })?;
                assert!(info.mode.is_some());
                Ok(())
            })
            .unwrap();
    }
    assert_eq!(framer.pending(), 0);
    out
}

#[test]
fn tags_times_and_long_records() {
    let now = u64::from(T) * 1000 + 500;
    // Message mode, a tag with a space and a time an hour ahead.
    let mut stream = W::default()
        .arr(3)
        .s("my app")
        .u32(T + 3600)
        .map(1)
        .s("k")
        .s("v")
        .0;
    // Forward mode, an empty tag, a nil time and an EventTime with millis.
    stream.extend(
        W::default()
            .arr(2)
            .s("")
            .arr(2)
            .arr(2)
            .nil()
            .map(1)
            .s("a")
            .s("b")
            .arr(2)
            .et(T, 250_000_000)
            .map(1)
            .s("long")
            .s("0123456789012345678901234567890")
            .0,
    );
    let expected = [
        (
            "my_app".to_string(),
            now + MAX_FUTURE_MS,
            0,
            r#"{"k":"v"}"#.to_string(),
        ),
        ("fluent".into(), now, 0, r#"{"a":"b"}"#.into()),
        (
            "fluent".into(),
            u64::from(T) * 1000 + 250,
            FLAG_TRUNCATED,
            r#"{"long":"01234567890"#.into(),
        ),
    ];
    for piece in [1, 7, stream.len()] {
        assert_eq!(records(&stream, 20, piece, now), expected, "piece {piece}");
    }
}
