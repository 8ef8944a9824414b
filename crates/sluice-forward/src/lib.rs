//! The forwarder: read lines and deliver them to ingesters.
//!
//! Destinations, by URL scheme:
//! - `sluice://HOST:PORT` (the default when no scheme is given): the batch
//!   protocol with acknowledgements ([`acked`]). Lines are batched
//!   ([`reader`]), held in a bounded queue ([`queue`]), sent pipelined, and
//!   re-sent until acknowledged. On end of input the forwarder waits for
//!   every ack before it returns.
//! - `tcp://HOST:PORT`: plain lines for the fast and durable ports and for
//!   OK Log ([`lines`]); no acknowledgement.
//!
//! Several `sluice://` destinations are used in `failover` mode (one at a
//! time, moving on when it fails) or `balance` mode (all at once, taking
//! from one queue).

pub mod acked;
pub mod lines;
pub mod queue;
pub mod reader;

use std::{
    io::{self, Read},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

pub use lines::{ForwardStats, LinesConfig, forward_lines};
pub use queue::{Counts, OnFull};
use sluice_record::wire::Guarantee;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(
        "unsupported destination {0:?}: use sluice://HOST:PORT (batch protocol, acknowledged) or tcp://HOST:PORT (plain lines)"
    )]
    BadDestination(String),
    #[error("destinations mix schemes ({0}); use only sluice:// or only tcp://")]
    MixedSchemes(String),
    #[error("plain-lines (tcp://) forwarding takes one destination, got {0}")]
    ManyLineDestinations(usize),
    #[error("read input: {0}")]
    Input(#[source] io::Error),
    #[error("gave up on {addr} after {attempts} attempts: {source}")]
    GaveUp {
        addr: String,
        attempts: u32,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The batch protocol.
    Sluice(String),
    /// Plain lines.
    Lines(String),
}

impl Destination {
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
            _ => Err(ForwardError::BadDestination(url.to_string())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Failover,
    Balance,
}

#[derive(Debug, Clone)]
pub struct ForwardConfig {
    pub destinations: Vec<Destination>,
    pub mode: Mode,
    pub batch: reader::BatchConfig,
    pub queue_max_bytes: usize,
    pub on_full: OnFull,
    /// Batches in flight per connection.
    pub window: usize,
    pub max_backoff: Duration,
}

impl ForwardConfig {
    pub fn new(destinations: Vec<Destination>) -> ForwardConfig {
        ForwardConfig {
            destinations,
            mode: Mode::Failover,
            batch: reader::BatchConfig {
                topic: "default".into(),
                guarantee: Guarantee::Write,
                batch_bytes: 1 << 20,
                batch_records: 10_000,
                linger: Duration::from_millis(100),
                max_line_bytes: 1 << 20,
                prefix: Vec::new(),
            },
            queue_max_bytes: 64 << 20,
            on_full: OnFull::Block,
            window: 16,
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What a run delivered.
#[derive(Debug, Clone)]
pub enum Outcome {
    Acked(Counts),
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
    forward_observed(config, input, |_| {})
}

/// [`forward`], handing `observe` a probe of the live counts first.
pub fn forward_observed(
    config: &ForwardConfig,
    input: impl Read + Send + 'static,
    observe: impl FnOnce(CountsProbe),
) -> Result<Outcome, ForwardError> {
    let mut lines = Vec::new();
    let mut sluice = Vec::new();
    for d in &config.destinations {
        match d {
            Destination::Lines(addr) => lines.push(addr.clone()),
            Destination::Sluice(addr) => sluice.push(addr.clone()),
        }
    }
    if !lines.is_empty() && !sluice.is_empty() {
        return Err(ForwardError::MixedSchemes(format!(
            "{} sluice://, {} tcp://",
            sluice.len(),
            lines.len()
        )));
    }
    if !lines.is_empty() {
        if lines.len() > 1 {
            return Err(ForwardError::ManyLineDestinations(lines.len()));
        }
        let stats = forward_lines(&LinesConfig::new(&lines[0]), input)?;
        return Ok(Outcome::Lines(stats));
    }
    let queue = queue::Queue::new(config.queue_max_bytes, config.on_full);
    let probe = queue.clone();
    observe(Arc::new(move || probe.counts()));
    let stop = Arc::new(AtomicBool::new(false));
    let sender_config = acked::SenderConfig {
        destinations: sluice.clone(),
        window: config.window.max(1),
        max_backoff: config.max_backoff,
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
            let (config, queue, stop) = (sender_config.clone(), queue.clone(), stop.clone());
            std::thread::Builder::new()
                .name("forward-send".into())
                .spawn(move || acked::run_slot(config, destinations, queue, stop))
                .map_err(ForwardError::Input)
        })
        .collect::<Result<_, _>>()?;
    let read = reader::read_batches(input, &config.batch, &queue);
    queue.close_input();
    if read.is_ok() {
        queue.wait_drained();
    }
    stop.store(true, Ordering::Relaxed);
    queue.stop();
    for sender in senders {
        let _ = sender.join();
    }
    read.map_err(ForwardError::Input)?;
    Ok(Outcome::Acked(queue.counts()))
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
