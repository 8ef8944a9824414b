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
//! [`WireDecoder`] turns a byte stream into [`Event`]s with bounded memory:
//! a header line is at most [`MAX_HEADER_BYTES`]; a section over the limit
//! is skipped without being buffered. [`BatchBuilder`] encodes batches for
//! clients, and [`parse_reply`] reads the server's replies.

use std::fmt::Write as _;

use crate::MAX_TOPIC_BYTES;
use ulid::Ulid;

/// Longest header or command line accepted.
pub const MAX_HEADER_BYTES: usize = 1024;

/// When the server acknowledges a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Guarantee {
    None,
    Write,
    Fsync,
    Replicated,
}

impl Guarantee {
    pub fn name(self) -> &'static str {
        match self {
            Guarantee::None => "none",
            Guarantee::Write => "write",
            Guarantee::Fsync => "fsync",
            Guarantee::Replicated => "replicated",
        }
    }

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
    pub seq: u64,
    pub topic: Vec<u8>,
    pub count: u32,
    pub bytes: usize,
    /// `None` when the client sent `-`.
    pub crc: Option<u32>,
    pub guarantee: Guarantee,
    pub base: Option<Ulid>,
}

/// Limits the decoder enforces.
#[derive(Debug, Clone, Copy)]
pub struct WireLimits {
    pub max_batch_bytes: usize,
    pub max_batch_records: u32,
}

impl Default for WireLimits {
    fn default() -> Self {
        WireLimits {
            max_batch_bytes: 16 << 20,
            max_batch_records: 100_000,
        }
    }
}

/// What the decoder found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole batch whose CRC (if given) matched. Records are not yet
    /// parsed: use [`parse_section`].
    Batch {
        header: BatchHeader,
        section: &'a [u8],
    },
    Ping,
    /// A batch or command was rejected. `fatal` means the framing is lost
    /// and the connection must close after replying.
    Error {
        seq: Option<u64>,
        reason: String,
        /// A short, bounded label for metrics.
        kind: &'static str,
        fatal: bool,
    },
}

#[derive(Debug)]
enum State {
    Header,
    Section(BatchHeader),
    /// Throwing away the section of a rejected batch.
    Skip {
        remaining: usize,
    },
    /// A fatal error was reported; nothing more is decoded.
    Dead,
}

/// Decodes the client side of the batch protocol.
#[derive(Debug)]
pub struct WireDecoder {
    limits: WireLimits,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    read_chunk: usize,
    state: State,
}

impl WireDecoder {
    pub fn new(limits: WireLimits, read_chunk: usize) -> WireDecoder {
        WireDecoder {
            limits,
            buf: Vec::new(),
            start: 0,
            end: 0,
            read_chunk: read_chunk.max(64),
            state: State::Header,
        }
    }

