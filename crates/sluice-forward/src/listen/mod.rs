//! The local agent: `sluice forward --listen fluent://ADDR` and
//! `--listen syslog://ADDR`.
//!
//! Applications log to localhost, in the Fluentd forward protocol
//! (`fluent.rs`) or in syslog over TCP (`syslog.rs`); their events become
//! batches in the forwarder's queue, and from there the queue, the spool and
//! the senders carry them to the ingesters as they carry lines read from a
//! file.
//!
//! Each connection is served by the intake loop
//! ([`sluice_record::intake::serve`]) that serves the ingester's ports, and
//! each event becomes a record by the same mapping as there
//! ([`sluice_fluent::Frame::records`], [`sluice_syslog::record`]): the tag
//! or APP-NAME as its topic, its time (clamped) as the record's origin time,
//! the record as one line of JSON cut at `--max-line` (fluent) or the
//! message line (syslog).
//!
//! Acknowledgements: a fluent chunk is acknowledged to its client only once
//! every batch made from it is safe, meaning durable in the spool (with
//! `--spool`) or acknowledged by an ingester (without). A dropped batch is
//! never acknowledged: the client's connection is closed and it sends the
//! chunk again. On a stop, reading ends at once; without a spool, a chunk
//! already read is still acknowledged if its batches are acked within
//! `--drain-timeout`, so its client does not send it again. syslog has no
//! acknowledgements; its lines are as safe as the forwarder's queue.
//!
//! Limits: connections (`max_connections`; more are closed at once and
//! counted), frame sizes (the fluent [`Limits`] and chunk ids of at most
//! 1 KiB, the syslog line limit), and memory through the queue's bound (a
//! full queue blocks the connections, which pushes back on the clients).

mod fluent;
mod syslog;

use std::{
    net::{SocketAddr, TcpListener},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::metrics;
use sluice_fluent::{FluentError, Limits};
use sluice_record::{IdGenerator, Ulid, intake::ReadError, now_ms, wire::BatchBuilder};

use crate::{
    ForwardError,
    queue::{Batch, Queue},
    reader::BatchConfig,
};

/// What the agent listens for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// The Fluentd forward protocol (Fluent Bit, fluent-logger, Docker).
    Fluent(String),
    /// syslog over TCP: RFC 6587 framing, RFC 5424 or 3164 messages.
    Syslog(String),
}

impl Listen {
    /// Parse `fluent://HOST:PORT` or `syslog://HOST:PORT` (a trailing `/`
    /// is dropped); anything else is [`ForwardError::BadListen`].
    pub fn parse(url: &str) -> Result<Listen, ForwardError> {
        let bad = || ForwardError::BadListen(url.to_string());
        let (scheme, addr) = url.split_once("://").ok_or_else(bad)?;
        let addr = addr.trim_end_matches('/');
        if addr.is_empty() || !addr.contains(':') {
            return Err(bad());
        }
        match scheme {
            "fluent" => Ok(Listen::Fluent(addr.to_string())),
            "syslog" => Ok(Listen::Syslog(addr.to_string())),
            _ => Err(bad()),
        }
    }

    fn addr(&self) -> &str {
        match self {
            Listen::Fluent(a) | Listen::Syslog(a) => a,
        }
    }
}

/// Settings of the agent's listeners.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Open connections, over all listeners; more are closed at once.
    pub max_connections: usize,
    /// Limits on fluent frames.
    pub fluent_limits: Limits,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            max_connections: crate::defaults::LISTEN_MAX_CONNECTIONS,
            fluent_limits: Limits::default(),
        }
    }
}

/// A bound listener, ready to serve.
pub struct Bound {
    what: Listen,
    listener: TcpListener,
}

impl Bound {
    /// The address bound (its port when the URL asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Bind every listener now, so a taken port is an error at start.
pub fn bind(listens: &[Listen]) -> Result<Vec<Bound>, ForwardError> {
    listens
        .iter()
        .map(|what| {
            let listener = TcpListener::bind(what.addr())
                .and_then(|l| l.set_nonblocking(true).map(|_| l))
                .map_err(|source| ForwardError::Listen {
                    addr: what.addr().to_string(),
                    source,
                })?;
            tracing::info!(listen = ?what, addr = %listener.local_addr().map_or_else(|_| what.addr().to_string(), |a| a.to_string()), "listening");
            Ok(Bound {
                what: what.clone(),
                listener,
            })
        })
        .collect()
}

/// What every connection shares.
pub(crate) struct Intake<'a> {
    pub queue: &'a Arc<Queue>,
    pub seqs: &'a AtomicU64,
    pub batch: &'a BatchConfig,
    pub config: &'a ListenConfig,
    pub stop: &'a AtomicBool,
    /// After a stop, how long acks are still awaited for the chunks already
    /// read (`--drain-timeout`; zero with a spool, where what is not safe
    /// yet is left to the client to send again).
    pub drain: Duration,
}

