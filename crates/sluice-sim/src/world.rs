//! The world: simulated time, the event queue, message delivery and
//! membership. Nodes are numbered: ingesters first (`i0`, `i1`, …), then
//! stores (`s0`, `s1`, …).

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap},
    sync::Arc,
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::SmallRng};
use sluice_record::Ulid;
use sluice_store::lane;

use crate::{
    SimConfig,
    check::{Ledger, Report},
    ingester::IngesterNode,
    net::Net,
    store::StoreNode,
};

/// Events processed at most in one run: a bound far above what a run
/// needs, so a bug that loops shows as a failed run, not a hung test.
const MAX_EVENTS: u64 = 2_000_000;
/// How often the world looks for quiet after healing.
const SETTLE_CHECK: Duration = Duration::from_millis(500);

/// A message between nodes.
#[derive(Debug)]
pub(crate) enum Msg {
    /// Lane → ingester: `POST /ingest/next`.
    Next { lane: usize, life: u64, token: u64 },
    /// Lane → ingester: `GET /ingest/read`.
    Read {
        lane: usize,
        life: u64,
        token: u64,
        id: Ulid,
    },
    /// Ingester → lane: the segment's bytes.
    ReadReply {
        lane: usize,
        life: u64,
        token: u64,
        id: Ulid,
        result: Result<Vec<u8>, String>,
    },
    /// Lane → ingester: `POST /ingest/commit?replicas=…`.
    Commit {
        lane: usize,
        life: u64,
        token: u64,
        id: Ulid,
        replicas: Vec<String>,
    },
    /// Lane → ingester: `POST /ingest/failed`; no reply awaited.
    Failed { id: Ulid },
    /// Lane → store: `PUT /store/replicate`.
    Replicate {
        lane: usize,
        life: u64,
        token: u64,
        name: String,
        bytes: Arc<Vec<u8>>,
    },
    /// Any node → lane: a reply the lane takes as it is.
    Reply {
        lane: usize,
        life: u64,
        event: lane::Event,
    },
}

/// Something that happens at a moment of simulated time.
#[derive(Debug)]
pub(crate) enum Ev {
    Deliver {
        from: usize,
        to: usize,
        msg: Msg,
    },
    /// A lane's timer; stale unless it is the lane's scheduled one.
    LaneWake {
        store: usize,
        lane: usize,
        life: u64,
    },
    /// A local step of a lane finished (the write of its copy).
    LaneEvent {
        store: usize,
        lane: usize,
        life: u64,
        event: lane::Event,
    },
    /// A writer sends its next batch.
    Write {
        ingester: usize,
        writer: usize,
    },
    /// A writer's segment is sealed early (a `replicated` batch waits).
    Seal {
        ingester: usize,
        writer: usize,
        segment: Ulid,
    },
    Nemesis,
    Restart {
        node: usize,
    },
    Undo(crate::nemesis::Fault),
    HealAll,
    Settle,
    /// A membership view learns a node's status.
    View {
        observer: usize,
        subject: usize,
        status: Status,
    },
}

/// A node's status as membership spreads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Status {
    pub(crate) live: bool,
    pub(crate) readonly: bool,
    /// Grows with every change, so a late, older message never
    /// overwrites a newer one.
    pub(crate) version: u64,
}

pub(crate) struct World {
    pub(crate) config: SimConfig,
    pub(crate) seed: u64,
    pub(crate) now: Duration,
    pub(crate) base: Instant,
    pub(crate) rng: SmallRng,
    seq: u64,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    events: BTreeMap<u64, Ev>,
    pub(crate) ingesters: Vec<IngesterNode>,
    pub(crate) stores: Vec<StoreNode>,
    pub(crate) net: Net,
    /// The truth about every node.
    pub(crate) status: Vec<Status>,
    /// Each node's view of every node (only stores' views are read).
    pub(crate) views: Vec<Vec<Status>>,
    pub(crate) ledger: Ledger,
    /// Writers write and the nemesis acts.
    pub(crate) faulting: bool,
    healed_at: Option<Duration>,
    drained: bool,
    next_record: u64,
    trace: u64,
}