    /// Room to read into (at least `read_chunk` bytes).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 && (self.start == self.end || self.buf.len() - self.end < self.read_chunk)
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let want = self.end + self.read_chunk;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        &mut self.buf[self.end..]
    }

    pub fn filled(&mut self, n: usize) {
        assert!(
            self.end + n <= self.buf.len(),
            "filled past the spare buffer"
        );
        self.end += n;
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Whether input ended cleanly (no partial command pending).
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header | State::Dead) && self.start == self.end
    }

    /// The next event, or `None` when more input is needed.
    pub fn next_event(&mut self) -> Option<Event<'_>> {
        loop {
            match &mut self.state {
                State::Dead => return None,
                State::Skip { remaining } => {
                    let take = (*remaining).min(self.end - self.start);
                    self.start += take;
                    *remaining -= take;
                    if *remaining > 0 {
                        return None;
                    }
                    self.state = State::Header;
                }
                State::Header => {
                    let pending = &self.buf[self.start..self.end];
                    let Some(nl) =
                        memchr::memchr(b'\n', &pending[..pending.len().min(MAX_HEADER_BYTES + 1)])
                    else {
                        if pending.len() > MAX_HEADER_BYTES {
                            self.state = State::Dead;
                            return Some(Event::Error {
                                seq: None,
                                reason: format!(
                                    "bad header: no newline in the first {MAX_HEADER_BYTES} bytes"
                                ),
                                kind: "bad_header",
                                fatal: true,
                            });
                        }
                        return None;
                    };
                    let line = &pending[..nl];
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    let consumed = nl + 1;
                    let parsed = parse_command(line, &self.limits);
                    self.start += consumed;
                    match parsed {
                        Command::Empty => continue,
                        Command::Ping => return Some(Event::Ping),
                        Command::Batch(header) => self.state = State::Section(header),
                        Command::Reject {
                            header,
                            reason,
                            kind,
                        } => {
                            self.state = State::Skip {
                                remaining: header.bytes,
                            };
                            return Some(Event::Error {
                                seq: Some(header.seq),
                                reason,
                                kind,
                                fatal: false,
                            });
                        }
                        Command::Fatal { reason } => {
                            self.state = State::Dead;
                            return Some(Event::Error {
                                seq: None,
                                reason,
                                kind: "bad_header",
                                fatal: true,
                            });
                        }
                    }
                }
                State::Section(header) => {
                    if self.end - self.start < header.bytes {
                        // Make sure the whole section can fit.
                        let need = header.bytes;
                        if self.buf.len() - self.start < need {
                            self.buf.copy_within(self.start..self.end, 0);
                            self.end -= self.start;
                            self.start = 0;
                            if self.buf.len() < need {
                                self.buf.resize(need, 0);
                            }
                        }
                        return None;
                    }
                    let State::Section(header) = std::mem::replace(&mut self.state, State::Header)
                    else {
                        unreachable!("matched above");
                    };
                    let section = &self.buf[self.start..self.start + header.bytes];
                    self.start += header.bytes;
                    if let Some(crc) = header.crc {
                        let computed = crc32fast::hash(section);
                        if computed != crc {
                            return Some(Event::Error {
                                seq: Some(header.seq),
                                reason: format!(
                                    "crc mismatch: header says {crc:08x}, records hash to {computed:08x}"
                                ),
                                kind: "crc",
                                fatal: false,
                            });
                        }
                    }
                    return Some(Event::Batch { header, section });
                }
            }
        }
    }
}

enum Command {
    Empty,
    Ping,
    Batch(BatchHeader),
    /// Framing is intact (the section length is known) but the batch is refused.
    Reject {
        header: BatchHeader,
        reason: String,
        kind: &'static str,
    },
    Fatal {
        reason: String,
    },
}

fn parse_command(line: &[u8], limits: &WireLimits) -> Command {
    let Ok(line) = std::str::from_utf8(line) else {
        return Command::Fatal {
            reason: "bad header: not UTF-8".into(),
        };
    };
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    match fields.first().copied() {
        None => Command::Empty,
        Some("PING") if fields.len() == 1 => Command::Ping,
        Some("BATCH") => parse_batch_header(&fields),
        Some(other) => Command::Fatal {
            reason: format!(
                "bad header: unknown command {:?}; use BATCH or PING",
                truncate(other)
            ),
        },
    }
    .and_limits(limits)
}

impl Command {
    fn and_limits(self, limits: &WireLimits) -> Command {
        let Command::Batch(header) = self else {
            return self;
        };
        if header.bytes > limits.max_batch_bytes {
            let reason = format!(
                "batch of {} bytes exceeds the limit of {}",
                header.bytes, limits.max_batch_bytes
            );
            return Command::Reject {
                header,
                reason,
                kind: "too_large",
            };
        }
        if header.count > limits.max_batch_records {
            let reason = format!(
                "batch of {} records exceeds the limit of {}",
                header.count, limits.max_batch_records
            );
            return Command::Reject {
                header,
                reason,
                kind: "too_many_records",
            };
        }
        if header.count == 0 {
            return Command::Reject {
                header,
                reason: "batch has no records".into(),
                kind: "empty",
            };
        }
        Command::Batch(header)
    }
}

