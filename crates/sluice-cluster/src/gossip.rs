//! [`Gossip`]: membership over chitchat (scuttlebutt gossip with phi-accrual
//! failure detection, protocol V1 with compressed digests).
//!
//! chitchat runs its own task on the UDP socket. Beside it, a refresh task
//! copies chitchat's state into the shared view every gossip interval and
//! whenever chitchat's set of live nodes changes, and sends this node's key
//! changes to chitchat in order. It also remembers every node generation
//! it has seen, so that a node chitchat garbage-collects (after
//! [`DEAD_NODE_GRACE_PERIOD`]) is still reported dead until it is
//! forgotten or comes back.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use chitchat::{
    Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ProtocolVersion,
    spawn_chitchat,
    transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket},
};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::MissedTickBehavior,
};
use tracing::warn;

use crate::{
    ClusterError, NodeEntry, keys,
    local::{Core, Shared, initial_keys, lock},
    metrics,
    view::tombstones,
};

/// The default gossip interval (`--gossip-interval`).
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_secs(1);

/// The phi-accrual threshold: a node is dead once the time since its last
/// heartbeat exceeds this many mean heartbeat intervals. With several
/// peers a heartbeat usually arrives more than once per gossip interval,
/// so a dead node is detected within about 2 to 8 intervals (a few seconds
/// at the default 1 s).
pub const PHI_THRESHOLD: f64 = 8.0;

/// How long chitchat keeps a dead node's state (and gossips it, for half
/// of it) before it removes it. Long, so that nodes that join later still
/// learn of nodes that died; this crate reports dead nodes until they are
/// forgotten in any case.
pub const DEAD_NODE_GRACE_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// What [`Gossip::start`] needs.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    /// This node's id (the ULID of `<data>/node-id`, as text).
    pub node_id: String,
    /// This start's generation ([`next_generation`](crate::next_generation)).
    pub generation: u64,
    /// The cluster id (`--cluster-id`); messages of other clusters are refused.
    pub cluster_id: String,
    /// The UDP address to bind (`--gossip`); port 0 picks a free port
    /// ([`Gossip::local_addr`] tells which).
    pub listen: SocketAddr,
    /// The address peers are told to gossip to (`--advertise-gossip`);
    /// default: the bound address. A port of 0 means the bound port. It
    /// must not be unspecified (`0.0.0.0`).
    pub advertise: Option<SocketAddr>,
    /// Seeds (`--peer`): `HOST:PORT`, with an IP or a DNS name (resolved at
    /// start and every minute after). Our own address is ignored.
    pub seeds: Vec<String>,
    /// The gossip interval (`--gossip-interval`, default
    /// [`DEFAULT_GOSSIP_INTERVAL`]); the failure detector is tuned from it.
    pub interval: Duration,
    /// This node's initial keys ([`keys`](crate::keys)); `v` is added if absent.
    pub keys: Vec<(String, String)>,
}

/// Membership over chitchat gossip. Needs a tokio runtime (timers and the
/// network); [`Membership`](crate::Membership) calls are plain functions, callable from any
/// thread.
pub struct Gossip {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    advertise: SocketAddr,
    interval: Duration,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    handle: Mutex<Option<ChitchatHandle>>,
}

