//! The framed node-to-node query response (`format=frames`).
//!
//! A node that answers a coordinator's `scope=local` query streams frames;
//! the coordinator decodes each node's body with a [`FrameDecoder`] and
//! merges the records with [`crate::gather::NodeMerge`].
//!
//! ```text
//! frame   = kind:u8 | len:u32 LE | crc:u32 LE | payload[len]
//! crc     = CRC-32 (IEEE, crc32fast) of kind, the 4 len bytes, payload
//! kind 1  records:  repeated { id:u128 BE | flags:u8 | topic_len:u16 LE | topic
//!                              | payload_len:u32 LE | payload }
//! kind 2  progress: id:u128 BE -- every record with id <= this was sent
//!                  (>= in a newest-first query, `direction=backward`)
//! kind 3  stats:    a JSON object (UTF-8); the last frame of a good stream
//! kind 4  error:    a UTF-8 message; the stream failed (and ends)
//! kind 5  lagged:   count:u64 LE -- live tail only: this many records were
//!                   dropped because the reader fell behind the ring
//! ```
//!
//! Limits: a payload is at most [`MAX_FRAME_PAYLOAD`] bytes (a decoder
//! rejects a larger one from its header, before it buffers it); a topic is
//! 1 to [`MAX_TOPIC_BYTES`] bytes. Nothing may follow a stats or error
//! frame. A stream that ends without one of them is truncated: the node
//! failed (reason `truncated`).
//!
//! Decoding allocates per frame, never per record: a records frame keeps
//! its payload as one [`Bytes`] and [`RecordsFrame::iter`] lends
//! [`Record`]s out of it. Its structure is checked once, when it is
//! decoded, so iterating cannot fail.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};
use sluice_record::{MAX_TOPIC_BYTES, Record, Ulid};

/// Largest frame payload: 8 MiB.
pub const MAX_FRAME_PAYLOAD: usize = 8 << 20;
/// Bytes of a frame header: kind, length and CRC.
pub const FRAME_HEADER_BYTES: usize = 9;
/// Bytes a record adds to its topic and payload in a records frame.
pub const FRAME_RECORD_OVERHEAD: usize = 23;
/// The records frame size at which a [`FrameWriter`] hands bytes out: 64 KiB.
pub const DEFAULT_FRAME_TARGET: usize = 64 << 10;
/// Room a [`FrameWriter`] reserves past its target when it opens a frame,
/// for the record that takes the frame past it: a larger one grows the
/// buffer once.
pub const FRAME_SLACK: usize = 16 << 10;

/// The bytes a [`FrameWriter`] with this target reserves when it opens a
/// records frame of small records: the header, the target and
/// [`FRAME_SLACK`].
pub const fn frame_capacity(target: usize) -> usize {
    FRAME_HEADER_BYTES + target + FRAME_SLACK
}

const KIND_RECORDS: u8 = 1;
const KIND_PROGRESS: u8 = 2;
const KIND_STATS: u8 = 3;
const KIND_ERROR: u8 = 4;
const KIND_LAGGED: u8 = 5;