fn truncate(text: &str) -> &str {
    let mut end = text.len().min(32);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn parse_batch_header(fields: &[&str]) -> Command {
    let fatal = |what: &str| Command::Fatal {
        reason: format!(
            "bad header: {what}; expected BATCH <seq> <topic> <count> <bytes> <crc|-> <guarantee> [<base-ulid>]"
        ),
    };
    if !(7..=8).contains(&fields.len()) {
        return fatal(&format!("{} fields", fields.len()));
    }
    let Ok(seq) = fields[1].parse::<u64>() else {
        return fatal("seq is not a number");
    };
    // The section length is what keeps the framing; without it nothing can
    // be skipped.
    let Ok(bytes) = fields[4].parse::<usize>() else {
        return fatal("bytes is not a number");
    };
    let mut header = BatchHeader {
        seq,
        topic: fields[2].as_bytes().to_vec(),
        count: 0,
        bytes,
        crc: None,
        guarantee: Guarantee::Write,
        base: None,
    };
    let reject = |header: BatchHeader, reason: String, kind| Command::Reject {
        header,
        reason,
        kind,
    };
    match fields[3].parse::<u32>() {
        Ok(count) => header.count = count,
        Err(_) => {
            return reject(
                header,
                format!(
                    "count {:?} is not a number up to 4294967295",
                    truncate(fields[3])
                ),
                "bad_count",
            );
        }
    }
    if !crate::is_valid_topic(&header.topic) || header.topic.len() > MAX_TOPIC_BYTES {
        return reject(
            header,
            "topic must be 1 to 255 printable ASCII bytes".into(),
            "bad_topic",
        );
    }
    header.crc = match fields[5] {
        "-" => None,
        hex if hex.len() == 8 => match u32::from_str_radix(hex, 16) {
            Ok(crc) => Some(crc),
            Err(_) => {
                return reject(
                    header,
                    "crc must be 8 hex digits or -".into(),
                    "bad_crc_field",
                );
            }
        },
        _ => {
            return reject(
                header,
                "crc must be 8 hex digits or -".into(),
                "bad_crc_field",
            );
        }
    };
    match Guarantee::parse(fields[6]) {
        Some(g) => header.guarantee = g,
        None => {
            return reject(
                header,
                format!(
                    "unknown guarantee {:?}: use none, write, fsync or replicated",
                    truncate(fields[6])
                ),
                "bad_guarantee",
            );
        }
    }
    if let Some(base) = fields.get(7) {
        match Ulid::from_string(base) {
            Ok(base) => header.base = Some(base),
            Err(_) => {
                return reject(
                    header,
                    format!("base {:?} is not a ULID", truncate(base)),
                    "bad_base",
                );
            }
        }
    }
    Command::Batch(header)
}

/// Parse a verified section into `(time_ms, payload)` records, exactly
/// `count` of them filling it.
pub fn parse_section<'a>(
    section: &'a [u8],
    count: u32,
    mut record: impl FnMut(Option<u64>, &'a [u8]),
) -> Result<(), String> {
    let mut at = 0usize;
    for i in 0..count {
        let rest = &section[at..];
        let bad = |what: &str| format!("malformed record {i} at byte {at}: {what}");
        let sp1 =
            memchr::memchr(b' ', &rest[..rest.len().min(24)]).ok_or_else(|| bad("no length"))?;
        let len: usize = std::str::from_utf8(&rest[..sp1])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("length is not a number"))?;
        let after_len = &rest[sp1 + 1..];
        let sp2 = memchr::memchr(b' ', &after_len[..after_len.len().min(24)])
            .ok_or_else(|| bad("no time"))?;
        let time = match &after_len[..sp2] {
            b"-" => None,
            digits => Some(
                std::str::from_utf8(digits)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| bad("time is not - or Unix milliseconds"))?,
            ),
        };
        let payload_start = sp1 + 1 + sp2 + 1;
        let payload_end = payload_start
            .checked_add(len)
            .filter(|&end| end < rest.len())
            .ok_or_else(|| bad("length runs past the batch"))?;
        if rest[payload_end] != b'\n' {
            return Err(bad("payload is not followed by a newline"));
        }
        let payload = &rest[payload_start..payload_end];
        if memchr::memchr(b'\n', payload).is_some() {
            return Err(bad("payload contains a newline"));
        }
        record(time, payload);
        at += payload_end + 1;
    }
    if at != section.len() {
        return Err(format!(
            "batch declares {count} records but has {} bytes after them",
            section.len() - at
        ));
    }
    Ok(())
}

