//! The flags of `sluice ingest`, `sluice store` and `sluice ingeststore`:
//! one group every node has, one per role.

use std::{net::IpAddr, net::SocketAddr, path::PathBuf, time::Duration};

use humantime::Duration as HumanDuration;

use super::listen::{Listen, parse_listen, parse_listen_or_off};
use crate::size::{ByteSize, parse_bytes};

// Flags every node has: where its data is, its API, and the cluster. (Args
// structs have no doc comment: see IngestNode.)
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// Directory for ingest segments (DATA/ingest), store segments
    /// (DATA/store) and the node's id (DATA/node-id).
    #[arg(long, default_value = "./data", env = "SLUICE_DATA")]
    pub data: PathBuf,
    /// The IP address every listener binds unless its flag names one, and
    /// the source address of connections to other nodes: several nodes can
    /// share one machine on different loopback addresses (127.0.0.11, ...).
    #[arg(long, default_value = "127.0.0.1", env = "SLUICE_BIND")]
    pub bind: IpAddr,
    /// HTTP API: queries, the cluster view, segment lending, /metrics,
    /// /health, /ready. HOST:PORT, or PORT on --bind; 0 picks a free port.
    #[arg(long, default_value = "7650", value_parser = parse_listen, env = "SLUICE_API")]
    pub api: Listen,
    /// Once every listener is bound, write their ports as JSON to this file
    /// (for tests and orchestration that pass port 0).
    #[arg(long, env = "SLUICE_PORTS_FILE")]
    pub ports_file: Option<PathBuf>,
    /// A node to join the cluster through: HOST:PORT of its gossip
    /// listener (DNS names are resolved again as they change). Repeat it
    /// for several seeds.
    #[arg(
        long = "peer",
        value_name = "HOST:PORT",
        env = "SLUICE_PEER",
        value_delimiter = ','
    )]
    pub peers: Vec<String>,
    /// Gossip (UDP) listener: HOST:PORT, or PORT on --bind. `sluice
    /// ingeststore` gossips only with --peer or --gossip; `ingest` and
    /// `store` always do.
    #[arg(long, value_parser = parse_listen, env = "SLUICE_GOSSIP")]
    pub gossip: Option<Listen>,
    /// Nodes gossip only with nodes of the same cluster id.
    #[arg(long, default_value = "sluice", env = "SLUICE_CLUSTER_ID")]
    pub cluster_id: String,
    /// The API address other nodes use to reach this one, when it is not
    /// the bound one (NAT, containers, a proxy).
    #[arg(long, env = "SLUICE_ADVERTISE_API")]
    pub advertise_api: Option<SocketAddr>,
    /// The gossip address other nodes use to reach this one, when it is not
    /// the bound one.
    #[arg(long, env = "SLUICE_ADVERTISE_GOSSIP")]
    pub advertise_gossip: Option<SocketAddr>,
    /// Time between gossip rounds; a dead node is noticed after a few.
    #[arg(long, default_value_t = sluice_cluster::DEFAULT_GOSSIP_INTERVAL.into(), env = "SLUICE_GOSSIP_INTERVAL")]
    pub gossip_interval: HumanDuration,
    /// Copies of every record on distinct stores: a store commits a
    /// segment only once RF stores hold it, an ingester refuses a commit
    /// that names fewer, and a `replicated` ack waits for that commit.
    /// Default: 1 for `ingeststore`, 2 for `ingest` and `store`. Give every
    /// node of a cluster the same value (a mismatch is logged and shown in
    /// `sluice cluster status`).
    #[arg(long = "replication-factor", visible_alias = "rf", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16), env = "SLUICE_REPLICATION_FACTOR")]
    pub replication_factor: Option<u32>,
    /// How long a query waits for another node's next frame before it
    /// counts that node as failed (timeout).
    #[arg(long, default_value_t = sluice_api::cluster::DEFAULT_NODE_TIMEOUT.into(), env = "SLUICE_NODE_TIMEOUT")]
    pub node_timeout: HumanDuration,
    /// Worker threads that decode store blocks for queries (default: the
    /// number of cores); as many more decode and build them for compaction,
    /// at a lower priority (nice +10), holding each job back while a query
    /// scans and pausing a running one between its frames (at most 250 ms
    /// before a job, and 250 ms within one), so a query has the cores while
    /// it runs.
    #[arg(long, default_value_t = sluice_storage::workers::default_workers(), env = "SLUICE_WORKERS")]
    pub workers: usize,
    /// Queries that scan at once (default: twice the number of cores); more
    /// wait in line, see --query-queue.
    #[arg(long, default_value_t = sluice_api::admission::default_max_queries(), env = "SLUICE_MAX_QUERIES")]
    pub max_queries: usize,
    /// Queries that may wait for a slot (default: as many as --max-queries);
    /// beyond that a query is refused with 503 and Retry-After, and counted.
    #[arg(long, default_value_t = sluice_api::admission::default_query_queue(), env = "SLUICE_QUERY_QUEUE")]
    pub query_queue: usize,
}