impl Gossip {
    /// Bind the gossip socket, start chitchat and the refresh task. The
    /// view holds this node at once; other nodes appear as gossip finds
    /// them.
    pub async fn start(config: GossipConfig) -> Result<Gossip, ClusterError> {
        for seed in &config.seeds {
            check_seed(seed)?;
        }
        if config.interval.is_zero() {
            return Err(ClusterError::BadInterval {
                interval: config.interval,
            });
        }
        // Bind here rather than in chitchat: the advertised address (part of
        // the node's chitchat id) needs the bound port when it is 0.
        let socket = UdpSocket::open(config.listen)
            .await
            .map_err(|e| ClusterError::Bind {
                addr: config.listen,
                reason: e.root_cause().to_string(),
            })?;
        let local_addr = socket.local_addr().map_err(|e| ClusterError::Bind {
            addr: config.listen,
            reason: e.root_cause().to_string(),
        })?;
        let advertise = match config.advertise {
            Some(a) if a.port() == 0 => SocketAddr::new(a.ip(), local_addr.port()),
            Some(a) => a,
            None => local_addr,
        };
        if advertise.ip().is_unspecified() {
            return Err(ClusterError::UnspecifiedAdvertise { addr: advertise });
        }

        let self_keys = initial_keys(config.keys);
        let chitchat_id = ChitchatId::new(config.node_id.clone(), config.generation, advertise);
        let chitchat_config = ChitchatConfig {
            chitchat_id: chitchat_id.clone(),
            cluster_id: config.cluster_id.clone(),
            gossip_interval: config.interval,
            listen_addr: local_addr,
            seed_nodes: config.seeds.clone(),
            failure_detector_config: failure_detector_config(config.interval),
            // This crate never deletes keys; tombstones would go after this.
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            // The liveness rule (roles and api present) is applied in
            // `build_view`, so that views of every implementation agree.
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V1,
        };
        let transport = Prebound {
            socket: Mutex::new(Some(Box::new(Counting {
                inner: Box::new(socket),
            }))),
        };
        let initial: Vec<(String, String)> = self_keys
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let handle = spawn_chitchat(chitchat_config, initial, &transport)
            .await
            .map_err(|e| ClusterError::Start {
                reason: format!("{e:#}"),
            })?;

        let (publish_tx, publish_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(Core {
            cluster_id: config.cluster_id,
            self_id: config.node_id,
            self_generation: config.generation,
            self_gossip: Some(advertise),
            self_keys,
            others: Vec::new(),
            publish: Some(publish_tx),
        }));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(refresh_loop(
            shared.clone(),
            handle.chitchat(),
            publish_rx,
            stop_rx,
            config.interval,
            chitchat_id,
        ));
        Ok(Gossip {
            shared,
            local_addr,
            advertise,
            interval: config.interval,
            stop,
            task: Mutex::new(Some(task)),
            handle: Mutex::new(Some(handle)),
        })
    }

    /// The address the gossip socket is bound to (the real port when the
    /// configured one was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address peers are told to gossip to.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise
    }

    /// The gossip interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Stop gossiping: the refresh task ends, then chitchat. Peers see this
    /// node dead after their failure detectors time out (publish
    /// `health=draining` first, and wait a couple of intervals, so they
    /// know before). The last view stays readable. Calling it again does
    /// nothing.
    pub async fn shutdown(&self) -> Result<(), ClusterError> {
        let _ = self.stop.send(true);
        let task = lock(&self.task).take();
        if let Some(task) = task {
            // The task only ends or is cancelled; neither is an error here.
            let _ = task.await;
        }
        let handle = lock(&self.handle).take();
        if let Some(handle) = handle {
            handle.shutdown().await.map_err(|e| ClusterError::Stopped {
                reason: format!("{e:#}"),
            })?;
        }
        Ok(())
    }
}

crate::local::membership_through_shared!(Gossip);

/// The failure detector for a gossip interval: the prior mean heartbeat
/// interval is the gossip interval, and gaps over 10 intervals (a paused
/// or restarted node) are not taken as samples, so they do not teach the
/// detector to wait longer.
pub fn failure_detector_config(interval: Duration) -> FailureDetectorConfig {
    FailureDetectorConfig {
        phi_threshold: PHI_THRESHOLD,
        sampling_window_size: 1000,
        max_interval: interval * 10,
        initial_interval: interval,
        dead_node_grace_period: DEAD_NODE_GRACE_PERIOD,
    }
}

/// A seed is an IP socket address or `HOST:PORT` with a DNS name.
fn check_seed(seed: &str) -> Result<(), ClusterError> {
    if seed.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = || ClusterError::BadSeed { seed: seed.into() };
    let (host, port) = seed.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    match port.parse::<u16>() {
        Ok(p) if p != 0 && host_ok => Ok(()),
        _ => Err(bad()),
    }
}

