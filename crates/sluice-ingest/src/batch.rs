//! The batch protocol connection (port 7653): parse, write, acknowledge.
//!
//! The wire format is in [`sluice_record::wire`] and `docs/protocol-batch.md`.
//! Each connection has two threads:
//!
//! - the reader (this thread) decodes batches, gives their records ids,
//!   writes them to the connection's active segment, and queues one reply
//!   per batch;
//! - the replier writes replies in order. A reply for `replicated` waits
//!   until the store commits the ingest segment holding the batch.
//!
//! `fsync` acks are grouped: the segment is synced once per read buffer,
//! after every batch in that buffer was written, and only then are their
//! replies queued. A reply is never sent before its guarantee holds. The
//! reply queue is bounded, so a client that does not read its replies
//! stops being read (back-pressure, not memory growth).

use std::{
    io::{self, BufWriter, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
};

use sluice_record::{
    BatchEncoder, IdGenerator, Record, Ulid, clamp_time_ms, now_ms,
    wire::{self, Event, Guarantee, WireDecoder},
};

use crate::{
    listener::{IngestConfig, POLL_INTERVAL, is_idle},
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

pub(crate) fn serve(
    stream: &mut TcpStream,
    peer: SocketAddr,
    log: &Arc<IngestLog>,
    config: &IngestConfig,
    shutdown: &Arc<AtomicBool>,
) -> Result<(), String> {
    stream
        .set_read_timeout(Some(POLL_INTERVAL))
        .map_err(|e| e.to_string())?;
    let writer = stream.try_clone().map_err(|e| e.to_string())?;
    let (replies, queue) = mpsc::sync_channel::<Reply>(REPLY_QUEUE);
    let replier_shutdown = shutdown.clone();
    let replier = std::thread::Builder::new()
        .name("ingest-batch-reply".into())
        .spawn(move || write_replies(writer, queue, replier_shutdown))
        .map_err(|e| format!("start reply thread: {e}"))?;
    let mut conn = BatchConnection {
        log: log.clone(),
        sink: SegmentSink::new(log.clone(), config.clone()),
        decoder: WireDecoder::new(config.wire, config.read_chunk_bytes),
        encoder: BatchEncoder::new(),
        ids: IdGenerator::new(),
        replies,
        awaiting_fsync: Vec::new(),
        peer,
    };
    let outcome = conn.run(stream, shutdown);
    let sealed = conn.sink.maybe_seal(true);
    // Closing the queue lets the replier finish what is queued and exit.
    drop(conn);
    let _ = replier.join();
    outcome.and(sealed)
}

struct BatchConnection {
    log: Arc<IngestLog>,
    sink: SegmentSink,
    decoder: WireDecoder,
    encoder: BatchEncoder,
    ids: IdGenerator,
    replies: mpsc::SyncSender<Reply>,
    /// Replies of `fsync` batches written since the last sync.
    awaiting_fsync: Vec<(u64, String)>,
    peer: SocketAddr,
}

impl BatchConnection {
    fn run(&mut self, stream: &mut TcpStream, shutdown: &AtomicBool) -> Result<(), String> {
        loop {
            if shutdown.load(Ordering::Relaxed) {
                return Ok(());
            }
            match stream.read(self.decoder.spare()) {
                Ok(0) => {
                    if !self.decoder.at_boundary() {
                        metrics::batch_error("incomplete_at_eof");
                        tracing::warn!(peer = %self.peer, buffered = self.decoder.buffered(), "connection closed in the middle of a batch; the partial batch was not acknowledged and is dropped");
                    }
                    return self.release_fsync_acks();
                }
                Ok(n) => {
                    self.decoder.filled(n);
                    let keep_going = self.process()?;
                    self.release_fsync_acks()?;
                    if !keep_going {
                        return Ok(());
                    }
                }
                Err(e) if is_idle(&e) => {}
                Err(e) => {
                    self.release_fsync_acks()?;
                    return Err(format!("read: {e}"));
                }
            }
            self.sink.maybe_seal(false)?;
        }
    }

    /// Handle every complete event in the buffer. Returns false after a
    /// fatal framing error.
    fn process(&mut self) -> Result<bool, String> {
        loop {
            let Some(event) = self.decoder.next_event() else {
                return Ok(true);
            };
            match event {
                Event::Ping => send(&self.replies, Reply::Now("PONG".into()))?,
                Event::Error {
                    seq,
                    reason,
                    kind,
                    fatal,
                } => {
                    metrics::batch_error(kind);
                    let seq = seq.map_or("-".to_string(), |s| s.to_string());
                    tracing::debug!(peer = %self.peer, seq, reason, "batch refused");
                    send(&self.replies, Reply::Now(format!("ERR {seq} {reason}")))?;
                    if fatal {
                        tracing::warn!(peer = %self.peer, reason, "closing batch connection: its framing is lost");
                        return Ok(false);
                    }
                }
                Event::Batch { header, section } => {
                    // Encode the records for the segment, giving them ids.
                    let now = now_ms();
                    self.encoder.begin();
                    let (encoder, ids) = (&mut self.encoder, &mut self.ids);
                    let base = header.base.map(|b| {
                        let clamped = clamp_time_ms(b.timestamp_ms(), now);
                        if clamped == b.timestamp_ms() {
                            b
                        } else {
                            wire::record_id(b, 0, Some(clamped))
                        }
                    });
                    let mut index = 0u32;
                    let (mut first, mut last) = (Ulid(u128::MAX), Ulid(0));
                    let parsed = wire::parse_section(section, header.count, |time, payload| {
                        let time = time.map(|t| clamp_time_ms(t, now));
                        let id = match (base, time) {
                            (Some(base), time) => wire::record_id(base, index, time),
                            (None, Some(t)) => ids.at_origin(t),
                            (None, None) => ids.next_at(now),
                        };
                        index += 1;
                        first = first.min(id);
                        last = last.max(id);
                        encoder.push(Record {
                            id,
                            flags: 0,
                            topic: &header.topic,
                            payload,
                        });
                    });
                    if let Err(reason) = parsed {
                        metrics::batch_error("malformed_record");
                        send(
                            &self.replies,
                            Reply::Now(format!("ERR {} {reason}", header.seq)),
                        )?;
                        continue;
                    }
                    let ok = format!("OK {} {first} {last}", header.seq);
                    if header.guarantee == Guarantee::None {
                        send(&self.replies, Reply::Now(ok.clone()))?;
                    }
                    let count = header.count as u64;
                    match self.sink.append(&mut self.encoder, first, last, false) {
                        Ok(segment) => {
                            metrics::buffer_ingested(
                                crate::Mode::Batch,
                                count,
                                section.len() as u64,
                                0,
                            );
                            match header.guarantee {
                                Guarantee::None => {}
                                Guarantee::Write => send(&self.replies, Reply::Now(ok))?,
                                Guarantee::Fsync => self.awaiting_fsync.push((header.seq, ok)),
                                Guarantee::Replicated => {
                                    let committed = self.log.watch_commit(segment);
                                    send(&self.replies, Reply::AfterCommit(committed, ok))?;
                                }
                            }
                        }
                        Err(failure) => {
                            metrics::records_dropped("write_error", count);
                            let reason = if failure.disk_full {
                                "disk full".to_string()
                            } else {
                                failure.message.clone()
                            };
                            tracing::error!(peer = %self.peer, seq = header.seq, error = %failure.message, "cannot write batch; refusing it so the client retries");
                            if header.guarantee != Guarantee::None {
                                send(
                                    &self.replies,
                                    Reply::Now(format!(
                                        "ERR {} cannot write: {reason}",
                                        header.seq
                                    )),
                                )?;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Sync once for every `fsync` batch written since the last sync, then
    /// queue their replies.
    fn release_fsync_acks(&mut self) -> Result<(), String> {
        if self.awaiting_fsync.is_empty() {
            return Ok(());
        }
        let acks = std::mem::take(&mut self.awaiting_fsync);
        match self.sink.sync() {
            Ok(()) => {
                for (_, ok) in acks {
                    send(&self.replies, Reply::Now(ok))?;
                }
            }
            Err(failure) => {
                for (seq, _) in acks {
                    send(
                        &self.replies,
                        Reply::Now(format!("ERR {seq} cannot fsync: {}", failure.message)),
                    )?;
                }
            }
        }
        Ok(())
    }
}

fn send(replies: &mpsc::SyncSender<Reply>, reply: Reply) -> Result<(), String> {
    replies
        .send(reply)
        .map_err(|_| "the reply thread stopped (client gone)".to_string())
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
