//! The Fluentd forward protocol listener (port 24224).
//!
//! The codec is [`sluice_fluent`]: [`FluentFramer`] cuts the connection into
//! frames and [`Frame::records`] makes each event a record, by the mapping
//! the forwarder's agent shares (tag → topic, event time → ULID time
//! clamped to a minute ahead, the record as one JSON line cut at
//! `--max-line` and flagged truncated).
//!
//! Each read buffer is handled as a unit: every complete frame in it is
//! decoded and appended to the connection's segment, then (with `fsync`
//! acks) the segment is synced once, and only then is each frame's `chunk`
//! acknowledged with `{"ack": chunk}`. A frame that fails to decode closes
//! its connection, with a counter and a log line; the frames before it were
//! written and keep their acks, and its own events are discarded (the
//! client, having no ack, sends it again). An incomplete frame at the end of
//! the stream is discarded the same way.
//!
//! With a shared key the server opens with HELO and serves nothing until a
//! PING with the right digest arrives (Fluentd's `<security>`).

use std::{
    io::Write,
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use sluice_fluent::{FluentFramer, Frame, Limits, encode_ack, handshake};
use sluice_record::{
    IdGenerator,
    intake::{End, Flow, Protocol},
    now_ms,
};

use crate::{
    error::IngestError,
    listener::{IngestConfig, POLL_INTERVAL},
    log::IngestLog,
    metrics,
    sink::SegmentSink,
};

/// Settings of the fluent listener.
#[derive(Debug, Clone)]
pub struct FluentConfig {
    /// Limits on a frame: its size, its decompressed size, its entries and
    /// its nesting (`--fluent-max-*`).
    pub limits: Limits,
    /// Require the shared-key handshake.
    pub shared_key: Option<String>,
    /// Our name in the handshake's PONG.
    pub hostname: String,
    /// Acknowledge chunks only once they are fsynced (default: written).
    pub ack_after_fsync: bool,
}

impl Default for FluentConfig {
    fn default() -> Self {
        FluentConfig {
            limits: Limits::default(),
            shared_key: None,
            hostname: "sluice".into(),
            ack_after_fsync: false,
        }
    }
}

pub(crate) struct Fluent {
    /// Received bytes, cut into frames.
    frames: FluentFramer,
    conn: Connection,
}

/// What handles the frames.
struct Connection {
    peer: SocketAddr,
    config: FluentConfig,
    /// The connection, to send HELO, PONG and acks.
    writer: TcpStream,
    ids: IdGenerator,
    sink: SegmentSink,
    /// Acks of the frames written from the current read buffer.
    acks: Vec<u8>,
    /// Set while the shared-key handshake is not yet done.
    nonce: Option<[u8; 16]>,
    /// `--max-line`, where an event's JSON is cut.
    max_line_bytes: usize,
    warned_truncation: bool,
}

impl Fluent {
    /// Serve `stream`; with a shared key, send HELO first.
    pub fn open(
        stream: &TcpStream,
        peer: SocketAddr,
        log: &Arc<IngestLog>,
        config: &IngestConfig,
    ) -> Result<Self, IngestError> {
        let mut conn = Connection {
            peer,
            config: config.fluent.clone(),
            writer: stream.try_clone().map_err(IngestError::Setup)?,
            ids: IdGenerator::new(),
            sink: SegmentSink::new(log.clone(), config),
            acks: Vec::new(),
            nonce: None,
            max_line_bytes: config.max_line_bytes,
            warned_truncation: false,
        };
        if conn.config.shared_key.is_some() {
            let mut nonce = [0u8; 16];
            rand::fill(&mut nonce);
            let mut helo = Vec::new();
            handshake::encode_helo(&nonce, b"", true, &mut helo);
            send(&mut conn.writer, "HELO", &helo)?;
            conn.nonce = Some(nonce);
        }
        Ok(Fluent {
            frames: FluentFramer::new(
                config.fluent.limits,
                config.max_line_bytes,
                config.read_chunk_bytes,
            ),
            conn,
        })
    }
}

impl Protocol for Fluent {
    type Error = IngestError;

    fn spare(&mut self) -> &mut [u8] {
        self.frames.spare()
    }

    /// Handle every complete frame in the buffer, then acknowledge the ones
    /// written (those before a bad frame included).
    fn on_read(&mut self, n: usize) -> Result<Flow, IngestError> {
        self.frames.filled(n);
        let conn = &mut self.conn;
        let handled = self.frames.drain(|frame| conn.frame(frame));
        if let Err(err) = &handled
            && let Some(reason) = err.fluent_refusal()
        {
            metrics::fluent_error(reason);
            tracing::warn!(peer = %conn.peer, reason, error = %err, "closing fluent connection: bad frame (frames acknowledged before it are safe)");
        }
        conn.release_acks()?;
        handled?;
        Ok(Flow::Continue)
    }

    fn on_tick(&mut self) -> Result<(), IngestError> {
        self.conn.sink.maybe_seal(false)
    }

    fn finish(&mut self, end: End) -> Result<(), IngestError> {
        if end == End::Eof && self.frames.pending() > 0 {
            metrics::fluent_error("incomplete_at_eof");
            tracing::warn!(peer = %self.conn.peer, buffered = self.frames.pending(), "fluent connection closed in the middle of a frame; the partial frame was discarded");
        }
        self.conn.sink.maybe_seal(true)
    }
}

impl Connection {
    /// Decode one frame and write its events.
    fn frame(&mut self, mut frame: Frame<'_>) -> Result<(), IngestError> {
        let now = now_ms();
        self.sink.begin();
        let (sink, ids) = (&mut self.sink, &mut self.ids);
        let (mut bytes, mut truncated) = (0u64, 0u64);
        let info = frame.records(now, |record| {
            bytes += record.payload.len() as u64;
            truncated += u64::from(record.is_truncated());
            sink.push(record.stamp(ids.at_origin(record.time_ms)));
        })?;
        if let Some(ping) = &info.handshake {
            return self.answer_ping(ping);
        }
        if self.nonce.is_some() {
            return Err(IngestError::NoHandshake);
        }
        let count = u64::from(self.sink.count());
        if count > 0 {
            // On failure: no ack, so the client keeps the chunk and sends it
            // again.
            self.sink.write(false)?;
            metrics::buffer_ingested(crate::Mode::Fluent, count, bytes, truncated);
        }
        if truncated > 0 && !self.warned_truncation {
            self.warned_truncation = true;
            tracing::warn!(protocol = "fluent", peer = %self.peer, max_line_bytes = self.max_line_bytes, "event longer than the line limit was cut and flagged (logged once per connection; raise --max-line to keep longer events)");
        }
        if let Some(chunk) = info.chunk_bytes(frame.bytes()) {
            encode_ack(chunk, &mut self.acks);
        }
        Ok(())
    }

    fn answer_ping(&mut self, ping: &sluice_fluent::PingMessage) -> Result<(), IngestError> {
        let (Some(nonce), Some(key)) = (self.nonce, self.config.shared_key.as_ref()) else {
            return Err(IngestError::UnexpectedPing);
        };
        let mut reply = Vec::new();
        if ping.verify_shared_key(&nonce, key.as_bytes()) {
            handshake::encode_pong_ok(
                &self.config.hostname,
                ping,
                &nonce,
                key.as_bytes(),
                &mut reply,
            );
            send(&mut self.writer, "PONG", &reply)?;
            self.nonce = None;
            Ok(())
        } else {
            handshake::encode_pong_refused("shared key mismatch", &mut reply);
            let _ = self.writer.write_all(&reply);
            Err(IngestError::AuthFailed)
        }
    }

    /// Make the written frames as durable as promised, then acknowledge them.
    fn release_acks(&mut self) -> Result<(), IngestError> {
        if self.acks.is_empty() {
            return Ok(());
        }
        if self.config.ack_after_fsync {
            self.sink.sync()?;
        }
        let sent = send(&mut self.writer, "acks", &self.acks);
        self.acks.clear();
        sent
    }
}

fn send(writer: &mut TcpStream, what: &'static str, bytes: &[u8]) -> Result<(), IngestError> {
    writer
        .write_all(bytes)
        .map_err(|source| IngestError::Send { what, source })
}

/// Answer Fluentd's UDP heartbeats on the forward port until `shutdown`.
pub async fn serve_udp_heartbeats(socket: tokio::net::UdpSocket, shutdown: Arc<AtomicBool>) {
    let mut buf = [0u8; 128];
    while !shutdown.load(Ordering::Relaxed) {
        match tokio::time::timeout(POLL_INTERVAL, socket.recv_from(&mut buf)).await {
            Ok(Ok((_, from))) => {
                let _ = socket
                    .send_to(sluice_fluent::UDP_HEARTBEAT_REPLY, from)
                    .await;
            }
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "fluent heartbeat socket error");
            }
            Err(_) => {}
        }
    }
}
