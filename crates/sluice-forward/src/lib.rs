//! The forwarder: read lines and deliver them to ingesters.
//!
//! Destinations, by URL scheme:
//! - `sluice://HOST:PORT` (the default when no scheme is given): the batch
//!   protocol with acknowledgements ([`acked`]). Lines are batched
//!   ([`reader`]), held in a bounded queue ([`queue`]), sent pipelined, and
//!   re-sent until acknowledged. On end of input the forwarder waits for
//!   every ack before it returns (after a stop, for `drain_timeout` at
//!   most, and not at all with a spool).
//! - `fluent://HOST:PORT`: the same path, with each batch a Fluentd
//!   Forward-mode frame whose `chunk` ack stands for the `OK`.
//! - `tcp://HOST:PORT`: plain lines for the fast and durable ports and for
//!   OK Log ([`lines`]); no acknowledgement.
//!
//! Several `sluice://` or `fluent://` destinations are used in `failover`
//! mode (one at a time, moving on when it fails) or `balance` mode (all at
//! once, taking from one queue).
//!
//! Input is stdin, files followed through rotation ([`follow`]) with a
//! checkpoint ([`checkpoint`]), or local applications speaking the Fluentd
//! forward protocol or syslog to the agent's listeners ([`listen`]). With a
//! spool ([`spool`]) every batch is written ahead to disk, so a full queue,
//! a destination that is down, or a restart loses nothing that was read.
//! Every default and limit is named in [`defaults`].

pub mod acked;
pub mod checkpoint;
mod connect;
pub mod defaults;
pub mod follow;
pub mod lines;
pub mod listen;
mod metrics;
pub mod queue;
pub mod reader;
pub mod spool;

use std::{
    collections::HashMap,
    io::{self, Read},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

pub use lines::{ForwardStats, LinesConfig, forward_lines};
pub use listen::{Listen, ListenConfig};
pub use metrics::describe as describe_metrics;
pub use queue::{Counts, OnFull};
use sluice_record::wire::Guarantee;

/// Why a forwarder run could not start, or ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// A destination URL with a scheme other than `sluice`, `fluent` or
    /// `tcp`, or without a `HOST:PORT`.
    #[error(
        "unsupported destination {0:?}: use sluice://HOST:PORT (batch protocol, acknowledged), fluent://HOST:PORT (Fluentd forward protocol, acknowledged) or tcp://HOST:PORT (plain lines)"
    )]
    BadDestination(String),
    /// Destinations of more than one scheme; the text counts each.
    #[error("destinations mix schemes ({0}); use one of sluice://, fluent:// or tcp://")]
    MixedSchemes(String),
    /// This many `tcp://` destinations; plain lines go to one.
    #[error("plain-lines (tcp://) forwarding takes one destination, got {0}")]
    ManyLineDestinations(usize),
    /// Reading stdin or a followed file failed, or a forwarder thread
    /// could not be started.
    #[error("read input: {0}")]
    Input(#[source] io::Error),
    /// The spool directory could not be created, listed or read.
    #[error("open the spool in {dir}: {source}; check that the directory is writable")]
    Spool {
        /// The spool directory (`--spool`).
        dir: PathBuf,
        /// The failed operation's error.
        #[source]
        source: io::Error,
    },
    /// The checkpoint file could not be read, or is not a checkpoint.
    #[error("read the checkpoint {path}: {source}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// The read's error, or why its contents are invalid.
        #[source]
        source: io::Error,
    },
    /// `--file`, `--listen` or `--spool` with a `tcp://` destination, which
    /// acknowledges nothing that could advance a checkpoint, answer a
    /// client or free the spool.
    #[error(
        "--file, --listen and --spool need sluice:// or fluent:// destinations (tcp:// has no acknowledgements)"
    )]
    FileNeedsAcks,
    /// A `--listen` URL other than `fluent://HOST:PORT` or
    /// `syslog://HOST:PORT`.
    #[error(
        "unsupported --listen {0:?}: use fluent://HOST:PORT (Fluentd forward protocol) or syslog://HOST:PORT (syslog over TCP)"
    )]
    BadListen(String),
    /// An agent listener could not bind its address.
    #[error("listen on {addr}: {source}; is another process (fluentd, rsyslog) using the port?")]
    Listen {
        /// The address of the `--listen` URL.
        addr: String,
        /// The bind's error.
        #[source]
        source: io::Error,
    },
    /// A plain-lines destination could not be reached in
    /// [`LinesConfig::max_attempts`] attempts in a row.
    #[error("gave up on {addr} after {attempts} attempts: {source}")]
    GaveUp {
        /// The destination's `host:port`.
        addr: String,
        /// Attempts made in a row.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        source: io::Error,
    },
}