// Flags of the ingest role.
#[derive(clap::Args, Debug)]
pub struct IngestArgs {
    /// Fast ingest: newline-delimited lines, fire-and-forget (OK Log and nc
    /// compatible). HOST:PORT or PORT.
    #[arg(long, default_value = "7651", value_parser = parse_listen, env = "SLUICE_FAST")]
    pub fast: Listen,
    /// Durable ingest: lines, fsynced before more is read.
    #[arg(long, default_value = "7652", value_parser = parse_listen, env = "SLUICE_DURABLE")]
    pub durable: Listen,
    /// Batch ingest: the acknowledged batch protocol (docs/protocol-batch.md).
    #[arg(long, default_value = "7653", value_parser = parse_listen, env = "SLUICE_BATCH")]
    pub batch: Listen,
    /// Fluentd forward protocol (TCP, and UDP heartbeats on the same port);
    /// `off` disables it.
    #[arg(long, default_value = "24224", value_parser = parse_listen_or_off, env = "SLUICE_FLUENT")]
    pub fluent: Listen,
    /// syslog over TCP (RFC 5424 and 3164; octet-counted or LF framing);
    /// `off` disables it.
    #[arg(long, default_value = "5140", value_parser = parse_listen_or_off, env = "SLUICE_SYSLOG")]
    pub syslog: Listen,
    /// Require Fluentd's shared-key handshake (`<security>` with this key).
    #[arg(long, env = "SLUICE_FLUENT_SHARED_KEY", hide_env_values = true)]
    pub fluent_shared_key: Option<String>,
    /// When a fluent `chunk` is acknowledged: once written (write) or once
    /// fsynced (fsync).
    #[arg(long, default_value = "write", value_parser = ["write", "fsync"])]
    pub fluent_ack: String,
    /// Largest fluent frame accepted (1KiB to 1GiB); a larger one closes its
    /// connection.
    #[arg(long, default_value_t = ByteSize::of(sluice_fluent::DEFAULT_MAX_FRAME_BYTES))]
    pub fluent_max_frame: ByteSize,
    /// Largest inflated CompressedPackedForward chunk (gzip bomb limit;
    /// 1KiB to 4GiB).
    #[arg(long, default_value_t = ByteSize::of(sluice_fluent::DEFAULT_MAX_DECOMPRESSED_BYTES))]
    pub fluent_max_decompressed: ByteSize,
    /// Most events in one fluent frame.
    #[arg(long, default_value_t = sluice_fluent::DEFAULT_MAX_ENTRIES_PER_FRAME)]
    pub fluent_max_entries: usize,
    /// Deepest nesting of maps and arrays in a fluent frame.
    #[arg(long, default_value_t = sluice_fluent::DEFAULT_MAX_DEPTH)]
    pub fluent_max_depth: usize,
    /// Largest batch accepted on the batch port (its record section).
    #[arg(long, default_value_t = ByteSize::of(sluice_record::wire::DEFAULT_MAX_BATCH_BYTES), env = "SLUICE_BATCH_MAX_BYTES")]
    pub batch_max_bytes: ByteSize,
    /// Most records accepted in one batch.
    #[arg(long, default_value_t = sluice_record::wire::DEFAULT_MAX_BATCH_RECORDS, env = "SLUICE_BATCH_MAX_RECORDS")]
    pub batch_max_records: u32,
    /// Longest line (or Fluentd event, as JSON) kept; longer ones are cut
    /// here and flagged as truncated.
    #[arg(long, default_value_t = ByteSize::of(sluice_ingest::listener::DEFAULT_MAX_LINE_BYTES), env = "SLUICE_MAX_LINE")]
    pub max_line: ByteSize,
    /// Seal an active ingest segment at this size.
    #[arg(long, default_value_t = ByteSize(sluice_ingest::listener::DEFAULT_SEGMENT_TARGET_BYTES), env = "SLUICE_SEGMENT_SIZE")]
    pub segment_size: ByteSize,
    /// Seal an active ingest segment at this age (e.g. 1s, 500ms).
    #[arg(long, default_value_t = sluice_ingest::listener::DEFAULT_FLUSH_AGE.into(), env = "SLUICE_FLUSH_AGE")]
    pub flush_age: HumanDuration,
    /// Connections accepted at once per ingest port; more are refused and counted.
    #[arg(long, default_value_t = sluice_ingest::listener::DEFAULT_MAX_CONNECTIONS, env = "SLUICE_MAX_CONNECTIONS")]
    pub max_connections: usize,
    /// Memory for recent batches kept for live-tail readers (`/stream`);
    /// a reader further behind is told how many records it missed. Used
    /// only while someone tails.
    #[arg(long, default_value_t = ByteSize(sluice_ingest::tail::DEFAULT_TAIL_BYTES), env = "SLUICE_TAIL_BUFFER")]
    pub tail_buffer: ByteSize,
    /// The lease of a segment lent to a store: one neither committed nor
    /// given back in this time is lent again.
    #[arg(long, default_value_t = sluice_ingest::log::DEFAULT_PENDING_TIMEOUT.into(), env = "SLUICE_PENDING_TIMEOUT")]
    pub pending_timeout: HumanDuration,
    /// Do not serve Loki's push API (`POST /loki/api/v1/push` on the API
    /// port; docs/ingest-loki-elasticsearch.md).
    #[arg(long, env = "SLUICE_NO_LOKI_PUSH")]
    pub no_loki_push: bool,
    /// Do not serve the Elasticsearch `_bulk` API and its probes (`GET /`,
    /// `/_cluster/health`, ... on the API port).
    #[arg(long, env = "SLUICE_NO_ELASTICSEARCH")]
    pub no_elasticsearch: bool,
    /// Largest Loki push or `_bulk` request body, as received (413 above).
    #[arg(long, default_value_t = ByteSize::of(sluice_push::DEFAULT_MAX_BODY_BYTES), env = "SLUICE_PUSH_MAX_BODY")]
    pub push_max_body: ByteSize,
    /// Largest Loki push or `_bulk` body once inflated (413 above).
    #[arg(long, default_value_t = ByteSize::of(sluice_push::DEFAULT_MAX_DECOMPRESSED_BYTES), env = "SLUICE_PUSH_MAX_DECOMPRESSED")]
    pub push_max_decompressed: ByteSize,
    /// Most entries (Loki) or actions (`_bulk`) in one request (413 above).
    #[arg(long, default_value_t = sluice_push::DEFAULT_MAX_ENTRIES, env = "SLUICE_PUSH_MAX_ENTRIES")]
    pub push_max_entries: usize,
    /// Most labels in one Loki stream (400 above).
    #[arg(long, default_value_t = sluice_push::DEFAULT_MAX_LABELS, env = "SLUICE_PUSH_MAX_LABELS")]
    pub push_max_labels: usize,
    /// Push requests decoded and written at once; more wait up to 2 s, then
    /// get 429.
    #[arg(long, default_value_t = sluice_api::push::DEFAULT_MAX_IN_FLIGHT, env = "SLUICE_PUSH_MAX_IN_FLIGHT")]
    pub push_max_in_flight: usize,
    /// `_bulk` document fields tried in order for the line; a document with
    /// none of them is stored whole, as its JSON.
    #[arg(long, value_delimiter = ',', default_values_t = sluice_push::elastic::DEFAULT_MESSAGE_FIELDS.iter().map(|s| s.to_string()), env = "SLUICE_ES_MESSAGE_FIELD")]
    pub es_message_field: Vec<String>,
    /// `_bulk` document fields tried in order for the record time (RFC 3339
    /// or epoch milliseconds); the arrival time when none reads as one.
    #[arg(long, value_delimiter = ',', default_values_t = sluice_push::elastic::DEFAULT_TIME_FIELDS.iter().map(|s| s.to_string()), env = "SLUICE_ES_TIME_FIELD")]
    pub es_time_field: Vec<String>,
    /// On SIGTERM, how long a node of a cluster waits for stores to take
    /// the segments it still holds before it exits anyway (they stay on
    /// disk and are served again at the next start). A lone ingeststore
    /// does not wait.
    #[arg(long, default_value = "60s", env = "SLUICE_DRAIN_TIMEOUT")]
    pub drain_timeout: HumanDuration,
}

