//! The consumer lane's rules as sans-IO code: plain types that take the
//! time, the view of the cluster and replies, and say what to send next.
//!
//! - [`Lease`]: a cycle stops gathering past a quarter of its lease and
//!   gives everything back past half of it.
//! - [`too_few_stores`]: the gate: no lending while fewer than RF−1 other
//!   stores are ready.
//! - [`pick`]: the ingester a lane lends from, at random weighted by
//!   backlog.
//! - [`Fanout`]: replica targets in rendezvous order ([`crate::placement::rank`]),
//!   RF−1 at once, a failed one replaced by the next in order.
//! - [`Lane`]: one lane's whole cycle (lend → download → write the local
//!   copy → replicate → commit, or give back) as a state machine driven by
//!   [`Event`]s and emitting [`Action`]s.
//!
//! The async consumer (`consumer.rs`) and replication sender
//! (`replicate.rs`) call the first four, so the rules they run are these.
//! [`Lane`] is what the deterministic simulation (the `sluice-sim` crate)
//! drives: it composes the same rules in the order the async lane runs
//! them, with replies delivered by a simulated network. The async lane is
//! not built on [`Lane`] (yet); where the two differ is said at [`Lane`].

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use sluice_record::Ulid;

use crate::{consumer::Ingester, placement::Candidate};

/// The lease of one cycle's segments: the clock starts at the first lend,
/// and the shortest lease counts. Times are passed in, so the rules are
/// tested without waiting.
#[derive(Debug, Clone)]
pub struct Lease {
    first_lent: Option<Instant>,
    length: Duration,
}

impl Default for Lease {
    fn default() -> Self {
        Lease::new()
    }
}

impl Lease {
    /// A lease that nothing was lent under yet.
    pub fn new() -> Lease {
        Lease {
            first_lent: None,
            length: Duration::MAX,
        }
    }

    /// A segment was lent at `now` for `length`.
    pub fn lent(&mut self, length: Duration, now: Instant) {
        self.first_lent.get_or_insert(now);
        self.length = self.length.min(length);
    }

    /// The shortest lease of the segments lent so far.
    pub fn length(&self) -> Duration {
        self.length
    }

    /// How long the first segment has been held at `now`.
    pub fn held(&self, now: Instant) -> Duration {
        self.first_lent
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// Stop gathering more: the rest of the cycle needs time too.
    pub fn past_quarter(&self, now: Instant) -> bool {
        self.first_lent.is_some() && self.held(now) > self.length / 4
    }

    /// Give everything back instead of writing it.
    pub fn past_half(&self, now: Instant) -> bool {
        self.first_lent.is_some() && self.held(now) > self.length / 2
    }
}

/// Replicas a segment needs on other stores: RF−1.
pub fn others(rf: u32) -> usize {
    rf.saturating_sub(1) as usize
}

/// The gate: with `ready_others` other stores ready, a lane of a store
/// with replication factor `rf` must not lend, because it could not place
/// RF−1 copies and would only hold segments back from other stores.
pub fn too_few_stores(ready_others: usize, rf: u32) -> bool {
    ready_others < others(rf)
}

/// Pick an ingester at random, weighted by [`Ingester::weight`] (0 counts
/// as 1), so lanes spread by backlog instead of herding onto one.
pub fn pick<'a>(ingesters: &'a [Ingester], rng: &mut impl rand::Rng) -> Option<&'a Ingester> {
    let total: u64 = ingesters.iter().map(|i| u64::from(i.weight.max(1))).sum();
    if total == 0 {
        return None;
    }
    let mut at = rng.random_range(0..total);
    for ingester in ingesters {
        let weight = u64::from(ingester.weight.max(1));
        if at < weight {
            return Some(ingester);
        }
        at -= weight;
    }
    None
}

/// The replica target choice for one segment: the first `want` of the
/// ranked targets at once; each failure is replaced by the next in order,
/// until `want` succeeded or no target is left.
#[derive(Debug, Clone)]
pub struct Fanout<T> {
    ranked: Vec<T>,
    next: usize,
    want: usize,
    done: Vec<T>,
    running: usize,
}