/// Where a forwarder sends, by its URL's scheme; each holds the
/// `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The batch protocol.
    Sluice(String),
    /// Plain lines.
    Lines(String),
    /// The Fluentd forward protocol, Forward mode with chunk acks.
    Fluent(String),
}

impl Destination {
    /// Parse `sluice://HOST:PORT`, `fluent://HOST:PORT` or
    /// `tcp://HOST:PORT`; no scheme means `sluice://`, and a trailing `/`
    /// is dropped. Anything else, or an address without a `:`, is
    /// [`ForwardError::BadDestination`].
    pub fn parse(url: &str) -> Result<Destination, ForwardError> {
        let (scheme, addr) = match url.split_once("://") {
            Some((scheme, rest)) => (scheme, rest.trim_end_matches('/')),
            None => ("sluice", url),
        };
        if addr.is_empty() || !addr.contains(':') {
            return Err(ForwardError::BadDestination(url.to_string()));
        }
        match scheme {
            "sluice" => Ok(Destination::Sluice(addr.to_string())),
            "tcp" => Ok(Destination::Lines(addr.to_string())),
            "fluent" => Ok(Destination::Fluent(addr.to_string())),
            _ => Err(ForwardError::BadDestination(url.to_string())),
        }
    }
}

/// How several acknowledged destinations share the batches (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One connection at a time, walking the destinations in order: the
    /// next one when the current one fails.
    Failover,
    /// One connection per destination, all taking from the one queue;
    /// each fails over to the others in turn.
    Balance,
}

/// Settings of a forwarder run; [`new`](Self::new) takes them from
/// [`defaults`].
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// Where to send, all of one scheme.
    pub destinations: Vec<Destination>,
    /// How several destinations share the batches.
    pub mode: Mode,
    /// How lines become batches: topic, guarantee, size, linger, line
    /// limit, prefix.
    pub batch: reader::BatchConfig,
    /// Bytes of batches held in memory before `on_full` applies
    /// (`--queue-max`; at least 1).
    pub queue_max_bytes: usize,
    /// What a full queue, or a full spool, does.
    pub on_full: OnFull,
    /// Batches in flight per connection, unacknowledged (at least 1).
    pub window: usize,
    /// The longest wait between rounds of connection attempts.
    pub max_backoff: Duration,
    /// The disk spool, if any (`--spool`).
    pub spool: Option<SpoolConfig>,
    /// Where file checkpoints are kept (default: `checkpoints.json` in the
    /// spool directory, else `sluice-forward.checkpoints.json` in the
    /// working directory).
    pub checkpoint: Option<PathBuf>,
    /// How often a followed file is polled at its end.
    pub poll: Duration,
    /// On a stop signal without a spool: how long to wait for acks.
    pub drain_timeout: Duration,
    /// Settings of the agent's listeners ([`Source::Listen`]).
    pub listen: ListenConfig,
}

/// Where the disk spool is, and how much it may hold.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Directory of the spool files, created if missing (`--spool`).
    pub dir: PathBuf,
    /// Bytes of unresolved batches the spool holds before `on_full`
    /// applies (`--spool-max`).
    pub max_bytes: u64,
}

/// Where lines come from.
pub enum Source {
    /// A reader (stdin in the binary), read to its end.
    Stream(Box<dyn Read + Send>),
    /// Files followed through appends, rotation and truncation until
    /// stopped (`--file`), each from its checkpoint.
    Files(Vec<PathBuf>),
    /// Serve local clients until stopped (the agent).
    Listen(Vec<Listen>),
}

