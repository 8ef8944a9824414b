//! Decoding one complete frame into events.

use std::io::Read;
use std::ops::Range;

use crate::frame::MAX_DEPTH_CAP;
use crate::handshake::{PingMessage, parse_ping};
use crate::json::render_map_body;
use crate::msgpack::{Reader, Value};
use crate::{FluentError, Limits};

/// Buffers reused from frame to frame (one per connection), so the hot path
/// allocates nothing once they have grown: the JSON of the current event and
/// the inflated bytes of a CompressedPackedForward chunk.
#[derive(Default)]
pub struct Scratch {
    json: Vec<u8>,
    inflated: Vec<u8>,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch")
            .field("json_capacity", &self.json.capacity())
            .field("inflated_capacity", &self.inflated.capacity())
            .finish()
    }
}

impl Scratch {
    /// Empty buffers; they grow on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held by the buffers.
    pub fn capacity(&self) -> usize {
        self.json.capacity() + self.inflated.capacity()
    }

    /// Frees any buffer holding more than `keep` bytes, so one huge chunk
    /// does not pin its memory for the rest of a connection. Call it between
    /// frames, e.g. with the size of a typical chunk.
    pub fn trim(&mut self, keep: usize) {
        for buf in [&mut self.json, &mut self.inflated] {
            if buf.capacity() > keep {
                *buf = Vec::new();
            }
        }
    }
}

/// One decoded event, borrowed from the frame and the [`Scratch`]; copy what
/// you keep before the callback returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The frame's tag (UTF-8, as sent).
    pub tag: &'a str,
    /// Nanoseconds since the Unix epoch, or `None` when the sender gave nil
    /// or zero seconds (Fluentd stamps such events with the arrival time;
    /// so should the caller) or a time too far out for an `i64`.
    pub time_ns: Option<i64>,
    /// The record as one line of compact JSON: an object, no newline.
    pub payload: &'a [u8],
}

/// The carrier mode of a frame (the shape of its second element).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `[tag, time, record, options?]`.
    Message,
    /// `[tag, [[time, record], ...], options?]`.
    Forward,
    /// `[tag, str-or-bin of concatenated [time, record] entries, options?]`.
    PackedForward,
    /// PackedForward whose bytes are gzip (`compressed: "gzip"`).
    CompressedPackedForward,
}

/// What a frame was, besides its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameInfo {
    /// Events emitted.
    pub events: u64,
    /// Entries skipped: nil records (as Fluentd skips them) and Fluent Bit
    /// group markers.
    pub skipped: u64,
    /// The carrier mode; `None` for a heartbeat or a handshake.
    pub mode: Option<Mode>,
    /// Where the `chunk` option's bytes are in the frame: when present, the
    /// sender waits for [`encode_ack`](crate::encode_ack) of exactly these
    /// bytes once the events are safe. Use [`chunk_bytes`](Self::chunk_bytes).
    pub chunk: Option<Range<usize>>,
    /// The `size` option (the sender's count of entries), if any.
    pub size: Option<u64>,
    /// The frame was a top-level nil: a TCP heartbeat, no events, no reply.
    pub heartbeat: bool,
    /// The frame was a PING of the shared-key handshake; no events.
    pub handshake: Option<PingMessage>,
}

impl FrameInfo {
    /// The `chunk` option's bytes, given the frame this info came from.
    pub fn chunk_bytes<'f>(&self, frame: &'f [u8]) -> Option<&'f [u8]> {
        self.chunk.clone().and_then(|r| frame.get(r))
    }
}

/// The options the decoder acts on.
#[derive(Default)]
struct Options {
    chunk: Option<Range<usize>>,
    size: Option<u64>,
    compressed: bool,
    signal: Option<u64>,
}