/// Why bytes are not a good frame stream, or a frame cannot be written.
///
/// Offsets are byte positions in the stream (0 = its first byte) of the
/// frame at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The kind byte is none of 1 to 5.
    #[error("bad frame kind {kind} at stream offset {offset} (expected 1 to 5)")]
    BadKind {
        /// The kind byte read.
        kind: u8,
        /// Where the frame starts.
        offset: u64,
    },
    /// The header declares a payload over [`MAX_FRAME_PAYLOAD`].
    #[error(
        "frame at stream offset {offset} declares a payload of {len} bytes, more than the limit of {limit}"
    )]
    TooLarge {
        /// The declared payload length.
        len: u32,
        /// [`MAX_FRAME_PAYLOAD`].
        limit: usize,
        /// Where the frame starts.
        offset: u64,
    },
    /// The frame does not hash to its header's CRC.
    #[error(
        "frame checksum mismatch at stream offset {offset}: stored {stored:#010x}, computed {computed:#010x}"
    )]
    Checksum {
        /// Where the frame starts.
        offset: u64,
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the bytes read.
        computed: u32,
    },
    /// A records payload whose checksum holds does not parse.
    #[error("malformed records frame at stream offset {offset}: {reason} at payload offset {at}")]
    BadRecords {
        /// Where the frame starts (0 for a payload given to
        /// [`RecordsFrame::new`]).
        offset: u64,
        /// Where the bad record starts in the payload.
        at: usize,
        /// What is wrong, such as `"empty topic"`.
        reason: &'static str,
    },
    /// A progress payload is not 16 bytes.
    #[error("malformed progress frame at stream offset {offset}: {len} bytes, expected 16")]
    BadProgress {
        /// Where the frame starts.
        offset: u64,
        /// The payload length.
        len: usize,
    },
    /// A lagged payload is not 8 bytes.
    #[error("malformed lagged frame at stream offset {offset}: {len} bytes, expected 8")]
    BadLagged {
        /// Where the frame starts.
        offset: u64,
        /// The payload length.
        len: usize,
    },
    /// A stats payload is not a JSON object.
    #[error("malformed stats frame at stream offset {offset}: {reason}")]
    BadStats {
        /// Where the frame starts.
        offset: u64,
        /// The JSON parser's message.
        reason: String,
    },
    /// Bytes follow the stats or error frame that ended the stream.
    #[error("bytes after the last frame at stream offset {offset}")]
    AfterLast {
        /// Where the extra bytes start.
        offset: u64,
    },
    /// The stream ended part way through a frame.
    #[error(
        "stream ended inside the frame at stream offset {offset}: have {have} of its {needed} bytes"
    )]
    EndedInsideFrame {
        /// Where the frame starts.
        offset: u64,
        /// Bytes of the frame received.
        have: usize,
        /// Bytes of the frame (its header alone while the header is cut).
        needed: usize,
    },
    /// The stream ended between frames, before a stats or error frame.
    #[error("stream ended at offset {offset} without a stats frame")]
    EndedWithoutStats {
        /// The stream's length.
        offset: u64,
    },
    /// A record cannot go into a records frame (writing side).
    #[error("record {id} cannot be framed: {reason}")]
    Unframeable {
        /// The record's id.
        id: Ulid,
        /// Why, such as `"larger than a frame"`.
        reason: &'static str,
    },
    /// A stats object serialises to more than [`MAX_FRAME_PAYLOAD`]
    /// (writing side).
    #[error("stats of {len} bytes exceed the frame limit of {limit}")]
    StatsTooLarge {
        /// Bytes of the serialised object.
        len: usize,
        /// [`MAX_FRAME_PAYLOAD`].
        limit: usize,
    },
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Records, in the order the node sent them.
    Records(RecordsFrame),
    /// Every record with an id up to and including this one was sent.
    Progress(Ulid),
    /// The node's query stats; the stream is complete.
    Stats(Map<String, Value>),
    /// The node's query failed with this message (invalid UTF-8 replaced);
    /// the records before it are valid.
    Error(String),
    /// Live tail only: the node dropped this many matching-or-not records
    /// because the reader fell behind its ring; the stream goes on.
    Lagged(u64),
}

/// The payload of a records frame: checked once, then read without
/// allocating. Cloning shares the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsFrame {
    payload: Bytes,
    count: usize,
    first: Option<Ulid>,
    last: Option<Ulid>,
    increasing: bool,
}

impl RecordsFrame {
    /// Check `payload` (a records frame's payload, header excluded) and wrap
    /// it; `Err` is [`FrameError::BadRecords`] with offset 0.
    pub fn new(payload: Bytes) -> Result<RecordsFrame, FrameError> {
        Self::parse(payload, 0)
    }

