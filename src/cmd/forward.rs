//! `sluice forward`: stdin to ingesters.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context, bail};
use sluice_forward::{Destination, ForwardConfig, Mode, OnFull, Outcome};
use sluice_record::wire::Guarantee;

use crate::size::parse_bytes;

#[derive(clap::Args)]
pub struct Args {
    /// Where to send: sluice://HOST:PORT (the batch port, 7653; acknowledged;
    /// the default when no scheme is given) or tcp://HOST:PORT (plain lines,
    /// for the fast port 7651 or OK Log). Several sluice:// destinations are
    /// used as --mode says.
    #[arg(value_name = "URL", required = true, num_args = 1.., env = "SLUICE_FORWARD_TO", value_delimiter = ',')]
    destinations: Vec<String>,
    /// With several destinations: failover (one at a time) or balance (all at once).
    #[arg(long, default_value = "failover", value_parser = ["failover", "balance"])]
    mode: String,
    /// Acknowledgement to wait for: none, write, fsync or replicated.
    #[arg(long, default_value = "write", value_parser = ["none", "write", "fsync", "replicated"], env = "SLUICE_GUARANTEE")]
    guarantee: String,
    /// Topic of every record.
    #[arg(long, default_value = "default", env = "SLUICE_TOPIC")]
    topic: String,
    /// Text prepended to every line.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Bytes of batches waiting in memory before --on-full applies.
    #[arg(long, default_value = "64MiB", value_parser = parse_bytes)]
    queue_max: u64,
    /// When the queue is full: block (push back on stdin), drop-oldest or drop-newest.
    #[arg(long, default_value = "block", value_parser = ["block", "drop-oldest", "drop-newest"])]
    on_full: String,
    /// Close a batch at this many bytes.
    #[arg(long, default_value = "1MiB", value_parser = parse_bytes)]
    batch_size: u64,
    /// Close a batch this long after its first line.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    linger: Duration,
    /// Longest line sent; longer lines are cut and counted.
    #[arg(long, default_value = "1MiB", value_parser = parse_bytes)]
    max_line: u64,
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
    config.queue_max_bytes = args.queue_max as usize;
    config.on_full = OnFull::parse(&args.on_full).context("parse --on-full")?;
    config.batch.batch_bytes = args.batch_size.clamp(1, 16 << 20) as usize;
    config.batch.linger = args.linger;
    config.batch.max_line_bytes = args.max_line.clamp(1, 16 << 20) as usize;
    let metrics = match args.api {
        Some(_) => Some(
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .context("install the metrics recorder")?,
        ),
        None => None,
    };
    let (json, api) = (args.json, args.api);
    let outcome = sluice_forward::forward_observed(&config, std::io::stdin(), move |probe| {
        // Signals and the optional API run on a small runtime of their own,
        // beside the forwarder's threads.
        std::thread::Builder::new()
            .name("forward-control".into())
            .spawn(move || control(probe, json, api, metrics))
            .expect("start the control thread");
    })
    .context("forward")?;
    match outcome {
        Outcome::Acked(counts) => {
            report(&counts, json);
            debug_assert!(counts.balances());
            // Exit 0 only when every record read was acknowledged.
            Ok(if counts.acked == counts.read {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Outcome::Lines(stats) => {
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
            "sluice forward: read {} acked {} queued {} in flight {} dropped {} (queue full {}, rejected {}) resent {} truncated {}",
            counts.read,
            counts.acked,
            counts.queued,
            counts.in_flight,
            counts.dropped(),
            counts.dropped_queue_full,
            counts.dropped_rejected,
            counts.resent,
            counts.truncated
        );
    }
}

/// SIGUSR1 prints the live counts; `--api` serves /metrics and /health.
fn control(
    probe: sluice_forward::CountsProbe,
    json: bool,
    api: Option<std::net::SocketAddr>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
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