/// Decodes one complete frame (as delimited by [`frame_len`](crate::frame_len))
/// and calls `emit` once per event, in order.
///
/// Events are emitted as they are decoded. If this returns an error, the
/// events already emitted belong to a rejected frame: collect them in a batch
/// and drop it on error (the frame is not acked, so the client sends it
/// again). After an error the connection should be closed: the client's
/// frame cannot be repaired.
pub fn decode_frame(
    frame: &[u8],
    limits: &Limits,
    scratch: &mut Scratch,
    mut emit: impl FnMut(Event<'_>),
) -> Result<FrameInfo, FluentError> {
    if frame.len() > limits.max_frame_bytes {
        return Err(FluentError::FrameTooLarge {
            size: frame.len() as u64,
            limit: limits.max_frame_bytes,
        });
    }
    let max_depth = limits.max_depth.min(MAX_DEPTH_CAP);
    let mut r = Reader::new(frame, "the frame");
    let mut info = FrameInfo::default();
    let n = match r.next()? {
        Value::Nil => {
            info.heartbeat = true;
            return finish(&r, info);
        }
        Value::Array(n) => n,
        // `[` and `{` read as small ints: Fluentd also takes JSON text.
        Value::Uint(0x5b | 0x7b) if r.pos() == 1 => return Err(FluentError::JsonText),
        other => return Err(FluentError::NotAnArray(other.kind())),
    };
    if max_depth < 1 {
        return Err(FluentError::TooDeep { limit: max_depth });
    }
    if n < 2 {
        return Err(FluentError::BadArity {
            mode: "event",
            len: n,
            expected: "2 to 4",
        });
    }
    let first = r.next()?;
    if n == 6 && first == Value::Str(b"PING") {
        info.handshake = Some(parse_ping(&mut r)?);
        return finish(&r, info);
    }
    let tag = match first {
        Value::Str(b) | Value::Bin(b) => {
            std::str::from_utf8(b).map_err(|_| FluentError::TagNotUtf8)?
        }
        other => return Err(FluentError::TagNotString(other.kind())),
    };
    let Scratch { json, inflated } = scratch;
    let mut sink = Sink {
        tag,
        json,
        emit: &mut emit,
        max_depth,
        info: &mut info,
    };
    let options = match r.next()? {
        Value::Str(packed) | Value::Bin(packed) => {
            arity("PackedForward", n, 2, 3)?;
            let options = if n == 3 {
                parse_options(&mut r, max_depth)?
            } else {
                Options::default()
            };
            if let Some(signal @ (1 | 2)) = options.signal {
                return Err(FluentError::UnsupportedSignal(signal));
            }
            let entries = if options.compressed {
                sink.info.mode = Some(Mode::CompressedPackedForward);
                inflate(packed, limits.max_decompressed_bytes, inflated)?;
                &inflated[..]
            } else {
                sink.info.mode = Some(Mode::PackedForward);
                packed
            };
            let mut entries = Reader::new(entries, "the packed entries");
            let mut count = 0u64;
            while entries.remaining() > 0 {
                count += 1;
                if count > limits.max_entries_per_frame as u64 {
                    return Err(FluentError::TooManyEntries {
                        count,
                        limit: limits.max_entries_per_frame,
                    });
                }
                // Packed entries sit where Forward mode's would: level 3.
                sink.entry(&mut entries, 3)?;
            }
            options
        }
        Value::Array(count) => {
            arity("Forward", n, 2, 3)?;
            sink.info.mode = Some(Mode::Forward);
            if count as usize > limits.max_entries_per_frame {
                return Err(FluentError::TooManyEntries {
                    count: u64::from(count),
                    limit: limits.max_entries_per_frame,
                });
            }
            if count > 0 && max_depth < 2 {
                return Err(FluentError::TooDeep { limit: max_depth });
            }
            for _ in 0..count {
                sink.entry(&mut r, 3)?;
            }
            if n == 3 {
                parse_options(&mut r, max_depth)?
            } else {
                Options::default()
            }
        }
        other @ (Value::Map(_) | Value::Bool(_)) => {
            return Err(FluentError::UnknownMode(other.kind()));
        }
        time => {
            arity("Message", n, 3, 4)?;
            sink.info.mode = Some(Mode::Message);
            let time_ns = event_time(time)?;
            sink.record(&mut r, 2, time_ns, false)?;
            if n == 4 {
                parse_options(&mut r, max_depth)?
            } else {
                Options::default()
            }
        }
    };
    info.chunk = options.chunk;
    info.size = options.size;
    finish(&r, info)
}

fn finish(r: &Reader<'_>, info: FrameInfo) -> Result<FrameInfo, FluentError> {
    match r.remaining() {
        0 => Ok(info),
        extra => Err(FluentError::TrailingBytes(extra)),
    }
}

fn arity(mode: &'static str, n: u32, min: u32, max: u32) -> Result<(), FluentError> {
    if (min..=max).contains(&n) {
        return Ok(());
    }
    let expected = if min == 2 { "2 or 3" } else { "3 or 4" };
    Err(FluentError::BadArity {
        mode,
        len: n,
        expected,
    })
}

/// Where events go: the tag, the JSON buffer, the callback and the counts.
struct Sink<'s, F> {
    tag: &'s str,
    json: &'s mut Vec<u8>,
    emit: &'s mut F,
    max_depth: usize,
    info: &'s mut FrameInfo,
}

