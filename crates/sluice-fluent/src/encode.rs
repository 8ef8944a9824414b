//! What the crate writes: acks (server) and Forward-mode frames (client).

use crate::msgpack::{
    Reader, Value, patch_array32, reserve_array32, write_array_len, write_bin, write_event_time,
    write_map_len, write_str, write_uint,
};
use crate::{FluentError, Limits, frame_len};

/// Appends the ack for a frame whose `chunk` option was `chunk`:
/// `{"ack": chunk}`, the chunk as a str holding exactly the bytes received
/// (Fluentd's chunk ids are base64 ending in `"\n"`; the client compares
/// every byte).
pub fn encode_ack(chunk: &[u8], out: &mut Vec<u8>) {
    write_map_len(out, 1);
    write_str(out, b"ack");
    write_str(out, chunk);
}

/// Client: reads one ack from the start of `buf`: `Some((consumed, chunk))`
/// once a whole msgpack value is there, `None` if more bytes are needed.
/// The chunk may be a str or a bin; other keys of the map are ignored.
pub fn decode_ack(buf: &[u8]) -> Result<Option<(usize, &[u8])>, FluentError> {
    let limits = Limits {
        max_frame_bytes: 64 * 1024,
        ..Limits::default()
    };
    let Some(len) = frame_len(buf, &limits)? else {
        return Ok(None);
    };
    let mut r = Reader::new(&buf[..len], "the frame");
    let Value::Map(pairs) = r.next()? else {
        return Err(FluentError::BadMessage {
            what: "ack",
            reason: "not a map",
        });
    };
    for _ in 0..pairs {
        let key_start = r.pos();
        if r.next()?.bytes() == Some(b"ack") {
            return match r.next()? {
                Value::Str(chunk) | Value::Bin(chunk) => Ok(Some((len, chunk))),
                _ => Err(FluentError::BadMessage {
                    what: "ack",
                    reason: "ack value is not a string",
                }),
            };
        }
        r.rewind(key_start);
        r.skip(2, limits.max_depth)?;
        r.skip(2, limits.max_depth)?;
    }
    Err(FluentError::BadMessage {
        what: "ack",
        reason: "no \"ack\" key",
    })
}

/// Builds Forward-mode frames of lines, for a forwarder sending to Fluentd,
/// Fluent Bit or a sluice fluent listener:
///
/// ```text
/// [tag, [[EventTime, {"message": line}], ...], {"chunk": id, "size": n}]
/// ```
///
/// The entries array has an array32 header whose count is patched at
/// [`seal`](Self::seal), so lines are appended as they come. Times are
/// EventTime (fixext8: seconds, nanoseconds); a line that is valid UTF-8
/// is sent as a str, any other as a bin. The `chunk` option asks the
/// receiver for an ack of that id ([`decode_ack`]).
#[derive(Debug, Clone)]
pub struct ForwardEncoder {
    tag: String,
    buf: Vec<u8>,
    /// Offset of the 4 count bytes of the entries' array32 header.
    count_at: usize,
    count: u32,
}

impl ForwardEncoder {
    /// An empty frame for `tag`.
    pub fn new(tag: &str) -> Self {
        let mut e = ForwardEncoder {
            tag: tag.to_owned(),
            buf: Vec::new(),
            count_at: 0,
            count: 0,
        };
        e.start();
        e
    }

    fn start(&mut self) {
        self.buf.clear();
        write_array_len(&mut self.buf, 3);
        write_str(&mut self.buf, self.tag.as_bytes());
        self.count_at = reserve_array32(&mut self.buf);
        self.count = 0;
    }

    /// Appends one event. `time_ns` is nanoseconds since the Unix epoch;
    /// EventTime holds unsigned 32-bit seconds, so times before 1970 are
    /// sent as 0 and times after 2106 as the last second.
    ///
    /// Seal long before 2^32 entries: receivers limit frames far lower.
    pub fn push(&mut self, time_ns: i64, line: &[u8]) {
        const NS: i64 = 1_000_000_000;
        let secs = time_ns.div_euclid(NS);
        let (secs, nanos) = match u32::try_from(secs) {
            Ok(s) => (s, time_ns.rem_euclid(NS) as u32),
            Err(_) if secs < 0 => (0, 0),
            Err(_) => (u32::MAX, 0),
        };
        let b = &mut self.buf;
        write_array_len(b, 2);
        write_event_time(b, secs, nanos);
        write_map_len(b, 1);
        write_str(b, b"message");
        if std::str::from_utf8(line).is_ok() {
            write_str(b, line);
        } else {
            write_bin(b, line);
        }
        self.count = self.count.wrapping_add(1);
    }

