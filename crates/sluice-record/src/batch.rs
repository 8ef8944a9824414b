//! The batch frame: the unit of checksumming on disk and on the wire.
//!
//! An ingest segment is a sequence of batches, one per read buffer, and a
//! store's batch file is a sequence of batches of sorted records. The
//! same bytes travel from an ingester to a store, so the checksum written at
//! ingest is the one verified at the store.
//!
//! ```text
//! batch  = header body
//! header = magic "SLB1" (4) | body_len u32 LE | count u32 LE | crc u32 LE     (16 bytes)
//! body   = record * count
//! record = id u128 BE (16) | flags u8 | topic_len u8 | payload_len u32 LE | topic | payload
//! crc    = CRC-32 (IEEE) of header[4..12] followed by body
//! ```
//!
//! Limits: `body_len <= MAX_BATCH_BODY_BYTES`, `payload_len <=
//! MAX_PAYLOAD_BYTES`, `1 <= topic_len`, and `count` records must fill the
//! body exactly. A decoder rejects anything else with a [`CodecError`]; it
//! never panics and never allocates more than the declared, bounded body.
//!
//! Recovery rule: a reader that meets a short or failing batch at the end of
//! a file treats everything from that batch on as a torn tail; every batch
//! before it is intact because each one carries its own checksum.

use crate::{MAX_PAYLOAD_BYTES, MAX_TOPIC_BYTES, Record};
use ulid::Ulid;

/// The first 4 bytes of every batch.
pub const BATCH_MAGIC: [u8; 4] = *b"SLB1";
/// Length of a batch header: magic, body length, count and CRC.
pub const BATCH_HEADER_BYTES: usize = 16;
/// Bytes a record adds to its topic and payload.
pub const RECORD_OVERHEAD_BYTES: usize = 22;
/// Largest batch body accepted: 128 MiB.
pub const MAX_BATCH_BODY_BYTES: usize = 128 << 20;

/// Why bytes are not an intact batch. Readers of a file take any of these
/// at its end as a torn tail (see the module docs).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The header does not start with [`BATCH_MAGIC`].
    #[error("bad batch magic {found:02x?}: this is not a sluice batch (expected \"SLB1\")")]
    BadMagic {
        /// The first 4 bytes found.
        found: [u8; 4],
    },
    /// The header declares a body over [`MAX_BATCH_BODY_BYTES`].
    #[error("batch body of {len} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The declared body length, in bytes.
        len: usize,
        /// [`MAX_BATCH_BODY_BYTES`].
        limit: usize,
    },
    /// The body does not hash to the header's CRC.
    #[error("batch checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the bytes read.
        computed: u32,
    },
    /// The bytes end before the header or the body does.
    #[error("batch is truncated: need {needed} bytes, have {have}")]
    Truncated {
        /// Bytes the header, the body or the whole batch takes.
        needed: usize,
        /// Bytes there are.
        have: usize,
    },
    /// A record of a verified body does not decode.
    #[error("malformed record at body offset {offset}: {reason}")]
    BadRecord {
        /// Where the record starts in the body (for bytes after the last
        /// record: the body's length).
        offset: usize,
        /// What is wrong, such as `"empty topic"`.
        reason: &'static str,
    },
    /// The header's record count does not match the body.
    #[error("batch declares {declared} records but its body holds {found}")]
    CountMismatch {
        /// The count in the header.
        declared: u32,
        /// Records decoded; 0 when the declared count cannot fit in the
        /// body at all.
        found: u32,
    },
}

/// A decoded batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Bytes of body after the header, at most [`MAX_BATCH_BODY_BYTES`].
    pub body_len: u32,
    /// Records in the body.
    pub count: u32,
    /// CRC-32 (IEEE) of `body_len` and `count` (little-endian) and the body.
    pub crc: u32,
}

