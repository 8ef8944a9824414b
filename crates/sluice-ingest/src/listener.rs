//! The ingest listeners: one accept loop for every port, and one thread,
//! id generator and active segment per connection (OK Log's key ingest fix:
//! no lock is shared between connections on the hot path).
//!
//! Each connection is served by the intake loop
//! ([`sluice_record::intake::serve`]) with its protocol: `stream.rs` for
//! fast, durable and syslog, [`crate::fluent`], and `batch.rs`. The
//! loop reads with a timeout of `POLL_INTERVAL`, so that a connection
//! seals its segment by age while idle and sees shutdown; a segment is
//! sealed when it reaches `segment_target_bytes`, when `flush_age` has
//! passed since it was created, and when the connection ends. The socket is
//! closed only after that, so that in durable mode the client sees the close
//! after everything it sent is on disk.

use std::{
    io,
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use sluice_record::intake;
use tokio::net::TcpListener;

use crate::{
    batch::Batch, error::IngestError, fluent::Fluent, log::IngestLog, metrics, stream::Stream,
};

/// How often an idle connection wakes to check its segment's age and
/// shutdown.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The protocol a listener serves: one port each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Lines, fire-and-forget (`stream.rs`).
    Fast,
    /// Lines, each batch fsynced before the next read.
    Durable,
    /// The acknowledged batch protocol (`batch.rs`).
    Batch,
    /// The Fluentd forward protocol (see [`crate::fluent`]).
    Fluent,
    /// syslog over TCP (`stream.rs`).
    Syslog,
}

impl Mode {
    /// The `protocol` label of the mode's metrics and logs, as its flag
    /// names it: `fast`, `durable`, `batch`, `fluent`, `syslog`.
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

/// Settings of a node's listeners, cloned into each connection.
/// [`Default`] takes this module's constants.
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

/// The default address of the fast port (OK Log's, for `nc` and `oklog
/// forward`).
pub const DEFAULT_FAST_ADDR: &str = "127.0.0.1:7651";
/// The default address of the durable port.
pub const DEFAULT_DURABLE_ADDR: &str = "127.0.0.1:7652";
/// The default address of the batch protocol's port.
pub const DEFAULT_BATCH_ADDR: &str = "127.0.0.1:7653";
/// The default address of the Fluentd forward port (Fluentd's own port).
pub const DEFAULT_FLUENT_ADDR: &str = "127.0.0.1:24224";
/// The default address of the syslog port.
pub const DEFAULT_SYSLOG_ADDR: &str = "127.0.0.1:5140";

/// The default longest line kept: 1 MiB (`--max-line`).
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;
/// The default size at which an active segment is sealed: 16 MiB
/// (`--segment-size`).
pub const DEFAULT_SEGMENT_TARGET_BYTES: u64 = 16 << 20;
/// The default age at which an active segment is sealed (`--flush-age`).
pub const DEFAULT_FLUSH_AGE: Duration = Duration::from_secs(1);
/// Bytes offered to each `read` of a connection: 256 KiB, enough for one
/// read to fill a batch at line rate, small enough per connection.
pub const READ_CHUNK_BYTES: usize = 256 << 10;
/// The default connections accepted at once per port
/// (`--max-connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            segment_target_bytes: DEFAULT_SEGMENT_TARGET_BYTES,
            flush_age: DEFAULT_FLUSH_AGE,
            read_chunk_bytes: READ_CHUNK_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
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
    /// Bind `addr` for `mode`. Connections write to `log` with `config`,
    /// and [`serve`](Self::serve) returns once `shutdown` is set.
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

    /// The address bound (its port when `addr` asked for port 0).
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

impl Connection {
    fn run(self, mut stream: TcpStream) {
        metrics::connection_opened(self.mode);
        if let Err(err) = self.serve(&mut stream) {
            tracing::warn!(protocol = self.mode.name(), peer = %self.peer, error = %err, "ingest connection ended with an error");
        }
        // Closing only now matters for durable mode: the client sees the
        // close after everything it sent is on disk.
        drop(stream);
        metrics::connection_closed(self.mode);
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    fn serve(&self, stream: &mut TcpStream) -> Result<(), IngestError> {
        stream
            .set_read_timeout(Some(POLL_INTERVAL))
            .map_err(IngestError::Setup)?;
        let (peer, log, config) = (self.peer, &self.log, &self.config);
        let stop = &*self.shutdown;
        match self.mode {
            Mode::Fast | Mode::Durable | Mode::Syslog => {
                intake::serve(stream, stop, &mut Stream::new(self.mode, peer, log, config))
            }
            Mode::Fluent => {
                let mut fluent = Fluent::open(stream, peer, log, config)?;
                intake::serve(stream, stop, &mut fluent)
            }
            Mode::Batch => {
                let (mut batch, replier) = Batch::open(stream, peer, log, config, &self.shutdown)?;
                let served = intake::serve(stream, stop, &mut batch);
                // Closing the reply queue lets the replier send what is
                // queued and exit.
                drop(batch);
                let _ = replier.join();
                served
            }
        }
    }
}