    /// A frame holding `records`, in the order given (for an in-process
    /// node and for tests).
    pub fn from_records<'a>(
        records: impl IntoIterator<Item = Record<'a>>,
    ) -> Result<RecordsFrame, FrameError> {
        let mut buf = BytesMut::new();
        for record in records {
            let len = record_len(&record)?;
            if buf.len() + len > MAX_FRAME_PAYLOAD {
                return Err(FrameError::Unframeable {
                    id: record.id,
                    reason: "the records are larger than a frame",
                });
            }
            put_record(&mut buf, &record);
        }
        Self::new(buf.freeze())
    }

    fn parse(payload: Bytes, offset: u64) -> Result<RecordsFrame, FrameError> {
        let mut at = 0;
        let mut count = 0;
        let mut first = None;
        let mut last: Option<Ulid> = None;
        let mut increasing = true;
        while at < payload.len() {
            let (record, next) = decode_at(&payload, at)
                .map_err(|reason| FrameError::BadRecords { offset, at, reason })?;
            if last.is_some_and(|l| record.id <= l) {
                increasing = false;
            }
            first.get_or_insert(record.id);
            last = Some(record.id);
            count += 1;
            at = next;
        }
        Ok(RecordsFrame {
            payload,
            count,
            first,
            last,
            increasing,
        })
    }

    /// Records in the frame.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the frame holds no record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The first record's id.
    pub fn first_id(&self) -> Option<Ulid> {
        self.first
    }

    /// The last record's id.
    pub fn last_id(&self) -> Option<Ulid> {
        self.last
    }

    /// Whether the ids strictly increase, as a node's stream must.
    pub fn is_strictly_increasing(&self) -> bool {
        self.increasing
    }

    /// The payload bytes.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The records, borrowed from the payload.
    pub fn iter(&self) -> RecordsIter<'_> {
        RecordsIter {
            payload: &self.payload,
            at: 0,
        }
    }

    /// The record at payload offset `at` and the offset after it; `at`
    /// must be a record boundary (0, or an offset this returned).
    pub(crate) fn record_at(&self, at: usize) -> Option<(Record<'_>, usize)> {
        decode_at(&self.payload, at).ok()
    }

    /// The id of the record at payload offset `at` (a record boundary).
    pub(crate) fn id_at(&self, at: usize) -> Option<Ulid> {
        let bytes = self.payload.get(at..at + 16)?;
        Some(Ulid(u128::from_be_bytes(bytes.try_into().ok()?)))
    }
}

impl<'a> IntoIterator for &'a RecordsFrame {
    type Item = Record<'a>;
    type IntoIter = RecordsIter<'a>;

    fn into_iter(self) -> RecordsIter<'a> {
        self.iter()
    }
}

/// Iterates the records of a [`RecordsFrame`].
#[derive(Debug, Clone)]
pub struct RecordsIter<'a> {
    payload: &'a [u8],
    at: usize,
}

impl<'a> Iterator for RecordsIter<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        // The payload was checked when the frame was made: this only stops
        // at its end.
        let (record, next) = decode_at(self.payload, self.at).ok()?;
        self.at = next;
        Some(record)
    }
}

