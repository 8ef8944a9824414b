//! The agent's Fluentd forward-protocol listener.
//!
//! A connection has two threads. The reader decodes frames
//! ([`sluice_fluent`]), turns each into batches (one topic per frame: its
//! tag) and pushes them to the queue. A frame is decoded whole before any of
//! its batches is pushed, so a frame that fails half way adds nothing. For a
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
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    sync::{atomic::Ordering, mpsc},
    time::Duration,
};

use metrics::counter;
use sluice_fluent::{DrainError, FrameBuffer, Scratch, decode_frame, encode_ack};
use sluice_record::{IdGenerator, clamp_time_ms, now_ms};

use super::{Intake, OpenBatch};
use crate::queue::{Batch, Safe};

/// Topic for events whose tag is empty after cleaning.
const FALLBACK_TOPIC: &[u8] = b"fluent";
const READ_CHUNK: usize = 256 << 10;
/// Chunks read but not yet acknowledged, per connection, before the reader
/// waits for the writer.
const MAX_PENDING_ACKS: usize = 1024;
/// Longest `chunk` option taken. Clients send an id of 16 bytes, in base64
/// or hex; a waiting ack holds its chunk, so this bounds what the
/// `MAX_PENDING_ACKS` acks of a connection hold.
const MAX_CHUNK_BYTES: usize = 1024;

/// A chunk whose acknowledgement waits for its batches.
struct PendingAck {
    chunk: Vec<u8>,
    batches: usize,
    safe: mpsc::Receiver<Safe>,
}

fn error(reason: &'static str) {
    counter!("sluice_forward_listen_errors_total", "listener" => "fluent", "reason" => reason)
        .increment(1);
}

pub(super) fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    intake: &Intake<'_>,
) -> Result<(), String> {
    let writer = stream
        .try_clone()
        .map_err(|e| format!("clone the connection: {e}"))?;
    let (pending_tx, pending_rx) = mpsc::sync_channel::<PendingAck>(MAX_PENDING_ACKS);
    std::thread::scope(|scope| {
        let acks = scope.spawn(|| write_acks(writer, pending_rx, intake));
        let mut conn = Connection {
            intake,
            peer,
            frames: FrameBuffer::new(READ_CHUNK),
            scratch: Scratch::new(),
            ids: IdGenerator::new(),
            topic: Vec::new(),
            made: Vec::new(),
            pending: pending_tx,
        };
        let read = conn.run(stream);
        drop(conn);
        let acked = acks
            .join()
            .unwrap_or_else(|_| Err("the ack writer panicked".into()));
        read.and(acked)
    })
}

struct Connection<'a, 'i> {
    intake: &'a Intake<'i>,
    peer: SocketAddr,
    /// Received bytes, cut into frames.
    frames: FrameBuffer,
    scratch: Scratch,
    ids: IdGenerator,
    /// The cleaned tag of the frame being decoded.
    topic: Vec<u8>,
    /// Batches made from the frame being decoded.
    made: Vec<OpenBatch>,
    pending: mpsc::SyncSender<PendingAck>,
}