impl Intake<'_> {
    pub(crate) fn next_seq(&self) -> u64 {
        self.seqs.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Stopping, and the time to wait for acks ([`drain`](Self::drain),
    /// from when the queue heard of the stop) is up.
    pub(crate) fn drain_over(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            && match self.queue.input_stopped_at() {
                Some(at) => at.elapsed() >= self.drain,
                None => self.drain.is_zero(),
            }
    }
}

/// Why an agent connection was closed (logged with its peer).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ListenError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("set up the connection: {0}")]
    Setup(#[source] std::io::Error),
    #[error("bad fluent frame: {0}")]
    BadFrame(#[from] FluentError),
    #[error(
        "bad fluent frame: the agent does not take the shared-key handshake; send without a key"
    )]
    Handshake,
    #[error(
        "bad fluent frame: a chunk option of {len} bytes; at most {} are taken",
        fluent::MAX_CHUNK_BYTES
    )]
    ChunkTooLong { len: usize },
    #[error("the ack writer stopped")]
    AckWriterStopped,
    #[error("the ack writer panicked")]
    AckWriterPanicked,
    #[error("send an ack: {0}")]
    SendAck(#[source] std::io::Error),
    #[error("stopping before the chunk was safe; not acknowledged")]
    StoppedBeforeSafe,
    #[error("the forwarder stopped before the chunk was safe")]
    ForwarderStopped,
    #[error("a batch of the chunk was dropped (--on-full); not acknowledged")]
    ChunkDropped,
    #[error("sync the spool: {0}")]
    SyncSpool(#[source] std::io::Error),
}

impl ListenError {
    /// The label under which a fluent connection closed for what its
    /// client sent is counted, if it was closed for that.
    fn fluent_refusal(&self) -> Option<&'static str> {
        Some(match self {
            ListenError::BadFrame(_) => "bad_frame",
            ListenError::Handshake => "handshake",
            ListenError::ChunkTooLong { .. } => "chunk_too_long",
            _ => return None,
        })
    }
}

/// How often blocked reads and accepts look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// Serve every listener until `stop` is set; then close them and wait for
/// their connections to end.
pub(crate) fn serve(bound: Vec<Bound>, intake: &Intake<'_>) -> std::io::Result<()> {
    let open = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for Bound { what, listener } in bound {
            let open = &open;
            std::thread::Builder::new()
                .name("forward-listen".into())
                .spawn_scoped(scope, move || {
                    accept_loop(scope, what, listener, intake, open);
                })?;
        }
        Ok(())
    })
}

fn accept_loop<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    what: Listen,
    listener: TcpListener,
    intake: &'scope Intake<'scope>,
    open: &'scope AtomicUsize,
) {
    let fluent = matches!(what, Listen::Fluent(_));
    let kind = if fluent { "fluent" } else { "syslog" };
    while !intake.stop.load(Ordering::Relaxed) {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(POLL);
                continue;
            }
            Err(e) => {
                // Out of descriptors and the like: wait, then go on.
                tracing::warn!(listener = kind, error = %e, "accept failed");
                std::thread::sleep(POLL);
                continue;
            }
        };
        if open.fetch_add(1, Ordering::Relaxed) >= intake.config.max_connections {
            open.fetch_sub(1, Ordering::Relaxed);
            metrics::listen_refused(kind, "too_many_connections");
            tracing::warn!(listener = kind, %peer, limit = intake.config.max_connections, "too many connections; closing this one");
            continue;
        }
        metrics::listen_connection(kind);
        let spawned = std::thread::Builder::new()
            .name(format!("forward-{kind}"))
            .spawn_scoped(scope, move || {
                let served = stream
                    .set_nonblocking(false)
                    .and_then(|_| stream.set_read_timeout(Some(POLL)))
                    .map_err(ListenError::Setup)
                    .and_then(|_| {
                        if fluent {
                            fluent::serve(stream, peer, intake)
                        } else {
                            syslog::serve(stream, peer, intake)
                        }
                    });
                if let Err(error) = served {
                    tracing::warn!(listener = kind, %peer, %error, "connection closed");
                }
                open.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            open.fetch_sub(1, Ordering::Relaxed);
            tracing::error!(listener = kind, error = %e, "cannot start a connection thread");
        }
    }
}

/// A batch being filled from one connection, for one topic, in the format
/// the destinations speak.
pub(crate) struct OpenBatch {
    topic: String,
    body: Body,
    base: Ulid,
    opened: Instant,
    records: u32,
}