/// The record at `at` and the offset after it; `Err` says what is wrong.
fn decode_at(payload: &[u8], at: usize) -> Result<(Record<'_>, usize), &'static str> {
    let rest = payload.get(at..).unwrap_or_default();
    if rest.len() < 19 {
        return Err("record header runs past the payload");
    }
    let id = Ulid(u128::from_be_bytes(
        rest[0..16].try_into().expect("16 bytes"),
    ));
    let flags = rest[16];
    let topic_len = u16::from_le_bytes([rest[17], rest[18]]) as usize;
    if topic_len == 0 {
        return Err("empty topic");
    }
    if topic_len > MAX_TOPIC_BYTES {
        return Err("topic longer than 255 bytes");
    }
    let len_at = 19 + topic_len;
    let Some(len_bytes) = rest.get(len_at..len_at + 4) else {
        return Err("record runs past the payload");
    };
    let payload_len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
    let end = len_at + 4 + payload_len;
    if end > rest.len() {
        return Err("record runs past the payload");
    }
    Ok((
        Record {
            id,
            flags,
            topic: &rest[19..len_at],
            payload: &rest[len_at + 4..end],
        },
        at + end,
    ))
}

/// Bytes `record` takes in a records payload, or why it cannot go in one.
fn record_len(record: &Record<'_>) -> Result<usize, FrameError> {
    let unframeable = |reason| FrameError::Unframeable {
        id: record.id,
        reason,
    };
    if record.topic.is_empty() {
        return Err(unframeable("empty topic"));
    }
    if record.topic.len() > MAX_TOPIC_BYTES {
        return Err(unframeable("topic longer than 255 bytes"));
    }
    let len = FRAME_RECORD_OVERHEAD + record.topic.len() + record.payload.len();
    if len > MAX_FRAME_PAYLOAD {
        return Err(unframeable("larger than a frame"));
    }
    Ok(len)
}

fn put_record(out: &mut BytesMut, record: &Record<'_>) {
    out.put_u128(record.id.0);
    out.put_u8(record.flags);
    out.put_u16_le(record.topic.len() as u16);
    out.put_slice(record.topic);
    out.put_u32_le(record.payload.len() as u32);
    out.put_slice(record.payload);
}

fn checksum(kind: u8, len: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[kind]);
    hasher.update(&len.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Append a whole frame; `payload` is at most [`MAX_FRAME_PAYLOAD`].
fn put_frame(out: &mut BytesMut, kind: u8, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_FRAME_PAYLOAD);
    let len = payload.len() as u32;
    out.reserve(FRAME_HEADER_BYTES + payload.len());
    out.put_u8(kind);
    out.put_u32_le(len);
    out.put_u32_le(checksum(kind, len, payload));
    out.put_slice(payload);
}

/// Append a progress frame: every record with an id up to `id` was sent.
pub fn encode_progress(out: &mut BytesMut, id: Ulid) {
    put_frame(out, KIND_PROGRESS, &id.0.to_be_bytes());
}

/// Append a lagged frame: `records` were dropped for a slow tail reader.
pub fn encode_lagged(out: &mut BytesMut, records: u64) {
    put_frame(out, KIND_LAGGED, &records.to_le_bytes());
}

/// Append a stats frame holding `stats`.
pub fn encode_stats(out: &mut BytesMut, stats: &Map<String, Value>) -> Result<(), FrameError> {
    let json = serde_json::to_vec(stats).expect("a JSON map always serialises");
    if json.len() > MAX_FRAME_PAYLOAD {
        return Err(FrameError::StatsTooLarge {
            len: json.len(),
            limit: MAX_FRAME_PAYLOAD,
        });
    }
    put_frame(out, KIND_STATS, &json);
    Ok(())
}

/// Append an error frame; a message over [`MAX_FRAME_PAYLOAD`] is cut (at
/// a character boundary).
pub fn encode_error(out: &mut BytesMut, message: &str) {
    let mut end = message.len().min(MAX_FRAME_PAYLOAD);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    put_frame(out, KIND_ERROR, &message.as_bytes()[..end]);
}

/// Streams a node's answer: records are gathered into records frames in a
/// reused buffer, and bytes are handed out a frame of about
/// [`target`](Self::with_target) bytes at a time.
///
/// Whatever it returns is the next piece of the stream, in order: write
/// each out as is. [`progress`](Self::progress), [`stats`](Self::stats)
/// and [`error`](Self::error) first close the open records frame, so a
/// progress mark never overtakes the records it covers.
///
/// The buffer is a [`BytesMut`]: once the [`Bytes`] handed out are dropped
/// (written to the socket), the next frame reuses their allocation.
#[derive(Debug)]
pub struct FrameWriter {
    buf: BytesMut,
    /// Where the open records frame's header starts in `buf`.
    open_at: Option<usize>,
    target: usize,
}

impl Default for FrameWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameWriter {
    /// A writer that hands out records frames of [`DEFAULT_FRAME_TARGET`].
    pub fn new() -> Self {
        Self::with_target(DEFAULT_FRAME_TARGET)
    }

    /// A writer that closes a records frame once its payload reaches
    /// `target` bytes (at least 1, at most [`MAX_FRAME_PAYLOAD`]).
    pub fn with_target(target: usize) -> Self {
        FrameWriter {
            buf: BytesMut::new(),
            open_at: None,
            target: target.clamp(1, MAX_FRAME_PAYLOAD),
        }
    }

    /// Add `record` to the open records frame. Returns the bytes to send
    /// when the frame reached the target, `None` while it is filling. A
    /// record that cannot be framed (a topic of 0 or over 255 bytes, or a
    /// record over [`MAX_FRAME_PAYLOAD`]) is refused and nothing changes.
    pub fn push(&mut self, record: &Record<'_>) -> Result<Option<Bytes>, FrameError> {
        let len = record_len(record)?;
        if let Some(open_at) = self.open_at
            && self.buf.len() - open_at - FRAME_HEADER_BYTES + len > MAX_FRAME_PAYLOAD
        {
            self.close();
        }
        let open_at = match self.open_at {
            Some(at) => at,
            None => self.open(len),
        };
        put_record(&mut self.buf, record);
        if self.buf.len() - open_at - FRAME_HEADER_BYTES >= self.target {
            self.close();
            return Ok(Some(self.buf.split().freeze()));
        }
        Ok(None)
    }

    /// Open a records frame, its first record `first_len` bytes, with
    /// room for the whole frame: grown record by record from the little a
    /// sent frame leaves, its buffer was copied at every doubling and, past
    /// the allocator's threshold, mapped and unmapped once per frame, a
    /// page fault per page (BENCHMARKS.md, "2026-12-04, afternoon").
    /// Returns where the frame starts.
    fn open(&mut self, first_len: usize) -> usize {
        self.buf.reserve(frame_capacity(self.target.max(first_len)));
        let at = self.buf.len();
        self.buf.put_bytes(0, FRAME_HEADER_BYTES);
        self.open_at = Some(at);
        at
    }

    /// Whether records wait in an open frame.
    pub fn has_pending(&self) -> bool {
        self.open_at.is_some()
    }

    /// Close the open records frame and return what is unsent (`None`:
    /// nothing).
    pub fn flush(&mut self) -> Option<Bytes> {
        self.close();
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }

    /// The open records, then a progress frame for `id`.
    pub fn progress(&mut self, id: Ulid) -> Bytes {
        self.close();
        encode_progress(&mut self.buf, id);
        self.buf.split().freeze()
    }

    /// The open records, then a lagged frame (live tail).
    pub fn lagged(&mut self, records: u64) -> Bytes {
        self.close();
        encode_lagged(&mut self.buf, records);
        self.buf.split().freeze()
    }

    /// The open records, then the stats frame that ends the stream. On
    /// `Err` (stats too large) the records are still returned by the next
    /// call.
    pub fn stats(&mut self, stats: &Map<String, Value>) -> Result<Bytes, FrameError> {
        self.close();
        encode_stats(&mut self.buf, stats)?;
        Ok(self.buf.split().freeze())
    }

    /// The open records, then the error frame that ends the stream.
    pub fn error(&mut self, message: &str) -> Bytes {
        self.close();
        encode_error(&mut self.buf, message);
        self.buf.split().freeze()
    }

    /// Seal the open records frame, if any: fill in its header.
    fn close(&mut self) {
        let Some(open_at) = self.open_at.take() else {
            return;
        };
        let payload_at = open_at + FRAME_HEADER_BYTES;
        let len = (self.buf.len() - payload_at) as u32;
        let crc = checksum(KIND_RECORDS, len, &self.buf[payload_at..]);
        let header = &mut self.buf[open_at..payload_at];
        header[0] = KIND_RECORDS;
        header[1..5].copy_from_slice(&len.to_le_bytes());
        header[5..9].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Decodes a frame stream pushed in chunks of any size (as they come off
/// an HTTP body): [`push`](Self::push) a chunk, then take frames with
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`; at the end
/// of the body call [`finish`](Self::finish) and drain again, which then
/// reports a stream cut short.
///
/// A header is checked (kind, length limit) as soon as its 9 bytes are
/// in, before room for the payload is reserved, so a bad length never
/// makes it allocate more than [`MAX_FRAME_PAYLOAD`]. Memory is the frame
/// being received plus the chunk pushed last, as long as the caller drains
/// after each push. After an error every call returns that error.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    offset: u64,
    /// A stats or error frame was decoded: nothing may follow.
    ended: bool,
    /// The input is complete.
    finished: bool,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add the next bytes of the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// Mark the end of the stream: from now on [`next_frame`](Self::next_frame)
    /// returns the frames still buffered, then an error if the stream
    /// stopped inside a frame or before its stats or error frame, else
    /// `Ok(None)`.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Whether the stream ended with a stats or error frame.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Bytes of the stream decoded so far (the offset of the next frame).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next whole frame; `Ok(None)` when more bytes are needed (or,
    /// after [`finish`](Self::finish), when the stream ended well).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let got = self.decode();
        if let Err(err) = &got {
            self.failed = Some(err.clone());
            self.buf = BytesMut::new();
        }
        got
    }

    fn decode(&mut self) -> Result<Option<Frame>, FrameError> {
        let offset = self.offset;
        if self.ended && !self.buf.is_empty() {
            return Err(FrameError::AfterLast { offset });
        }
        if self.buf.len() < FRAME_HEADER_BYTES {
            return self.wait(FRAME_HEADER_BYTES);
        }
        let kind = self.buf[0];
        if !(KIND_RECORDS..=KIND_LAGGED).contains(&kind) {
            return Err(FrameError::BadKind { kind, offset });
        }
        let len = u32::from_le_bytes(self.buf[1..5].try_into().expect("4 bytes"));
        if len as usize > MAX_FRAME_PAYLOAD {
            return Err(FrameError::TooLarge {
                len,
                limit: MAX_FRAME_PAYLOAD,
                offset,
            });
        }
        let frame_len = FRAME_HEADER_BYTES + len as usize;
        if self.buf.len() < frame_len {
            return self.wait(frame_len);
        }
        let stored = u32::from_le_bytes(self.buf[5..9].try_into().expect("4 bytes"));
        let computed = checksum(kind, len, &self.buf[FRAME_HEADER_BYTES..frame_len]);
        if stored != computed {
            return Err(FrameError::Checksum {
                offset,
                stored,
                computed,
            });
        }
        let mut frame = self.buf.split_to(frame_len);
        frame.advance(FRAME_HEADER_BYTES);
        self.offset += frame_len as u64;
        let frame = match kind {
            KIND_RECORDS => Frame::Records(RecordsFrame::parse(frame.freeze(), offset)?),
            KIND_PROGRESS => {
                let id: [u8; 16] = frame[..].try_into().map_err(|_| FrameError::BadProgress {
                    offset,
                    len: frame.len(),
                })?;
                Frame::Progress(Ulid(u128::from_be_bytes(id)))
            }
            KIND_STATS => {
                self.ended = true;
                let stats = serde_json::from_slice(&frame).map_err(|e| FrameError::BadStats {
                    offset,
                    reason: e.to_string(),
                })?;
                Frame::Stats(stats)
            }
            KIND_LAGGED => {
                let count: [u8; 8] = frame[..].try_into().map_err(|_| FrameError::BadLagged {
                    offset,
                    len: frame.len(),
                })?;
                Frame::Lagged(u64::from_le_bytes(count))
            }
            _ => {
                self.ended = true;
                Frame::Error(String::from_utf8_lossy(&frame).into_owned())
            }
        };
        Ok(Some(frame))
    }

    /// More bytes are needed to make `needed` bytes of frame: wait for
    /// them, reserving room (at most a whole frame), or report the end.
    fn wait(&mut self, needed: usize) -> Result<Option<Frame>, FrameError> {
        let offset = self.offset;
        if self.finished {
            return if !self.buf.is_empty() {
                Err(FrameError::EndedInsideFrame {
                    offset,
                    have: self.buf.len(),
                    needed,
                })
            } else if !self.ended {
                Err(FrameError::EndedWithoutStats { offset })
            } else {
                Ok(None)
            };
        }
        self.buf.reserve(needed - self.buf.len());
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
