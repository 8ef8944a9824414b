//! Loki's push messages (`pkg/push/push.proto`), written by hand for prost
//! (no protoc, no build script).
//!
//! ```proto
//! message PushRequest   { repeated StreamAdapter streams = 1; string format = 2; }
//! message StreamAdapter { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
//! message EntryAdapter  { google.protobuf.Timestamp timestamp = 1; string line = 2;
//!                         repeated LabelPairAdapter structuredMetadata = 3;
//!                         repeated LabelPairAdapter parsed = 4; }
//! message LabelPairAdapter { string name = 1; string value = 2; }
//! ```
//!
//! Strings are declared as `bytes` backed by [`Bytes`]: the wire format is
//! the same, decoding from a [`Bytes`] buffer slices it instead of copying
//! (so a long line costs no allocation), and a line need not be UTF-8.

use bytes::Bytes;

/// A push request: streams of entries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    /// The streams.
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
    /// Set by some clients; ignored.
    #[prost(bytes = "bytes", tag = "2")]
    pub format: Bytes,
}

/// One stream: a label set and its entries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// The label set as text, Prometheus style: `{job="x", host="y"}`.
    #[prost(bytes = "bytes", tag = "1")]
    pub labels: Bytes,
    /// The entries.
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// A hash of the labels some clients set; ignored.
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// One log entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    /// When it happened.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    /// The line.
    #[prost(bytes = "bytes", tag = "2")]
    pub line: Bytes,
    /// Structured metadata (dropped by sluice, counted).
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
    /// Labels a query parser extracted; only in query answers, ignored.
    #[prost(message, repeated, tag = "4")]
    pub parsed: Vec<LabelPairAdapter>,
}

/// A name and a value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    /// The name.
    #[prost(bytes = "bytes", tag = "1")]
    pub name: Bytes,
    /// The value.
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    /// Seconds since 1970.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second, 0 to 999,999,999.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}