enum Body {
    Sluice(BatchBuilder),
    Fluent(sluice_fluent::ForwardEncoder),
}

impl OpenBatch {
    /// `topic` must be valid ([`sluice_record::clean_topic`] makes it so).
    pub(crate) fn new(topic: &str, intake: &Intake<'_>, ids: &mut IdGenerator) -> OpenBatch {
        let body = if intake.batch.fluent {
            Body::Fluent(sluice_fluent::ForwardEncoder::new(topic))
        } else {
            Body::Sluice(BatchBuilder::new())
        };
        let base = ids.next_at(now_ms());
        // Record `i` gets the id `base + i` at its own time, so reserve the
        // ids it may use now (it holds at most `batch_records`), not when it
        // is sealed: a batch opened meanwhile (another syslog topic, the next
        // batch of a large fluent frame) would start at `base + 1`, and two
        // records of the same time would share an id (the store keeps one).
        ids.skip_to(Ulid(
            base.0 + u128::from(intake.batch.batch_records.max(1)) - 1,
        ));
        OpenBatch {
            topic: topic.to_string(),
            body,
            base,
            opened: Instant::now(),
            records: 0,
        }
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Add one record with its origin time.
    pub(crate) fn push(&mut self, time_ms: u64, line: &[u8]) {
        match &mut self.body {
            Body::Sluice(builder) => builder.push(Some(time_ms), line),
            Body::Fluent(encoder) => encoder.push(time_ms as i64 * 1_000_000, line),
        }
        self.records += 1;
    }

    pub(crate) fn records(&self) -> u32 {
        self.records
    }

    pub(crate) fn is_full(&self, config: &BatchConfig) -> bool {
        let bytes = match &self.body {
            Body::Sluice(builder) => builder.section_len(),
            Body::Fluent(encoder) => encoder.encoded_len(),
        };
        bytes >= config.batch_bytes || self.records >= config.batch_records
    }

    pub(crate) fn lingered(&self, config: &BatchConfig) -> bool {
        self.opened.elapsed() >= config.linger
    }

    /// Close the batch: a [`Batch`] with its seq, ready for the queue.
    pub(crate) fn seal(self, intake: &Intake<'_>, ids: &mut IdGenerator) -> Batch {
        let seq = intake.next_seq();
        let records = self.records as u64;
        let wire = match self.body {
            Body::Sluice(mut builder) => {
                builder
                    .seal(ids, self.base, seq, &self.topic, intake.batch.guarantee)
                    .0
            }
            Body::Fluent(mut encoder) => encoder.seal(&crate::acked::chunk_id(seq)),
        };
        Batch::new(seq, records, wire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_open_at_once_never_share_a_record_id() {
        let queue = Queue::new(1 << 20, crate::OnFull::Block);
        let seqs = AtomicU64::new(0);
        let batch = crate::ForwardConfig::new(Vec::new()).batch;
        let (config, stop) = (ListenConfig::default(), AtomicBool::new(false));
        let intake = Intake {
            queue: &queue,
            seqs: &seqs,
            batch: &batch,
            config: &config,
            stop: &stop,
            drain: Duration::ZERO,
        };
        let mut ids = IdGenerator::new();
        // The clock reads an earlier time than the last id (as within one
        // millisecond): new ids follow the last one.
        ids.next_at(now_ms() + 60_000);
        // Two syslog topics of one connection, or the first two batches of a
        // large fluent frame; their records have the same origin time.
        let time_ms = now_ms() - 1000;
        let mut open = [
            OpenBatch::new("billing", &intake, &mut ids),
            OpenBatch::new("nginx", &intake, &mut ids),
        ];
        for _ in 0..5 {
            for batch in &mut open {
                batch.push(time_ms, b"line");
            }
        }
        let mut seen = std::collections::HashSet::new();
        for batch in &open {
            for i in 0..batch.records() {
                let id = sluice_record::wire::record_id(batch.base, i, Some(time_ms));
                assert!(
                    seen.insert(id),
                    "record {i} of {} reuses {id}",
                    batch.topic()
                );
            }
        }
    }

    #[test]
    fn listen_urls_parse() {
        assert_eq!(
            Listen::parse("fluent://127.0.0.1:24224").unwrap(),
            Listen::Fluent("127.0.0.1:24224".into())
        );
        assert_eq!(
            Listen::parse("syslog://0.0.0.0:5140/").unwrap(),
            Listen::Syslog("0.0.0.0:5140".into())
        );
        for bad in ["127.0.0.1:24224", "udp://x:1", "fluent://", "syslog://host"] {
            assert!(Listen::parse(bad).is_err(), "{bad}");
        }
    }
}