impl World {
    pub(crate) fn new(seed: u64, config: SimConfig) -> World {
        let nodes = config.ingesters + config.stores;
        let mut world = World {
            seed,
            now: Duration::ZERO,
            base: Instant::now(),
            rng: SmallRng::seed_from_u64(seed),
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            ingesters: Vec::new(),
            stores: Vec::new(),
            net: Net::default(),
            status: vec![
                Status {
                    live: true,
                    readonly: false,
                    version: 1,
                };
                nodes
            ],
            views: Vec::new(),
            ledger: Ledger::default(),
            faulting: true,
            healed_at: None,
            drained: false,
            next_record: 0,
            trace: 0xcbf2_9ce4_8422_2325,
            config,
        };
        world.views = vec![world.status.clone(); nodes];
        for i in 0..world.config.ingesters {
            let node = IngesterNode::open(&world, i);
            world.ingesters.push(node);
        }
        for s in 0..world.config.stores {
            let node = StoreNode::new();
            world.stores.push(node);
            world.start_store(s);
        }
        for i in 0..world.config.ingesters {
            for w in 0..world.config.writers_per_ingester {
                let at = Duration::from_millis(world.rng.random_range(0..100));
                world.schedule(
                    at,
                    Ev::Write {
                        ingester: i,
                        writer: w,
                    },
                );
            }
        }
        if world.config.nemesis {
            world.net.loss_ppm = 5_000;
            world.schedule(Duration::from_millis(200), Ev::Nemesis);
        }
        let heal = world.config.fault_time;
        world.schedule(heal, Ev::HealAll);
        world
    }

    /// The node id of ingester `i`.
    pub(crate) fn ingester_node(&self, i: usize) -> usize {
        i
    }

    /// The node id of store `s`.
    pub(crate) fn store_node(&self, s: usize) -> usize {
        self.config.ingesters + s
    }

    pub(crate) fn name(&self, node: usize) -> String {
        if node < self.config.ingesters {
            format!("i{node}")
        } else {
            format!("s{}", node - self.config.ingesters)
        }
    }

    /// The node named `name`, if there is one.
    pub(crate) fn node_named(&self, name: &str) -> Option<usize> {
        let n: usize = name.get(1..)?.parse().ok()?;
        match name.as_bytes().first()? {
            b'i' if n < self.config.ingesters => Some(n),
            b's' if n < self.config.stores => Some(self.config.ingesters + n),
            _ => None,
        }
    }

    pub(crate) fn instant(&self) -> Instant {
        self.base + self.now
    }

    /// A fresh record id: the world's time and a counter, so ids grow.
    pub(crate) fn record_id(&mut self) -> Ulid {
        self.next_record += 1;
        let ms = 1_704_067_200_000 + self.now.as_millis() as u64;
        Ulid::from_parts(ms, u128::from(self.next_record))
    }

