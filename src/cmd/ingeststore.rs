//! `sluice ingeststore`: the ingest and store roles in one process.
//!
//! The store consumes this node's own ingest segments through the same HTTP
//! lending protocol a separate store node uses.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use sluice_ingest::{IngestConfig, IngestLog, Listener, Mode};
use sluice_storage::{Fs, RealFs, WorkerPool};
use sluice_store::{
    CompactionConfig, Consumer, ConsumerConfig, Maintainer, MaintenanceConfig, RetentionConfig,
    Store,
};

use crate::size::{ByteSize, parse_bytes};
use humantime::Duration as HumanDuration;

/// Blocking threads for what is not a query scan: the lending endpoints'
/// ingest log work and segment reads, the consumer's verify and write
/// steps, query planning (see ARCHITECTURE.md, "Concurrency model").
const BLOCKING_THREADS_BESIDE_QUERIES: usize = 32;

/// A listen address, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct Listen(Option<SocketAddr>);

fn parse_listen(text: &str) -> Result<Listen, String> {
    if text == "off" {
        return Ok(Listen(None));
    }
    text.parse()
        .map(|a| Listen(Some(a)))
        .map_err(|e| format!("{text:?} is not an address like 127.0.0.1:24224 or off: {e}"))
}

#[derive(clap::Args)]
pub struct Args {
    /// Directory for ingest segments (data/ingest) and store segments (data/store).
    #[arg(long, default_value = "./data", env = "SLUICE_DATA")]
    data: PathBuf,
    /// HTTP API address: queries, segment lending, /metrics, /health, /ready.
    #[arg(long, default_value = sluice_api::DEFAULT_ADDR, env = "SLUICE_API")]
    api: SocketAddr,
    /// Fast ingest: newline-delimited lines, fire-and-forget (OK Log and nc compatible).
    #[arg(long, default_value = sluice_ingest::listener::DEFAULT_FAST_ADDR, env = "SLUICE_FAST")]
    fast: SocketAddr,
    /// Durable ingest: lines, fsynced before more is read.
    #[arg(long, default_value = sluice_ingest::listener::DEFAULT_DURABLE_ADDR, env = "SLUICE_DURABLE")]
    durable: SocketAddr,
    /// Batch ingest: the acknowledged batch protocol (docs/protocol-batch.md).
    #[arg(long, default_value = sluice_ingest::listener::DEFAULT_BATCH_ADDR, env = "SLUICE_BATCH")]
    batch: SocketAddr,
    /// Fluentd forward protocol (TCP, and UDP heartbeats on the same port);
    /// `off` disables it.
    #[arg(long, default_value = sluice_ingest::listener::DEFAULT_FLUENT_ADDR, value_parser = parse_listen, env = "SLUICE_FLUENT")]
    fluent: Listen,
    /// syslog over TCP (RFC 5424 and 3164; octet-counted or LF framing);
    /// `off` disables it.
    #[arg(long, default_value = sluice_ingest::listener::DEFAULT_SYSLOG_ADDR, value_parser = parse_listen, env = "SLUICE_SYSLOG")]
    syslog: Listen,
    /// Require Fluentd's shared-key handshake (`<security>` with this key).
    #[arg(long, env = "SLUICE_FLUENT_SHARED_KEY", hide_env_values = true)]
    fluent_shared_key: Option<String>,
    /// When a fluent `chunk` is acknowledged: once written (write) or once
    /// fsynced (fsync).
    #[arg(long, default_value = "write", value_parser = ["write", "fsync"])]
    fluent_ack: String,
    /// Largest fluent frame accepted (1KiB to 1GiB); a larger one closes its
    /// connection.
    #[arg(long, default_value_t = ByteSize::of(sluice_fluent::DEFAULT_MAX_FRAME_BYTES))]
    fluent_max_frame: ByteSize,
    /// Largest inflated CompressedPackedForward chunk (gzip bomb limit;
    /// 1KiB to 4GiB).
    #[arg(long, default_value_t = ByteSize::of(sluice_fluent::DEFAULT_MAX_DECOMPRESSED_BYTES))]
    fluent_max_decompressed: ByteSize,
    /// Most events in one fluent frame.
    #[arg(long, default_value_t = sluice_fluent::DEFAULT_MAX_ENTRIES_PER_FRAME)]
    fluent_max_entries: usize,
    /// Deepest nesting of maps and arrays in a fluent frame.
    #[arg(long, default_value_t = sluice_fluent::DEFAULT_MAX_DEPTH)]
    fluent_max_depth: usize,
    /// Largest batch accepted on the batch port (its record section).
    #[arg(long, default_value_t = ByteSize::of(sluice_record::wire::DEFAULT_MAX_BATCH_BYTES), env = "SLUICE_BATCH_MAX_BYTES")]
    batch_max_bytes: ByteSize,
    /// Most records accepted in one batch.
    #[arg(long, default_value_t = sluice_record::wire::DEFAULT_MAX_BATCH_RECORDS, env = "SLUICE_BATCH_MAX_RECORDS")]
    batch_max_records: u32,
    /// Longest line (or Fluentd event, as JSON) kept; longer ones are cut
    /// here and flagged as truncated.
    #[arg(long, default_value_t = ByteSize::of(sluice_ingest::listener::DEFAULT_MAX_LINE_BYTES), env = "SLUICE_MAX_LINE")]
    max_line: ByteSize,
    /// Seal an active ingest segment at this size.
    #[arg(long, default_value_t = ByteSize(sluice_ingest::listener::DEFAULT_SEGMENT_TARGET_BYTES), env = "SLUICE_SEGMENT_SIZE")]
    segment_size: ByteSize,
    /// Seal an active ingest segment at this age (e.g. 1s, 500ms).
    #[arg(long, default_value_t = sluice_ingest::listener::DEFAULT_FLUSH_AGE.into(), env = "SLUICE_FLUSH_AGE")]
    flush_age: HumanDuration,
    /// Connections accepted at once per ingest port; more are refused and counted.
    #[arg(long, default_value_t = sluice_ingest::listener::DEFAULT_MAX_CONNECTIONS, env = "SLUICE_MAX_CONNECTIONS")]
    max_connections: usize,
    /// A segment lent to a store that is neither committed nor failed in this
    /// time is lent again.
    #[arg(long, default_value_t = sluice_ingest::log::DEFAULT_PENDING_TIMEOUT.into(), env = "SLUICE_PENDING_TIMEOUT")]
    pending_timeout: HumanDuration,
    /// Worker threads that decode and build store blocks, for queries and
    /// compaction alike (default: the number of cores).
    #[arg(long, default_value_t = sluice_storage::workers::default_workers(), env = "SLUICE_WORKERS")]
    workers: usize,
    /// Queries that scan at once (default: twice the number of cores); more
    /// wait in line, see --query-queue.
    #[arg(long, default_value_t = sluice_api::admission::default_max_queries(), env = "SLUICE_MAX_QUERIES")]
    max_queries: usize,
    /// Queries that may wait for a slot (default: as many as --max-queries);
    /// beyond that a query is refused with 503 and Retry-After, and counted.
    #[arg(long, default_value_t = sluice_api::admission::default_query_queue(), env = "SLUICE_QUERY_QUEUE")]
    query_queue: usize,
    /// Remove store segments whose newest record is older than this, e.g.
    /// 7d or 12h. Purges are logged and counted. Default: keep everything.
    #[arg(long, value_parser = humantime::parse_duration, env = "SLUICE_RETAIN")]
    retain: Option<Duration>,
    /// Remove the oldest store segments while they hold more than this,
    /// e.g. 50GB. Counts store segments only (not ingest segments, tmp/ or
    /// quarantine/). Default: no limit.
    #[arg(long, value_parser = parse_bytes, env = "SLUICE_MAX_DISK")]
    max_disk: Option<u64>,
    /// Records (uncompressed) per compacted store segment.
    #[arg(long, default_value_t = ByteSize(sluice_store::compact::DEFAULT_TARGET_SEGMENT_BYTES), env = "SLUICE_COMPACT_TARGET")]
    compact_target: ByteSize,
    /// Do not compact: store segments stay as the consumer wrote them.
    /// Retention still runs; corrupt segments are reported by queries but
    /// not quarantined (that is compaction's job).
    #[arg(long, env = "SLUICE_NO_COMPACT")]
    no_compact: bool,
    /// Pause between store maintenance passes (retention, compaction)
    /// that found nothing to do.
    #[arg(long, default_value_t = sluice_store::maintain::DEFAULT_INTERVAL.into(), env = "SLUICE_MAINTENANCE_INTERVAL")]
    maintenance_interval: HumanDuration,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.max_line.0 == 0 || args.max_line.0 > sluice_record::MAX_PAYLOAD_BYTES as u64 {
        bail!(
            "--max-line {} is out of range: use 1 byte to {}",
            args.max_line,
            ByteSize::of(sluice_record::MAX_PAYLOAD_BYTES)
        );
    }
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("install the metrics recorder")?;
    sluice_ingest::describe_metrics();
    sluice_store::describe_metrics();
    sluice_api::describe_metrics();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice")
        .max_blocking_threads(args.max_queries.max(1) + BLOCKING_THREADS_BESIDE_QUERIES)
        .build()
        .context("start the async runtime")?;
    runtime.block_on(serve(args, metrics))
}