impl ForwardConfig {
    /// Settings for `destinations`, every other one at its default:
    /// failover, topic `default`, `write` acks, blocking when full, no
    /// spool.
    pub fn new(destinations: Vec<Destination>) -> ForwardConfig {
        ForwardConfig {
            destinations,
            mode: Mode::Failover,
            batch: reader::BatchConfig {
                topic: sluice_record::DEFAULT_TOPIC_STR.into(),
                guarantee: Guarantee::Write,
                batch_bytes: defaults::BATCH_BYTES,
                batch_records: defaults::BATCH_RECORDS,
                linger: defaults::LINGER,
                max_line_bytes: defaults::MAX_LINE_BYTES,
                prefix: Vec::new(),
                fluent: false,
            },
            queue_max_bytes: defaults::QUEUE_MAX_BYTES,
            on_full: OnFull::Block,
            window: defaults::WINDOW,
            max_backoff: defaults::MAX_BACKOFF,
            spool: None,
            checkpoint: None,
            poll: defaults::FILE_POLL,
            drain_timeout: defaults::DRAIN_TIMEOUT,
            listen: ListenConfig::default(),
        }
    }
}

/// What a run delivered.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A `sluice://` or `fluent://` run: the accounting of its records.
    Acked(Counts),
    /// A `tcp://` run: lines and bytes read and sent.
    Lines(ForwardStats),
}

/// Reads the live counts of a running forwarder (for SIGUSR1 and /metrics).
pub type CountsProbe = Arc<dyn Fn() -> Counts + Send + Sync>;

/// Forward every line of `input`. With `sluice://` destinations this
/// returns only when every record read was acknowledged or counted as
/// dropped.
pub fn forward(
    config: &ForwardConfig,
    input: impl Read + Send + 'static,
) -> Result<Outcome, ForwardError> {
    forward_observed(
        config,
        Source::Stream(Box::new(input)),
        Arc::new(AtomicBool::new(false)),
        |_| {},
    )
}

