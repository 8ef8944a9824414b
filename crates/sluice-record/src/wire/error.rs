//! Why the batch protocol refused a batch or a command.

use super::MAX_HEADER_BYTES;

/// A refused batch or command. Its text is the reason of the `ERR` reply;
/// [`kind`](Self::kind) is a short label for metrics, and
/// [`is_fatal`](Self::is_fatal) says whether the framing is lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("bad header: no newline in the first {MAX_HEADER_BYTES} bytes")]
    HeaderTooLong,
    #[error("bad header: not UTF-8")]
    HeaderNotUtf8,
    #[error("bad header: unknown command {0:?}; use BATCH or PING")]
    UnknownCommand(String),
    #[error("bad header: {0} fields; {EXPECTED}")]
    FieldCount(usize),
    #[error("bad header: seq {0:?} is not a number; {EXPECTED}")]
    BadSeq(String),
    #[error("bad header: bytes {0:?} is not a number; {EXPECTED}")]
    BadBytes(String),
    #[error("batch of {bytes} bytes exceeds the limit of {limit}")]
    TooLarge { bytes: usize, limit: usize },
    #[error("batch of {count} records exceeds the limit of {limit}")]
    TooManyRecords { count: u32, limit: u32 },
    #[error("batch has no records")]
    Empty,
    #[error("count {0:?} is not a number up to 4294967295")]
    BadCount(String),
    #[error("topic {0:?} must be 1 to 255 printable ASCII bytes")]
    BadTopic(String),
    #[error("crc {0:?} must be 8 hex digits or -")]
    BadCrcField(String),
    #[error("unknown guarantee {0:?}: use none, write, fsync or replicated")]
    BadGuarantee(String),
    #[error("base {0:?} is not a ULID")]
    BadBase(String),
    #[error("crc mismatch: header says {header:08x}, records hash to {computed:08x}")]
    CrcMismatch { header: u32, computed: u32 },
    #[error("malformed record {index} at byte {at}: {what}")]
    MalformedRecord {
        index: u32,
        at: usize,
        what: &'static str,
    },
    #[error("batch declares {count} records but has {extra} bytes after them")]
    TrailingBytes { count: u32, extra: usize },
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
