//! The record model of sluice and the codecs every other crate shares.
//!
//! A record is `(id, topic, payload)`:
//! - `id` is a [`Ulid`]: 48 bits of milliseconds and 80 bits that make it unique.
//!   [`IdGenerator`] hands out ids that strictly increase within one connection.
//! - `topic` is a short name (at most [`MAX_TOPIC_BYTES`] bytes, no spaces or
//!   newlines); it defaults to [`DEFAULT_TOPIC`].
//! - `payload` is arbitrary bytes without a newline.
//!
//! Modules:
//! - [`read_buffer`]: [`ReadBuffer`], the one read buffer every decoder of a
//!   byte stream sits on (lines, syslog, fluent, the batch protocol).
//! - [`framing`]: sans-IO splitting of a byte stream into lines, with a line
//!   limit that truncates instead of wedging.
//! - [`batch`]: the checksummed batch frame used on disk (ingest segments,
//!   store segments) and on the wire between ingesters and stores.
//! - [`wire`]: the text-framed batch protocol clients speak to port 7653.
//! - [`labels`]: label sets (Loki streams) in a topic's canonical text form.
//! - [`intake`]: the one connection loop of the intake layer (the
//!   ingester's ports and the forwarder's agent) and the [`intake::Protocol`]
//!   trait each protocol implements.
//!
//! Architecture invariant: this crate opens no file or socket and starts no
//! thread, and knows nothing about tokio or HTTP; the intake loop reads only
//! from the `std::io::Read` its caller lends it.

pub mod batch;
pub mod framing;
mod id;
pub mod intake;
pub mod labels;
pub mod read_buffer;
pub mod wire;

pub use batch::{
    BatchDecoder, BatchEncoder, BatchHeader, CodecError, RecordIter, decode_record, record_bounds,
};
pub use framing::{FramedLine, LineFramer};
pub use id::{IdGenerator, MAX_FUTURE_MS, clamp_time_ms, now_ms};
pub use read_buffer::ReadBuffer;
pub use ulid::Ulid;

/// Topic used when a protocol carries none, as text (for flags).
pub const DEFAULT_TOPIC_STR: &str = "default";
/// Topic used when a protocol carries none.
pub const DEFAULT_TOPIC: &[u8] = DEFAULT_TOPIC_STR.as_bytes();
/// Longest topic, in bytes. Topics are names, not payloads.
pub const MAX_TOPIC_BYTES: usize = 255;
/// Hard ceiling on one payload, whatever `--max-line` says: 64 MiB.
pub const MAX_PAYLOAD_BYTES: usize = 64 << 20;

/// Flag bit: the payload was cut at the line limit.
pub const FLAG_TRUNCATED: u8 = 0b0000_0001;

/// One record, borrowed from a batch or a line buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Identifies the record (a re-sent record keeps its id); its 48-bit
    /// time part is the record's time, and records sort by it.
    pub id: Ulid,
    /// Bit set of flags; [`FLAG_TRUNCATED`] is the one defined, other bits
    /// are kept as read.
    pub flags: u8,
    /// 1 to [`MAX_TOPIC_BYTES`] printable ASCII bytes ([`is_valid_topic`]).
    pub topic: &'a [u8],
    /// One line: no newline, at most [`MAX_PAYLOAD_BYTES`].
    pub payload: &'a [u8],
}

impl Record<'_> {
    /// Whether the payload was cut at the line limit ([`FLAG_TRUNCATED`]).
    pub fn is_truncated(&self) -> bool {
        self.flags & FLAG_TRUNCATED != 0
    }

    /// Milliseconds since the Unix epoch encoded in the id.
    pub fn time_ms(&self) -> u64 {
        self.id.timestamp_ms()
    }

    /// A copy that owns its topic and payload.
    pub fn to_owned_record(&self) -> OwnedRecord {
        OwnedRecord {
            id: self.id,
            flags: self.flags,
            topic: self.topic.to_vec(),
            payload: self.payload.to_vec(),
        }
    }
}

/// A record before its id: what a protocol's mapping makes of a message (a
/// Fluentd event, a syslog frame), for the ingester to
/// [`stamp`](Self::stamp) with a ULID, or the forwarder's agent to batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unstamped<'a> {
    /// A valid topic.
    pub topic: &'a [u8],
    /// The origin time, clamped ([`clamp_time_ms`]); the arrival time when
    /// the message carries none.
    pub time_ms: u64,
    /// As [`Record::flags`].
    pub flags: u8,
    /// One line: no newline.
    pub payload: &'a [u8],
}

impl<'a> Unstamped<'a> {
    /// The record with `id`.
    pub fn stamp(self, id: Ulid) -> Record<'a> {
        Record {
            id,
            flags: self.flags,
            topic: self.topic,
            payload: self.payload,
        }
    }

    /// Whether the payload was cut at the line limit ([`FLAG_TRUNCATED`]).
    pub fn is_truncated(&self) -> bool {
        self.flags & FLAG_TRUNCATED != 0
    }
}

/// An owned record, for tests, models and slow paths.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OwnedRecord {
    /// As [`Record::id`]; records order by it first.
    pub id: Ulid,
    /// As [`Record::flags`].
    pub flags: u8,
    /// As [`Record::topic`].
    pub topic: Vec<u8>,
    /// As [`Record::payload`].
    pub payload: Vec<u8>,
}

impl OwnedRecord {
    /// The record borrowed from this one.
    pub fn as_record(&self) -> Record<'_> {
        Record {
            id: self.id,
            flags: self.flags,
            topic: &self.topic,
            payload: &self.payload,
        }
    }
}

/// A valid topic made from a name a client chose (a Fluentd tag, a syslog
/// APP-NAME): bytes a topic cannot hold become `_`, it is cut to
/// [`MAX_TOPIC_BYTES`], and an empty result becomes `fallback`.
pub fn clean_topic(name: &[u8], fallback: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(
        name.iter()
            .take(MAX_TOPIC_BYTES)
            .map(|&b| if b.is_ascii_graphic() { b } else { b'_' }),
    );
    if out.is_empty() {
        out.extend_from_slice(fallback);
    }
}

/// Whether `topic` is acceptable: 1..=255 bytes of printable ASCII without spaces.
pub fn is_valid_topic(topic: &[u8]) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_BYTES
        && topic.iter().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_become_valid_topics() {
        let mut out = Vec::new();
        for (name, topic) in [
            (&b"docker.web"[..], &b"docker.web"[..]),
            (b"with space\n", b"with_space_"),
            (b"", b"fluent"),
            ("café".as_bytes(), b"caf__"),
        ] {
            clean_topic(name, b"fluent", &mut out);
            assert_eq!(out, topic);
            assert!(is_valid_topic(&out));
        }
        clean_topic(&[b'a'; 300], b"fluent", &mut out);
        assert_eq!(out.len(), MAX_TOPIC_BYTES);
    }
}
