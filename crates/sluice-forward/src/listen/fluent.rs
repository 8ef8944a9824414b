//! The agent's Fluentd forward-protocol listener.
//!
//! A connection has two threads. The reader (the intake loop with
//! [`Fluent`]) cuts frames ([`FluentFramer`]), makes each event a record by
//! the mapping the ingester's listener uses ([`Frame::records`]: tag →
//! topic, event time clamped, the record as one JSON line cut at
//! `--max-line`), turns them into batches (one topic per frame: its tag)
//! and pushes them to the queue. A frame is decoded whole before any of its
//! batches is pushed, so a frame that fails half way adds nothing. For a
//! frame with a `chunk` option the reader hands the writer the chunk and a
//! way to hear when its batches are safe; the writer acknowledges chunks in
//! the order they came, each once all its batches are spooled (and the
//! spool synced) or acknowledged upstream. The reader keeps reading
//! meanwhile, so a client that pipelines chunks is not held to one round
//! trip per chunk; a full queue holds the reader back.
//!
//! A bad frame closes its connection (counted in
//! `sluice_forward_listen_errors_total{reason}`); chunks acknowledged before
//! it are safe, and the client resends the rest. The shared-key handshake is
//! not offered: the agent listens for local applications.

use std::{
    io::Write,
    net::{Shutdown, SocketAddr, TcpStream},
    sync::mpsc,
};

use crate::metrics;
use sluice_fluent::{FluentFramer, Frame, encode_ack};
use sluice_record::{
    IdGenerator,
    intake::{End, Flow, Protocol, is_idle},
    now_ms,
};

use super::{Intake, ListenError, OpenBatch};
use crate::queue::{Batch, Safe};

const READ_CHUNK: usize = crate::defaults::READ_CHUNK_BYTES;
/// Chunks read but not yet acknowledged, per connection, before the reader
/// waits for the writer.
const MAX_PENDING_ACKS: usize = 1024;
/// Longest `chunk` option taken. Clients send an id of 16 bytes, in base64
/// or hex; a waiting ack holds its chunk, so this bounds what the
/// `MAX_PENDING_ACKS` acks of a connection hold.
pub(super) const MAX_CHUNK_BYTES: usize = 1024;

/// A chunk whose acknowledgement waits for its batches.
struct PendingAck {
    chunk: Vec<u8>,
    batches: usize,
    safe: mpsc::Receiver<Safe>,
}

fn error(reason: &'static str) {
    metrics::listen_errors("fluent", reason, 1);
}

pub(super) fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    intake: &Intake<'_>,
) -> Result<(), ListenError> {
    let writer = stream.try_clone().map_err(ListenError::Setup)?;
    let (pending_tx, pending_rx) = mpsc::sync_channel::<PendingAck>(MAX_PENDING_ACKS);
    std::thread::scope(|scope| {
        let acks = scope.spawn(|| write_acks(writer, pending_rx, intake));
        let mut fluent = Fluent {
            peer,
            frames: FluentFramer::new(
                intake.config.fluent_limits,
                intake.batch.max_line_bytes,
                READ_CHUNK,
            ),
            chunks: Chunks {
                intake,
                ids: IdGenerator::new(),
                made: Vec::new(),
                pending: pending_tx,
            },
        };
        let read = sluice_record::intake::serve(&mut stream, intake.stop, &mut fluent);
        drop(fluent);
        let acked = acks.join().unwrap_or(Err(ListenError::AckWriterPanicked));
        read.and(acked)
    })
}

/// The reader of one fluent connection of the agent.
struct Fluent<'a, 'i> {
    peer: SocketAddr,
    /// Received bytes, cut into frames.
    frames: FluentFramer,
    chunks: Chunks<'a, 'i>,
}

/// What turns frames into batches and pending acks.
struct Chunks<'a, 'i> {
    intake: &'a Intake<'i>,
    ids: IdGenerator,
    /// Batches made from the frame being decoded.
    made: Vec<OpenBatch>,
    pending: mpsc::SyncSender<PendingAck>,
}

impl Protocol for Fluent<'_, '_> {
    type Error = ListenError;

    fn spare(&mut self) -> &mut [u8] {
        self.frames.spare()
    }

    /// Handle every complete frame in the buffer.
    fn on_read(&mut self, n: usize) -> Result<Flow, ListenError> {
        self.frames.filled(n);
        let chunks = &mut self.chunks;
        let handled = self.frames.drain(|frame| chunks.frame(frame));
        if let Err(err) = &handled
            && let Some(reason) = err.fluent_refusal()
        {
            error(reason);
            tracing::warn!(peer = %self.peer, reason, error = %err, "closing fluent connection: bad frame (chunks acknowledged before it are safe)");
        }
        handled?;
        Ok(Flow::Continue)
    }

    fn finish(&mut self, end: End) -> Result<(), ListenError> {
        if end == End::Eof && self.frames.pending() > 0 {
            error("incomplete_at_eof");
            tracing::warn!(peer = %self.peer, buffered = self.frames.pending(), "fluent client closed in the middle of a frame; the partial frame was discarded");
        }
        Ok(())
    }
}