/// Builds batches for a client, in reused buffers.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    section: Vec<u8>,
    count: u32,
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn clear(&mut self) {
        self.section.clear();
        self.count = 0;
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn section_len(&self) -> usize {
        self.section.len()
    }

    /// Add a record; `payload` must not contain a newline.
    pub fn push(&mut self, time_ms: Option<u64>, payload: &[u8]) {
        debug_assert!(memchr::memchr(b'\n', payload).is_none());
        let _ = write!(Fmt(&mut self.section), "{} ", payload.len());
        match time_ms {
            Some(t) => {
                let _ = write!(Fmt(&mut self.section), "{t} ");
            }
            None => self.section.extend_from_slice(b"- "),
        }
        self.section.extend_from_slice(payload);
        self.section.push(b'\n');
        self.count += 1;
    }

    /// The whole batch (header and section) appended to `out`.
    pub fn encode(
        &self,
        out: &mut Vec<u8>,
        seq: u64,
        topic: &str,
        guarantee: Guarantee,
        base: Option<Ulid>,
    ) {
        let crc = crc32fast::hash(&self.section);
        let _ = write!(
            Fmt(out),
            "BATCH {seq} {topic} {} {} {crc:08x} {}",
            self.count,
            self.section.len(),
            guarantee.name()
        );
        if let Some(base) = base {
            let _ = write!(Fmt(out), " {base}");
        }
        out.push(b'\n');
        out.extend_from_slice(&self.section);
    }
}

impl BatchBuilder {
    /// Close the batch: reserve its ids `base ..= base + count - 1` in
    /// `ids` (so the next batch starts above them), encode it with `base`,
    /// and clear the builder for the next batch. Returns the bytes to send
    /// (and to send again, unchanged, after a failure) and the record count.
    pub fn seal(
        &mut self,
        ids: &mut crate::IdGenerator,
        base: Ulid,
        seq: u64,
        topic: &str,
        guarantee: Guarantee,
    ) -> (Vec<u8>, u32) {
        let count = self.count;
        ids.skip_to(Ulid(base.0 + count.max(1) as u128 - 1));
        let mut wire = Vec::with_capacity(self.section.len() + 128);
        self.encode(&mut wire, seq, topic, guarantee, Some(base));
        self.clear();
        (wire, count)
    }
}

/// `fmt::Write` into a byte vector.
struct Fmt<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ok { seq: u64, first: Ulid, last: Ulid },
    Err { seq: Option<u64>, reason: String },
    Pong,
}

