//! `sluice ingest`, `sluice store` and `sluice ingeststore`: one node of a
//! cluster, with the ingest role, the store role, or both.
//!
//! A store consumes from every live ingester in the cluster view through
//! the HTTP lending protocol; `ingeststore` consumes its own segments the
//! same way. Any node answers queries for the whole cluster.

mod args;
mod listen;
mod membership;
mod memory;

use std::{
    collections::BTreeMap,
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
    CompactionConfig, Consumer, ConsumerConfig, LocalIngester, Maintainer, MaintenanceConfig,
    RetentionConfig, Store,
};

pub use args::{BothNode, IngestNode, StoreNode};
use args::{IngestArgs, NodeArgs, StoreArgs};
use listen::{reachable, write_ports_file};

use crate::size::ByteSize;

/// Blocking threads for what is not a query scan: the lending endpoints'
/// ingest log work and segment reads, the consumer's verify and write
/// steps, query planning (see ARCHITECTURE.md, "Concurrency model").
const BLOCKING_THREADS_BESIDE_QUERIES: usize = 32;

/// `sluice ingest`.
pub fn run_ingest(args: IngestNode) -> anyhow::Result<ExitCode> {
    run(args.node, Some(args.ingest), None)
}

/// `sluice store`.
pub fn run_store(args: StoreNode) -> anyhow::Result<ExitCode> {
    run(args.node, None, Some(args.store))
}

/// `sluice ingeststore`.
pub fn run_both(args: BothNode) -> anyhow::Result<ExitCode> {
    run(args.node, Some(args.ingest), Some(args.store))
}

fn run(
    node: NodeArgs,
    ingest: Option<IngestArgs>,
    store: Option<StoreArgs>,
) -> anyhow::Result<ExitCode> {
    if let Some(ingest) = &ingest
        && (ingest.max_line.0 == 0 || ingest.max_line.0 > sluice_record::MAX_PAYLOAD_BYTES as u64)
    {
        bail!(
            "--max-line {} is out of range: use 1 byte to {}",
            ingest.max_line,
            ByteSize::of(sluice_record::MAX_PAYLOAD_BYTES)
        );
    }
    memory::keep_large_buffers_out_of_the_heap();
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("install the metrics recorder")?;
    sluice_ingest::describe_metrics();
    sluice_store::describe_metrics();
    sluice_api::describe_metrics();
    sluice_cluster::describe_metrics();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice")
        .max_blocking_threads(node.max_queries.max(1) + BLOCKING_THREADS_BESIDE_QUERIES)
        .build()
        .context("start the async runtime")?;
    runtime.block_on(serve(node, ingest, store, metrics))
}

/// The ingest role, running.
struct IngestRole {
    log: Arc<IngestLog>,
    /// The Loki push and Elasticsearch inputs, unless both are off.
    push: Option<Arc<sluice_api::push::PushState>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    connection_counts: Vec<Arc<std::sync::atomic::AtomicUsize>>,
    drain_timeout: Duration,
}