impl<F: FnMut(Event<'_>)> Sink<'_, F> {
    /// One `[time, record]` entry whose array sits at level `depth`. The
    /// time may be Fluent Bit's `[time, metadata]` pair.
    fn entry(&mut self, r: &mut Reader<'_>, depth: usize) -> Result<(), FluentError> {
        let len = match r.next()? {
            Value::Array(len) if len >= 2 => len,
            Value::Array(_) => return Err(FluentError::BadEntry("array of fewer than 2 elements")),
            other => return Err(FluentError::BadEntry(other.kind())),
        };
        if depth > self.max_depth {
            return Err(FluentError::TooDeep {
                limit: self.max_depth,
            });
        }
        let mut marker = false;
        let time = match r.next()? {
            Value::Array(pair) => {
                if depth + 1 > self.max_depth {
                    return Err(FluentError::TooDeep {
                        limit: self.max_depth,
                    });
                }
                if pair == 0 {
                    return Err(FluentError::BadTime("empty array"));
                }
                let time = r.next()?;
                // Fluent Bit marks the start and end of a group of records
                // with entries whose time is -1 and -2: not events.
                marker = matches!(time, Value::Int(-1 | -2));
                for _ in 1..pair {
                    r.skip(depth + 2, self.max_depth)?;
                }
                time
            }
            time => time,
        };
        let time_ns = event_time(time)?;
        self.record(r, depth + 1, time_ns, marker)?;
        for _ in 2..len {
            r.skip(depth + 1, self.max_depth)?;
        }
        Ok(())
    }

    /// The record map at level `depth`: rendered and emitted, or skipped.
    fn record(
        &mut self,
        r: &mut Reader<'_>,
        depth: usize,
        time_ns: Option<i64>,
        skip: bool,
    ) -> Result<(), FluentError> {
        if skip {
            self.info.skipped += 1;
            return r.skip(depth, self.max_depth);
        }
        match r.next()? {
            Value::Map(n) => {
                if depth > self.max_depth {
                    return Err(FluentError::TooDeep {
                        limit: self.max_depth,
                    });
                }
                self.json.clear();
                render_map_body(r, n, self.json, depth, self.max_depth)?;
                self.info.events += 1;
                (self.emit)(Event {
                    tag: self.tag,
                    time_ns,
                    payload: &self.json[..],
                });
                Ok(())
            }
            Value::Nil => {
                self.info.skipped += 1;
                Ok(())
            }
            other => Err(FluentError::BadRecord(other.kind())),
        }
    }
}

/// The options map (or nil) at level 2.
fn parse_options(r: &mut Reader<'_>, max_depth: usize) -> Result<Options, FluentError> {
    let mut options = Options::default();
    let pairs = match r.next()? {
        Value::Nil => return Ok(options),
        Value::Map(pairs) => pairs,
        other => return Err(FluentError::BadOptions(other.kind())),
    };
    if pairs > 0 && max_depth < 2 {
        return Err(FluentError::TooDeep { limit: max_depth });
    }
    for _ in 0..pairs {
        let key_start = r.pos();
        let key = match r.next()? {
            Value::Str(k) | Value::Bin(k) => k,
            Value::Map(_) | Value::Array(_) => {
                r.rewind(key_start);
                r.skip(3, max_depth)?;
                b""
            }
            _ => b"",
        };
        match key {
            b"chunk" => match r.next()? {
                Value::Str(c) | Value::Bin(c) => {
                    options.chunk = Some(r.pos() - c.len()..r.pos());
                }
                _ => options.chunk = None,
            },
            b"size" => {
                options.size = match r.next()? {
                    Value::Uint(s) => Some(s),
                    Value::Int(s) => u64::try_from(s).ok(),
                    _ => None,
                }
            }
            b"compressed" => {
                options.compressed = match r.next()? {
                    Value::Nil => false,
                    Value::Str(c) | Value::Bin(c) => match c {
                        b"gzip" => true,
                        b"text" | b"" => false,
                        other => {
                            let name = String::from_utf8_lossy(other).into_owned();
                            return Err(FluentError::UnsupportedCompression(name));
                        }
                    },
                    other => {
                        return Err(FluentError::UnsupportedCompression(
                            other.kind().to_string(),
                        ));
                    }
                }
            }
            b"fluent_signal" => {
                options.signal = match r.next()? {
                    Value::Uint(s) => Some(s),
                    Value::Int(s) => u64::try_from(s).ok(),
                    // Envoy sends it as a string.
                    Value::Str(s) => std::str::from_utf8(s)
                        .ok()
                        .and_then(|s| s.trim().parse().ok()),
                    _ => None,
                }
            }
            _ => r.skip(3, max_depth)?,
        }
    }
    Ok(options)
}

const NS_PER_SEC: i64 = 1_000_000_000;

/// An entry's time in nanoseconds; `None` for nil, zero seconds (Fluentd
/// then uses the arrival time) or out of range.
fn event_time(v: Value<'_>) -> Result<Option<i64>, FluentError> {
    Ok(match v {
        Value::Nil | Value::Uint(0) | Value::Int(0) => None,
        Value::Uint(s) => i64::try_from(s)
            .ok()
            .and_then(|s| s.checked_mul(NS_PER_SEC)),
        Value::Int(s) => s.checked_mul(NS_PER_SEC),
        Value::F32(f) => float_time(f64::from(f)),
        Value::F64(f) => float_time(f),
        Value::Ext(0, b) if b.len() == 8 => {
            let secs = i64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            let nanos = i64::from(u32::from_be_bytes([b[4], b[5], b[6], b[7]]));
            (secs != 0).then_some(secs * NS_PER_SEC + nanos)
        }
        Value::Ext(..) => {
            return Err(FluentError::BadTime(
                "ext other than EventTime (type 0, 8 bytes)",
            ));
        }
        other => return Err(FluentError::BadTime(other.kind())),
    })
}

fn float_time(f: f64) -> Option<i64> {
    // 9.2e9 seconds is about the range of i64 nanoseconds.
    if !f.is_finite() || f.trunc() == 0.0 || f.abs() >= 9.2e9 {
        return None;
    }
    let secs = f.floor();
    let nanos = ((f - secs) * 1e9).round() as i64;
    Some(secs as i64 * NS_PER_SEC + nanos)
}

/// Inflates one or more concatenated gzip members into `out`, refusing to
/// hold more than `limit` bytes. `out`'s capacity never exceeds `limit + 1`
/// (plus one read window), however the data lies about its size.
fn inflate(data: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), FluentError> {
    const WINDOW: usize = 64 * 1024;
    let most = limit.saturating_add(1);
    out.clear();
    if data.is_empty() {
        return Ok(());
    }
    let mut gz = flate2::bufread::MultiGzDecoder::new(data);
    loop {
        let len = out.len();
        if len > limit {
            return Err(FluentError::DecompressedTooLarge { limit });
        }
        let window = WINDOW.min(most - len);
        if out.capacity() < len + window {
            // Grow geometrically, but never past the limit.
            let target = (out.capacity() * 2).max(len + window).min(most);
            out.reserve_exact(target - len);
        }
        out.resize(len + window, 0);
        match gz.read(&mut out[len..]) {
            Ok(0) => {
                out.truncate(len);
                return Ok(());
            }
            Ok(n) => out.truncate(len + n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => out.truncate(len),
            Err(e) => {
                out.truncate(len);
                return Err(FluentError::Gzip(e.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn inflate_concatenated_members_and_bound_memory() {
        let mut joined = gzip(b"hello ");
        joined.extend_from_slice(&gzip(b"world"));
        let mut out = Vec::new();
        inflate(&joined, 100, &mut out).unwrap();
        assert_eq!(out, b"hello world");

        let bomb = gzip(&vec![0u8; 8 << 20]);
        assert!(bomb.len() < 64 << 10);
        let start = std::time::Instant::now();
        let err = inflate(&bomb, 1 << 20, &mut out).unwrap_err();
        assert_eq!(err, FluentError::DecompressedTooLarge { limit: 1 << 20 });
        assert!(
            out.capacity() <= (1 << 20) + 1 + (64 << 10),
            "capacity {}",
            out.capacity()
        );
        eprintln!("bomb refused in {:?}", start.elapsed());

        let err = inflate(b"not gzip at all", 100, &mut out).unwrap_err();
        assert!(matches!(err, FluentError::Gzip(_)), "{err}");
    }

    #[test]
    fn event_times() {
        assert_eq!(event_time(Value::Uint(5)), Ok(Some(5_000_000_000)));
        assert_eq!(event_time(Value::Int(-5)), Ok(Some(-5_000_000_000)));
        assert_eq!(event_time(Value::Int(0)), Ok(None));
        assert_eq!(event_time(Value::Nil), Ok(None));
        assert_eq!(event_time(Value::Uint(u64::MAX)), Ok(None));
        assert_eq!(event_time(Value::F64(1.5)), Ok(Some(1_500_000_000)));
        assert_eq!(event_time(Value::F64(f64::NAN)), Ok(None));
        assert_eq!(event_time(Value::F32(2.25)), Ok(Some(2_250_000_000)));
        assert_eq!(
            event_time(Value::Ext(0, &[0, 0, 0, 1, 0, 0, 0, 9])),
            Ok(Some(1_000_000_009))
        );
        assert!(event_time(Value::Ext(1, &[0; 8])).is_err());
        assert_eq!(
            event_time(Value::Str(b"x")),
            Err(FluentError::BadTime("str"))
        );
    }
}