/// A [`Fanout`] that ended with fewer than `want` replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short {
    /// Replicas written.
    pub got: usize,
    /// Targets tried.
    pub tried: usize,
}

impl<T: Clone> Fanout<T> {
    /// A fanout over `ranked` (best first) that needs `want` replicas.
    /// Returns it and the targets to send to at once.
    pub fn start(ranked: Vec<T>, want: usize) -> (Fanout<T>, Vec<T>) {
        let first: Vec<T> = ranked.iter().take(want).cloned().collect();
        let fanout = Fanout {
            next: first.len(),
            running: first.len(),
            ranked,
            want,
            done: Vec::new(),
        };
        (fanout, first)
    }

    /// `target` answered with a replica.
    pub fn succeeded(&mut self, target: T) {
        self.running = self.running.saturating_sub(1);
        self.done.push(target);
    }

    /// A target failed (an error, a refusal, its deadline): the next one
    /// in order to send to, if any is left.
    pub fn failed(&mut self) -> Option<T> {
        self.running = self.running.saturating_sub(1);
        if self.done.len() + self.running >= self.want {
            return None;
        }
        let next = self.ranked.get(self.next).cloned()?;
        self.next += 1;
        self.running += 1;
        Some(next)
    }

    /// No target is being sent to any more.
    pub fn finished(&self) -> bool {
        self.running == 0
    }

    /// Targets tried so far.
    pub fn tried(&self) -> usize {
        self.next
    }

    /// The targets that took a replica, or [`Short`] when fewer than
    /// `want` did.
    pub fn outcome(self) -> Result<Vec<T>, Short> {
        if self.done.len() < self.want {
            return Err(Short {
                got: self.done.len(),
                tried: self.next,
            });
        }
        Ok(self.done)
    }
}

/// What a lane is configured with.
#[derive(Debug, Clone)]
pub struct LaneConfig {
    /// This store's node id: the first replica each commit names.
    pub self_id: String,
    /// Copies of each segment on distinct stores, this one included.
    pub rf: u32,
    /// Segments gathered into one cycle at most.
    pub max_gather_segments: usize,
    /// How long a request to an ingester may take.
    pub request_timeout: Duration,
    /// How long one replica may take.
    pub replica_timeout: Duration,
    /// The pause while the gate is closed, no ingester is known, or the
    /// ingester had nothing (the async lane long-polls instead).
    pub idle_pause: Duration,
    /// The pause after a failed cycle.
    pub retry_backoff: Duration,
}

/// What the lane sees of the cluster when it decides: the ingesters, the
/// other stores ready for a replica, and whether its own disk is full.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Live ingesters with their weights.
    pub ingesters: Vec<Ingester>,
    /// Other stores that are ready (not this one).
    pub targets: Vec<Candidate>,
    /// This store is over its disk limit: it lends nothing.
    pub disk_full: bool,
}

/// A store segment the local write made, and the ingest segments in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Its file name in the store directory.
    pub name: String,
    /// The ingest segments whose records it holds.
    pub inputs: Vec<Ulid>,
}

/// What happened to the lane: time passed, or a reply to one of its
/// [`Action`]s, named by the action's token. A reply whose token the lane
/// no longer waits for (it timed out, the cycle ended) is ignored.
#[derive(Debug, Clone)]
pub enum Event {
    /// Time passed; the lane checks its deadlines and its pause.
    Wake,
    /// The reply to [`Action::Next`]: a segment and its lease, or none.
    Next {
        /// The action's token.
        token: u64,
        /// The lent segment, `None` when there is none, or why it failed.
        result: Result<Option<(Ulid, Duration)>, String>,
    },
    /// [`Action::Download`] is done: the segment is in `tmp/`, verified.
    Download {
        /// The action's token.
        token: u64,
        /// Whether it worked, or why not.
        result: Result<(), String>,
    },
    /// [`Action::Write`] is done: the local copy is durable.
    Write {
        /// The action's token.
        token: u64,
        /// The store segments written, or why the write failed.
        result: Result<Vec<Written>, String>,
    },
    /// The reply to [`Action::Replicate`]: 201 or 200 is `Ok`.
    Replica {
        /// The action's token.
        token: u64,
        /// Whether the target holds the segment now, or why not.
        result: Result<(), String>,
    },
    /// The reply to [`Action::Commit`].
    Commit {
        /// The action's token.
        token: u64,
        /// Whether the ingester took the commit, or why not.
        result: Result<(), String>,
    },
}