async fn serve(
    args: Args,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> anyhow::Result<ExitCode> {
    let fs: Arc<dyn Fs> = Arc::new(RealFs);
    let ingest_dir = args.data.join("ingest");
    let store_dir = args.data.join("store");
    let (log, report) = IngestLog::open(fs.clone(), &ingest_dir, args.pending_timeout.into())
        .with_context(|| format!("open ingest directory {}", ingest_dir.display()))?;
    tracing::info!(
        recovered_active = report.recovered_active,
        torn_tails = report.torn_tails,
        torn_bytes = report.torn_bytes,
        pending_returned = report.pending_returned,
        flushed = report.flushed,
        "ingest log opened"
    );
    let log = Arc::new(log);
    let workers = WorkerPool::new(args.workers.max(1))
        .with_context(|| format!("start {} worker threads (--workers)", args.workers))?;
    let store = Store::open(fs.clone(), &store_dir, workers)
        .with_context(|| format!("open store directory {}", store_dir.display()))?;

    let shutdown = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicBool::new(false));
    let config = IngestConfig {
        max_line_bytes: args.max_line.0 as usize,
        segment_target_bytes: args.segment_size.0,
        flush_age: args.flush_age.into(),
        max_connections: args.max_connections,
        wire: sluice_record::wire::WireLimits {
            max_batch_bytes: args
                .batch_max_bytes
                .0
                .min(sluice_record::batch::MAX_BATCH_BODY_BYTES as u64 / 2)
                as usize,
            max_batch_records: args.batch_max_records,
        },
        fluent: sluice_ingest::FluentConfig {
            limits: sluice_fluent::Limits {
                max_frame_bytes: clamp_to(args.fluent_max_frame, sluice_fluent::FRAME_LIMIT_RANGE),
                max_decompressed_bytes: clamp_to(
                    args.fluent_max_decompressed,
                    sluice_fluent::DECOMPRESSED_LIMIT_RANGE,
                ),
                max_entries_per_frame: args.fluent_max_entries.max(1),
                max_depth: args
                    .fluent_max_depth
                    .clamp(sluice_fluent::MIN_DEPTH, sluice_fluent::MAX_DEPTH_CAP),
            },
            shared_key: args.fluent_shared_key.clone(),
            hostname: hostname(),
            ack_after_fsync: args.fluent_ack == "fsync",
        },
        ..IngestConfig::default()
    };
    let mut connection_counts = Vec::new();
    let mut tasks = Vec::new();
    for (mode, addr, flag) in [
        (Mode::Fast, Some(args.fast), "--fast"),
        (Mode::Durable, Some(args.durable), "--durable"),
        (Mode::Batch, Some(args.batch), "--batch"),
        (Mode::Fluent, args.fluent.0, "--fluent"),
        (Mode::Syslog, args.syslog.0, "--syslog"),
    ] {
        let Some(addr) = addr else { continue };
        let listener = Listener::bind(mode, addr, log.clone(), config.clone(), shutdown.clone())
            .await
            .with_context(|| {
                format!(
                    "listen for {} ingest on {addr} (change it with {flag})",
                    mode.name()
                )
            })?;
        tracing::info!(protocol = mode.name(), addr = %listener.local_addr()?, "ingest listening");
        connection_counts.push(listener.active_connections());
        if mode == Mode::Fluent {
            let udp = tokio::net::UdpSocket::bind(listener.local_addr()?)
                .await
                .with_context(|| format!("listen for fluent UDP heartbeats on {addr}"))?;
            tasks.push(tokio::spawn(sluice_ingest::fluent::serve_udp_heartbeats(
                udp,
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(listener.serve()));
    }

    let api_listener = tokio::net::TcpListener::bind(args.api)
        .await
        .with_context(|| {
            format!(
                "listen for the HTTP API on {} (change it with --api)",
                args.api
            )
        })?;
    let api_addr = api_listener.local_addr()?;
    let state = sluice_api::ApiState {
        ingest: Some(log.clone()),
        store: Some(store.clone()),
        metrics: Some(metrics),
        ready: ready.clone(),
        queries: Arc::new(sluice_api::admission::QueryGate::new(
            args.max_queries,
            args.query_queue,
        )),
    };
    let (api_stop_tx, api_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(async move {
        axum::serve(api_listener, sluice_api::router(state))
            .with_graceful_shutdown(async {
                let _ = api_stop_rx.await;
            })
            .await
    });
    tracing::info!(addr = %api_addr, "api listening");

    // The store reaches this node's ingest API like any remote store would.
    let self_url = format!("http://{}", loopback_if_unspecified(api_addr));
    let maintenance = MaintenanceConfig {
        compaction: CompactionConfig::for_target(args.compact_target.0),
        retention: RetentionConfig {
            retain: args.retain,
            max_disk: args.max_disk,
        },
        compact: !args.no_compact,
        interval: args.maintenance_interval.into(),
    };
    let maintainer = Maintainer::new(store.clone(), maintenance);
    let maintainer_shutdown = Arc::new(AtomicBool::new(false));
    let maintainer_thread = {
        let shutdown = maintainer_shutdown.clone();
        std::thread::Builder::new()
            .name("sluice-maintain".into())
            .spawn(move || maintainer.run(shutdown))
            .context("start the store maintenance thread")?
    };

    let consumer = Consumer::new(
        store,
        ConsumerConfig {
            ingesters: vec![self_url],
            ..ConsumerConfig::default()
        },
    );
    let consumer_shutdown = Arc::new(AtomicBool::new(false));
    let consumer_task = tokio::spawn(consumer.run(consumer_shutdown.clone()));

    let reaper_log = log.clone();
    let reaper = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            reaper_log.reap_expired();
        }
    });

    ready.store(true, Ordering::Relaxed);
    tracing::info!(data = %args.data.display(), "sluice ingeststore ready");

    wait_for_signal().await;
    tracing::info!("shutting down: sealing active segments");
    ready.store(false, Ordering::Relaxed);
    shutdown.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    // Connection threads seal their segments within one poll interval.
    let deadline = Instant::now() + Duration::from_secs(10);
    while connection_counts
        .iter()
        .any(|c| c.load(Ordering::Relaxed) > 0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    consumer_shutdown.store(true, Ordering::Relaxed);
    maintainer_shutdown.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(30), consumer_task).await;
    // A compaction under way finishes; one cut short by the deadline is
    // undone by the store's recovery rules at the next start.
    let maintainer_done = tokio::task::spawn_blocking(move || maintainer_thread.join());
    let _ = tokio::time::timeout(Duration::from_secs(30), maintainer_done).await;
    reaper.abort();
    let _ = api_stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), api).await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// `size` within `range`, in bytes.
fn clamp_to(size: ByteSize, range: std::ops::RangeInclusive<usize>) -> usize {
    usize::try_from(size.0)
        .unwrap_or(usize::MAX)
        .clamp(*range.start(), *range.end())
}

/// This host's name, for the fluent handshake.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sluice".into())
}

fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install the SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
