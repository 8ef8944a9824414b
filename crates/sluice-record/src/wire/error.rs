//! Why the batch protocol refused a batch or a command.

use super::MAX_HEADER_BYTES;

/// A refused batch or command. Its text is the reason of the `ERR` reply;
/// [`kind`](Self::kind) is a short label for metrics, and
/// [`is_fatal`](Self::is_fatal) says whether the framing is lost.
///
/// The first six variants are fatal: the command line could not be read,
/// so where the next command starts is unknown. After any other, the
/// refused batch's section is skipped and the connection goes on. A
/// `String` a variant holds is the client's field, cut to 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// No newline in the first [`MAX_HEADER_BYTES`] bytes of a command.
    #[error("bad header: no newline in the first {MAX_HEADER_BYTES} bytes")]
    HeaderTooLong,
    /// The command line is not UTF-8.
    #[error("bad header: not UTF-8")]
    HeaderNotUtf8,
    /// The first word is neither `BATCH` nor `PING` (a `PING` with
    /// arguments included).
    #[error("bad header: unknown command {0:?}; use BATCH or PING")]
    UnknownCommand(String),
    /// A `BATCH` header with this many fields, not 7 or 8.
    #[error("bad header: {0} fields; {EXPECTED}")]
    FieldCount(usize),
    /// `seq` is not a number up to `u64::MAX`.
    #[error("bad header: seq {0:?} is not a number; {EXPECTED}")]
    BadSeq(String),
    /// `bytes` is not a number, so the section cannot be skipped.
    #[error("bad header: bytes {0:?} is not a number; {EXPECTED}")]
    BadBytes(String),
    /// The section is longer than
    /// [`WireLimits::max_batch_bytes`](super::WireLimits::max_batch_bytes);
    /// it is skipped unread.
    #[error("batch of {bytes} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The header's `bytes`.
        bytes: usize,
        /// [`WireLimits::max_batch_bytes`](super::WireLimits::max_batch_bytes).
        limit: usize,
    },
    /// More records than
    /// [`WireLimits::max_batch_records`](super::WireLimits::max_batch_records).
    #[error("batch of {count} records exceeds the limit of {limit}")]
    TooManyRecords {
        /// The header's `count`.
        count: u32,
        /// [`WireLimits::max_batch_records`](super::WireLimits::max_batch_records).
        limit: u32,
    },
    /// `count` is 0.
    #[error("batch has no records")]
    Empty,
    /// `count` is not a number up to `u32::MAX`.
    #[error("count {0:?} is not a number up to 4294967295")]
    BadCount(String),
    /// `topic` is not a valid topic ([`is_valid_topic`](crate::is_valid_topic)).
    #[error("topic {0:?} must be 1 to 255 printable ASCII bytes")]
    BadTopic(String),
    /// `crc` is neither 8 hex digits nor `-`.
    #[error("crc {0:?} must be 8 hex digits or -")]
    BadCrcField(String),
    /// `guarantee` names no [`Guarantee`](super::Guarantee).
    #[error("unknown guarantee {0:?}: use none, write, fsync or replicated")]
    BadGuarantee(String),
    /// `base-ulid` is not a ULID.
    #[error("base {0:?} is not a ULID")]
    BadBase(String),
    /// The section does not hash to the header's `crc`.
    #[error("crc mismatch: header says {header:08x}, records hash to {computed:08x}")]
    CrcMismatch {
        /// The header's `crc`.
        header: u32,
        /// The CRC-32 of the section received.
        computed: u32,
    },
    /// A record of the section does not parse
    /// ([`parse_section`](super::parse_section)).
    #[error("malformed record {index} at byte {at}: {what}")]
    MalformedRecord {
        /// The record's position in the batch, from 0.
        index: u32,
        /// Where it starts in the section, in bytes.
        at: usize,
        /// What is wrong, such as `"no time"`.
        what: &'static str,
    },
    /// Bytes follow the header's `count` records in the section.
    #[error("batch declares {count} records but has {extra} bytes after them")]
    TrailingBytes {
        /// The header's `count`.
        count: u32,
        /// Bytes left after them.
        extra: usize,
    },
}

const EXPECTED: &str =
    "expected BATCH <seq> <topic> <count> <bytes> <crc|-> <guarantee> [<base-ulid>]";

impl WireError {
    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            WireError::HeaderTooLong
            | WireError::HeaderNotUtf8
            | WireError::UnknownCommand(_)
            | WireError::FieldCount(_)
            | WireError::BadSeq(_)
            | WireError::BadBytes(_) => "bad_header",
            WireError::TooLarge { .. } => "too_large",
            WireError::TooManyRecords { .. } => "too_many_records",
            WireError::Empty => "empty",
            WireError::BadCount(_) => "bad_count",
            WireError::BadTopic(_) => "bad_topic",
            WireError::BadCrcField(_) => "bad_crc_field",
            WireError::BadGuarantee(_) => "bad_guarantee",
            WireError::BadBase(_) => "bad_base",
            WireError::CrcMismatch { .. } => "crc",
            WireError::MalformedRecord { .. } | WireError::TrailingBytes { .. } => {
                "malformed_record"
            }
        }
    }

    /// Whether the framing is lost (the section's length is unknown): the
    /// connection must close after the reply.
    pub fn is_fatal(&self) -> bool {
        self.kind() == "bad_header"
    }
}

/// At most 32 bytes of a client's field, for a message.
pub(super) fn excerpt(text: &str) -> String {
    let mut end = text.len().min(32);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}