async fn serve(
    node: NodeArgs,
    ingest_args: Option<IngestArgs>,
    store_args: Option<StoreArgs>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> anyhow::Result<ExitCode> {
    let fs: Arc<dyn Fs> = Arc::new(RealFs);
    std::fs::create_dir_all(&node.data)
        .with_context(|| format!("create the data directory {} (--data)", node.data.display()))?;
    let mut ports: BTreeMap<&'static str, u16> = BTreeMap::new();
    let shutdown = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicBool::new(false));

    let workers = WorkerPool::new(node.workers.max(1))
        .with_context(|| format!("start {} worker threads (--workers)", node.workers))?;
    let store = match &store_args {
        Some(args) => {
            let store_dir = node.data.join("store");
            Some(
                Store::open(fs.clone(), &store_dir, workers.clone())
                    .with_context(|| format!("open store directory {}", store_dir.display()))?
                    .with_block_cache(args.block_cache.unwrap_or_else(default_block_cache)),
            )
        }
        None => None,
    };
    let mut ingest = match &ingest_args {
        Some(args) => Some(start_ingest(&node, args, fs.clone(), &shutdown, &mut ports).await?),
        None => None,
    };

    let api_addr = node
        .api
        .resolve(node.bind)
        .expect("--api cannot be turned off");
    let api_listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .with_context(|| format!("listen for the HTTP API on {api_addr} (change it with --api)"))?;
    let api_bound = api_listener.local_addr()?;
    ports.insert("api", api_bound.port());
    let advertised_api = node.advertise_api.unwrap_or_else(|| reachable(api_bound));

    let roles = sluice_cluster::Roles {
        ingest: ingest.is_some(),
        store: store.is_some(),
    };
    let both_roles = ingest_args.is_some() && store_args.is_some();
    let rf = node
        .replication_factor
        .unwrap_or(if both_roles { 1 } else { 2 });
    if let Some(ingest) = &ingest {
        ingest.log.set_replication_factor(rf);
    }
    let members = membership::join(
        &node,
        roles,
        advertised_api,
        ingest_args.as_ref().map(|_| ingest_ports(&ports)),
        both_roles,
        rf,
    )
    .await?;
    if let Some(gossip) = members.gossip_port {
        ports.insert("gossip", gossip);
    }
    let membership = members.membership.clone();
    if let Some(store) = &store {
        store.set_node_id(&members.node_id);
    }

    let http = reqwest::Client::builder()
        .local_address(node.bind)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .context("build the HTTP client for other nodes")?;
    // Repair runs on stores that keep more than one copy.
    let repairer = match (&store, &store_args) {
        (Some(store), Some(args)) if rf > 1 => Some(Arc::new(sluice_store::repair::Repairer::new(
            store.clone(),
            replication(rf, &membership, &members.node_id, args),
            http.clone(),
            args.repair_after.into(),
        ))),
        _ => None,
    };
    let state = sluice_api::ApiState {
        ingest: ingest.as_ref().map(|i| i.log.clone()),
        store: store.clone(),
        workers: workers.clone(),
        metrics: Some(metrics),
        ready: ready.clone(),
        queries: Arc::new(sluice_api::admission::QueryGate::new(
            node.max_queries,
            node.query_queue,
        )),
        cluster: Arc::new(sluice_api::cluster::Cluster {
            membership: membership.clone(),
            http: http.clone(),
            node_timeout: node.node_timeout.into(),
        }),
        repair: repairer.clone(),
        push: ingest.as_ref().and_then(|i| i.push.clone()),
    };
    let (api_stop_tx, api_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(async move {
        // With each connection's peer address: the push inputs keep a
        // shipper's requests in one segment by it.
        axum::serve(
            api_listener,
            sluice_api::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = api_stop_rx.await;
        })
        .await
    });
    tracing::info!(addr = %api_bound, "api listening");

    let mut store_parts = None;
    if let (Some(store), Some(args)) = (&store, &store_args) {
        // An ingeststore's store takes its own ingester's segments by a
        // hard link, not over loopback HTTP (see `LocalIngester`).
        let local = ingest.as_ref().map(|i| LocalIngester {
            base: format!("http://{advertised_api}"),
            log: i.log.clone(),
        });
        store_parts = Some(start_store(
            store.clone(),
            args,
            membership.clone(),
            &node,
            (rf, members.node_id.clone()),
            repairer,
            local,
        )?);
    }

    // Once a second: lend again what a store held too long, and publish
    // the backlog and free-disk buckets when they change.
    let reaper = {
        let log = ingest.as_ref().map(|i| i.log.clone());
        let store = store.clone();
        let ready = ready.clone();
        let membership = membership.clone();
        let data = node.data.clone();
        tokio::spawn(async move {
            let mut last_backlog = None;
            let mut last_disk = None;
            let mut readonly = false;
            let mut rf_differ = Vec::new();
            loop {
                membership::check_rf(&membership.view(), rf, &mut rf_differ);
                if let Some(log) = &log {
                    log.reap_expired();
                    let bucket = membership::backlog_bucket(log.counts().0);
                    if last_backlog != Some(bucket) {
                        membership.set_self(sluice_cluster::keys::BACKLOG, &bucket.to_string());
                        last_backlog = Some(bucket);
                    }
                }
                let disk = membership::disk_bucket(&data);
                if disk.is_some() && disk != last_disk {
                    let bucket = disk.unwrap_or(0).to_string();
                    membership.set_self(sluice_cluster::keys::DISK, &bucket);
                    last_disk = disk;
                }
                // A store over --max-disk takes no replicas: it says so,
                // and lanes elsewhere pick other stores.
                if let Some(store) = &store
                    && ready.load(Ordering::Relaxed)
                {
                    let over = matches!(store.over_max_disk(), Ok(Some(_)));
                    if over != readonly {
                        readonly = over;
                        let health = if over { "readonly" } else { "ready" };
                        membership.set_self(sluice_cluster::keys::HEALTH, health);
                        tracing::warn!(health, "store disk limit (--max-disk): health changed");
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    if let Some(path) = &node.ports_file {
        write_ports_file(path, &ports)?;
    }
    membership.set_self(sluice_cluster::keys::HEALTH, "ready");
    ready.store(true, Ordering::Relaxed);
    tracing::info!(data = %node.data.display(), node = %members.node_id, roles = %roles, "sluice ready");

    wait_for_signal().await;
    // Drain: say so first, so that coordinators and stores see it before
    // anything stops.
    tracing::info!("shutting down: draining");
    // Not ready first: the reaper then leaves the health key alone.
    ready.store(false, Ordering::Relaxed);
    membership.set_self(sluice_cluster::keys::HEALTH, "draining");
    if members.gossip_port.is_some() {
        tokio::time::sleep(Duration::from_secs_f64(
            2.0 * Duration::from(node.gossip_interval).as_secs_f64(),
        ))
        .await;
    }
    shutdown.store(true, Ordering::Relaxed);
    if let Some(ingest) = &mut ingest {
        // A cluster of one keeps its segments where its own store finds
        // them at the next start: it stops taking lines and goes. A node
        // that leaves a cluster hands its segments to the stores first.
        drain_ingest(ingest, members.gossip_port.is_some()).await;
    }
    if let Some((consumer_shutdown, consumer_task, maintainer_shutdown, maintainer_thread)) =
        store_parts
    {
        consumer_shutdown.store(true, Ordering::Relaxed);
        maintainer_shutdown.store(true, Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(30), consumer_task).await;
        // A compaction under way finishes; one cut short by the deadline is
        // undone by the store's recovery rules at the next start.
        let maintainer_done = tokio::task::spawn_blocking(move || maintainer_thread.join());
        let _ = tokio::time::timeout(Duration::from_secs(30), maintainer_done).await;
    }
    reaper.abort();
    let _ = api_stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), api).await;
    members.leave().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// `fast=P,durable=P,...`: the ingest ports, for the view.
fn ingest_ports(ports: &BTreeMap<&'static str, u16>) -> String {
    ports
        .iter()
        .filter(|(name, _)| !matches!(**name, "api" | "gossip"))
        .map(|(name, port)| format!("{name}={port}"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn start_ingest(
    node: &NodeArgs,
    args: &IngestArgs,
    fs: Arc<dyn Fs>,
    shutdown: &Arc<AtomicBool>,
    ports: &mut BTreeMap<&'static str, u16>,
) -> anyhow::Result<IngestRole> {
    let ingest_dir = node.data.join("ingest");
    let (log, report) = IngestLog::open(fs, &ingest_dir, args.pending_timeout.into())
        .with_context(|| format!("open ingest directory {}", ingest_dir.display()))?;
    tracing::info!(
        recovered_active = report.recovered_active,
        torn_tails = report.torn_tails,
        torn_bytes = report.torn_bytes,
        pending_returned = report.pending_returned,
        flushed = report.flushed,
        "ingest log opened"
    );
    log.tail().set_capacity(args.tail_buffer.0);
    let log = Arc::new(log);
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
    for (mode, listen, flag, name) in [
        (Mode::Fast, &args.fast, "--fast", "fast"),
        (Mode::Durable, &args.durable, "--durable", "durable"),
        (Mode::Batch, &args.batch, "--batch", "batch"),
        (Mode::Fluent, &args.fluent, "--fluent", "fluent"),
        (Mode::Syslog, &args.syslog, "--syslog", "syslog"),
    ] {
        let Some(addr) = listen.resolve(node.bind) else {
            continue;
        };
        let listener = Listener::bind(mode, addr, log.clone(), config.clone(), shutdown.clone())
            .await
            .with_context(|| {
                format!(
                    "listen for {} ingest on {addr} (change it with {flag})",
                    mode.name()
                )
            })?;
        let bound = listener.local_addr()?;
        ports.insert(name, bound.port());
        tracing::info!(protocol = mode.name(), addr = %bound, "ingest listening");
        connection_counts.push(listener.active_connections());
        if mode == Mode::Fluent {
            let udp = tokio::net::UdpSocket::bind(bound)
                .await
                .with_context(|| format!("listen for fluent UDP heartbeats on {bound}"))?;
            tasks.push(tokio::spawn(sluice_ingest::fluent::serve_udp_heartbeats(
                udp,
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(listener.serve()));
    }
    let push = if args.no_loki_push && args.no_elasticsearch {
        None
    } else {
        let writer = sluice_ingest::PushWriter::start(log.clone(), &config, shutdown.clone())
            .context("start the push segment sealer thread")?;
        connection_counts.push(writer.running());
        let push_config = sluice_api::push::PushConfig {
            loki: !args.no_loki_push,
            elasticsearch: !args.no_elasticsearch,
            limits: sluice_push::Limits {
                max_body_bytes: usize::try_from(args.push_max_body.0).unwrap_or(usize::MAX),
                max_decompressed_bytes: usize::try_from(args.push_max_decompressed.0)
                    .unwrap_or(usize::MAX),
                max_entries: args.push_max_entries.max(1),
                max_line_bytes: config.max_line_bytes,
                max_labels: args.push_max_labels.max(1),
            },
            bulk: sluice_push::elastic::BulkConfig {
                message_fields: args.es_message_field.clone(),
                time_fields: args.es_time_field.clone(),
            },
            max_in_flight: args.push_max_in_flight.max(1),
        };
        tracing::info!(
            loki = push_config.loki,
            elasticsearch = push_config.elasticsearch,
            "push inputs on the API port"
        );
        Some(Arc::new(sluice_api::push::PushState::new(
            push_config,
            Arc::new(writer),
        )))
    };
    Ok(IngestRole {
        log,
        push,
        tasks,
        connection_counts,
        drain_timeout: args.drain_timeout.into(),
    })
}

/// Stop taking lines, seal what connections hold, and with `hand_over`
/// wait (up to the drain timeout) until stores have taken every segment.
async fn drain_ingest(ingest: &mut IngestRole, hand_over: bool) {
    for task in ingest.tasks.drain(..) {
        let _ = task.await;
    }
    // Connection threads seal their segments within one poll interval.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ingest
        .connection_counts
        .iter()
        .any(|c| c.load(Ordering::Relaxed) > 0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !hand_over {
        return;
    }
    let deadline = Instant::now() + ingest.drain_timeout;
    let mut logged = false;
    loop {
        let (flushed, pending) = ingest.log.counts();
        if flushed == 0 && pending == 0 {
            tracing::info!("drained: stores hold every segment this node took");
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                flushed,
                pending,
                "drain timeout passed with segments no store has taken; they stay on disk and are served at the next start"
            );
            return;
        }
        if !logged {
            tracing::info!(
                flushed,
                pending,
                "waiting for stores to take this node's segments"
            );
            logged = true;
        }
        ingest.log.reap_expired();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type StoreParts = (
    Arc<AtomicBool>,
    tokio::task::JoinHandle<()>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
);

fn start_store(
    store: Store,
    args: &StoreArgs,
    membership: Arc<dyn sluice_cluster::Membership>,
    node: &NodeArgs,
    (rf, node_id): (u32, String),
    repairer: Option<Arc<sluice_store::repair::Repairer>>,
    local: Option<LocalIngester>,
) -> anyhow::Result<StoreParts> {
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
            .spawn(move || {
                // Compaction's merge, behind queries and ingest, as its
                // blocks are (see `WorkerPool`).
                sluice_storage::workers::lower_this_threads_priority();
                maintainer.run(shutdown)
            })
            .context("start the store maintenance thread")?
    };
    let consumer = Consumer::new(
        store,
        ConsumerConfig {
            ingesters: Arc::new(membership::ViewIngesters(membership.clone())),
            lanes: args.consume_lanes.max(1),
            local_address: Some(node.bind),
            replication: (rf > 1).then(|| replication(rf, &membership, &node_id, args)),
            local,
            ..ConsumerConfig::default()
        },
    );
    let consumer_shutdown = Arc::new(AtomicBool::new(false));
    let consumer_task = tokio::spawn(consumer.run(consumer_shutdown.clone()));
    if let Some(repairer) = repairer {
        tokio::spawn(repairer.run(consumer_shutdown.clone()));
    }
    Ok((
        consumer_shutdown,
        consumer_task,
        maintainer_shutdown,
        maintainer_thread,
    ))
}

/// How this store replicates: to the view's other ready stores.
fn replication(
    rf: u32,
    membership: &Arc<dyn sluice_cluster::Membership>,
    node_id: &str,
    args: &StoreArgs,
) -> sluice_store::Replication {
    sluice_store::Replication {
        rf,
        source: Arc::new(membership::ViewStores {
            membership: membership.clone(),
            self_id: node_id.to_string(),
        }),
        timeout: args.replica_timeout.into(),
    }
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

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install the SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// `--block-cache` when it is not given: an eighth of the machine's
/// memory (`MemTotal` in /proc/meminfo), at most 4 GiB; 512 MiB where the
/// memory cannot be read.
fn default_block_cache() -> u64 {
    const MIB: u64 = 1 << 20;
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        });
    match total {
        Some(bytes) => (bytes / 8).min(4096 * MIB),
        None => 512 * MIB,
    }
}
