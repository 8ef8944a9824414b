//! The Fluentd forward protocol listener (port 24224).
//!
//! The codec is [`sluice_fluent`]; this module turns frames into records:
//! - the tag becomes the topic (bytes a topic cannot hold become `_`);
//! - the record map becomes one line of JSON, the payload (longer than
//!   `--max-line`, it is cut there and flagged truncated, as a line is);
//! - the event time becomes the ULID time (clamped to a minute ahead of
//!   now); without one, the arrival time.
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
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use sluice_fluent::{
    DrainError, FrameBuffer, Limits, Scratch, decode_frame, encode_ack, handshake,
};
use sluice_record::{
    BatchEncoder, FLAG_TRUNCATED, IdGenerator, Record, Ulid, clamp_time_ms, now_ms,
};

use crate::{
    listener::{IngestConfig, POLL_INTERVAL, is_idle},
    log::IngestLog,
    metrics,
    sink::SegmentSink,
};

/// Settings of the fluent listener.
#[derive(Debug, Clone)]
pub struct FluentConfig {
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

/// Topic for events whose tag is empty after cleaning.
const FALLBACK_TOPIC: &[u8] = b"fluent";

pub(crate) fn serve(
    stream: &mut TcpStream,
    peer: SocketAddr,
    log: &Arc<IngestLog>,
    config: &IngestConfig,
    shutdown: &AtomicBool,
) -> Result<(), String> {
    stream
        .set_read_timeout(Some(POLL_INTERVAL))
        .map_err(|e| e.to_string())?;
    let mut conn = FluentConnection {
        sink: SegmentSink::new(log.clone(), config.clone()),
        config: config.fluent.clone(),
        frames: FrameBuffer::new(config.read_chunk_bytes),
        scratch: Scratch::new(),
        encoder: BatchEncoder::new(),
        ids: IdGenerator::new(),
        topic: Vec::new(),
        acks: Vec::new(),
        peer,
        nonce: None,
        max_line_bytes: config.max_line_bytes,
        warned_truncation: false,
    };
    if conn.config.shared_key.is_some() {
        let mut nonce = [0u8; 16];
        rand::fill(&mut nonce);
        let mut helo = Vec::new();
        handshake::encode_helo(&nonce, b"", true, &mut helo);
        stream
            .write_all(&helo)
            .map_err(|e| format!("send HELO: {e}"))?;
        conn.nonce = Some(nonce);
    }
    let outcome = conn.run(stream, shutdown);
    let sealed = conn.sink.maybe_seal(true);
    outcome.and(sealed)
}

struct FluentConnection {
    sink: SegmentSink,
    config: FluentConfig,
    /// Received bytes, cut into frames.
    frames: FrameBuffer,
    scratch: Scratch,
    encoder: BatchEncoder,
    ids: IdGenerator,
    /// Scratch for the cleaned tag.
    topic: Vec<u8>,
    /// Acks of the frames written from the current read buffer.
    acks: Vec<u8>,
    peer: SocketAddr,
    /// Set while the shared-key handshake is not yet done.
    nonce: Option<[u8; 16]>,
    /// `--max-line`: an event's JSON payload is cut there and flagged, as
    /// a line is.
    max_line_bytes: usize,
    warned_truncation: bool,
}

impl FluentConnection {
    fn run(&mut self, stream: &mut TcpStream, shutdown: &AtomicBool) -> Result<(), String> {
        loop {
            if shutdown.load(Ordering::Relaxed) {
                return Ok(());
            }
            match stream.read(self.frames.spare()) {
                Ok(0) => {
                    if self.frames.pending() > 0 {
                        metrics::fluent_error("incomplete_at_eof");
                        tracing::warn!(peer = %self.peer, buffered = self.frames.pending(), "fluent connection closed in the middle of a frame; the partial frame was discarded");
                    }
                    return Ok(());
                }
                Ok(n) => {
                    self.frames.filled(n);
                    let outcome = self.process(stream);
                    // Acks for everything written before a bad frame still go out.
                    self.release_acks(stream)?;
                    outcome?;
                }
                Err(e) if is_idle(&e) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
            self.sink.maybe_seal(false)?;
            if self.frames.shrink() {
                self.scratch.trim(1 << 20);
            }
        }
    }

    /// Handle every complete frame in the buffer.
    fn process(&mut self, stream: &mut TcpStream) -> Result<(), String> {
        let limits = self.config.limits;
        let mut frames = std::mem::take(&mut self.frames);
        let result = frames.drain(&limits, |frame| self.frame(frame, stream));
        self.frames = frames;
        result.map_err(|e| match e {
            DrainError::Bad(err) => self.refuse("bad_frame", &err.to_string()),
            DrainError::Frame(e) => e,
        })
    }

    fn refuse(&self, reason: &'static str, detail: &str) -> String {
        metrics::fluent_error(reason);
        tracing::warn!(peer = %self.peer, reason, error = detail, "closing fluent connection: bad frame (frames acknowledged before it are safe)");
        format!("bad fluent frame: {detail}")
    }

    /// Decode one frame and write its events.
    fn frame(&mut self, frame: &[u8], stream: &mut TcpStream) -> Result<(), String> {
        let now = now_ms();
        self.encoder.begin();
        let (encoder, ids, topic) = (&mut self.encoder, &mut self.ids, &mut self.topic);
        let mut topic_ready = false;
        let (mut first, mut last) = (Ulid(u128::MAX), Ulid(0));
        let (mut bytes, mut truncated) = (0u64, 0u64);
        let max_line = self.max_line_bytes;
        let decoded = decode_frame(frame, &self.config.limits, &mut self.scratch, |event| {
            let ms = event
                .time_ns
                .filter(|ns| *ns > 0)
                .map_or(now, |ns| clamp_time_ms((ns / 1_000_000) as u64, now));
            let id = ids.at_origin(ms);
            first = first.min(id);
            last = last.max(id);
            // One frame has one tag: clean it once.
            if !topic_ready {
                sluice_record::clean_topic(event.tag.as_bytes(), FALLBACK_TOPIC, topic);
                topic_ready = true;
            }
            // A record's JSON can be far larger than its msgpack (a string
            // of control bytes grows sixfold), so it is held to the line
            // limit like any line.
            let (payload, flags) = match event.payload.get(..max_line) {
                Some(cut) if cut.len() < event.payload.len() => {
                    truncated += 1;
                    (cut, FLAG_TRUNCATED)
                }
                _ => (event.payload, 0),
            };
            bytes += payload.len() as u64;
            encoder.push(Record {
                id,
                flags,
                topic: &topic[..],
                payload,
            });
        });
        let info = match decoded {
            Ok(info) => info,
            Err(err) => {
                self.encoder.begin();
                return Err(self.refuse("bad_frame", &err.to_string()));
            }
        };
        if let Some(ping) = &info.handshake {
            return self.answer_ping(ping, stream);
        }
        if self.nonce.is_some() {
            return Err(self.refuse("no_handshake", "events before the shared-key handshake"));
        }
        let count = self.encoder.count() as u64;
        if count > 0 {
            if let Err(failure) = self.sink.append(&mut self.encoder, first, last, false) {
                metrics::records_dropped("write_error", count);
                // No ack: the client keeps the chunk and sends it again.
                return Err(format!("write fluent events: {}", failure.message));
            }
            metrics::buffer_ingested(crate::Mode::Fluent, count, bytes, truncated);
        }
        if truncated > 0 && !self.warned_truncation {
            self.warned_truncation = true;
            tracing::warn!(protocol = "fluent", peer = %self.peer, max_line_bytes = max_line, "event longer than the line limit was cut and flagged (logged once per connection; raise --max-line to keep longer events)");
        }
        if let Some(chunk) = info.chunk_bytes(frame) {
            encode_ack(chunk, &mut self.acks);
        }
        Ok(())
    }

    fn answer_ping(
        &mut self,
        ping: &sluice_fluent::PingMessage,
        stream: &mut TcpStream,
    ) -> Result<(), String> {
        let (Some(nonce), Some(key)) = (self.nonce, self.config.shared_key.as_ref()) else {
            return Err(self.refuse("unexpected_ping", "PING without a HELO"));
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
            stream
                .write_all(&reply)
                .map_err(|e| format!("send PONG: {e}"))?;
            self.nonce = None;
            Ok(())
        } else {
            handshake::encode_pong_refused("shared key mismatch", &mut reply);
            let _ = stream.write_all(&reply);
            Err(self.refuse("auth_failed", "shared key mismatch"))
        }
    }

    /// Make the written frames as durable as promised, then acknowledge them.
    fn release_acks(&mut self, stream: &mut TcpStream) -> Result<(), String> {
        if self.acks.is_empty() {
            return Ok(());
        }
        if self.config.ack_after_fsync {
            self.sink.sync().map_err(|f| f.message)?;
        }
        let sent = stream.write_all(&self.acks);
        self.acks.clear();
        sent.map_err(|e| format!("send acks: {e}"))
    }
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
