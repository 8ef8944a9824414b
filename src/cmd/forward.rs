//! `sluice forward`: stdin, files or local clients (the agent) to ingesters.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::{Context, bail};
use sluice_forward::{
    Destination, ForwardConfig, Listen, Mode, OnFull, Outcome, Source, SpoolConfig,
};
use sluice_record::wire::Guarantee;

use crate::size::ByteSize;
use humantime::Duration as HumanDuration;
use sluice_forward::defaults;

#[derive(clap::Args)]
pub struct Args {
    /// Where to send: sluice://HOST:PORT (the batch port, 7653; acknowledged;
    /// the default when no scheme is given), fluent://HOST:PORT (Fluentd or
    /// Fluent Bit, port 24224; chunk acks) or tcp://HOST:PORT (plain lines,
    /// for the fast port 7651 or OK Log). Several sluice:// or fluent://
    /// destinations are used as --mode says.
    #[arg(value_name = "URL", required = true, num_args = 1.., env = "SLUICE_FORWARD_TO", value_delimiter = ',')]
    destinations: Vec<String>,
    /// With several destinations: failover (one at a time) or balance (all at once).
    #[arg(long, default_value = "failover", value_parser = ["failover", "balance"])]
    mode: String,
    /// Acknowledgement to wait for: none, write, fsync or replicated.
    #[arg(long, default_value = "write", value_parser = ["none", "write", "fsync", "replicated"], env = "SLUICE_GUARANTEE")]
    guarantee: String,
    /// Topic of every record.
    #[arg(long, default_value = sluice_record::DEFAULT_TOPIC_STR, env = "SLUICE_TOPIC")]
    topic: String,
    /// Text prepended to every line.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Bytes of batches waiting in memory before --on-full applies.
    #[arg(long, default_value_t = ByteSize::of(defaults::QUEUE_MAX_BYTES))]
    queue_max: ByteSize,
    /// When the queue is full: block (push back on stdin), drop-oldest or drop-newest.
    #[arg(long, default_value = "block", value_parser = ["block", "drop-oldest", "drop-newest"])]
    on_full: String,
    /// Close a batch at this many bytes (at most 16MiB).
    #[arg(long, default_value_t = ByteSize::of(defaults::BATCH_BYTES))]
    batch_size: ByteSize,
    /// Close a batch this long after its first line.
    #[arg(long, default_value_t = defaults::LINGER.into())]
    linger: HumanDuration,
    /// Longest line sent (at most 16MiB); longer lines are cut and counted.
    #[arg(long, default_value_t = ByteSize::of(defaults::MAX_LINE_BYTES))]
    max_line: ByteSize,
    /// Follow these files instead of reading stdin: appends, rotation by
    /// rename and truncation are followed, and a checkpoint makes a restart
    /// neither re-send nor skip.
    #[arg(long = "file", value_name = "PATH", num_args = 1..)]
    files: Vec<PathBuf>,
    /// Run as a local agent: serve these listeners instead of reading stdin,
    /// until SIGTERM. fluent://HOST:PORT takes the Fluentd forward protocol
    /// (Fluent Bit, fluent-logger, Docker's fluentd driver), acknowledging a
    /// chunk once it is in the spool or acknowledged upstream;
    /// syslog://HOST:PORT takes syslog over TCP (octet counting or LF). The
    /// tag or APP-NAME becomes the topic and the event time the record's
    /// time. Repeat for several.
    #[arg(long = "listen", value_name = "URL")]
    listens: Vec<String>,
    /// With --listen: open connections allowed, over all listeners.
    #[arg(long, default_value_t = defaults::LISTEN_MAX_CONNECTIONS)]
    listen_max_connections: usize,
    /// Where file checkpoints are kept [default: DIR/checkpoints.json with
    /// --spool, else ./sluice-forward.checkpoints.json].
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Write every batch ahead to a disk spool in DIR: it holds what the
    /// memory queue cannot (a slow or absent destination) and survives a
    /// restart or a crash of the forwarder.
    #[arg(long, value_name = "DIR", env = "SLUICE_SPOOL")]
    spool: Option<PathBuf>,
    /// Bytes the spool may hold before --on-full applies.
    #[arg(long, default_value_t = ByteSize(defaults::SPOOL_MAX_BYTES))]
    spool_max: ByteSize,
    /// On SIGTERM or SIGINT without a spool: how long to wait for acks
    /// before giving up (with a spool, what is unacknowledged stays there).
    #[arg(long, default_value_t = defaults::DRAIN_TIMEOUT.into())]
    drain_timeout: HumanDuration,
    /// Print the final counts as one JSON object on stderr.
    #[arg(long)]
    json: bool,
    /// Serve /metrics (Prometheus) and /health on this address.
    #[arg(long, value_name = "ADDR", env = "SLUICE_FORWARD_API")]
    api: Option<std::net::SocketAddr>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let destinations = args
        .destinations
        .iter()
        .map(|d| Destination::parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(api) = args.api
        && destinations
            .iter()
            .any(|d| matches!(d, Destination::Lines(_)))
    {
        bail!(
            "--api {api} is not served for a tcp:// destination, which has no acks or queue to \
             count: drop --api, or forward to sluice:// or fluent://"
        );
    }
    let mut config = ForwardConfig::new(destinations);
    config.mode = if args.mode == "balance" {
        Mode::Balance
    } else {
        Mode::Failover
    };
    config.batch.guarantee = Guarantee::parse(&args.guarantee).context("parse --guarantee")?;
    if !sluice_record::is_valid_topic(args.topic.as_bytes()) {
        bail!(
            "--topic {:?} is not a valid topic: use 1 to 255 printable ASCII characters without spaces",
            args.topic
        );
    }
    config.batch.topic = args.topic;
    config.batch.prefix = args.prefix.into_bytes();
    config.queue_max_bytes = args.queue_max.0 as usize;
    config.on_full = OnFull::parse(&args.on_full).context("parse --on-full")?;
    config.batch.batch_bytes = (args.batch_size.0 as usize).clamp(1, defaults::MAX_BATCH_BYTES);
    config.batch.linger = args.linger.into();
    config.batch.max_line_bytes = (args.max_line.0 as usize).clamp(1, defaults::MAX_BATCH_BYTES);
    config.spool = args.spool.map(|dir| SpoolConfig {
        dir,
        max_bytes: args.spool_max.0,
    });
    config.checkpoint = args.checkpoint;
    config.drain_timeout = args.drain_timeout.into();
    config.listen.max_connections = args.listen_max_connections.max(1);
    let source = match (args.files.is_empty(), args.listens.is_empty()) {
        (true, true) => Source::Stream(Box::new(std::io::stdin())),
        (false, true) => Source::Files(args.files),
        (true, false) => Source::Listen(
            args.listens
                .iter()
                .map(|url| Listen::parse(url))
                .collect::<Result<_, _>>()?,
        ),
        (false, false) => {
            bail!("--file and --listen cannot be combined: run one forwarder per input kind")
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let metrics = match args.api {
        Some(_) => {
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .context("install the metrics recorder")?;
            sluice_forward::describe_metrics();
            Some(handle)
        }
        None => None,
    };
    let (json, api) = (args.json, args.api);
    let control_stop = stop.clone();
    let outcome = sluice_forward::forward_observed(&config, source, stop.clone(), move |probe| {
        // Signals and the optional API run on a small runtime of their own,
        // beside the forwarder's threads.
        std::thread::Builder::new()
            .name("forward-control".into())
            .spawn(move || control(probe, json, api, metrics, control_stop))
            .expect("start the control thread");
    })
    .context("forward")?;
    match outcome {
        Outcome::Acked(counts) => {
            report(&counts, json);
            debug_assert!(counts.balances());
            if counts.left_in_spool > 0 {
                tracing::info!(
                    records = counts.left_in_spool,
                    "stopped with records in the spool; the next run sends them"
                );
            }
            // Exit 0 only when every record read was acknowledged, or (after
            // a stop signal) is waiting safely in the spool.
            let settled = counts.acked + counts.left_in_spool;
            Ok(
                if counts.acked == counts.read
                    || (stop.load(Ordering::Relaxed) && settled == counts.read)
                {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(3)
                },
            )
        }
        Outcome::Lines(stats) => {
            if json {
                eprintln!(
                    "{}",
                    serde_json::to_string(&stats).expect("stats serialize")
                );
            }
            tracing::info!(
                lines_read = stats.lines_read,
                bytes_read = stats.bytes_read,
                bytes_sent = stats.bytes_sent,
                reconnects = stats.reconnects,
                "forwarder finished"
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn report(counts: &sluice_forward::Counts, json: bool) {
    if json {
        eprintln!(
            "{}",
            serde_json::to_string(counts).expect("counts serialize")
        );
    } else {
        eprintln!(
            "sluice forward: read {} sent {} acked {} queued {} spooled {} in flight {} dropped {} (queue full {}, spool full {}, rejected {}, spool corrupt {}) replayed {} recovered {} resent {} truncated {}",
            counts.read,
            counts.sent,
            counts.acked,
            counts.queued,
            counts.spooled,
            counts.in_flight,
            counts.dropped(),
            counts.dropped_queue_full,
            counts.dropped_spool_full,
            counts.dropped_rejected,
            counts.dropped_spool_corrupt,
            counts.replayed,
            counts.recovered,
            counts.resent,
            counts.truncated
        );
    }
}

/// SIGUSR1 prints the live counts; SIGTERM and SIGINT stop the forwarder
/// cleanly (a second one exits at once); `--api` serves /metrics and
/// /health.
fn control(
    probe: sluice_forward::CountsProbe,
    json: bool,
    api: Option<std::net::SocketAddr>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    stop: Arc<AtomicBool>,
) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async move {
        // Installed before the API answers, so a live /health means SIGUSR1
        // is handled.
        let signal = tokio::signal::unix::SignalKind::user_defined1();
        let Ok(mut usr1) = tokio::signal::unix::signal(signal) else {
            return;
        };
        use tokio::signal::unix::{SignalKind, signal as unix_signal};
        let (Ok(mut term), Ok(mut int)) = (
            unix_signal(SignalKind::terminate()),
            unix_signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                if stop.swap(true, Ordering::Relaxed) {
                    std::process::exit(130);
                }
                tracing::info!("stopping: closing the open batch and waiting for acks");
            }
        });
        if let (Some(addr), Some(handle)) = (api, metrics) {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    let router = axum::Router::new()
                        .route("/health", axum::routing::get(|| async { "ok\n" }))
                        .route(
                            "/metrics",
                            axum::routing::get(move || {
                                let handle = handle.clone();
                                async move { handle.render() }
                            }),
                        );
                    tokio::spawn(async move { axum::serve(listener, router).await });
                }
                Err(err) => tracing::error!(%addr, error = %err, "cannot serve the forwarder API (change it with --api)"),
            }
        }
        while usr1.recv().await.is_some() {
            report(&probe(), json);
        }
    });
}
