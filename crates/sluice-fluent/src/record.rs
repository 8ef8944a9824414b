//! A Fluentd event as a record: the one mapping that the ingester's fluent
//! listener and the forwarder's agent (`--listen fluent://`) share.
//!
//! - **topic**: the frame's tag, cleaned ([`sluice_record::clean_topic`]:
//!   bytes a topic cannot hold become `_`, cut at 255 bytes), or
//!   [`DEFAULT_TOPIC`] (`fluent`) when nothing is left;
//! - **time**: the event time, clamped to
//!   [`MAX_FUTURE_MS`](sluice_record::MAX_FUTURE_MS) ahead of now; without
//!   one (nil or zero), the arrival time, as Fluentd does;
//! - **payload**: the record as one line of JSON. A record's JSON can be far
//!   larger than its msgpack (a string of control bytes grows sixfold), so
//!   it is held to the line limit like any line: longer than `max_line`, it
//!   is cut there and flagged [`FLAG_TRUNCATED`].

use sluice_record::{FLAG_TRUNCATED, Unstamped, clamp_time_ms, clean_topic};

use crate::{Event, FluentError, Frame, FrameInfo, decode_frame};

/// Topic of events whose tag is empty once cleaned.
pub const DEFAULT_TOPIC: &str = "fluent";

impl Frame<'_> {
    /// Decode the frame and call `emit` with each event as a record (see
    /// the module docs), `now_ms` being the arrival time. As with
    /// [`decode_frame`], records already emitted belong to a rejected frame
    /// if this returns an error.
    pub fn records(
        &mut self,
        now_ms: u64,
        mut emit: impl FnMut(Unstamped<'_>),
    ) -> Result<FrameInfo, FluentError> {
        let (topic, max_line) = (&mut *self.topic, self.max_line);
        let mut topic_ready = false;
        decode_frame(self.bytes, self.limits, self.scratch, |event| {
            // One frame has one tag: clean it once.
            if !topic_ready {
                clean_topic(event.tag.as_bytes(), DEFAULT_TOPIC.as_bytes(), topic);
                topic_ready = true;
            }
            emit(record(&event, topic.as_slice(), now_ms, max_line));
        })
    }
}

fn record<'a>(event: &Event<'a>, topic: &'a [u8], now_ms: u64, max_line: usize) -> Unstamped<'a> {
    let time_ms = event
        .time_ns
        .filter(|ns| *ns > 0)
        .map_or(now_ms, |ns| clamp_time_ms((ns / 1_000_000) as u64, now_ms));
    let (payload, flags) = match event.payload.get(..max_line) {
        Some(cut) if cut.len() < event.payload.len() => (cut, FLAG_TRUNCATED),
        _ => (event.payload, 0),
    };
    Unstamped {
        topic,
        time_ms,
        flags,
        payload,
    }
}