/// A transport that hands chitchat the socket bound in [`Gossip::start`].
struct Prebound {
    socket: Mutex<Option<Box<dyn Socket>>>,
}

#[async_trait]
impl Transport for Prebound {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        lock(&self.socket)
            .take()
            .ok_or_else(|| anyhow::anyhow!("the gossip socket was already opened"))
    }
}

/// A socket that counts datagrams and bytes for the metrics.
struct Counting {
    inner: Box<dyn Socket>,
}

#[async_trait]
impl Socket for Counting {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: chitchat::ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let outcome = self.inner.send(to, envelope).await?;
        metrics::gossip_sent(outcome.num_bytes_sent);
        Ok(outcome)
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        // Cancellation-safe as the inner recv is: the count is taken in the
        // same poll that returns the datagram.
        let outcome = self.inner.recv().await?;
        metrics::gossip_received(outcome.num_bytes_received);
        Ok(outcome)
    }
}

async fn refresh_loop(
    shared: Arc<Shared>,
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    mut publish: mpsc::UnboundedReceiver<(String, String)>,
    mut stop: watch::Receiver<bool>,
    interval: Duration,
    self_id: ChitchatId,
) {
    let mut live_changes = chitchat.lock().await.live_nodes_watcher();
    let mut watching = true;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut memory = Memory::new(self_id);
    loop {
        tokio::select! {
            // A stop, or the `Gossip` dropped.
            _ = stop.changed() => break,
            Some((key, value)) = publish.recv() => {
                let mut guard = chitchat.lock().await;
                guard.self_node_state().set(key, value);
                while let Ok((key, value)) = publish.try_recv() {
                    guard.self_node_state().set(key, value);
                }
                // The view already has the change (this node's keys are
                // kept by `Shared`).
                continue;
            }
            changed = live_changes.changed(), if watching => {
                watching = changed.is_ok();
            }
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        {
            let guard = chitchat.lock().await;
            let live: std::collections::HashSet<&ChitchatId> = guard.live_nodes().collect();
            memory.begin();
            for (id, state) in guard.node_states() {
                memory.observe(
                    id,
                    state.max_version(),
                    u64::from(state.heartbeat()),
                    live.contains(id),
                    now,
                    || {
                        state
                            .key_values()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect()
                    },
                );
            }
        }
        shared.replace_others(memory.finish(now));
    }
}

/// What one node generation was last seen as.
struct Seen {
    keys: BTreeMap<String, String>,
    max_version: u64,
    heartbeat: u64,
    heartbeat_at: Instant,
    live: bool,
    /// In chitchat's state at the last refresh.
    present: bool,
}

/// Every node generation seen, kept after chitchat drops it, until it is
/// superseded by a newer generation of its node or forgotten (entries that
/// carry a `forgotten` key are kept: their tombstones still count).
struct Memory {
    self_id: ChitchatId,
    seen: HashMap<ChitchatId, Seen>,
    warned_self_forgotten: bool,
}

impl Memory {
    fn new(self_id: ChitchatId) -> Memory {
        Memory {
            self_id,
            seen: HashMap::new(),
            warned_self_forgotten: false,
        }
    }

    /// Start a refresh: nothing is present until observed.
    fn begin(&mut self) {
        for seen in self.seen.values_mut() {
            seen.present = false;
            seen.live = false;
        }
    }

    /// chitchat holds `id`; its keys are copied only when its version moved.
    fn observe(
        &mut self,
        id: &ChitchatId,
        max_version: u64,
        heartbeat: u64,
        live: bool,
        now: Instant,
        keys: impl FnOnce() -> BTreeMap<String, String>,
    ) {
        match self.seen.get_mut(id) {
            Some(seen) => {
                if seen.max_version != max_version {
                    seen.keys = keys();
                    seen.max_version = max_version;
                }
                if seen.heartbeat != heartbeat {
                    seen.heartbeat = heartbeat;
                    seen.heartbeat_at = now;
                }
                seen.live = live;
                seen.present = true;
            }
            None => {
                self.seen.insert(
                    id.clone(),
                    Seen {
                        keys: keys(),
                        max_version,
                        heartbeat,
                        heartbeat_at: now,
                        live,
                        present: true,
                    },
                );
            }
        }
    }

    /// End a refresh: drop what can no longer show, return the entries.
    fn finish(&mut self, now: Instant) -> Vec<NodeEntry> {
        let mut entries: Vec<NodeEntry> = self
            .seen
            .iter()
            .map(|(id, seen)| NodeEntry {
                id: id.node_id.to_string(),
                generation: id.generation_id,
                gossip: Some(id.gossip_advertise_addr),
                keys: seen.keys.clone(),
                live: seen.live,
                heartbeat_age: Some(now.saturating_duration_since(seen.heartbeat_at)),
            })
            .collect();
        let hidden = tombstones(&entries);
        let mut newest: HashMap<&str, u64> = HashMap::new();
        for e in &entries {
            let slot = newest.entry(e.id.as_str()).or_insert(e.generation);
            *slot = (*slot).max(e.generation);
        }
        let self_hidden = hidden
            .get(&*self.self_id.node_id)
            .is_some_and(|&g| g >= self.self_id.generation_id);
        if self_hidden && !self.warned_self_forgotten {
            warn!(
                node = %self.self_id.node_id,
                generation = self.self_id.generation_id,
                "this node was forgotten by an operator while it runs: other nodes will not show it until it restarts"
            );
        }
        self.warned_self_forgotten = self_hidden;
        let doomed: Vec<ChitchatId> = self
            .seen
            .iter()
            .filter(|(id, seen)| {
                let superseded = newest
                    .get(&*id.node_id)
                    .is_some_and(|&g| g > id.generation_id);
                let forgotten = hidden
                    .get(&*id.node_id)
                    .is_some_and(|&g| g >= id.generation_id);
                !seen.present
                    && !seen.keys.contains_key(keys::FORGOTTEN)
                    && (superseded || forgotten)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &doomed {
            self.seen.remove(id);
        }
        entries.retain(|e| {
            !doomed
                .iter()
                .any(|d| *d.node_id == *e.id && d.generation_id == e.generation)
        });
        entries
    }
}

#[cfg(test)]
mod tests {
    use std::{future::Future, time::Duration};

    use super::*;
    use crate::{ForgetError, Membership};

    #[test]
    fn seeds_must_be_host_and_port() {
        for good in [
            "10.0.0.1:7659",
            "[::1]:7659",
            "node-1.sluice.svc:7659",
            "localhost:1",
        ] {
            check_seed(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "10.0.0.1",
            "node-1",
            ":7659",
            "host:0",
            "host:port",
            "::1:7659",
            "a b:1",
        ] {
            let err = check_seed(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
            assert!(err.to_string().contains("--peer"), "{err}");
        }
    }

    fn cid(id: &str, generation: u64) -> ChitchatId {
        ChitchatId::new(id, generation, ([127, 0, 0, 1], 7659).into())
    }

    fn keys(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn memory_keeps_nodes_chitchat_dropped_until_superseded_or_forgotten() {
        let full = keys(&[("roles", "store"), ("api", "h:1")]);
        let mut memory = Memory::new(cid("S", 9));
        let t0 = Instant::now();
        memory.begin();
        memory.observe(&cid("S", 9), 1, 1, true, t0, || full.clone());
        memory.observe(&cid("A", 1), 3, 10, true, t0, || full.clone());
        memory.observe(&cid("B", 1), 3, 10, true, t0, || full.clone());
        assert_eq!(memory.finish(t0).len(), 3);

        // chitchat drops A and B (garbage-collected): still reported, dead.
        let t1 = t0 + Duration::from_secs(5);
        memory.begin();
        memory.observe(&cid("S", 9), 1, 2, true, t1, || full.clone());
        let entries = memory.finish(t1);
        let a = entries.iter().find(|e| e.id == "A").unwrap();
        assert!(!a.live);
        assert_eq!(a.keys, full);
        assert_eq!(a.heartbeat_age, Some(Duration::from_secs(5)));

        // A comes back as generation 2: generation 1 is dropped. S forgets B.
        let t2 = t1 + Duration::from_secs(1);
        let forgot = keys(&[("roles", "store"), ("api", "h:1"), ("forgotten", "B:1")]);
        memory.begin();
        memory.observe(&cid("S", 9), 2, 3, true, t2, || forgot.clone());
        memory.observe(&cid("A", 2), 1, 1, true, t2, || full.clone());
        let mut ids: Vec<(String, u64)> = memory
            .finish(t2)
            .into_iter()
            .map(|e| (e.id, e.generation))
            .collect();
        ids.sort();
        assert_eq!(ids, [("A".into(), 2), ("S".into(), 9)]);
        assert_eq!(memory.seen.len(), 2);
    }

    #[test]
    fn memory_copies_keys_only_when_the_version_moves() {
        let mut memory = Memory::new(cid("S", 1));
        let t0 = Instant::now();
        memory.begin();
        memory.observe(&cid("A", 1), 4, 1, true, t0, || {
            keys(&[("health", "ready")])
        });
        memory.finish(t0);
        memory.begin();
        memory.observe(&cid("A", 1), 4, 2, true, t0, || {
            panic!("same version: no copy")
        });
        memory.observe(&cid("A", 1), 5, 3, true, t0, || {
            keys(&[("health", "draining")])
        });
        let entries = memory.finish(t0);
        assert_eq!(entries[0].keys.get("health").unwrap(), "draining");
    }

    fn config(node_id: &str, seeds: Vec<String>, interval: Duration) -> GossipConfig {
        GossipConfig {
            node_id: node_id.into(),
            generation: 1,
            cluster_id: "test-cluster".into(),
            listen: ([127, 0, 0, 1], 0).into(),
            advertise: None,
            seeds,
            interval,
            keys: vec![
                ("roles".into(), "ingest,store".into()),
                ("api".into(), format!("127.0.0.1:{}", 7000 + node_id.len())),
                ("health".into(), "starting".into()),
            ],
        }
    }

    /// Poll `check` until it holds, for at most `deadline`; the message
    /// names what did not happen.
    async fn eventually<F, Fut>(deadline: Duration, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let until = Instant::now() + deadline;
        loop {
            if check().await {
                return;
            }
            assert!(Instant::now() < until, "not within {deadline:?}: {what}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    #[tokio::test]
    async fn binding_a_busy_address_names_it_and_the_flag() {
        let a = Gossip::start(config("A", vec![], Duration::from_millis(100)))
            .await
            .unwrap();
        let mut c = config("B", vec![], Duration::from_millis(100));
        c.listen = a.local_addr();
        let err = Gossip::start(c).await.err().unwrap();
        let msg = err.to_string();
        assert!(matches!(err, ClusterError::Bind { .. }), "{err:?}");
        assert!(
            msg.contains(&a.local_addr().to_string()) && msg.contains("--gossip"),
            "{msg}"
        );
        a.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn an_unspecified_listen_address_needs_an_advertised_one() {
        let mut c = config("A", vec![], Duration::from_millis(100));
        c.listen = ([0, 0, 0, 0], 0).into();
        let err = Gossip::start(c.clone()).await.err().unwrap();
        assert!(err.to_string().contains("--advertise-gossip"), "{err}");
        c.advertise = Some(([127, 0, 0, 1], 0).into());
        let g = Gossip::start(c).await.unwrap();
        assert_eq!(g.advertise_addr().port(), g.local_addr().port());
        assert_ne!(g.local_addr().port(), 0);
        g.shutdown().await.unwrap();
        // A second shutdown is harmless.
        g.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_find_each_other_share_keys_and_see_a_stopped_node_dead() {
        let interval = Duration::from_millis(100);
        let deadline = Duration::from_secs(30);
        let a = Gossip::start(config("A", vec![], interval)).await.unwrap();
        let seed = vec![a.local_addr().to_string()];
        let b = Gossip::start(config("BB", seed.clone(), interval))
            .await
            .unwrap();
        let c = Gossip::start(config("CCC", seed, interval)).await.unwrap();
        let nodes = [&a, &b, &c];
        let ids = ["A", "BB", "CCC"];

        eventually(deadline, "every view shows every node live", || async {
            nodes.iter().all(|g| {
                let view = g.view();
                view.nodes.len() == 3 && ids.iter().all(|id| view.is_live(id))
            })
        })
        .await;
        for g in nodes {
            let view = g.view();
            assert_eq!(view.cluster_id, "test-cluster");
            for (n, id) in ids.iter().enumerate() {
                let info = view.get(id).unwrap();
                assert_eq!(
                    info.api.as_deref(),
                    Some(&*format!("127.0.0.1:{}", 7001 + n))
                );
                assert_eq!(info.gossip, Some(nodes[n].advertise_addr()));
                assert!(info.is_ingester() && info.is_store());
                assert_eq!(info.is_self, view.self_id == *id);
            }
        }

        // A key change reaches the others.
        b.set_self("health", "ready");
        assert!(
            b.view().get("BB").unwrap().is_ready(),
            "at once in its own view"
        );
        eventually(deadline, "a and c see b ready", || async {
            [&a, &c]
                .iter()
                .all(|g| g.view().get("BB").unwrap().is_ready())
        })
        .await;

        // Live nodes cannot be forgotten.
        assert_eq!(
            a.forget("CCC"),
            Err(ForgetError::Live { node: "CCC".into() })
        );

        // c stops: the others report it dead, and keep it.
        c.shutdown().await.unwrap();
        eventually(deadline, "a and b see c dead", || async {
            [&a, &b].iter().all(|g| {
                let view = g.view();
                view.get("CCC").is_some_and(|n| !n.live) && view.is_live("A") && view.is_live("BB")
            })
        })
        .await;

        // a forgets c: gone from a at once, from b once the tombstone
        // gossips over.
        a.forget("CCC").unwrap();
        assert!(a.view().get("CCC").is_none());
        eventually(deadline, "b no longer shows c", || async {
            b.view().get("CCC").is_none()
        })
        .await;
        assert_eq!(b.view().nodes.len(), 2);

        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    }

    #[test]
    fn gossip_traffic_and_node_counts_are_metered() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // A local recorder sees only this thread: a current-thread runtime
        // keeps chitchat's and the refresh task on it.
        ::metrics::with_local_recorder(&recorder, || {
            crate::describe_metrics();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let interval = Duration::from_millis(100);
                let a = Gossip::start(config("A", vec![], interval)).await.unwrap();
                let seed = vec![a.local_addr().to_string()];
                let b = Gossip::start(config("BB", seed, interval)).await.unwrap();
                eventually(
                    Duration::from_secs(30),
                    "a and b see each other live",
                    || async { a.view().is_live("BB") && b.view().is_live("A") },
                )
                .await;
                a.shutdown().await.unwrap();
                b.shutdown().await.unwrap();
            });
        });
        let text = handle.render();
        for line in [
            "sluice_gossip_bytes_total{direction=\"in\"}",
            "sluice_gossip_bytes_total{direction=\"out\"}",
            "sluice_gossip_messages_total{direction=\"in\"}",
            "sluice_gossip_messages_total{direction=\"out\"}",
            "sluice_cluster_nodes{role=\"store\",state=\"live\",health=\"starting\"} 2",
            "sluice_cluster_nodes{role=\"ingest\",state=\"dead\",health=\"ready\"} 0",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
        assert!(text.contains("# HELP sluice_gossip_bytes_total"), "{text}");
    }
}
