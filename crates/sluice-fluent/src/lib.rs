//! Fluentd forward protocol v1: a sans-IO codec for the fluent listener
//! (port 24224) and for forwarders that send to Fluentd or Fluent Bit.
//!
//! # Wire format
//!
//! A connection carries concatenated msgpack values, one per frame; there
//! is no length prefix. [`frame_len`] (or the resumable [`FrameScanner`])
//! finds where the first one ends; [`decode_frame`] turns it into events.
//! [`FluentFramer`] does both for a connection: it reads into a
//! [`ReadBuffer`](sluice_record::ReadBuffer) and hands out whole frames, and
//! [`Frame::records`] makes each event a record (see below).
//! A frame is:
//!
//! - **nil**: a TCP heartbeat. No events, no reply ([`FrameInfo::heartbeat`]).
//! - **Message** `[tag, time, record]` or `[tag, time, record, options]`.
//! - **Forward** `[tag, [[time, record], ...], options?]`.
//! - **PackedForward** `[tag, entries, options?]`, `entries` being a str or
//!   a bin holding concatenated `[time, record]` msgpack values. Fluentd's
//!   out_forward sends them as a **str32**; all str and bin widths work.
//! - **CompressedPackedForward**: PackedForward with `compressed: "gzip"`;
//!   the bytes are one or more concatenated gzip members.
//! - **PING** `["PING", ...]` (6 elements) during the shared-key handshake,
//!   see [`handshake`] and [`FrameInfo::handshake`].
//!
//! The mode is chosen by the second element: str/bin, array, or anything
//! else that can be a time (a map or a bool is an error).
//!
//! - `tag` is a str (or bin) of UTF-8.
//! - `time` is an EventTime (ext type 0 with 8 bytes, as fixext8 or ext8:
//!   big-endian u32 seconds then u32 nanoseconds), integer seconds of any
//!   width and sign, or float seconds. Fluent Bit 5.x sends entries as
//!   `[[time, metadata], record]`: the metadata is ignored, and entries whose
//!   time is -1 or -2 (Fluent Bit's group start and end markers) are skipped.
//!   A nil or zero time gives `time_ns: None` ("use the arrival time", as
//!   Fluentd does).
//! - `record` is a map; a nil record is skipped, as Fluentd does.
//! - `options` is a map, nil or absent. Keys, in any order: `chunk` (str or
//!   bin: the sender wants an ack holding exactly those bytes, see
//!   [`encode_ack`]), `size` (the sender's entry count), `compressed`
//!   (`"gzip"` or `"text"`), `fluent_signal` (1 and 2, metrics and traces,
//!   are refused in packed modes). Other keys are ignored.
//!
//! Fluentd's in_forward also accepts frames of JSON text; this decoder does
//! not ([`FluentError::JsonText`]).
//!
//! Every msgpack encoding is accepted everywhere (map32 headers as Fluent
//! Bit writes them, int64 holding small numbers, str8 holding short tags).
//!
//! # Records as JSON
//!
//! Each event's record becomes one line of compact JSON (an object) in a
//! buffer reused across events ([`Scratch`]): keys keep their order; str
//! and bin become strings, invalid UTF-8 replaced by U+FFFD; control
//! characters, `"` and `\` are escaped; ints, floats, bools, nil, maps and
//! arrays render as JSON (NaN and infinities as `null`); a non-string key
//! is rendered as JSON and that text becomes the key; an EventTime inside a
//! record renders as seconds with nine decimals, other exts as `null`.
//! Docker's fields (`log`, `source`, `container_id`, `container_name`) are
//! ordinary fields, kept as they are.
//!
//! # Events as records
//!
//! [`Frame::records`] is the one event → record mapping, shared by the
//! ingester's listener and the forwarder's agent: the tag becomes the topic
//! (cleaned, else [`DEFAULT_TOPIC`]), the event time the record's time
//! (clamped; the arrival time without one), and the JSON line the payload,
//! cut at the line limit and flagged truncated (see the `record` module).
//!
//! # Limits
//!
//! [`Limits`] bounds what one frame may cost: its size (checked from
//! declared lengths before the bytes arrive), its inflated size (a gzip bomb
//! stops at the limit, memory bounded by it), its entry count and its
//! nesting. Nothing allocates in proportion to a declared length, and no
//! walk recurses deeper than [`MAX_DEPTH_CAP`].
//!
//! # Acks, heartbeats, handshake
//!
//! - A frame with a `chunk` option is answered, once its events are safe,
//!   with [`encode_ack`]: `{"ack": chunk}`. Clients use [`decode_ack`].
//! - UDP heartbeats: Fluentd's out_forward (`heartbeat_type udp`) sends a
//!   one-byte datagram to the forward port; in_forward answers every
//!   datagram with [`UDP_HEARTBEAT_REPLY`] (one `\0` byte) to its sender.
//!   A TCP heartbeat is a top-level nil (or just the connection itself).
//! - With a shared key the server speaks first: see [`handshake`].
//!
//! # Sending
//!
//! [`ForwardEncoder`] builds Forward-mode frames of lines with EventTime
//! and a `chunk` option, for `sluice forward` to Fluentd or Fluent Bit.
//!
//! Architecture invariant: no I/O, no clocks, no randomness; callers own
//! sockets, time and nonces. Records and read buffers are
//! [`sluice_record`]'s.

