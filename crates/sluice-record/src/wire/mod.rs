//! The batch protocol's wire format (ingest port 7653), sans-IO.
//!
//! The spec, with examples, is `docs/protocol-batch.md`. In short:
//!
//! ```text
//! BATCH <seq> <topic> <count> <bytes> <crc|-> <guarantee> [<base-ulid>] LF
//! <bytes bytes of records: "<len> <time|-> <payload>" LF each>
//! PING LF
//! replies: OK <seq> <first> <last> LF | ERR <seq|-> <reason> LF | PONG LF
//! ```
//!
//! - [`decode`](mod@decode): [`WireDecoder`] turns the server's input into
//!   [`Event`]s with bounded memory: it sits on a
//!   [`ReadBuffer`](crate::ReadBuffer) that never holds more than one header
//!   line ([`MAX_HEADER_BYTES`]) or one batch section; a section over the
//!   limit is skipped without being buffered; [`parse_section`] reads a
//!   section's records.
//! - [`client`]: [`BatchBuilder`] encodes batches for clients, and
//!   [`parse_reply`] reads the server's replies.
//! - [`WireError`]: why a batch or command was refused; its text is the
//!   `ERR` reply's reason.

pub mod client;
pub mod decode;
mod error;

pub use client::{BatchBuilder, Reply, parse_reply};
pub use decode::{Event, WireDecoder, parse_section};
pub use error::WireError;

use ulid::Ulid;

/// Longest header or command line accepted.
pub const MAX_HEADER_BYTES: usize = 1024;

/// When the server acknowledges a batch; ordered from weakest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Guarantee {
    /// Once parsed and verified.
    None,
    /// Once written to the connection's active segment (in the page
    /// cache).
    Write,
    /// Once on disk (`fdatasync`); fsyncs are grouped per read buffer.
    Fsync,
    /// Once in a sealed store segment: a store committed the ingest segment
    /// holding it.
    Replicated,
}

impl Guarantee {
    /// The guarantee's word in a `BATCH` header: `none`, `write`, `fsync`
    /// or `replicated`.
    pub fn name(self) -> &'static str {
        match self {
            Guarantee::None => "none",
            Guarantee::Write => "write",
            Guarantee::Fsync => "fsync",
            Guarantee::Replicated => "replicated",
        }
    }

    /// The guarantee whose [`name`](Self::name) is `text`; `None` for any
    /// other text.
    pub fn parse(text: &str) -> Option<Guarantee> {
        Some(match text {
            "none" => Guarantee::None,
            "write" => Guarantee::Write,
            "fsync" => Guarantee::Fsync,
            "replicated" => Guarantee::Replicated,
            _ => return None,
        })
    }
}

/// A parsed `BATCH` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHeader {
    /// The client's number for the batch; the reply names it.
    pub seq: u64,
    /// The records' topic as sent; a valid topic unless the batch was
    /// refused.
    pub topic: Vec<u8>,
    /// Records in the section; 1 to [`WireLimits::max_batch_records`]
    /// unless the batch was refused.
    pub count: u32,
    /// Length of the record section after the header line, in bytes.
    pub bytes: usize,
    /// CRC-32 (IEEE) of the section; `None` when the client sent `-`.
    pub crc: Option<u32>,
    /// When to acknowledge the batch; [`Guarantee::Write`] in a header
    /// refused before this field was read.
    pub guarantee: Guarantee,
    /// The id of the batch's first record, if sent: record `i` gets
    /// [`record_id`]`(base, i, time)`.
    pub base: Option<Ulid>,
}

/// Limits the decoder enforces.
#[derive(Debug, Clone, Copy)]
pub struct WireLimits {
    /// Longest record section, in bytes (default 16 MiB); a longer one is
    /// skipped unread and the batch refused.
    pub max_batch_bytes: usize,
    /// Most records in one batch (default 100,000).
    pub max_batch_records: u32,
}

/// The default largest record section of one batch: 16 MiB
/// (`--batch-max-bytes`).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 16 << 20;
/// The default most records in one batch (`--batch-max-records`).
pub const DEFAULT_MAX_BATCH_RECORDS: u32 = 100_000;

impl Default for WireLimits {
    fn default() -> Self {
        WireLimits {
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_batch_records: DEFAULT_MAX_BATCH_RECORDS,
        }
    }
}

/// The id of record `index` of a batch: the base's random part plus
/// `index`, at `time_ms` (the record's origin time, clamped) or the base's
/// time. Deterministic, so a re-sent batch gets the same ids.
pub fn record_id(base: Ulid, index: u32, time_ms: Option<u64>) -> Ulid {
    let random = (base.0 & ((1u128 << 80) - 1)).wrapping_add(index as u128) & ((1u128 << 80) - 1);
    let ms = time_ms.unwrap_or_else(|| base.timestamp_ms()) & ((1u64 << 48) - 1);
    Ulid(((ms as u128) << 80) | random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_are_deterministic_and_increase() {
        let base = Ulid::from_parts(1000, 5);
        assert_eq!(record_id(base, 0, None), base);
        assert!(record_id(base, 1, None) > base);
        assert_eq!(record_id(base, 3, Some(2000)).timestamp_ms(), 2000);
    }
}