impl BatchHeader {
    /// Parse the fixed 16-byte header and check its limits.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, CodecError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(CodecError::Truncated {
                needed: BATCH_HEADER_BYTES,
                have: bytes.len(),
            });
        }
        let magic: [u8; 4] = bytes[0..4].try_into().expect("4 bytes");
        if magic != BATCH_MAGIC {
            return Err(CodecError::BadMagic { found: magic });
        }
        let body_len = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        let count = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
        if body_len as usize > MAX_BATCH_BODY_BYTES {
            return Err(CodecError::BodyTooLarge {
                len: body_len as usize,
                limit: MAX_BATCH_BODY_BYTES,
            });
        }
        // Every record takes at least its fixed overhead plus a 1-byte topic.
        if count as u64 * (RECORD_OVERHEAD_BYTES as u64 + 1) > body_len as u64 {
            return Err(CodecError::CountMismatch {
                declared: count,
                found: 0,
            });
        }
        Ok(BatchHeader {
            body_len,
            count,
            crc,
        })
    }

    /// Bytes of the whole batch: header and body.
    pub fn frame_len(&self) -> usize {
        BATCH_HEADER_BYTES + self.body_len as usize
    }

    /// Verify `body` against this header's checksum.
    pub fn verify(&self, body: &[u8]) -> Result<(), CodecError> {
        if body.len() != self.body_len as usize {
            return Err(CodecError::Truncated {
                needed: self.body_len as usize,
                have: body.len(),
            });
        }
        let computed = checksum(self.body_len, self.count, body);
        if computed != self.crc {
            return Err(CodecError::Checksum {
                stored: self.crc,
                computed,
            });
        }
        Ok(())
    }
}

