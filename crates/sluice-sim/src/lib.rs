//! sluice's deterministic simulation of ingest → store replication
//! (issue 19, "Deterministic simulation"): a seeded discrete-event world in
//! which ingesters and stores run on [`MemFs`](sluice_storage::MemFs), talk
//! over a simulated network, see each other through stale membership
//! views, and suffer a nemesis; after healing, a checker asserts what a
//! `replicated` ack promises.
//!
//! What runs here is the real code where it is cheap to run:
//! - each ingester is a real [`IngestLog`](sluice_ingest::IngestLog) on its
//!   own `MemFs` with a [`ManualClock`](sluice_ingest::ManualClock) that the
//!   world moves: segment writes, seal, lend (`next`), the lease expiry
//!   (`reap_expired`), `failed`, the RF-checked commit
//!   ([`IngestLog::commit_replicated`](sluice_ingest::IngestLog::commit_replicated),
//!   the same rule the HTTP handler calls), `watch_commit` (which makes a
//!   batch acked), and crash recovery (torn tails cut);
//! - each store is a real [`Store`](sluice_store::Store) on its own `MemFs`:
//!   downloads are verified by the consumer's own `verify_and_sort`, the
//!   local copy is written by its `store_inputs` (adopt or merge), replicas
//!   are received by the real receiver
//!   ([`replica::receive`](sluice_store::replica::receive): already held →
//!   200, over `--max-disk` → 507), and a restart runs `Store::open`'s
//!   recovery;
//! - each consumer lane is a [`Lane`](sluice_store::lane::Lane), the sans-IO
//!   state machine built from the rules the async consumer calls (lease,
//!   gate, ingester pick, rendezvous placement, fallback).
//!
//! What is modelled: the network (a message queue with seeded delays,
//! drops, one- and two-way partitions and slow links; a lost message is
//! noticed by the lane's deadline), membership (each store's view of who
//! is live and `readonly` learns every change after a seeded delay, and a
//! restarted store relearns the cluster; partitions do not change views,
//! so lanes keep trying the far side until deadlines), writers (they
//! append batches straight to the ingest log and seal early, as a
//! `replicated` batch does; HTTP and the listeners are not run), and the
//! nemesis (crash with torn writes and restart, partition, slow link, full
//! disk). Compaction, retention, repair and queries are not simulated.
//!
//! Determinism: one seed drives every choice; segment ids come from the
//! ingesters' manual clocks ([`ManualClock::with_ids`](sluice_ingest::ManualClock::with_ids)),
//! record ids from the world's clock, and every map is ordered, so a seed
//! replays exactly (see [`Report::trace`]).
//!
//! Run it with `cargo test -p sluice-sim`; `SLUICE_SIM_SEEDS=N` runs N
//! seeds, `SLUICE_SIM_SEED=S` replays one (see `tests/sim.rs`).

mod check;
mod ingester;
mod nemesis;
mod net;
mod store;
mod world;

use std::time::Duration;

pub use check::{Outcome, Report};

/// The shape of one simulated cluster and run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Ingesters.
    pub ingesters: usize,
    /// Stores.
    pub stores: usize,
    /// The replication factor every ingester enforces on commit.
    pub rf: u32,
    /// The replication factor the stores' lanes replicate to; `None`: the
    /// same as [`SimConfig::rf`]. A smaller one is a misconfigured store.
    pub lane_rf: Option<u32>,
    /// Ingesters refuse a commit naming fewer distinct stores than their
    /// RF. Off only to show that the checker catches what the rule
    /// prevents.
    pub commit_rule: bool,
    /// Consumer lanes per store.
    pub lanes_per_store: usize,
    /// Writers per ingester, each with its own active segment (two make
    /// segments whose ids overlap, so stores merge them).
    pub writers_per_ingester: usize,
    /// How long writers write and the nemesis acts, in simulated time.
    pub fault_time: Duration,
    /// Whether the nemesis acts at all.
    pub nemesis: bool,
    /// Simulated time allowed after healing for every ingester to drain.
    pub settle_limit: Duration,
    /// The ingesters' pending timeout: the lease of a lent segment.
    pub pending_timeout: Duration,
    /// The lanes' deadline for a request to an ingester.
    pub request_timeout: Duration,
    /// The lanes' deadline for one replica.
    pub replica_timeout: Duration,
    /// Segments one lane cycle gathers at most.
    pub max_gather_segments: usize,
    /// The longest a membership view lags behind a change.
    pub view_lag_max: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            ingesters: 2,
            stores: 3,
            rf: 2,
            lane_rf: None,
            commit_rule: true,
            lanes_per_store: 2,
            writers_per_ingester: 2,
            fault_time: Duration::from_secs(8),
            nemesis: true,
            settle_limit: Duration::from_secs(120),
            pending_timeout: Duration::from_secs(4),
            request_timeout: Duration::from_secs(2),
            replica_timeout: Duration::from_millis(800),
            max_gather_segments: 4,
            view_lag_max: Duration::from_millis(1500),
        }
    }
}

/// Run the world of `config` with `seed` to the end: the fault phase,
/// healing, and draining; then check it. Never panics on a broken
/// invariant: the [`Report`] says what broke.
pub fn run(seed: u64, config: &SimConfig) -> Report {
    world::World::new(seed, config.clone()).run()
}