// Flags of the store role.
#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    /// Consumer lanes: each takes segments from one ingester at a time,
    /// picked by backlog; more lanes consume from more ingesters at once.
    #[arg(long, default_value_t = sluice_store::consumer::DEFAULT_LANES, env = "SLUICE_CONSUME_LANES")]
    pub consume_lanes: usize,
    /// How long one replica of a store segment may take on another store
    /// before the lane tries the next store (with --replication-factor above 1).
    #[arg(long, default_value_t = sluice_store::replicate::REPLICA_TIMEOUT.into(), env = "SLUICE_REPLICA_TIMEOUT")]
    pub replica_timeout: HumanDuration,
    /// With --replication-factor above 1: once a store holding one of this
    /// store's batches has been dead (or forgotten) this long, copy the
    /// batch again to another store. Long by default, so that restarts and
    /// upgrades never trigger copies.
    #[arg(long, default_value_t = sluice_store::repair::REPAIR_AFTER.into(), env = "SLUICE_REPAIR_AFTER")]
    pub repair_after: HumanDuration,
    /// Remove store segments whose newest record is older than this, e.g.
    /// 7d or 12h. Purges are logged and counted. Default: keep everything.
    #[arg(long, value_parser = humantime::parse_duration, env = "SLUICE_RETAIN")]
    pub retain: Option<Duration>,
    /// Remove the oldest store segments while they hold more than this,
    /// e.g. 50GB. Counts store segments only (not ingest segments, tmp/ or
    /// quarantine/). Default: no limit.
    #[arg(long, value_parser = parse_bytes, env = "SLUICE_MAX_DISK")]
    pub max_disk: Option<u64>,
    /// Memory for decoded blocks kept between queries, e.g. 2GB. A query
    /// that cannot skip blocks (a word on many lines) then searches their
    /// text instead of decompressing it again, as grep searches text the
    /// page cache holds; of a block read in part, the frames read and its
    /// decoded ids are kept, for the next query for a rare id. Compaction
    /// keeps the blocks it writes, so data just compacted is not
    /// decompressed by the next query. 0 turns it off. Default: an eighth of the machine's memory, at most 4GiB
    /// (512MiB if the memory is unknown).
    #[arg(long, value_parser = parse_bytes, env = "SLUICE_BLOCK_CACHE")]
    pub block_cache: Option<u64>,
    /// Records (uncompressed) per compacted store segment.
    #[arg(long, default_value_t = ByteSize(sluice_store::compact::DEFAULT_TARGET_SEGMENT_BYTES), env = "SLUICE_COMPACT_TARGET")]
    pub compact_target: ByteSize,
    /// Do not compact: store segments stay as the consumer wrote them.
    /// Retention still runs; corrupt segments are reported by queries but
    /// not quarantined (that is compaction's job).
    #[arg(long, env = "SLUICE_NO_COMPACT")]
    pub no_compact: bool,
    /// Pause between store maintenance passes (retention, compaction)
    /// that found nothing to do.
    #[arg(long, default_value_t = sluice_store::maintain::DEFAULT_INTERVAL.into(), env = "SLUICE_MAINTENANCE_INTERVAL")]
    pub maintenance_interval: HumanDuration,
}

// `sluice ingest` (no doc comment: with deferred subcommands, an Args
// struct's doc would replace the subcommand's about in its --help).
#[derive(clap::Args, Debug)]
pub struct IngestNode {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub ingest: IngestArgs,
}

// `sluice store` (see IngestNode).
#[derive(clap::Args, Debug)]
pub struct StoreNode {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

// `sluice ingeststore` (see IngestNode).
#[derive(clap::Args, Debug)]
pub struct BothNode {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub ingest: IngestArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}