/// [`forward`] from any [`Source`], handing `observe` a probe of the live
/// counts first. Setting `stop` ends the run early: reading stops, and then
/// the forwarder waits up to `drain_timeout` for acks (with a spool it does
/// not wait: what is unacknowledged is on disk for the next run).
pub fn forward_observed(
    config: &ForwardConfig,
    input: Source,
    stop: Arc<AtomicBool>,
    observe: impl FnOnce(CountsProbe),
) -> Result<Outcome, ForwardError> {
    let mut lines = Vec::new();
    let mut sluice = Vec::new();
    let mut fluent = Vec::new();
    for d in &config.destinations {
        match d {
            Destination::Lines(addr) => lines.push(addr.clone()),
            Destination::Sluice(addr) => sluice.push(addr.clone()),
            Destination::Fluent(addr) => fluent.push(addr.clone()),
        }
    }
    let schemes = [!lines.is_empty(), !sluice.is_empty(), !fluent.is_empty()];
    if schemes.iter().filter(|s| **s).count() > 1 {
        return Err(ForwardError::MixedSchemes(format!(
            "{} sluice://, {} fluent://, {} tcp://",
            sluice.len(),
            fluent.len(),
            lines.len()
        )));
    }
    let protocol = if fluent.is_empty() {
        acked::Protocol::Sluice
    } else {
        sluice = fluent;
        acked::Protocol::Fluent
    };
    let mut batch_config = config.batch.clone();
    batch_config.fluent = protocol == acked::Protocol::Fluent;
    let batch_config = &batch_config;
    if !lines.is_empty() {
        if lines.len() > 1 {
            return Err(ForwardError::ManyLineDestinations(lines.len()));
        }
        let Source::Stream(input) = input else {
            return Err(ForwardError::FileNeedsAcks);
        };
        if config.spool.is_some() {
            return Err(ForwardError::FileNeedsAcks);
        }
        let stats = forward_lines(&LinesConfig::new(&lines[0]), input)?;
        return Ok(Outcome::Lines(stats));
    }

    // Listeners bind first, so a taken port fails the start.
    let bound = match &input {
        Source::Listen(listens) => listen::bind(listens)?,
        _ => Vec::new(),
    };

    // The queue, with the spool's leftovers from an earlier run first.
    let mut spooled_ends: HashMap<spool::SourceKey, u64> = HashMap::new();
    let (queue, max_seq) = match &config.spool {
        Some(sc) => {
            let (spool, recovered, stats) =
                spool::Spool::open(&sc.dir, sc.max_bytes).map_err(|source| {
                    ForwardError::Spool {
                        dir: sc.dir.clone(),
                        source,
                    }
                })?;
            if stats.batches > 0 || stats.skipped_bytes > 0 {
                tracing::info!(
                    batches = stats.batches,
                    records = stats.records,
                    skipped_bytes = stats.skipped_bytes,
                    "spool holds batches from an earlier run; they are sent first"
                );
            }
            for r in &recovered {
                if let Some(pos) = r.source {
                    let end = spooled_ends.entry(pos.key).or_default();
                    *end = (*end).max(pos.end);
                }
            }
            queue::Queue::with_spool(config.queue_max_bytes, config.on_full, spool, recovered)
        }
        None => (queue::Queue::new(config.queue_max_bytes, config.on_full), 0),
    };
    let checkpoint_path = match (&input, &config.checkpoint, &config.spool) {
        (Source::Files(_), Some(path), _) => Some(path.clone()),
        (Source::Files(_), None, Some(sc)) => Some(sc.dir.join("checkpoints.json")),
        (Source::Files(_), None, None) => Some(PathBuf::from("sluice-forward.checkpoints.json")),
        (Source::Stream(_) | Source::Listen(_), _, _) => None,
    };
    let checkpoints = match &checkpoint_path {
        Some(path) => checkpoint::load(path).map_err(|source| ForwardError::Checkpoint {
            path: path.clone(),
            source,
        })?,
        None => Vec::new(),
    };

    let probe = queue.clone();
    observe(Arc::new(move || probe.counts()));
    let senders_stop = Arc::new(AtomicBool::new(false));
    let sender_config = acked::SenderConfig {
        window: config.window.max(1),
        max_backoff: config.max_backoff,
        protocol,
    };
    let slots: Vec<Vec<String>> = match config.mode {
        Mode::Failover => vec![sluice.clone()],
        // Each slot starts at its own destination and fails over to the rest.
        Mode::Balance => (0..sluice.len())
            .map(|i| sluice[i..].iter().chain(&sluice[..i]).cloned().collect())
            .collect(),
    };
    let senders: Vec<_> = slots
        .into_iter()
        .map(|destinations| {
            let (config, queue, stop) =
                (sender_config.clone(), queue.clone(), senders_stop.clone());
            std::thread::Builder::new()
                .name("forward-send".into())
                .spawn(move || acked::run_slot(config, destinations, queue, stop))
                .map_err(ForwardError::Input)
        })
        .collect::<Result<_, _>>()?;
    // Checkpoints and spool cleanup, ten times a second; and on a stop
    // signal, tell the queue, so a producer blocked on a full queue lets go.
    let maintenance_stop = Arc::new(AtomicBool::new(false));
    let maintenance = {
        let (queue, stop, path, input_stop) = (
            queue.clone(),
            maintenance_stop.clone(),
            checkpoint_path.clone(),
            stop.clone(),
        );
        std::thread::Builder::new()
            .name("forward-checkpoint".into())
            .spawn(move || {
                let mut input_stopped = false;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(defaults::CHECKPOINT_INTERVAL);
                    if !input_stopped && input_stop.load(Ordering::Relaxed) {
                        queue.stop_input();
                        input_stopped = true;
                    }
                    if let Err(err) = queue.checkpoint(path.as_ref()) {
                        tracing::error!(error = %err, "cannot write the checkpoint or sync the spool; will retry");
                        std::thread::sleep(defaults::CHECKPOINT_RETRY);
                    }
                }
            })
            .map_err(ForwardError::Input)?
    };

    let seqs = AtomicU64::new(max_seq);
    let read = match input {
        Source::Stream(input) => reader::spawn_stream_reader(input)
            .and_then(|incoming| reader::run_batcher(incoming, batch_config, &queue, &seqs, &stop)),
        Source::Listen(_) => listen::serve(
            bound,
            &listen::Intake {
                queue: &queue,
                seqs: &seqs,
                batch: batch_config,
                config: &config.listen,
                stop: &stop,
                drain: match config.spool {
                    Some(_) => Duration::ZERO,
                    None => config.drain_timeout,
                },
            },
        ),
        Source::Files(paths) => std::thread::scope(|scope| {
            let batchers: Vec<_> = paths
                .iter()
                .map(|path| {
                    let resume = resume_for(path, &checkpoints, &spooled_ends);
                    let (tx, rx) = mpsc::sync_channel(4);
                    let (path, poll, follow_stop) = (path.clone(), config.poll, stop.clone());
                    std::thread::Builder::new()
                        .name("forward-follow".into())
                        .spawn(move || follow::follow(path, resume, poll, follow_stop, tx))?;
                    let (queue, seqs, stop) = (&queue, &seqs, &*stop);
                    Ok(scope
                        .spawn(move || reader::run_batcher(rx, batch_config, queue, seqs, stop)))
                })
                .collect::<io::Result<Vec<_>>>()?;
            let mut result = Ok(());
            for batcher in batchers {
                let outcome = batcher
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("a file batcher panicked")));
                if let Err(err) = outcome {
                    tracing::error!(error = %err, "stopped following a file");
                    result = Err(err);
                }
            }
            result
        }),
    };
    queue.close_input();
    if read.is_ok() {
        let started = Instant::now();
        loop {
            if queue.wait_drained(Some(defaults::STOP_CHECK)) {
                break;
            }
            // The drain counts from the stop (the listeners' ack writers
            // may have spent some of it already).
            let draining = queue.input_stopped_at().unwrap_or(started);
            if stop.load(Ordering::Relaxed)
                && (config.spool.is_some() || draining.elapsed() >= config.drain_timeout)
            {
                break;
            }
        }
    }
    senders_stop.store(true, Ordering::Relaxed);
    queue.stop();
    for sender in senders {
        let _ = sender.join();
    }
    maintenance_stop.store(true, Ordering::Relaxed);
    let _ = maintenance.join();
    if let Err(err) = queue.checkpoint(checkpoint_path.as_ref()) {
        tracing::error!(error = %err, "cannot write the final checkpoint");
    }
    read.map_err(ForwardError::Input)?;
    let mut counts = queue.counts();
    counts.left_in_spool = queue.left_in_spool();
    Ok(Outcome::Acked(counts))
}