/// What the lane asks its shell to do. Requests carry a token; their reply
/// comes back as an [`Event`] with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Lend a segment: `POST /ingest/next`.
    Next {
        /// The reply's token.
        token: u64,
        /// The ingester's id.
        ingester: String,
    },
    /// Download a lent segment into `tmp/` and verify it.
    Download {
        /// The reply's token.
        token: u64,
        /// The ingester's id.
        ingester: String,
        /// The segment.
        id: Ulid,
    },
    /// Write the downloads as durable store segments here (replica 1).
    Write {
        /// The reply's token.
        token: u64,
        /// The downloaded ingest segments.
        inputs: Vec<Ulid>,
    },
    /// Send a store segment to another store: `PUT /store/replicate`.
    Replicate {
        /// The reply's token.
        token: u64,
        /// The store segment's file name.
        segment: String,
        /// The target store.
        target: Candidate,
    },
    /// Commit an ingest segment, naming its holders:
    /// `POST /ingest/commit?replicas=…` (none named: RF 1).
    Commit {
        /// The reply's token.
        token: u64,
        /// The ingester's id.
        ingester: String,
        /// The segment.
        id: Ulid,
        /// The stores holding its records, this one first.
        replicas: Vec<String>,
    },
    /// Give a segment back: `POST /ingest/failed`; the reply is not
    /// awaited (the pending timeout covers a lost one).
    GiveBack {
        /// The ingester's id.
        ingester: String,
        /// The segment.
        id: Ulid,
    },
    /// The cycle ended: remove these downloads from `tmp/`.
    Release {
        /// The downloaded ingest segments.
        inputs: Vec<Ulid>,
    },
}

/// Why the lane lends nothing now, or why its last cycle ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The gate: fewer than RF−1 other stores ready.
    TooFewStores,
    /// The gate: this store's disk is full.
    DiskFull,
    /// The cycle held its segments past half their lease.
    LeaseLapsed,
    /// A request failed or timed out, or the local write failed.
    Failed,
    /// Fewer than RF−1 other stores took a replica.
    TooFewReplicas,
}

/// What a waiting request was, so a lapsed deadline fails it the way its
/// own error reply would.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Next,
    Download,
    Write,
    Replica,
    Commit,
}

#[derive(Debug)]
struct Cycle {
    ingester: String,
    inputs: Vec<Ulid>,
    lease: Lease,
}

#[derive(Debug)]
enum Phase {
    Idle {
        until: Instant,
    },
    Lending,
    Downloading {
        id: Ulid,
    },
    Writing,
    Replicating {
        segments: Vec<Written>,
        at: usize,
        fanout: Fanout<Candidate>,
        sent: BTreeMap<u64, Candidate>,
        holders: BTreeMap<Ulid, Vec<String>>,
    },
    Committing {
        holders: BTreeMap<Ulid, Vec<String>>,
        at: usize,
    },
}

/// One consumer lane as a state machine (see the module docs).
///
/// It runs the async lane's order of steps and its rules, with these
/// differences, all on the side of fewer states: a `next` that finds
/// nothing is answered at once and the lane pauses [`LaneConfig::idle_pause`]
/// (the async lane long-polls); the lane replicates and commits the same
/// way but every request has the deadline of its kind (the async lane
/// times out the whole request to an ingester).
#[derive(Debug)]
pub struct Lane {
    config: LaneConfig,
    phase: Phase,
    cycle: Option<Cycle>,
    /// Requests waiting for a reply, by token, with their deadlines.
    waiting: BTreeMap<u64, (Instant, Kind)>,
    next_token: u64,
    stopped: Option<Stop>,
}

mod machine;

#[cfg(test)]
mod tests;