    pub(crate) fn schedule(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    pub(crate) fn after(&mut self, delay: Duration, ev: Ev) {
        self.schedule(self.now + delay, ev);
    }

    /// A random delay in `range` milliseconds.
    pub(crate) fn ms(&mut self, range: std::ops::Range<u64>) -> Duration {
        Duration::from_millis(self.rng.random_range(range))
    }

    /// Send `msg` over the network: it arrives after the link's delay,
    /// or never when the link is cut or the message is lost.
    pub(crate) fn send(&mut self, from: usize, to: usize, msg: Msg) {
        match self.net.delay(&mut self.rng, from, to) {
            Some(delay) => self.after(delay, Ev::Deliver { from, to, msg }),
            None => self.fold(&[7, from as u64, to as u64]),
        }
    }

    /// Mix `parts` into the run's trace (FNV-1a), which two runs of one
    /// seed must agree on.
    pub(crate) fn fold(&mut self, parts: &[u64]) {
        for part in parts {
            for byte in part.to_le_bytes() {
                self.trace ^= u64::from(byte);
                self.trace = self.trace.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }

    /// A line of the run's history, stamped with the time.
    pub(crate) fn note(&mut self, line: String) {
        let stamped = format!("{:>8.3}s {line}", self.now.as_secs_f64());
        self.ledger.note(stamped);
    }

    /// Change node `node`'s true status and spread it: each other store's
    /// view learns it after a seeded delay.
    pub(crate) fn set_status(&mut self, node: usize, live: bool, readonly: bool) {
        let status = Status {
            live,
            readonly,
            version: self.status[node].version + 1,
        };
        self.status[node] = status;
        self.views[node][node] = status;
        for s in 0..self.config.stores {
            let observer = self.store_node(s);
            if observer != node {
                let lag = self.ms(0..self.config.view_lag_max.as_millis() as u64 + 1);
                self.after(
                    lag,
                    Ev::View {
                        observer,
                        subject: node,
                        status,
                    },
                );
            }
        }
    }

    /// A restarted node knows nothing of the others until membership
    /// tells it, each after a seeded delay.
    pub(crate) fn relearn(&mut self, observer: usize) {
        for subject in 0..self.status.len() {
            if subject == observer {
                continue;
            }
            self.views[observer][subject] = Status::default();
            let status = self.status[subject];
            let lag = self.ms(0..self.config.view_lag_max.as_millis() as u64 + 1);
            self.after(
                lag,
                Ev::View {
                    observer,
                    subject,
                    status,
                },
            );
        }
    }

    pub(crate) fn run(mut self) -> Report {
        let mut processed = 0u64;
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            let Some(ev) = self.events.remove(&seq) else {
                continue;
            };
            processed += 1;
            if processed > MAX_EVENTS {
                self.ledger.errors.push(format!(
                    "the run passed {MAX_EVENTS} events; it was stopped"
                ));
                break;
            }
            self.now = at;
            for node in &self.ingesters {
                node.sync_clock(self.now);
            }
            if self.dispatch(ev) {
                break;
            }
        }
        let (drained, trace) = (self.drained, self.trace);
        crate::check::check(&self, drained, trace)
    }

    /// Handle one event; true when the run is over.
    fn dispatch(&mut self, ev: Ev) -> bool {
        match ev {
            Ev::Deliver { from, to, msg } => {
                self.fold(&[1, self.now.as_nanos() as u64, from as u64, to as u64]);
                if to < self.config.ingesters {
                    self.ingester_receives(to, from, msg);
                } else {
                    self.store_receives(to - self.config.ingesters, from, msg);
                }
            }
            Ev::LaneWake { store, lane, life } => {
                self.fold(&[2, self.now.as_nanos() as u64, store as u64, lane as u64]);
                self.lane_woken(store, lane, life);
            }
            Ev::LaneEvent {
                store,
                lane,
                life,
                event,
            } => {
                self.fold(&[3, self.now.as_nanos() as u64, store as u64]);
                self.lane_event(store, lane, life, event);
            }
            Ev::Write { ingester, writer } => {
                self.fold(&[4, self.now.as_nanos() as u64, ingester as u64]);
                if self.faulting {
                    self.write_batch(ingester, writer);
                    let next = self.ms(30..250);
                    self.after(next, Ev::Write { ingester, writer });
                }
            }
            Ev::Seal {
                ingester,
                writer,
                segment,
            } => self.seal(ingester, writer, segment),
            Ev::Nemesis => {
                if self.faulting {
                    self.nemesis();
                    let next = self.ms(100..900);
                    self.after(next, Ev::Nemesis);
                }
            }
            Ev::Restart { node } => self.restart(node),
            Ev::Undo(fault) => self.undo(fault),
            Ev::HealAll => {
                self.heal_all();
                self.healed_at = Some(self.now);
                self.after(SETTLE_CHECK, Ev::Settle);
            }
            Ev::Settle => {
                if self.quiet() {
                    self.drained = true;
                    self.note("quiet: every ingester drained".to_string());
                    return true;
                }
                let limit = self.healed_at.unwrap_or_default() + self.config.settle_limit;
                if self.now >= limit {
                    self.note("settle limit reached with segments left".to_string());
                    return true;
                }
                self.after(SETTLE_CHECK, Ev::Settle);
            }
            Ev::View {
                observer,
                subject,
                status,
            } => {
                let known = &mut self.views[observer][subject];
                if status.version > known.version {
                    *known = status;
                }
            }
        }
        false
    }

    /// After healing: every ingester is up, holds no segment, and no
    /// writer has one open.
    fn quiet(&self) -> bool {
        self.ingesters.iter().all(|node| node.drained())
    }

    /// The lane's view of the cluster from store `s`'s membership view.
    pub(crate) fn view_of(&self, s: usize) -> lane::View {
        let me = self.store_node(s);
        let view = &self.views[me];
        let ingesters = (0..self.config.ingesters)
            .filter(|&i| view[self.ingester_node(i)].live)
            .map(|i| sluice_store::Ingester {
                base: self.name(self.ingester_node(i)),
                weight: 1,
            })
            .collect();
        let targets = (0..self.config.stores)
            .map(|t| self.store_node(t))
            .filter(|&t| t != me && view[t].live && !view[t].readonly)
            .map(|t| sluice_store::placement::Candidate {
                id: self.name(t),
                api: self.name(t),
                weight: 1,
            })
            .collect();
        let disk_full = self.stores[s]
            .store
            .as_ref()
            .is_some_and(|store| matches!(store.over_max_disk(), Ok(Some(_))));
        lane::View {
            ingesters,
            targets,
            disk_full,
        }
    }
}
