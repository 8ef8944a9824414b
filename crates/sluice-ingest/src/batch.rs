//! The batch protocol connection (port 7653): parse, write, acknowledge.
//!
//! The wire format is in [`sluice_record::wire`] and `docs/protocol-batch.md`.
//! Each connection has two threads:
//!
//! - the reader (the connection's thread, running [`Batch`] in the intake
//!   loop) decodes batches, gives their records ids, writes them to the
//!   connection's active segment, and queues one reply per batch;
//! - the replier writes replies in order. A reply for `replicated` waits
//!   until the store commits the ingest segment holding the batch.
//!
//! `fsync` acks are grouped: the segment is synced once per read buffer,
//! after every batch in that buffer was written, and only then are their
//! replies queued. A reply is never sent before its guarantee holds. The
//! reply queue is bounded, so a client that does not read its replies
//! stops being read (back-pressure, not memory growth).

use std::{
    io::{self, BufWriter, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
};

use sluice_record::{
    IdGenerator, Record, clamp_time_ms,
    intake::{End, Flow, Protocol},
    now_ms,
    wire::{self, BatchHeader, Event, Guarantee, WireDecoder},
};

use crate::{
    error::IngestError,
    listener::{IngestConfig, POLL_INTERVAL},
    log::IngestLog,
    metrics,
    sink::SegmentSink,
};

/// Replies queued per connection before the reader stops reading.
const REPLY_QUEUE: usize = 4096;

enum Reply {
    Now(String),
    /// Send once the segment is committed by the store.
    AfterCommit(mpsc::Receiver<()>, String),
}

/// The reader of a batch connection.
pub(crate) struct Batch {
    peer: SocketAddr,
    log: Arc<IngestLog>,
    decoder: WireDecoder,
    ids: IdGenerator,
    sink: SegmentSink,
    replies: mpsc::SyncSender<Reply>,
    /// Replies of `fsync` batches written since the last sync.
    awaiting_fsync: Vec<(u64, String)>,
}

impl Batch {
    /// The reader of `stream`, and its replier thread, which ends once the
    /// reader is dropped and the replies queued before are sent.
    pub fn open(
        stream: &TcpStream,
        peer: SocketAddr,
        log: &Arc<IngestLog>,
        config: &IngestConfig,
        shutdown: &Arc<AtomicBool>,
    ) -> Result<(Batch, JoinHandle<()>), IngestError> {
        let writer = stream.try_clone().map_err(IngestError::Setup)?;
        let (replies, queue) = mpsc::sync_channel::<Reply>(REPLY_QUEUE);
        let replier_shutdown = shutdown.clone();
        let replier = std::thread::Builder::new()
            .name("ingest-batch-reply".into())
            .spawn(move || write_replies(writer, queue, replier_shutdown))
            .map_err(IngestError::ReplyThread)?;
        let batch = Batch {
            peer,
            log: log.clone(),
            decoder: WireDecoder::new(config.wire, config.read_chunk_bytes),
            ids: IdGenerator::new(),
            sink: SegmentSink::new(log.clone(), config),
            replies,
            awaiting_fsync: Vec::new(),
        };
        Ok((batch, replier))
    }

    fn reply(&self, reply: Reply) -> Result<(), IngestError> {
        self.replies
            .send(reply)
            .map_err(|_| IngestError::RepliesClosed)
    }

    /// Handle every complete event in the buffer. Returns false after a
    /// fatal framing error.
    fn process(&mut self) -> Result<bool, IngestError> {
        loop {
            let Some(event) = self.decoder.next_event() else {
                return Ok(true);
            };
            match event {
                Event::Ping => self.reply(Reply::Now("PONG".into()))?,
                Event::Error { seq, error } => {
                    metrics::batch_error(error.kind());
                    let seq = seq.map_or("-".to_string(), |s| s.to_string());
                    tracing::debug!(peer = %self.peer, seq, %error, "batch refused");
                    self.reply(Reply::Now(format!("ERR {seq} {error}")))?;
                    if error.is_fatal() {
                        tracing::warn!(peer = %self.peer, %error, "closing batch connection: its framing is lost");
                        return Ok(false);
                    }
                }
                Event::Batch { header, section } => {
                    if header.crc.is_none() {
                        metrics::batch_unchecked();
                    }
                    let bytes = section.len() as u64;
                    if let Err(error) = encode(&mut self.sink, &mut self.ids, &header, section) {
                        metrics::batch_error(error.kind());
                        self.reply(Reply::Now(format!("ERR {} {error}", header.seq)))?;
                        continue;
                    }
                    self.write(&header, bytes)?;
                }
            }
        }
    }

    /// Write the encoded batch of `header`, and reply (or queue the reply)
    /// as its guarantee says.
    fn write(&mut self, header: &BatchHeader, bytes: u64) -> Result<(), IngestError> {
        let (first, last) = self.sink.range();
        let ok = format!("OK {} {first} {last}", header.seq);
        if header.guarantee == Guarantee::None {
            self.reply(Reply::Now(ok.clone()))?;
        }
        let count = u64::from(header.count);
        match self.sink.write(false) {
            Ok(segment) => {
                metrics::buffer_ingested(crate::Mode::Batch, count, bytes, 0);
                match header.guarantee {
                    Guarantee::None => {}
                    Guarantee::Write => self.reply(Reply::Now(ok))?,
                    Guarantee::Fsync => self.awaiting_fsync.push((header.seq, ok)),
                    Guarantee::Replicated => {
                        let segment = segment.expect("a batch has records");
                        self.sink.seal_soon();
                        let committed = self.log.watch_commit(segment);
                        self.reply(Reply::AfterCommit(committed, ok))?;
                    }
                }
            }
            Err(error) => {
                let reason = if error.is_disk_full() {
                    "disk full".to_string()
                } else {
                    error.to_string()
                };
                tracing::error!(peer = %self.peer, seq = header.seq, %error, "cannot write batch; refusing it so the client retries");
                if header.guarantee != Guarantee::None {
                    self.reply(Reply::Now(format!(
                        "ERR {} cannot write: {reason}",
                        header.seq
                    )))?;
                }
            }
        }
        Ok(())
    }

    /// Sync once for every `fsync` batch written since the last sync, then
    /// queue their replies.
    fn release_fsync_acks(&mut self) -> Result<(), IngestError> {
        if self.awaiting_fsync.is_empty() {
            return Ok(());
        }
        let acks = std::mem::take(&mut self.awaiting_fsync);
        match self.sink.sync() {
            Ok(()) => {
                for (_, ok) in acks {
                    self.reply(Reply::Now(ok))?;
                }
            }
            Err(error) => {
                for (seq, _) in acks {
                    self.reply(Reply::Now(format!("ERR {seq} cannot fsync: {error}")))?;
                }
            }
        }
        Ok(())
    }
}

/// Encode the records of a batch into the sink, giving them ids: from the
/// batch's base id when it has one (so a re-sent batch gets the same ids),
/// else from the record's time or the arrival time.
fn encode(
    sink: &mut SegmentSink,
    ids: &mut IdGenerator,
    header: &BatchHeader,
    section: &[u8],
) -> Result<(), wire::WireError> {
    let now = now_ms();
    sink.begin();
    let base = header.base.map(|b| {
        let clamped = clamp_time_ms(b.timestamp_ms(), now);
        if clamped == b.timestamp_ms() {
            b
        } else {
            wire::record_id(b, 0, Some(clamped))
        }
    });
    let mut index = 0u32;
    wire::parse_section(section, header.count, |time, payload| {
        let time = time.map(|t| clamp_time_ms(t, now));
        let id = match (base, time) {
            (Some(base), time) => wire::record_id(base, index, time),
            (None, Some(t)) => ids.at_origin(t),
            (None, None) => ids.next_at(now),
        };
        index += 1;
        sink.push(Record {
            id,
            flags: 0,
            topic: &header.topic,
            payload,
        });
    })
}

impl Protocol for Batch {
    type Error = IngestError;

    fn spare(&mut self) -> &mut [u8] {
        self.decoder.spare()
    }

    fn on_read(&mut self, n: usize) -> Result<Flow, IngestError> {
        self.decoder.filled(n);
        let keep_going = self.process()?;
        self.release_fsync_acks()?;
        Ok(if keep_going {
            Flow::Continue
        } else {
            Flow::Close
        })
    }

    fn on_tick(&mut self) -> Result<(), IngestError> {
        self.sink.maybe_seal(false)
    }

    /// Every `fsync` reply was released after its read buffer; a batch cut
    /// by the end of input is dropped unacknowledged.
    fn finish(&mut self, end: End) -> Result<(), IngestError> {
        if end == End::Eof && !self.decoder.at_boundary() {
            metrics::batch_error("incomplete_at_eof");
            tracing::warn!(peer = %self.peer, buffered = self.decoder.pending(), "connection closed in the middle of a batch; the partial batch was not acknowledged and is dropped");
        }
        self.sink.maybe_seal(true)
    }
}

/// The replier: write replies in order, flushing when the queue is empty.
fn write_replies(stream: TcpStream, queue: mpsc::Receiver<Reply>, shutdown: Arc<AtomicBool>) {
    let mut out = BufWriter::with_capacity(64 << 10, stream);
    let write = |out: &mut BufWriter<TcpStream>, line: &str| -> io::Result<()> {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")
    };
    loop {
        let reply = match queue.try_recv() {
            Ok(reply) => reply,
            Err(mpsc::TryRecvError::Empty) => {
                if out.flush().is_err() {
                    return;
                }
                match queue.recv() {
                    Ok(reply) => reply,
                    Err(_) => return,
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        };
        let line = match reply {
            Reply::Now(line) => line,
            Reply::AfterCommit(committed, line) => {
                if out.flush().is_err() {
                    return;
                }
                loop {
                    match committed.recv_timeout(POLL_INTERVAL) {
                        Ok(()) => break line,
                        Err(mpsc::RecvTimeoutError::Timeout)
                            if !shutdown.load(Ordering::Relaxed) => {}
                        // Shutting down, or the log went away: no ack. The
                        // client re-sends; ids make that harmless.
                        Err(_) => return,
                    }
                }
            }
        };
        if write(&mut out, &line).is_err() {
            return;
        }
    }
}
