//! The one error type of the crate.

/// Why a frame, an ack or a handshake message was refused.
///
/// Messages are lowercase, carry the offending value, and say what to do
/// where the fix is on this side (a limit to raise). Flag names in
/// parentheses are the `sluice` command-line options that set the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FluentError {
    /// A declared length or the bytes seen so far make the frame too big.
    #[error(
        "frame of {size} bytes exceeds the limit of {limit} bytes (--fluent-max-frame); \
         ask the sender for smaller chunks or raise the limit"
    )]
    FrameTooLarge {
        /// Smallest size the frame can have, given what it declared.
        size: u64,
        /// `Limits::max_frame_bytes`.
        limit: usize,
    },
    /// Maps and arrays nest deeper than `Limits::max_depth`.
    #[error("map or array nesting deeper than {limit} levels (--fluent-max-depth)")]
    TooDeep {
        /// The depth limit in force.
        limit: usize,
    },
    /// More entries in one frame than `Limits::max_entries_per_frame`.
    #[error(
        "frame carries at least {count} entries, more than the limit of {limit} \
         (--fluent-max-entries); ask the sender for smaller chunks or raise the limit"
    )]
    TooManyEntries {
        /// Entries declared or counted so far.
        count: u64,
        /// The limit in force.
        limit: usize,
    },
    /// Inflating a CompressedPackedForward chunk went past the limit.
    #[error(
        "decompressed chunk exceeds {limit} bytes (possible gzip bomb); \
         raise --fluent-max-decompressed if the sender is trusted"
    )]
    DecompressedTooLarge {
        /// `Limits::max_decompressed_bytes`.
        limit: usize,
    },
    /// The gzip stream of a CompressedPackedForward chunk is corrupt.
    #[error("invalid gzip data in a compressed chunk: {0}")]
    Gzip(String),
    /// `compressed` names something other than `gzip` or `text`.
    #[error("unsupported compression {0:?}: only \"gzip\" (and \"text\") are supported")]
    UnsupportedCompression(String),
    /// `fluent_signal` announces metrics or traces in a packed chunk.
    #[error("fluent_signal {0} (metrics or traces) is not supported: only logs (0) are accepted")]
    UnsupportedSignal(u64),
    /// A value ends past the end of the frame (or of the packed entries).
    #[error("msgpack value truncated at offset {offset} of {what}")]
    Truncated {
        /// Where the value started.
        offset: usize,
        /// `"the frame"` or `"the packed entries"`.
        what: &'static str,
    },
    /// A byte that no msgpack type starts with (0xc1).
    #[error("invalid msgpack type byte {byte:#04x} at offset {offset}")]
    InvalidByte {
        /// The byte.
        byte: u8,
        /// Its offset.
        offset: usize,
    },
    /// Bytes left after the one top-level value of a frame.
    #[error("{0} trailing bytes after the frame's value")]
    TrailingBytes(usize),
    /// The frame starts with `[` or `{`: JSON text, which Fluentd's
    /// in_forward also accepts but this decoder does not.
    #[error("frame starts with '[' or '{{': JSON forward frames are not supported, send msgpack")]
    JsonText,
    /// The top-level value is neither an array nor nil.
    #[error("frame is a {0}, expected an array (or nil for a heartbeat)")]
    NotAnArray(&'static str),
    /// An event array with the wrong number of elements for its mode.
    #[error("{mode} frame has {len} elements, expected {expected}")]
    BadArity {
        /// The mode the second element selected.
        mode: &'static str,
        /// Elements found.
        len: u32,
        /// What that mode allows.
        expected: &'static str,
    },
    /// The second element selects no mode.
    #[error("unknown event mode: second element is a {0}")]
    UnknownMode(&'static str),
    /// The first element is not a str (or bin).
    #[error("tag is not a string (got a {0})")]
    TagNotString(&'static str),
    /// The tag is a str but not UTF-8.
    #[error("tag is not valid utf-8")]
    TagNotUtf8,
    /// An entry of Forward or PackedForward mode is not `[time, record]`.
    #[error("entry is a {0}, expected [time, record]")]
    BadEntry(&'static str),
    /// An event time of an unknown type.
    #[error("event time is a {0}, expected EventTime (ext 0), an integer or a float")]
    BadTime(&'static str),
    /// A record that is not a map (nil records are skipped, as Fluentd does).
    #[error("record is a {0}, expected a map")]
    BadRecord(&'static str),
    /// The options element is neither a map nor nil.
    #[error("options is a {0}, expected a map or nil")]
    BadOptions(&'static str),
    /// A malformed HELO, PING, PONG or ack.
    #[error("bad {what} message: {reason}")]
    BadMessage {
        /// `"HELO"`, `"PING"`, `"PONG"` or `"ack"`.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}
