//! Loki's push API (`POST /loki/api/v1/push`) made records.
//!
//! Decoding follows Loki (`pkg/loghttp/push/push.go`): a `Content-Type` of
//! `application/json` is JSON (`json.rs`); anything else, or none, is
//! protobuf ([`proto`]) in a snappy block. `Content-Encoding` is undone
//! first ([`crate::encoding`]), so protobuf with gzip is gzip(snappy(proto)).
//!
//! The mapping to records:
//! - **topic**: the stream's whole label set in its canonical form
//!   ([`Labels::to_topic`]); a set whose form is longer than a topic may be
//!   refuses the request (400 naming the stream), never cut. `{topic="t"}`
//!   is the plain topic `t`.
//! - **time**: the entry's timestamp in milliseconds, clamped to a minute
//!   ahead of now ([`clamp_time_ms`]); a negative one refuses the request.
//! - **payload**: the line, cleaned by [`clean_line`] (trailing newline
//!   removed, inner newlines made spaces, cut at the line limit and
//!   flagged).
//! - **structured metadata** is dropped and counted ([`PushStats`]).
//!
//! A request is taken whole or not at all: on an error, records already
//! handed to the callback must be discarded by the caller.

mod json;
pub mod proto;
mod scan;

use sluice_record::{Unstamped, clamp_time_ms, labels::Labels};

use crate::{
    Limits, MAX_LABELS_TEXT_BYTES, PushError, PushStats, clean_line,
    encoding::{self, ContentEncoding},
    error::cut,
};

/// How the body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json` (parameters such as `charset` ignored).
    Json,
    /// Anything else: protobuf in a snappy block.
    Protobuf,
}

impl BodyFormat {
    /// The format a `Content-Type` header value names.
    pub fn from_content_type(content_type: Option<&str>) -> BodyFormat {
        let essence = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|ct| ct.trim().to_ascii_lowercase());
        match essence.as_deref() {
            Some("application/json") => BodyFormat::Json,
            _ => BodyFormat::Protobuf,
        }
    }
}