impl Connection<'_, '_> {
    fn run(&mut self, mut stream: TcpStream) -> Result<(), String> {
        loop {
            if self.intake.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            match stream.read(self.frames.spare()) {
                Ok(0) => {
                    if self.frames.pending() > 0 {
                        error("incomplete_at_eof");
                        tracing::warn!(peer = %self.peer, buffered = self.frames.pending(), "fluent client closed in the middle of a frame; the partial frame was discarded");
                    }
                    return Ok(());
                }
                Ok(n) => {
                    self.frames.filled(n);
                    self.process()?;
                }
                Err(e) if super::is_idle(&e) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
            if self.frames.shrink() {
                self.scratch.trim(1 << 20);
            }
        }
    }

    /// Handle every complete frame in the buffer.
    fn process(&mut self) -> Result<(), String> {
        let limits = self.intake.config.fluent_limits;
        let mut frames = std::mem::take(&mut self.frames);
        let result = frames.drain(&limits, |frame| self.frame(frame));
        self.frames = frames;
        result.map_err(|e| match e {
            DrainError::Bad(err) => self.refuse("bad_frame", &err.to_string()),
            DrainError::Frame(e) => e,
        })
    }

    fn refuse(&self, reason: &'static str, detail: &str) -> String {
        error(reason);
        tracing::warn!(peer = %self.peer, reason, error = detail, "closing fluent connection: bad frame (chunks acknowledged before it are safe)");
        format!("bad fluent frame: {detail}")
    }

    /// Decode one frame into batches, then queue them.
    fn frame(&mut self, frame: &[u8]) -> Result<(), String> {
        let now = now_ms();
        let intake = self.intake;
        let (made, ids, topic) = (&mut self.made, &mut self.ids, &mut self.topic);
        made.clear();
        let mut topic_ready = false;
        let decoded = decode_frame(
            frame,
            &intake.config.fluent_limits,
            &mut self.scratch,
            |event| {
                // One frame has one tag: clean it once.
                if !topic_ready {
                    sluice_record::clean_topic(event.tag.as_bytes(), FALLBACK_TOPIC, topic);
                    topic_ready = true;
                }
                let ms = event
                    .time_ns
                    .filter(|ns| *ns > 0)
                    .map_or(now, |ns| clamp_time_ms((ns / 1_000_000) as u64, now));
                if made.last().is_none_or(|b| b.is_full(intake.batch)) {
                    let topic = std::str::from_utf8(topic).expect("a clean topic is ASCII");
                    made.push(OpenBatch::new(topic, intake, ids));
                }
                made.last_mut()
                    .expect("a batch is open")
                    .push(ms, event.payload);
            },
        );
        let info = match decoded {
            Ok(info) => info,
            Err(err) => {
                self.made.clear();
                return Err(self.refuse("bad_frame", &err.to_string()));
            }
        };
        if info.handshake.is_some() {
            return Err(self.refuse(
                "handshake",
                "the agent does not take the shared-key handshake; send without a key",
            ));
        }
        let chunk = info.chunk_bytes(frame).map(<[u8]>::to_vec);
        if let Some(chunk) = &chunk
            && chunk.len() > MAX_CHUNK_BYTES
        {
            self.made.clear();
            return Err(self.refuse(
                "chunk_too_long",
                &format!(
                    "a chunk option of {} bytes; at most {MAX_CHUNK_BYTES} are taken",
                    chunk.len()
                ),
            ));
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
        match chunk {
            Some(chunk) => {
                let (notice, safe) = mpsc::channel();
                let count = batches.len();
                for batch in batches {
                    intake.queue.read(batch.records, 0);
                    intake.queue.push_notify(batch, notice.clone());
                }
                self.pending
                    .send(PendingAck {
                        chunk,
                        batches: count,
                        safe,
                    })
                    .map_err(|_| "the ack writer stopped".to_string())
            }
            None => {
                for batch in batches {
                    intake.queue.read(batch.records, 0);
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
) -> Result<(), String> {
    let mut ack = Vec::new();
    stream
        .set_write_timeout(Some(super::POLL))
        .map_err(|e| format!("set a write timeout: {e}"))?;
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
            break Err(format!("send ack: {e}"));
        }
        counter!("sluice_forward_listen_chunks_acked_total").increment(1);
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
            Err(e) if super::is_idle(&e) => {
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
fn wait_safe(chunk: &PendingAck, intake: &Intake<'_>) -> Result<(), String> {
    let mut spooled_through = 0;
    for _ in 0..chunk.batches {
        let safe = loop {
            match chunk.safe.recv_timeout(Duration::from_millis(200)) {
                Ok(safe) => break safe,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if intake.drain_over() {
                        return Err("stopping before the chunk was safe; not acknowledged".into());
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("the forwarder stopped before the chunk was safe".into());
                }
            }
        };
        match safe {
            Safe::Spooled(n) => spooled_through = spooled_through.max(n),
            Safe::Acked => {}
            Safe::Dropped => {
                error("dropped");
                return Err(
                    "a batch of the chunk was dropped (--on-full); not acknowledged".into(),
                );
            }
        }
    }
    if spooled_through > 0 {
        intake
            .queue
            .sync_spool(spooled_through)
            .map_err(|e| format!("sync the spool: {e}"))?;
    }
    Ok(())
}
