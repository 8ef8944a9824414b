//! The ingest listeners: fast and durable lines, and the batch protocol.
//!
//! The accept loop is shared; a batch connection is served by
//! [`crate::batch`]. The line ports take newline-delimited text (the OK Log wire format, so `oklog
//! forward` and `nc` can send). Each accepted connection gets its own
//! thread, [`LineFramer`] and active segment (OK Log's key ingest fix: no
//! lock is shared between connections on the hot path).
//!
//! Hot path, per read buffer: one `read`, lines split by `memchr`, one id
//! per line from a per-connection [`IdGenerator`], one batch encoded into a
//! reused buffer, one `write`. Nothing is allocated per line.
//!
//! - **fast**: fire-and-forget. Segments are fsynced when sealed.
//! - **durable**: the batch is fsynced before the next read, so when the
//!   server closes the connection after the client's EOF every line the
//!   client sent is on disk.
//!
//! A segment is sealed when it reaches `segment_target_bytes` or
//! `flush_age` has passed since it was created (checked after every read and
//! at least every `POLL_INTERVAL` while the connection is idle), and when the
//! connection ends.

use std::{
    io::{self, Read},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use sluice_record::{
    BatchEncoder, DEFAULT_TOPIC, FLAG_TRUNCATED, IdGenerator, LineFramer, Record, now_ms,
};
use tokio::net::TcpListener;

use crate::{log::IngestLog, metrics, sink::SegmentSink};

/// How often an idle connection wakes to check its segment's age and
/// shutdown.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A read that returned only because the poll interval passed (or a signal
/// interrupted it): not an error, read again.
pub(crate) fn is_idle(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Fast,
    Durable,
    /// The acknowledged batch protocol (see [`crate::batch`]).
    Batch,
    /// The Fluentd forward protocol (see [`crate::fluent`]).
    Fluent,
    /// syslog over TCP (see [`crate::syslog`]).
    Syslog,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Fast => "fast",
            Mode::Durable => "durable",
            Mode::Batch => "batch",
            Mode::Fluent => "fluent",
            Mode::Syslog => "syslog",
        }
    }
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Longest payload kept; longer lines are cut and flagged.
    pub max_line_bytes: usize,
    /// Seal a segment at this size.
    pub segment_target_bytes: u64,
    /// Seal a segment at this age.
    pub flush_age: Duration,
    /// Bytes offered to each `read`.
    pub read_chunk_bytes: usize,
    /// Connections accepted at once per listener; more are refused.
    pub max_connections: usize,
    /// Limits of the batch protocol.
    pub wire: sluice_record::wire::WireLimits,
    /// The fluent listener's limits, handshake and acks.
    pub fluent: crate::fluent::FluentConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_line_bytes: 1 << 20,
            segment_target_bytes: 16 << 20,
            flush_age: Duration::from_secs(1),
            read_chunk_bytes: 256 << 10,
            max_connections: 1024,
            wire: sluice_record::wire::WireLimits::default(),
            fluent: crate::fluent::FluentConfig::default(),
        }
    }
}

/// A bound listener, ready to serve.
pub struct Listener {
    mode: Mode,
    listener: TcpListener,
    log: Arc<IngestLog>,
    config: IngestConfig,
    shutdown: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
}

impl Listener {
    pub async fn bind(
        mode: Mode,
        addr: SocketAddr,
        log: Arc<IngestLog>,
        config: IngestConfig,
        shutdown: Arc<AtomicBool>,
    ) -> io::Result<Listener> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Listener {
            mode,
            listener,
            log,
            config,
            shutdown,
            active: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Connections being served right now.
    pub fn active_connections(&self) -> Arc<AtomicUsize> {
        self.active.clone()
    }

    /// Accept connections until `shutdown` is set.
    pub async fn serve(self) {
        let mode = self.mode;
        loop {
            if self.shutdown.load(Ordering::Relaxed) {
                return;
            }
            let accepted = tokio::time::timeout(POLL_INTERVAL, self.listener.accept()).await;
            let (stream, peer) = match accepted {
                Err(_) => continue,
                Ok(Ok(conn)) => conn,
                Ok(Err(err)) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(protocol = mode.name(), error = %err, "accept failed");
                    metrics::connection_rejected(mode, "accept_error");
                    tokio::time::sleep(POLL_INTERVAL).await;
                    continue;
                }
            };
            if self.active.load(Ordering::Relaxed) >= self.config.max_connections {
                metrics::connection_rejected(mode, "too_many_connections");
                tracing::warn!(protocol = mode.name(), %peer, limit = self.config.max_connections, "refusing connection: too many connections (raise --max-connections)");
                drop(stream);
                continue;
            }
            let stream = match stream.into_std().and_then(|s| {
                s.set_nonblocking(false)?;
                Ok(s)
            }) {
                Ok(s) => s,
                Err(err) => {
                    tracing::warn!(protocol = mode.name(), %peer, error = %err, "could not set up connection");
                    continue;
                }
            };
            self.active.fetch_add(1, Ordering::Relaxed);
            let conn = Connection {
                mode,
                peer,
                log: self.log.clone(),
                config: self.config.clone(),
                shutdown: self.shutdown.clone(),
                active: self.active.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("ingest-{}", mode.name()))
                .spawn(move || conn.run(stream));
            if let Err(err) = spawned {
                self.active.fetch_sub(1, Ordering::Relaxed);
                metrics::connection_rejected(mode, "thread_spawn");
                tracing::error!(protocol = mode.name(), %peer, error = %err, "could not start a connection thread");
            }
        }
    }
}