impl Chunks<'_, '_> {
    /// Decode one frame into batches, then queue them.
    fn frame(&mut self, mut frame: Frame<'_>) -> Result<(), ListenError> {
        let intake = self.intake;
        let (made, ids) = (&mut self.made, &mut self.ids);
        made.clear();
        let mut truncated = 0;
        let decoded = frame.records(now_ms(), |record| {
            truncated += u64::from(record.is_truncated());
            if made.last().is_none_or(|b| b.is_full(intake.batch)) {
                let topic = std::str::from_utf8(record.topic).expect("a clean topic is ASCII");
                made.push(OpenBatch::new(topic, intake, ids));
            }
            made.last_mut()
                .expect("a batch is open")
                .push(record.time_ms, record.payload);
        });
        let info = match decoded {
            Ok(info) => info,
            Err(err) => {
                self.made.clear();
                return Err(err.into());
            }
        };
        if info.handshake.is_some() {
            return Err(ListenError::Handshake);
        }
        let chunk = info.chunk_bytes(frame.bytes()).map(<[u8]>::to_vec);
        if let Some(chunk) = &chunk
            && chunk.len() > MAX_CHUNK_BYTES
        {
            self.made.clear();
            return Err(ListenError::ChunkTooLong { len: chunk.len() });
        }
        let batches: Vec<Batch> = self
            .made
            .drain(..)
            .map(|open| {
                let records = open.records() as u64;
                let batch = open.seal(intake, &mut self.ids);
                debug_assert_eq!(batch.records, records);
                batch
            })
            .collect();
        // Events cut at the line limit are counted with the first batch.
        let mut read = |batch: &Batch| {
            intake
                .queue
                .read(batch.records, std::mem::take(&mut truncated))
        };
        match chunk {
            Some(chunk) => {
                let (notice, safe) = mpsc::channel();
                let count = batches.len();
                for batch in batches {
                    read(&batch);
                    intake.queue.push_notify(batch, notice.clone());
                }
                self.pending
                    .send(PendingAck {
                        chunk,
                        batches: count,
                        safe,
                    })
                    .map_err(|_| ListenError::AckWriterStopped)
            }
            None => {
                for batch in batches {
                    read(&batch);
                    intake.queue.push(batch);
                }
                Ok(())
            }
        }
    }
}

/// Acknowledge chunks in order, each once its batches are safe. Ends when
/// the reader is done and every chunk is answered, or at the first chunk
/// that will never be safe (then the connection is closed, so the client
/// sends it again).
fn write_acks(
    mut stream: TcpStream,
    pending: mpsc::Receiver<PendingAck>,
    intake: &Intake<'_>,
) -> Result<(), ListenError> {
    let mut ack = Vec::new();
    stream
        .set_write_timeout(Some(super::POLL))
        .map_err(ListenError::Setup)?;
    let result = loop {
        let next = match pending.recv() {
            Ok(next) => next,
            Err(_) => break Ok(()),
        };
        match wait_safe(&next, intake) {
            Ok(()) => {}
            Err(why) => break Err(why),
        }
        ack.clear();
        encode_ack(&next.chunk, &mut ack);
        if let Err(e) = send(&mut stream, &ack, intake) {
            break Err(ListenError::SendAck(e));
        }
        metrics::listen_chunk_acked();
    };
    if result.is_err() {
        // The reader stops at its next read; the client resends.
        let _ = stream.shutdown(Shutdown::Both);
    }
    result
}

/// Write all of `bytes` to the client, giving up once stopping (and the
/// drain is over) if the client takes none of it for a while (it does not
/// read its acks: the reader may be waiting on this writer, and a stop must
/// not wait on them).
/// The stream has a write timeout ([`super::POLL`]).
fn send(stream: &mut TcpStream, mut bytes: &[u8], intake: &Intake<'_>) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if is_idle(&e) => {
                if intake.drain_over() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "stopping, and the client does not read its acks",
                    ));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Wait until every batch of `chunk` is safe; with the spool, make it durable.
fn wait_safe(chunk: &PendingAck, intake: &Intake<'_>) -> Result<(), ListenError> {
    let mut spooled_through = 0;
    for _ in 0..chunk.batches {
        let safe = loop {
            match chunk.safe.recv_timeout(crate::defaults::STOP_CHECK) {
                Ok(safe) => break safe,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if intake.drain_over() {
                        return Err(ListenError::StoppedBeforeSafe);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(ListenError::ForwarderStopped);
                }
            }
        };
        match safe {
            Safe::Spooled(n) => spooled_through = spooled_through.max(n),
            Safe::Acked => {}
            Safe::Dropped => {
                error("dropped");
                return Err(ListenError::ChunkDropped);
            }
        }
    }
    if spooled_through > 0 {
        intake
            .queue
            .sync_spool(spooled_through)
            .map_err(ListenError::SyncSpool)?;
    }
    Ok(())
}