/// Decode a push request's `body` and hand each entry to `emit` as a
/// record. `now_ms` is the arrival time (for the future clamp). On error,
/// discard what `emit` got.
pub fn decode(
    format: BodyFormat,
    encoding: ContentEncoding,
    body: &[u8],
    limits: &Limits,
    now_ms: u64,
    emit: &mut dyn FnMut(Unstamped<'_>),
) -> Result<PushStats, PushError> {
    if body.len() > limits.max_body_bytes {
        return Err(PushError::BodyTooLarge {
            len: body.len(),
            limit: limits.max_body_bytes,
        });
    }
    let body = encoding::decode(encoding, body, limits.max_decompressed_bytes)?;
    match format {
        BodyFormat::Json => decode_json(&body, limits, now_ms, emit),
        BodyFormat::Protobuf => {
            encoding::with_snappy_block(&body, limits.max_decompressed_bytes, |raw| {
                decode_protobuf(raw, limits, now_ms, emit)
            })
        }
    }
}

/// Decode an uncompressed protobuf [`proto::PushRequest`], in one walk
/// over its bytes (`scan::fields`): no message is built, each line is
/// handed on as a slice of `raw`. It accepts and refuses what prost's
/// decoding of the same messages does (a property test checks that
/// against prost), and the limits are checked first (`scan::check`).
pub fn decode_protobuf(
    raw: &[u8],
    limits: &Limits,
    now_ms: u64,
    emit: &mut dyn FnMut(Unstamped<'_>),
) -> Result<PushStats, PushError> {
    use scan::{Value, bytes, fields, number};
    scan::check(raw, limits)?;
    let mut stats = PushStats::default();
    let mut scratch = Vec::new();
    fields(raw, |field, value| {
        match field {
            1 => {}
            2 => return bytes(value, "PushRequest.format").map(|_| ()),
            _ => return Ok(()),
        }
        let stream = bytes(value, "PushRequest.streams")?;
        // The labels may follow the entries on the wire: find them (the
        // last occurrence counts, as in prost) before the entries.
        let mut labels: &[u8] = &[];
        fields(stream, |field, value| {
            match field {
                1 => labels = bytes(value, "StreamAdapter.labels")?,
                2 => {
                    bytes(value, "StreamAdapter.entries")?;
                }
                3 => {
                    number(value, "StreamAdapter.hash")?;
                }
                _ => {}
            }
            Ok(())
        })?;
        let text = String::from_utf8_lossy(labels);
        if labels.len() > MAX_LABELS_TEXT_BYTES {
            return Err(PushError::BadLabels {
                stream: cut(&text, 200),
                error: sluice_record::labels::LabelError::TooLong {
                    start: cut(&text, 60),
                    len: labels.len(),
                    max: sluice_record::MAX_TOPIC_BYTES,
                },
            });
        }
        let parsed = Labels::parse_selector(&text).map_err(|error| PushError::BadLabels {
            stream: cut(&text, 200),
            error,
        })?;
        let topic = stream_topic(&parsed, &text, limits)?;
        stats.streams += 1;
        fields(stream, |field, value| {
            let (2, Value::Bytes(entry)) = (field, value) else {
                return Ok(());
            };
            let mut timestamp: Option<(i64, i32)> = None;
            let mut line: &[u8] = &[];
            let mut pairs = 0u64;
            fields(entry, |field, value| {
                match field {
                    1 => {
                        let (mut seconds, mut nanos) = timestamp.unwrap_or((0, 0));
                        fields(bytes(value, "EntryAdapter.timestamp")?, |field, value| {
                            match field {
                                1 => seconds = number(value, "Timestamp.seconds")? as i64,
                                2 => nanos = number(value, "Timestamp.nanos")? as i32,
                                _ => {}
                            }
                            Ok(())
                        })?;
                        timestamp = Some((seconds, nanos));
                    }
                    2 => line = bytes(value, "EntryAdapter.line")?,
                    3 | 4 => {
                        let what = if field == 3 {
                            "EntryAdapter.structuredMetadata"
                        } else {
                            "EntryAdapter.parsed"
                        };
                        fields(bytes(value, what)?, |field, value| match field {
                            1 => bytes(value, "LabelPairAdapter.name").map(|_| ()),
                            2 => bytes(value, "LabelPairAdapter.value").map(|_| ()),
                            _ => Ok(()),
                        })?;
                        pairs += u64::from(field == 3);
                    }
                    _ => {}
                }
                Ok(())
            })?;
            let ms = match timestamp {
                Some((seconds, nanos)) if seconds >= 0 && (0..1_000_000_000).contains(&nanos) => {
                    (seconds as u64)
                        .saturating_mul(1000)
                        .saturating_add(nanos as u64 / 1_000_000)
                }
                other => {
                    return Err(PushError::BadTimestamp {
                        stream: cut(&text, 200),
                        value: format!(
                            "{:?}",
                            other.map(|(seconds, nanos)| proto::Timestamp { seconds, nanos })
                        ),
                    });
                }
            };
            one_entry(
                &topic,
                ms,
                line,
                pairs,
                limits,
                now_ms,
                &mut scratch,
                &mut stats,
                emit,
            );
            Ok(())
        })
    })?;
    Ok(stats)
}

/// Decode an uncompressed JSON push body.
pub fn decode_json(
    body: &[u8],
    limits: &Limits,
    now_ms: u64,
    emit: &mut dyn FnMut(Unstamped<'_>),
) -> Result<PushStats, PushError> {
    let streams = json::parse(body, limits)?;
    let mut stats = PushStats::default();
    let mut scratch = Vec::new();
    for stream in &streams {
        let text = || {
            let pairs: Vec<String> = stream
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            cut(&format!("{{{}}}", pairs.join(", ")), 200)
        };
        let labels = Labels::new(stream.labels.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
            .map_err(|error| PushError::BadLabels {
                stream: text(),
                error,
            })?;
        let topic = stream_topic(&labels, &text(), limits)?;
        stats.streams += 1;
        for entry in &stream.entries {
            let ms = parse_ns(&entry.ts)
                .map(|ns| ns / 1_000_000)
                .ok_or_else(|| PushError::BadTimestamp {
                    stream: text(),
                    value: cut(&entry.ts, 40),
                })?;
            one_entry(
                &topic,
                ms,
                entry.line.as_bytes(),
                entry.metadata as u64,
                limits,
                now_ms,
                &mut scratch,
                &mut stats,
                emit,
            );
        }
    }
    Ok(stats)
}

/// Nanoseconds since 1970 from a string of digits (Loki reads them with
/// `strconv.ParseInt`: a sign is allowed, a negative time is not).
fn parse_ns(text: &str) -> Option<u64> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ns: u64 = digits.parse().ok()?;
    (ns <= i64::MAX as u64).then_some(ns)
}

/// The topic of a stream's labels, within the label limit.
fn stream_topic(labels: &Labels, text: &str, limits: &Limits) -> Result<String, PushError> {
    if labels.len() > limits.max_labels {
        return Err(PushError::TooManyLabels {
            stream: cut(text, 200),
            count: labels.len(),
            limit: limits.max_labels,
        });
    }
    labels.to_topic().map_err(|error| PushError::BadLabels {
        stream: cut(text, 200),
        error,
    })
}

#[allow(clippy::too_many_arguments)]
fn one_entry(
    topic: &str,
    ms: u64,
    line: &[u8],
    metadata_pairs: u64,
    limits: &Limits,
    now_ms: u64,
    scratch: &mut Vec<u8>,
    stats: &mut PushStats,
    emit: &mut dyn FnMut(Unstamped<'_>),
) {
    let (payload, flags, multiline) = clean_line(line, limits.max_line_bytes, scratch);
    stats.records += 1;
    stats.payload_bytes += payload.len() as u64;
    stats.truncated += u64::from(flags & sluice_record::FLAG_TRUNCATED != 0);
    stats.multiline += u64::from(multiline);
    if metadata_pairs > 0 {
        stats.metadata_entries += 1;
        stats.metadata_pairs += metadata_pairs;
    }
    emit(Unstamped {
        topic: topic.as_bytes(),
        time_ms: clamp_time_ms(ms, now_ms),
        flags,
        payload,
    });
}

#[cfg(test)]
mod tests;
