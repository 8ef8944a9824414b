//! The server side of the batch protocol: [`WireDecoder`] and
//! [`parse_section`].

use ulid::Ulid;

use super::{BatchHeader, Guarantee, MAX_HEADER_BYTES, WireError, WireLimits, error::excerpt};
use crate::{MAX_TOPIC_BYTES, ReadBuffer};

/// What the decoder found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole batch whose CRC (if given) matched. Records are not yet
    /// parsed: use [`parse_section`].
    Batch {
        /// The batch's header, its fields checked.
        header: BatchHeader,
        /// The record section, `header.bytes` long; lent until the
        /// decoder's next call.
        section: &'a [u8],
    },
    /// A `PING`: the reply is `PONG`.
    Ping,
    /// A batch or command was refused. If
    /// [`error.is_fatal()`](WireError::is_fatal) the framing is lost and the
    /// connection must close after replying; nothing more is decoded.
    Error {
        /// The refused batch's `seq`; `None` when the command could not be
        /// read (the reply is `ERR -`).
        seq: Option<u64>,
        /// Why; its text is the `ERR` reply's reason.
        error: WireError,
    },
}

#[derive(Debug)]
enum State {
    Header,
    Section(BatchHeader),
    /// Throwing away the section of a refused batch.
    Skip {
        remaining: usize,
    },
    /// A fatal error was reported; input is dropped as it arrives.
    Dead,
}

/// Decodes the client side of the batch protocol.
///
/// Between reads it holds at most one header line or one section (the
/// [`ReadBuffer`]'s bound is `max(MAX_HEADER_BYTES, max_batch_bytes)`), once
/// [`next_event`](Self::next_event) has returned `None`.
#[derive(Debug)]
pub struct WireDecoder {
    limits: WireLimits,
    buf: ReadBuffer,
    state: State,
}

impl WireDecoder {
    /// A decoder that offers `read_chunk` bytes (at least 64) per read.
    pub fn new(limits: WireLimits, read_chunk: usize) -> WireDecoder {
        let max_held = limits.max_batch_bytes.max(MAX_HEADER_BYTES);
        WireDecoder {
            limits,
            buf: ReadBuffer::new(read_chunk.max(64), max_held),
            state: State::Header,
        }
    }

    /// Room to read into (see [`ReadBuffer::spare`]).
    pub fn spare(&mut self) -> &mut [u8] {
        self.buf.spare()
    }

    /// `n` bytes were read into [`spare`](Self::spare) (see
    /// [`ReadBuffer::filled`]).
    pub fn filled(&mut self, n: usize) {
        self.buf.filled(n);
    }

    /// Bytes received but not yet decoded.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Whether input ended cleanly (no partial command pending).
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header | State::Dead) && self.buf.is_empty()
    }

    /// The next event, or `None` when more input is needed.
    pub fn next_event(&mut self) -> Option<Event<'_>> {
        loop {
            match &mut self.state {
                State::Dead => {
                    self.buf.clear();
                    return None;
                }
                State::Skip { remaining } => {
                    let take = (*remaining).min(self.buf.len());
                    self.buf.consume(take);
                    *remaining -= take;
                    if *remaining > 0 {
                        return None;
                    }
                    self.state = State::Header;
                }
                State::Header => {
                    let pending = self.buf.data();
                    let Some(nl) =
                        memchr::memchr(b'\n', &pending[..pending.len().min(MAX_HEADER_BYTES + 1)])
                    else {
                        if pending.len() > MAX_HEADER_BYTES {
                            return Some(self.fatal(WireError::HeaderTooLong));
                        }
                        return None;
                    };
                    let line = &pending[..nl];
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    let parsed = parse_command(line, &self.limits);
                    self.buf.consume(nl + 1);
                    match parsed {
                        Command::Empty => continue,
                        Command::Ping => return Some(Event::Ping),
                        Command::Batch(header) => self.state = State::Section(header),
                        Command::Reject { header, error } => {
                            self.state = State::Skip {
                                remaining: header.bytes,
                            };
                            return Some(Event::Error {
                                seq: Some(header.seq),
                                error,
                            });
                        }
                        Command::Fatal(error) => return Some(self.fatal(error)),
                    }
                }
                State::Section(header) => {
                    if self.buf.len() < header.bytes {
                        // Let the whole section arrive in place.
                        self.buf.reserve(header.bytes);
                        return None;
                    }
                    let State::Section(header) = std::mem::replace(&mut self.state, State::Header)
                    else {
                        unreachable!("matched above");
                    };
                    let section = self.buf.take(header.bytes);
                    if let Some(crc) = header.crc {
                        let computed = crc32fast::hash(section);
                        if computed != crc {
                            return Some(Event::Error {
                                seq: Some(header.seq),
                                error: WireError::CrcMismatch {
                                    header: crc,
                                    computed,
                                },
                            });
                        }
                    }
                    return Some(Event::Batch { header, section });
                }
            }
        }
    }

    fn fatal(&mut self, error: WireError) -> Event<'static> {
        debug_assert!(error.is_fatal());
        self.state = State::Dead;
        self.buf.clear();
        Event::Error { seq: None, error }
    }
}