/// Parse one reply line (without its newline).
pub fn parse_reply(line: &[u8]) -> Option<Reply> {
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut fields = line.splitn(3, ' ');
    match fields.next()? {
        "OK" => {
            let seq = fields.next()?.parse().ok()?;
            let mut ids = fields.next()?.split(' ');
            let first = Ulid::from_string(ids.next()?).ok()?;
            let last = Ulid::from_string(ids.next()?).ok()?;
            Some(Reply::Ok { seq, first, last })
        }
        "ERR" => {
            let seq = match fields.next()? {
                "-" => None,
                n => Some(n.parse().ok()?),
            };
            Some(Reply::Err {
                seq,
                reason: fields.next().unwrap_or("").to_string(),
            })
        }
        "PONG" => Some(Reply::Pong),
        _ => None,
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
    use proptest::prelude::*;

    fn decode_all(bytes: &[u8], chunk: usize) -> Vec<String> {
        let mut decoder = WireDecoder::new(
            WireLimits {
                max_batch_bytes: 1000,
                max_batch_records: 50,
            },
            64,
        );
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            let mut piece = piece;
            while !piece.is_empty() {
                let spare = decoder.spare();
                let n = spare.len().min(piece.len());
                spare[..n].copy_from_slice(&piece[..n]);
                decoder.filled(n);
                piece = &piece[n..];
                while let Some(event) = decoder.next_event() {
                    out.push(match event {
                        Event::Batch { header, section } => {
                            let mut recs = Vec::new();
                            match parse_section(section, header.count, |t, p| {
                                recs.push(format!("{t:?}:{}", String::from_utf8_lossy(p)))
                            }) {
                                Ok(()) => format!("batch {} {}", header.seq, recs.join(",")),
                                Err(e) => format!("bad {} {e}", header.seq),
                            }
                        }
                        Event::Ping => "ping".into(),
                        Event::Error {
                            seq, kind, fatal, ..
                        } => format!("err {seq:?} {kind} {fatal}"),
                    });
                }
            }
        }
        out
    }

    fn batch(seq: u64, records: &[(Option<u64>, &str)]) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for (t, p) in records {
            b.push(*t, p.as_bytes());
        }
        let mut out = Vec::new();
        b.encode(&mut out, seq, "app", Guarantee::Fsync, None);
        out
    }

    #[test]
    fn batches_pings_and_errors_keep_the_framing() {
        let mut input = batch(1, &[(Some(5), "hello"), (None, "wor ld")]);
        input.extend_from_slice(b"PING\n");
        // A CRC mismatch: the section is consumed, the next batch decodes.
        let mut bad = batch(2, &[(None, "x")]);
        let at = bad.len() - 2;
        bad[at] = b'y';
        input.extend_from_slice(&bad);
        // Too large: skipped without buffering.
        input.extend_from_slice(b"BATCH 3 app 1 5000 - write\n");
        input.extend_from_slice(&vec![b'z'; 5000]);
        // A length past the end of the section.
        input.extend_from_slice(b"BATCH 4 app 1 8 - write\n99 - abc\n");
        input.extend_from_slice(&batch(5, &[(None, "after")]));
        input.extend_from_slice(b"NONSENSE\n");
        input.extend_from_slice(&batch(6, &[(None, "never")]));
        for chunk in [1, 3, 17, 4096] {
            assert_eq!(
                decode_all(&input, chunk),
                [
                    "batch 1 Some(5):hello,None:wor ld",
                    "ping",
                    "err Some(2) crc false",
                    "err Some(3) too_large false",
                    "bad 4 malformed record 0 at byte 0: length runs past the batch",
                    "batch 5 None:after",
                    "err None bad_header true",
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_huge_count_is_refused_and_the_connection_goes_on() {
        let mut input = b"BATCH 9 app 4000000000 4 - write\nabcd".to_vec();
        input.extend_from_slice(&batch(10, &[(None, "ok")]));
        assert_eq!(
            decode_all(&input, 7),
            ["err Some(9) too_many_records false", "batch 10 None:ok"]
        );
    }

    #[test]
    fn replies_parse() {
        let a = Ulid::from_parts(1, 2);
        let line = format!("OK 7 {a} {a}");
        assert_eq!(
            parse_reply(line.as_bytes()),
            Some(Reply::Ok {
                seq: 7,
                first: a,
                last: a
            })
        );
        assert_eq!(
            parse_reply(b"ERR - bad header: x"),
            Some(Reply::Err {
                seq: None,
                reason: "bad header: x".into()
            })
        );
        assert_eq!(
            parse_reply(b"ERR 3 crc mismatch"),
            Some(Reply::Err {
                seq: Some(3),
                reason: "crc mismatch".into()
            })
        );
        assert_eq!(parse_reply(b"PONG"), Some(Reply::Pong));
        assert_eq!(parse_reply(b"OK x"), None);
    }

    #[test]
    fn record_ids_are_deterministic_and_increase() {
        let base = Ulid::from_parts(1000, 5);
        assert_eq!(record_id(base, 0, None), base);
        assert!(record_id(base, 1, None) > base);
        assert_eq!(record_id(base, 3, Some(2000)).timestamp_ms(), 2000);
    }

    proptest! {
        #[test]
        fn built_batches_round_trip(records in proptest::collection::vec((proptest::option::of(0u64..1u64 << 47), proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..40)), 1..20), chunk in 1usize..=64) {
            let mut b = BatchBuilder::new();
            for (t, p) in &records { b.push(*t, p); }
            let mut bytes = Vec::new();
            b.encode(&mut bytes, 42, "t", Guarantee::Write, Some(Ulid::from_parts(9, 9)));
            let mut decoder = WireDecoder::new(WireLimits::default(), 64);
            let mut got = Vec::new();
            for piece in bytes.chunks(chunk) {
                // `spare` offers at least the 64-byte read chunk.
                let spare = decoder.spare();
                spare[..piece.len()].copy_from_slice(piece);
                decoder.filled(piece.len());
                while let Some(event) = decoder.next_event() {
                    let Event::Batch { header, section } = event else { panic!("{event:?}") };
                    prop_assert_eq!(header.base, Some(Ulid::from_parts(9, 9)));
                    parse_section(section, header.count, |t, p| got.push((t, p.to_vec()))).unwrap();
                }
            }
            prop_assert_eq!(got, records);
            prop_assert!(decoder.at_boundary());
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_memory_stays_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let _ = decode_all(&bytes, 13);
        }
    }
}