    /// Events pushed since the last seal.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether nothing was pushed since the last seal.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the frame so far, without the options (a few dozen bytes).
    pub fn encoded_len(&self) -> usize {
        self.buf.len()
    }

    /// Finishes the frame with options `{"chunk": chunk_id, "size": n}` and
    /// returns it; the encoder starts a new, empty frame for the same tag.
    pub fn seal(&mut self, chunk_id: &str) -> Vec<u8> {
        let count = self.count;
        patch_array32(&mut self.buf, self.count_at, count);
        write_map_len(&mut self.buf, 2);
        write_str(&mut self.buf, b"chunk");
        write_str(&mut self.buf, chunk_id.as_bytes());
        write_str(&mut self.buf, b"size");
        write_uint(&mut self.buf, u64::from(count));
        let capacity = self.buf.capacity();
        let frame = std::mem::replace(&mut self.buf, Vec::with_capacity(capacity));
        self.start();
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Mode, Scratch, decode_frame};

    #[test]
    fn ack_round_trip_keeps_every_byte() {
        for chunk in [
            &b"p8n9gmxTQVC8/nh2wlKKeQ==\n"[..],
            b"",
            b"\xff\x00binary",
            &[b'x'; 300],
        ] {
            let mut out = Vec::new();
            encode_ack(chunk, &mut out);
            out.extend_from_slice(b"\x81"); // the start of the next ack
            let (used, got) = decode_ack(&out).unwrap().unwrap();
            assert_eq!(got, chunk);
            assert_eq!(used, out.len() - 1);
            for end in 0..used {
                assert_eq!(decode_ack(&out[..end]), Ok(None));
            }
        }
        let mut out = Vec::new();
        encode_ack(b"abc\n", &mut out);
        assert_eq!(out, b"\x81\xa3ack\xa4abc\n");
    }

    #[test]
    fn decode_ack_tolerates_other_keys_and_bin() {
        let buf = b"\x82\xa1x\x91\x01\xa3ack\xc4\x02id";
        assert_eq!(decode_ack(buf), Ok(Some((buf.len(), &b"id"[..]))));
        assert!(decode_ack(b"\x80").is_err());
        assert!(decode_ack(b"\x90").is_err());
        assert!(decode_ack(b"\x81\xa3ack\x01").is_err());
    }

    #[test]
    fn forward_encoder_round_trips_through_decode_frame() {
        let mut enc = ForwardEncoder::new("app.web");
        assert!(enc.is_empty());
        let lines: [(i64, &[u8]); 4] = [
            (1_700_000_000_123_456_789, b"hello"),
            (1_700_000_001_000_000_000, b"quote \" and \\ and \n"),
            (1_700_000_002_000_000_001, b"bad \xff utf8"),
            (-5, b"before 1970"),
        ];
        for (t, line) in lines {
            enc.push(t, line);
        }
        assert_eq!(enc.len(), 4);
        let frame = enc.seal("chunk-1");
        assert!(enc.is_empty());
        assert_eq!(frame_len(&frame, &Limits::default()), Ok(Some(frame.len())));

        let mut got = Vec::new();
        let info = decode_frame(&frame, &Limits::default(), &mut Scratch::new(), |e| {
            assert_eq!(e.tag, "app.web");
            let v: serde_json::Value = serde_json::from_slice(e.payload).unwrap();
            got.push((e.time_ns, v["message"].as_str().unwrap().to_owned()));
        })
        .unwrap();
        assert_eq!(info.mode, Some(Mode::Forward));
        assert_eq!(info.events, 4);
        assert_eq!(info.size, Some(4));
        assert_eq!(info.chunk_bytes(&frame), Some(&b"chunk-1"[..]));
        assert_eq!(
            got,
            vec![
                (Some(1_700_000_000_123_456_789), "hello".to_owned()),
                (
                    Some(1_700_000_001_000_000_000),
                    "quote \" and \\ and \n".to_owned()
                ),
                (
                    Some(1_700_000_002_000_000_001),
                    "bad \u{FFFD} utf8".to_owned()
                ),
                (None, "before 1970".to_owned()),
            ]
        );

        // The next frame reuses the encoder.
        enc.push(1_000_000_000, b"again");
        let frame = enc.seal("chunk-2");
        let info = decode_frame(&frame, &Limits::default(), &mut Scratch::new(), |_| {}).unwrap();
        assert_eq!(
            (info.events, info.chunk_bytes(&frame)),
            (1, Some(&b"chunk-2"[..]))
        );
    }

    #[test]
    fn empty_seal_is_a_valid_frame() {
        let frame = ForwardEncoder::new("t").seal("c");
        let info = decode_frame(&frame, &Limits::default(), &mut Scratch::new(), |_| {}).unwrap();
        assert_eq!((info.events, info.size), (0, Some(0)));
    }
}