enum Command {
    Empty,
    Ping,
    Batch(BatchHeader),
    /// Framing is intact (the section length is known) but the batch is refused.
    Reject {
        header: BatchHeader,
        error: WireError,
    },
    Fatal(WireError),
}

fn parse_command(line: &[u8], limits: &WireLimits) -> Command {
    let Ok(line) = std::str::from_utf8(line) else {
        return Command::Fatal(WireError::HeaderNotUtf8);
    };
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    match fields.first().copied() {
        None => Command::Empty,
        Some("PING") if fields.len() == 1 => Command::Ping,
        Some("BATCH") => parse_batch_header(&fields),
        Some(other) => Command::Fatal(WireError::UnknownCommand(excerpt(other))),
    }
    .and_limits(limits)
}

impl Command {
    fn and_limits(self, limits: &WireLimits) -> Command {
        let Command::Batch(header) = self else {
            return self;
        };
        let error = if header.bytes > limits.max_batch_bytes {
            WireError::TooLarge {
                bytes: header.bytes,
                limit: limits.max_batch_bytes,
            }
        } else if header.count > limits.max_batch_records {
            WireError::TooManyRecords {
                count: header.count,
                limit: limits.max_batch_records,
            }
        } else if header.count == 0 {
            WireError::Empty
        } else {
            return Command::Batch(header);
        };
        Command::Reject { header, error }
    }
}

fn parse_batch_header(fields: &[&str]) -> Command {
    if !(7..=8).contains(&fields.len()) {
        return Command::Fatal(WireError::FieldCount(fields.len()));
    }
    let Ok(seq) = fields[1].parse::<u64>() else {
        return Command::Fatal(WireError::BadSeq(excerpt(fields[1])));
    };
    // The section length is what keeps the framing; without it nothing can
    // be skipped.
    let Ok(bytes) = fields[4].parse::<usize>() else {
        return Command::Fatal(WireError::BadBytes(excerpt(fields[4])));
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
    match read_fields(&mut header, fields) {
        Ok(()) => Command::Batch(header),
        Err(error) => Command::Reject { header, error },
    }
}

/// The fields after `bytes`, once the framing is known: a bad one refuses
/// the batch, not the connection.
fn read_fields(header: &mut BatchHeader, fields: &[&str]) -> Result<(), WireError> {
    header.count = fields[3]
        .parse::<u32>()
        .map_err(|_| WireError::BadCount(excerpt(fields[3])))?;
    if !crate::is_valid_topic(&header.topic) || header.topic.len() > MAX_TOPIC_BYTES {
        return Err(WireError::BadTopic(excerpt(fields[2])));
    }
    header.crc = match fields[5] {
        "-" => None,
        hex if hex.len() == 8 => {
            Some(u32::from_str_radix(hex, 16).map_err(|_| WireError::BadCrcField(excerpt(hex)))?)
        }
        other => return Err(WireError::BadCrcField(excerpt(other))),
    };
    header.guarantee =
        Guarantee::parse(fields[6]).ok_or_else(|| WireError::BadGuarantee(excerpt(fields[6])))?;
    if let Some(base) = fields.get(7) {
        header.base = Some(Ulid::from_string(base).map_err(|_| WireError::BadBase(excerpt(base)))?);
    }
    Ok(())
}

/// Parse a verified section into `(time_ms, payload)` records, exactly
/// `count` of them filling it.
pub fn parse_section<'a>(
    section: &'a [u8],
    count: u32,
    mut record: impl FnMut(Option<u64>, &'a [u8]),
) -> Result<(), WireError> {
    let mut at = 0usize;
    for index in 0..count {
        let rest = &section[at..];
        let bad = |what| WireError::MalformedRecord { index, at, what };
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
        return Err(WireError::TrailingBytes {
            count,
            extra: section.len() - at,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::BatchBuilder;
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
                        Event::Error { seq, error } => {
                            format!("err {seq:?} {} {}", error.kind(), error.is_fatal())
                        }
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
    fn input_after_a_fatal_error_is_dropped_not_held() {
        let mut decoder = WireDecoder::new(WireLimits::default(), 64);
        let spare = decoder.spare();
        spare[..6].copy_from_slice(b"HELLO\n");
        decoder.filled(6);
        let Some(Event::Error { seq: None, error }) = decoder.next_event() else {
            panic!("a bad header is an error");
        };
        assert_eq!(error, WireError::UnknownCommand("HELLO".into()));
        assert!(error.is_fatal());
        for _ in 0..100 {
            let spare = decoder.spare();
            let n = spare.len();
            spare.fill(b'x');
            decoder.filled(n);
            assert_eq!(decoder.next_event(), None);
            assert_eq!(decoder.pending(), 0);
        }
        assert!(decoder.at_boundary());
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