fn checksum(body_len: u32, count: u32, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&body_len.to_le_bytes());
    hasher.update(&count.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// Builds one batch in a reusable buffer: `begin`, `push`..., `finish`.
///
/// The buffer is kept between batches, so steady-state encoding allocates
/// nothing.
#[derive(Debug, Default)]
pub struct BatchEncoder {
    buf: Vec<u8>,
    count: u32,
}

impl BatchEncoder {
    /// An encoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Start a new batch, discarding anything not finished.
    pub fn begin(&mut self) {
        self.buf.clear();
        self.buf.extend_from_slice(&[0u8; BATCH_HEADER_BYTES]);
        self.count = 0;
    }

    /// Records pushed since [`begin`](Self::begin).
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether no record was pushed since [`begin`](Self::begin).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the batch would occupy if finished now.
    pub fn len(&self) -> usize {
        self.buf.len().max(BATCH_HEADER_BYTES)
    }

    /// Append a record. The topic must be valid and the payload within
    /// [`MAX_PAYLOAD_BYTES`]; callers enforce their (smaller) line limit first.
    pub fn push(&mut self, record: Record<'_>) {
        debug_assert!(!record.topic.is_empty() && record.topic.len() <= MAX_TOPIC_BYTES);
        debug_assert!(record.payload.len() <= MAX_PAYLOAD_BYTES);
        // The record model: a payload is one line. The store's consumer
        // checks it again where data crosses from ingest to store.
        debug_assert!(
            memchr::memchr(b'\n', record.payload).is_none(),
            "a payload holds a newline"
        );
        if self.buf.is_empty() {
            self.begin();
        }
        self.buf.extend_from_slice(&record.id.0.to_be_bytes());
        self.buf.push(record.flags);
        self.buf.push(record.topic.len() as u8);
        self.buf
            .extend_from_slice(&(record.payload.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(record.topic);
        self.buf.extend_from_slice(record.payload);
        self.count += 1;
    }

    /// Seal the batch and return its bytes (header and body). The encoder
    /// must be `begin`-ed (or pushed to) again before reuse.
    pub fn finish(&mut self) -> &[u8] {
        if self.buf.is_empty() {
            self.begin();
        }
        let body_len = (self.buf.len() - BATCH_HEADER_BYTES) as u32;
        let crc = checksum(body_len, self.count, &self.buf[BATCH_HEADER_BYTES..]);
        self.buf[0..4].copy_from_slice(&BATCH_MAGIC);
        self.buf[4..8].copy_from_slice(&body_len.to_le_bytes());
        self.buf[8..12].copy_from_slice(&self.count.to_le_bytes());
        self.buf[12..16].copy_from_slice(&crc.to_le_bytes());
        &self.buf
    }
}

impl BatchEncoder {
    /// Seal the batch and hand over its buffer (header and body, as
    /// [`finish`](Self::finish) returns them), taking `replacement`
    /// (cleared) to encode the next batch into: a reader that keeps the
    /// batch gets it without a copy.
    pub fn take_finished(&mut self, replacement: Vec<u8>) -> Vec<u8> {
        self.finish();
        let mut next = replacement;
        next.clear();
        self.count = 0;
        std::mem::replace(&mut self.buf, next)
    }
}

/// Iterates the records of a verified batch body.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    body: &'a [u8],
    offset: usize,
    remaining: u32,
}

impl<'a> RecordIter<'a> {
    /// The `count` records of `body`, a body that
    /// [`BatchHeader::verify`] accepted; bytes after the last of them come
    /// out as a [`CodecError::BadRecord`], and iteration ends at the first
    /// error.
    pub fn new(body: &'a [u8], count: u32) -> Self {
        RecordIter {
            body,
            offset: 0,
            remaining: count,
        }
    }

    /// Offset of the next record in the body.
    pub fn offset(&self) -> usize {
        self.offset
    }

    fn decode_one(&mut self) -> Result<Record<'a>, CodecError> {
        let (record, next) = decode_record(self.body, self.offset)?;
        self.offset = next;
        Ok(record)
    }
}

/// Decode the record at `offset` of a verified batch body; returns it and
/// the offset of the record after it.
pub fn decode_record(body: &[u8], at: usize) -> Result<(Record<'_>, usize), CodecError> {
    let (payload_start, end) = record_bounds(body, at)?;
    let fixed = &body[at..at + RECORD_OVERHEAD_BYTES];
    let id = u128::from_be_bytes(fixed[0..16].try_into().expect("16 bytes"));
    Ok((
        Record {
            id: Ulid(id),
            flags: fixed[16],
            topic: &body[at + RECORD_OVERHEAD_BYTES..payload_start],
            payload: &body[payload_start..end],
        },
        end,
    ))
}

/// Where the payload of the record at `at` of a verified batch body
/// starts, and where the record ends (the next one starts), with the checks
/// of [`decode_record`] but without decoding the rest: what a search that
/// walks from record to record between its hits needs.
#[inline]
pub fn record_bounds(body: &[u8], at: usize) -> Result<(usize, usize), CodecError> {
    let bad = |reason| CodecError::BadRecord { offset: at, reason };
    let fixed = body
        .get(at..at.saturating_add(RECORD_OVERHEAD_BYTES))
        .ok_or(bad("record header runs past the body"))?;
    let topic_len = fixed[17] as usize;
    let payload_len = u32::from_le_bytes(fixed[18..22].try_into().expect("4 bytes")) as usize;
    if topic_len == 0 {
        return Err(bad("empty topic"));
    }
    if payload_len > MAX_PAYLOAD_BYTES {
        return Err(bad("payload longer than the hard limit"));
    }
    let payload_start = at + RECORD_OVERHEAD_BYTES + topic_len;
    let end = payload_start + payload_len;
    if end > body.len() {
        return Err(bad("record runs past the body"));
    }
    Ok((payload_start, end))
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            if self.offset != self.body.len() {
                self.offset = self.body.len();
                return Some(Err(CodecError::BadRecord {
                    offset: self.offset,
                    reason: "bytes after the last record",
                }));
            }
            return None;
        }
        self.remaining -= 1;
        match self.decode_one() {
            Ok(record) => Some(Ok(record)),
            Err(err) => {
                self.remaining = 0;
                self.offset = self.body.len();
                Some(Err(err))
            }
        }
    }
}

