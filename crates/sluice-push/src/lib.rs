//! Sans-IO decoders of the HTTP push inputs sluice speaks, so that shippers
//! people already run (Grafana Alloy, Promtail, Vector, Fluent Bit,
//! Filebeat, Elastic's clients) write to sluice unchanged.
//!
//! - [`encoding`]: the request's `Content-Encoding` (`gzip`, `deflate`,
//!   `snappy` as a marker, none), inflated with a bound checked as it
//!   grows.
//! - [`loki`]: `POST /loki/api/v1/push`, JSON or protobuf in a snappy
//!   *block* (the [`loki::proto`] messages, hand-written for prost), each
//!   stream's label set made the record topic ([`sluice_record::labels`]).
//! - [`elastic`]: Elasticsearch `_bulk` NDJSON (`create` and `index`
//!   actions, message and time fields chosen by the caller) and the compact
//!   bulk response Fluent Bit and Beats read.
//!
//! Every decoder turns a request into [`Unstamped`] records handed to a
//! callback, and refuses a request with a [`PushError`] that says which
//! status it deserves ([`PushError::too_large`]: 413, else 400). Every
//! limit in [`Limits`] is checked before the memory it guards is
//! allocated: the body length before it is read (by the caller), the
//! inflated size while inflating and, for snappy, from the declared length
//! before the buffer exists, the entries and metadata pairs of a protobuf
//! by a scan of its wire format before prost decodes it, those of a JSON
//! body as its visitor reaches them, and bulk actions by counting lines.
//!
//! Architecture invariant: no I/O, no threads, no clock: the caller passes
//! the time now, the body and its headers' values.
//!
//! [`Unstamped`]: sluice_record::Unstamped

pub mod elastic;
pub mod encoding;
mod error;
mod line;
pub mod loki;

pub use error::PushError;
pub use line::clean_line;

/// The default largest request body, as received (compressed): 16 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;
/// The default largest body once inflated: 64 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 << 20;
/// The default most entries (Loki) or actions (`_bulk`) in one request.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// The default most labels in one Loki stream.
pub const DEFAULT_MAX_LABELS: usize = 32;
/// Longest label set text accepted from a client before it is parsed (the
/// canonical topic it becomes holds at most 255 bytes anyway).
pub const MAX_LABELS_TEXT_BYTES: usize = 4096;

/// What one push request may hold. [`Default`] takes the `DEFAULT_*`
/// constants and [`sluice_record`]'s 1 MiB line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body as received, before inflating (413 above).
    pub max_body_bytes: usize,
    /// Largest body once inflated (413 above).
    pub max_decompressed_bytes: usize,
    /// Most entries (Loki) or actions (`_bulk`) per request (413 above);
    /// structured metadata pairs may be at most 8 times as many.
    pub max_entries: usize,
    /// Longest line kept; longer ones are cut and flagged truncated, as on
    /// every other input (`--max-line`).
    pub max_line_bytes: usize,
    /// Most labels in one stream (400 above).
    pub max_labels: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_line_bytes: 1 << 20,
            max_labels: DEFAULT_MAX_LABELS,
        }
    }
}

impl Limits {
    /// Most structured metadata (and `parsed`) pairs per request.
    pub fn max_metadata_pairs(&self) -> usize {
        self.max_entries.saturating_mul(8)
    }
}

/// What a decoded request held, for counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Streams (Loki) or distinct indices seen (`_bulk`: 0, not counted).
    pub streams: u64,
    /// Records handed to the callback.
    pub records: u64,
    /// Bytes of their payloads.
    pub payload_bytes: u64,
    /// Lines cut at [`Limits::max_line_bytes`].
    pub truncated: u64,
    /// Lines whose inner line feeds became spaces.
    pub multiline: u64,
    /// Entries that carried structured metadata, which is dropped.
    pub metadata_entries: u64,
    /// Structured metadata pairs dropped.
    pub metadata_pairs: u64,
}