/// Where the follower of `path` starts: the checkpoint's entries for the
/// path, raised to what the spool shows was already read.
fn resume_for(
    path: &std::path::Path,
    checkpoints: &[checkpoint::FileCheckpoint],
    spooled_ends: &HashMap<spool::SourceKey, u64>,
) -> follow::Resume {
    let mut offsets: Vec<(spool::SourceKey, u64)> = checkpoints
        .iter()
        .filter(|c| c.path == path)
        .map(|c| {
            let spooled = spooled_ends.get(&c.key()).copied().unwrap_or(0);
            (c.key(), c.offset.max(spooled))
        })
        .collect();
    // The current inode may be in the spool before any checkpoint named it.
    if let Ok(meta) = std::fs::metadata(path) {
        let key = follow::key_of(&meta);
        if let Some(&end) = spooled_ends.get(&key) {
            offsets.push((key, end));
        }
    }
    follow::Resume { offsets }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse() {
        assert_eq!(
            Destination::parse("tcp://127.0.0.1:7651").unwrap(),
            Destination::Lines("127.0.0.1:7651".into())
        );
        assert_eq!(
            Destination::parse("sluice://h:7653").unwrap(),
            Destination::Sluice("h:7653".into())
        );
        assert_eq!(
            Destination::parse("h:7653").unwrap(),
            Destination::Sluice("h:7653".into())
        );
        assert!(Destination::parse("udp://x:1").is_err());
        assert!(Destination::parse("tcp://nohost").is_err());
    }
}
