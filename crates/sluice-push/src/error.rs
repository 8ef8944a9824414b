//! Why a push request was refused.

use sluice_record::labels::LabelError;

/// Why a push request was refused. Its text is the response body: lowercase,
/// with the offending value, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The body is longer than the limit.
    #[error("request body of {len} bytes is over the limit of {limit}: send smaller batches")]
    BodyTooLarge {
        /// Its length (at least this much when it was cut off).
        len: usize,
        /// [`crate::Limits::max_body_bytes`].
        limit: usize,
    },
    /// The body inflates past the limit.
    #[error("request body inflates past the limit of {limit} bytes: send smaller batches")]
    DecompressedTooLarge {
        /// [`crate::Limits::max_decompressed_bytes`].
        limit: usize,
    },
    /// More entries or actions than the limit.
    #[error("request holds more than {limit} entries: send smaller batches")]
    TooManyEntries {
        /// [`crate::Limits::max_entries`].
        limit: usize,
    },
    /// More structured metadata pairs than the limit.
    #[error("request holds more than {limit} structured metadata pairs: send fewer")]
    TooManyMetadata {
        /// [`crate::Limits::max_metadata_pairs`].
        limit: usize,
    },
    /// A `Content-Encoding` sluice does not read.
    #[error("unsupported content-encoding {encoding:?}: use gzip, deflate, snappy or none")]
    UnsupportedEncoding {
        /// The header's value, cut to 100 bytes.
        encoding: String,
    },
    /// The body does not inflate.
    #[error("request body is not valid {encoding}: {why}")]
    BadCompression {
        /// `gzip`, `deflate` or `snappy`.
        encoding: &'static str,
        /// The inflater's error.
        why: String,
    },
    /// The protobuf does not decode.
    #[error("bad protobuf push request: {why}")]
    BadProtobuf {
        /// What was wrong.
        why: String,
    },
    /// The JSON does not decode.
    #[error("bad json push request: {why}")]
    BadJson {
        /// serde_json's message, with line and column.
        why: String,
    },
    /// A stream's label set cannot be a topic.
    #[error("stream {stream}: {error}")]
    BadLabels {
        /// The stream's label text, cut to 200 bytes.
        stream: String,
        /// Why.
        error: LabelError,
    },
    /// A stream has more labels than the limit.
    #[error("stream {stream} has {count} labels; at most {limit} are accepted")]
    TooManyLabels {
        /// The stream's label text, cut to 200 bytes.
        stream: String,
        /// How many it has.
        count: usize,
        /// [`crate::Limits::max_labels`].
        limit: usize,
    },
    /// A timestamp that is not nanoseconds since 1970.
    #[error("stream {stream}: bad timestamp {value:?}: send nanoseconds since 1970 as a string")]
    BadTimestamp {
        /// The stream's label text, cut to 200 bytes.
        stream: String,
        /// The timestamp as sent, cut to 40 bytes.
        value: String,
    },
    /// A `_bulk` action line is not an action.
    #[error("bulk line {line}: {why}")]
    BadBulk {
        /// The 1-based line number in the NDJSON body.
        line: usize,
        /// What was wrong.
        why: String,
    },
}

impl PushError {
    /// Whether the request was refused for its size (413), rather than
    /// its content (400).
    pub fn too_large(&self) -> bool {
        matches!(
            self,
            PushError::BodyTooLarge { .. }
                | PushError::DecompressedTooLarge { .. }
                | PushError::TooManyEntries { .. }
                | PushError::TooManyMetadata { .. }
        )
    }

    /// A short, bounded name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PushError::BodyTooLarge { .. } => "body_too_large",
            PushError::DecompressedTooLarge { .. } => "decompressed_too_large",
            PushError::TooManyEntries { .. } => "too_many_entries",
            PushError::TooManyMetadata { .. } => "too_many_metadata",
            PushError::UnsupportedEncoding { .. } => "unsupported_encoding",
            PushError::BadCompression { .. } => "bad_compression",
            PushError::BadProtobuf { .. } => "bad_protobuf",
            PushError::BadJson { .. } => "bad_json",
            PushError::BadLabels { .. } => "bad_labels",
            PushError::TooManyLabels { .. } => "too_many_labels",
            PushError::BadTimestamp { .. } => "bad_timestamp",
            PushError::BadBulk { .. } => "bad_bulk",
        }
    }
}

/// `text` cut to `max` bytes at a character boundary, for error messages.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