mod decode;
mod encode;
mod error;
mod frame;
mod framer;
pub mod handshake;
mod json;
mod msgpack;
mod record;

pub use decode::{Event, FrameInfo, Mode, Scratch, decode_frame};
pub use encode::{ForwardEncoder, decode_ack, encode_ack};
pub use error::FluentError;
pub use frame::{FrameScanner, MAX_DEPTH_CAP, frame_len};
pub use framer::{FluentFramer, Frame};
pub use handshake::PingMessage;
pub use record::DEFAULT_TOPIC;

/// The forward protocol's usual TCP and UDP port.
pub const DEFAULT_PORT: u16 = 24224;

/// What a listener sends back, to the sender's address, for every datagram
/// received on the forward UDP port (Fluentd in_forward's
/// `HEARTBEAT_UDP_PAYLOAD`). Datagrams of up to 128 bytes are read; their
/// content is not checked.
pub const UDP_HEARTBEAT_REPLY: &[u8] = b"\0";

/// How much one frame may cost. Defaults suit Fluentd and Fluent Bit
/// (their chunks are 8 MiB at most by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame, in bytes (default 16 MiB).
    pub max_frame_bytes: usize,
    /// Largest inflated CompressedPackedForward chunk (default 64 MiB).
    pub max_decompressed_bytes: usize,
    /// Most entries in one frame (default 1,000,000).
    pub max_entries_per_frame: usize,
    /// Deepest nesting of maps and arrays, the frame's own array being
    /// level 1 and a Forward record level 4 (default 32, at most
    /// [`MAX_DEPTH_CAP`]).
    pub max_depth: usize,
}

/// The default largest frame: 16 MiB (`--fluent-max-frame`).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 << 20;
/// The default largest inflated chunk: 64 MiB (`--fluent-max-decompressed`).
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 << 20;
/// The default most entries in one frame (`--fluent-max-entries`).
pub const DEFAULT_MAX_ENTRIES_PER_FRAME: usize = 1_000_000;
/// The default deepest nesting (`--fluent-max-depth`).
pub const DEFAULT_MAX_DEPTH: usize = 32;
/// The range a frame size limit may be set in: 1 KiB to 1 GiB.
pub const FRAME_LIMIT_RANGE: std::ops::RangeInclusive<usize> = (1 << 10)..=(1 << 30);
/// The range an inflated size limit may be set in: 1 KiB to 4 GiB.
pub const DECOMPRESSED_LIMIT_RANGE: std::ops::RangeInclusive<usize> = (1 << 10)..=(4 << 30);
/// The shallowest nesting limit: a Forward record is at level 4.
pub const MIN_DEPTH: usize = 4;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            max_entries_per_frame: DEFAULT_MAX_ENTRIES_PER_FRAME,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

#[cfg(test)]
mod tests;