/// Decodes a byte slice holding whole batches, one after another.
///
/// Used on buffers (a segment read into memory, a network body); file
/// readers parse headers themselves and use [`BatchHeader`] and
/// [`RecordIter`] directly.
#[derive(Debug)]
pub struct BatchDecoder<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> BatchDecoder<'a> {
    /// A decoder of `bytes` from its first byte.
    pub fn new(bytes: &'a [u8]) -> Self {
        BatchDecoder { bytes, offset: 0 }
    }

    /// Offset of the first byte not yet decoded: after an error, the length
    /// of the intact prefix.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The next batch's header and verified body, or `None` at the end.
    pub fn next_batch(&mut self) -> Option<Result<(BatchHeader, &'a [u8]), CodecError>> {
        let rest = &self.bytes[self.offset..];
        if rest.is_empty() {
            return None;
        }
        let header = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => return Some(Err(e)),
        };
        let Some(body) = rest.get(BATCH_HEADER_BYTES..header.frame_len()) else {
            return Some(Err(CodecError::Truncated {
                needed: header.frame_len(),
                have: rest.len(),
            }));
        };
        if let Err(e) = header.verify(body) {
            return Some(Err(e));
        }
        self.offset += header.frame_len();
        Some(Ok((header, body)))
    }

    /// Decode every record of every batch, stopping at the first error.
    pub fn for_each_record(&mut self, mut f: impl FnMut(Record<'a>)) -> Result<u64, CodecError> {
        let mut n = 0;
        while let Some(batch) = self.next_batch() {
            let (header, body) = batch?;
            let mut found = 0;
            for record in RecordIter::new(body, header.count) {
                f(record?);
                found += 1;
            }
            if found != header.count {
                return Err(CodecError::CountMismatch {
                    declared: header.count,
                    found,
                });
            }
            n += found as u64;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::OwnedRecord;
    use proptest::prelude::*;

    fn arb_record() -> impl Strategy<Value = OwnedRecord> {
        (
            any::<u128>(),
            any::<u8>(),
            proptest::collection::vec(33u8..127, 1..12),
            proptest::collection::vec(
                any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
                0..64,
            ),
        )
            .prop_map(|(id, flags, topic, payload)| OwnedRecord {
                id: Ulid(id),
                flags,
                topic,
                payload,
            })
    }

    fn encode(batches: &[Vec<OwnedRecord>]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = BatchEncoder::new();
        for batch in batches {
            enc.begin();
            for r in batch {
                enc.push(r.as_record());
            }
            out.extend_from_slice(enc.finish());
        }
        out
    }

    proptest! {
        #[test]
        fn batches_round_trip(batches in proptest::collection::vec(proptest::collection::vec(arb_record(), 0..8), 0..6)) {
            let bytes = encode(&batches);
            let mut got = Vec::new();
            let n = BatchDecoder::new(&bytes).for_each_record(|r| got.push(r.to_owned_record())).unwrap();
            let want: Vec<_> = batches.concat();
            prop_assert_eq!(n as usize, want.len());
            prop_assert_eq!(got, want);
        }

        #[test]
        fn a_cut_anywhere_keeps_every_whole_batch_before_it(
            batches in proptest::collection::vec(proptest::collection::vec(arb_record(), 1..4), 1..5),
            cut in any::<proptest::sample::Index>(),
        ) {
            let bytes = encode(&batches);
            let cut = cut.index(bytes.len());
            let mut decoder = BatchDecoder::new(&bytes[..cut]);
            let mut got = 0usize;
            while let Some(Ok((h, _))) = decoder.next_batch() { got += h.count as usize; }
            // Count the batches that fit wholly before the cut.
            let mut want = 0usize;
            let mut end = 0usize;
            for b in &batches {
                let frame: usize = BATCH_HEADER_BYTES + b.iter().map(|r| RECORD_OVERHEAD_BYTES + r.topic.len() + r.payload.len()).sum::<usize>();
                end += frame;
                if end <= cut { want += b.len(); }
            }
            prop_assert_eq!(got, want);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = BatchDecoder::new(&bytes).for_each_record(|_| {});
        }

        #[test]
        fn a_flipped_bit_is_caught(batch in proptest::collection::vec(arb_record(), 1..4), bit in any::<proptest::sample::Index>()) {
            let mut bytes = encode(&[batch]);
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            let result = BatchDecoder::new(&bytes).for_each_record(drop);
            prop_assert!(result.is_err());
        }
    }

    #[test]
    fn take_finished_hands_over_the_batch_and_encodes_the_next_into_the_replacement() {
        let record = |id: u128| Record {
            id: Ulid(id),
            flags: 0,
            topic: b"t",
            payload: b"line",
        };
        let mut encoder = BatchEncoder::new();
        encoder.begin();
        encoder.push(record(1));
        let want = encoder.finish().to_vec();
        encoder.begin();
        encoder.push(record(1));
        let given = encoder.take_finished(b"old bytes".to_vec());
        assert_eq!(given, want);
        encoder.begin();
        encoder.push(record(2));
        let mut decoded = Vec::new();
        BatchDecoder::new(encoder.finish())
            .for_each_record(|r| decoded.push(r.id))
            .unwrap();
        assert_eq!(
            decoded,
            vec![Ulid(2)],
            "nothing of the replacement's bytes is left"
        );
    }
}