struct Connection {
    mode: Mode,
    peer: SocketAddr,
    log: Arc<IngestLog>,
    config: IngestConfig,
    shutdown: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
}

/// Per-connection state of the hot path, reused for every buffer.
struct Pipeline {
    framer: LineFramer,
    ids: IdGenerator,
    encoder: BatchEncoder,
    sink: SegmentSink,
    warned_truncation: bool,
}

impl Connection {
    fn run(self, mut stream: TcpStream) {
        metrics::connection_opened(self.mode);
        let result = match self.mode {
            Mode::Batch => crate::batch::serve(
                &mut stream,
                self.peer,
                &self.log,
                &self.config,
                &self.shutdown,
            ),
            Mode::Fluent => crate::fluent::serve(
                &mut stream,
                self.peer,
                &self.log,
                &self.config,
                &self.shutdown,
            ),
            Mode::Syslog => crate::syslog::serve(
                &mut stream,
                self.peer,
                &self.log,
                &self.config,
                &self.shutdown,
            ),
            Mode::Fast | Mode::Durable => self.serve(&mut stream),
        };
        if let Err(err) = result {
            tracing::warn!(protocol = self.mode.name(), peer = %self.peer, error = %err, "ingest connection ended with an error");
        }
        // Closing only now matters for durable mode: the client sees the
        // close after everything it sent is on disk.
        drop(stream);
        metrics::connection_closed(self.mode);
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    fn serve(&self, stream: &mut TcpStream) -> Result<(), String> {
        stream
            .set_read_timeout(Some(POLL_INTERVAL))
            .map_err(|e| e.to_string())?;
        let mut p = Pipeline {
            framer: LineFramer::new(self.config.max_line_bytes, self.config.read_chunk_bytes),
            ids: IdGenerator::new(),
            encoder: BatchEncoder::new(),
            sink: SegmentSink::new(self.log.clone(), self.config.clone()),
            warned_truncation: false,
        };
        let outcome = loop {
            if self.shutdown.load(Ordering::Relaxed) {
                break Ok(());
            }
            match stream.read(p.framer.spare()) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    p.framer.filled(n);
                    if let Err(e) = self.ingest(&mut p, false, n as u64) {
                        break Err(e);
                    }
                }
                Err(e) if is_idle(&e) => {}
                // A reset connection: keep every byte that arrived, including
                // an unterminated last line.
                Err(e) => break Err(format!("read: {e}")),
            }
            if let Err(e) = p.sink.maybe_seal(false) {
                break Err(e);
            }
        };
        let finished = self
            .ingest(&mut p, true, 0)
            .and_then(|_| p.sink.maybe_seal(true));
        outcome.and(finished)
    }

    /// Turn the lines in the framer into one batch and append it.
    fn ingest(&self, p: &mut Pipeline, at_eof: bool, bytes: u64) -> Result<(), String> {
        let ms = now_ms();
        p.encoder.begin();
        let (encoder, ids) = (&mut p.encoder, &mut p.ids);
        let mut push = |line: sluice_record::FramedLine<'_>| {
            encoder.push(Record {
                id: ids.next_at(ms),
                flags: if line.truncated { FLAG_TRUNCATED } else { 0 },
                topic: DEFAULT_TOPIC,
                payload: line.bytes,
            })
        };
        let mut truncated = p.framer.drain(&mut push);
        if at_eof {
            truncated += p.framer.finish(&mut push);
        }
        let count = p.encoder.count();
        metrics::buffer_ingested(self.mode, count as u64, bytes, truncated);
        if truncated > 0 && !p.warned_truncation {
            p.warned_truncation = true;
            tracing::warn!(protocol = self.mode.name(), peer = %self.peer, max_line_bytes = self.config.max_line_bytes, "line longer than the limit was cut and flagged (logged once per connection; raise --max-line to keep longer lines)");
        }
        if count == 0 {
            return Ok(());
        }
        let last = p.ids.last().expect("ids were handed out");
        let first = sluice_record::Ulid(last.0 - (count as u128 - 1));
        let sync = self.mode == Mode::Durable;
        if let Err(failure) = p.sink.append(&mut p.encoder, first, last, sync) {
            metrics::records_dropped("write_error", count as u64);
            return Err(failure.message);
        }
        Ok(())
    }
}
