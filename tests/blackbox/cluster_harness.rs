//! Cluster test harness: several `sluice ingest|store|ingeststore`
//! processes gossiping on loopback, and fault proxies to put between them:
//! a TCP one in front of a node's API ([`FaultProxy`]) and a UDP one in
//! front of its gossip socket ([`UdpFaultProxy`]).
//!
//! Every node gets a loopback IP of its own (127.0.0.x, x in 2..250), its
//! own temp dir, and every listener on port 0: the node writes the ports it
//! got to a ports file, which the harness reads. Nothing is chosen before
//! the node binds, so nothing can be taken in between. Waits are on
//! readiness (`/ready`, the `/cluster` view), bounded by [`DEADLINE`] only
//! to turn a hang into a clear failure; nothing asserts on timing.
//!
//! A test runs like this:
//!
//! ```ignore
//! let nodes = start_cluster(&["store", "store", "ingest"], &[]);
//! send_and_wait_close(&nodes[2].durable(), &numbered_lines(100, "a"));
//! let (code, stats) = nodes[0].query_stats(&[]);
//!
//! // A partition: the coordinator reaches this store only through a proxy.
//! let seeds = gossip_seeds(&[&nodes[0]]);
//! let (store, proxy) = ClusterNode::start_behind_proxy("store", &seeds, &[]);
//! wait_converged(&[&nodes[0], &nodes[1], &nodes[2], &store]);
//! proxy.set_mode(Mode::Blackhole);
//! // Answers after the node timeout, without the store: exit 3.
//! let (code, stats) = nodes[0].query_stats(&[]);
//! assert_eq!((code, stats["complete"].as_bool()), (3, Some(false)));
//!
//! // A crash and a restart: ports may change, the id stays.
//! let id = store.id();
//! store.kill9();
//! nodes[0].wait_node_live(&id, false);
//! store.restart();
//! proxy.set_target(&store.api());
//! proxy.set_mode(Mode::Pass);
//!
//! // A gossip partition: nodes whose gossip (and API) are behind proxies
//! // of their own, which the node owns and re-targets at each restart.
//! let options = NodeOptions::default().gossip_behind_proxy().api_behind_proxy();
//! let nodes = start_cluster_with(&["ingest", "store", "store"], options);
//! let cut = nodes[2].ip();
//! for node in &nodes {
//!     node.gossip_proxy().set_mode_for(cut, UdpMode::Drop);
//! }
//! nodes[2].gossip_proxy().set_mode(UdpMode::Drop);
//! nodes[0].wait_node_live(&nodes[2].id(), false);
//! // Only the ingester's queries lose the second store's API.
//! nodes[2].api_proxy().set_mode_for(nodes[0].ip(), Mode::Refuse);
//! ```
//!
//! Only Linux routes all of 127.0.0.0/8 to loopback without setup; these
//! tests assume it.

// A toolbox: the cluster tests use most of it, not every part.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    io::{ErrorKind, Write},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
};

pub use crate::cluster_view::*;
pub use crate::fault_proxy::{FaultProxy, Mode};
use crate::harness::{BIN, http_get, wait_for};
pub use crate::loopback::{http_request, next_loopback_ip, wait_until};
pub use crate::udp_proxy::{UdpFaultProxy, UdpMode};

// ---------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------

/// How to start a [`ClusterNode`]; `NodeOptions::default()` is what
/// [`ClusterNode::start`] uses apart from the seeds and extra args.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// `--cluster-id` (default `"test"`).
    pub cluster_id: String,
    /// `--peer` seeds, gossip addresses (default none).
    pub seeds: Vec<String>,
    /// More arguments, after the harness's own (default none).
    pub args: Vec<String>,
    /// `--gossip-interval` (default `"100ms"`).
    pub gossip_interval: String,
    /// Whether to pass `--gossip 0` (default true). Without it and without
    /// seeds, an `ingeststore` is a cluster of one.
    pub gossip: bool,
    /// Whether start and restart wait for `/ready` (default true); else
    /// they return once the ports file is written (see
    /// [`ClusterNode::wait_ready`]).
    pub wait_ready: bool,
    /// `SLUICE_LOG` (default `"info"`).
    pub log_filter: String,
    /// More environment variables, such as a flag only some roles take
    /// (`SLUICE_REPAIR_AFTER`) for a whole cluster (default none).
    pub env: Vec<(String, String)>,
    /// Whether its gossip is behind a [`UdpFaultProxy`] of its own, which
    /// it advertises (`--advertise-gossip`) and which its seeds go
    /// through (default false). Read at the first start only.
    pub gossip_proxy: bool,
    /// Whether its API is behind a [`FaultProxy`] of its own, which it
    /// advertises (`--advertise-api`) (default false). Read at the first
    /// start only.
    pub api_proxy: bool,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            cluster_id: "test".to_string(),
            seeds: Vec::new(),
            args: Vec::new(),
            gossip_interval: "100ms".to_string(),
            gossip: true,
            wait_ready: true,
            log_filter: "info".to_string(),
            env: Vec::new(),
            gossip_proxy: false,
            api_proxy: false,
        }
    }
}

impl NodeOptions {
    /// Set `--cluster-id`.
    pub fn cluster_id(mut self, id: &str) -> Self {
        self.cluster_id = id.to_string();
        self
    }

    /// Add `--peer` seeds.
    pub fn seeds(mut self, seeds: &[String]) -> Self {
        self.seeds.extend_from_slice(seeds);
        self
    }

    /// Add extra arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Set `--gossip-interval`.
    pub fn gossip_interval(mut self, interval: &str) -> Self {
        self.gossip_interval = interval.to_string();
        self
    }

    /// Run without `--gossip` (an `ingeststore` without seeds gossips not).
    pub fn no_gossip(mut self) -> Self {
        self.gossip = false;
        self
    }

    /// Return from start once the ports file is there, before `/ready`.
    pub fn no_wait_ready(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    /// Add an environment variable.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Set `SLUICE_LOG`.
    pub fn log_filter(mut self, filter: &str) -> Self {
        self.log_filter = filter.to_string();
        self
    }

    /// Put its gossip behind a [`UdpFaultProxy`] of its own
    /// ([`ClusterNode::gossip_proxy`]).
    pub fn gossip_behind_proxy(mut self) -> Self {
        self.gossip_proxy = true;
        self
    }

    /// Put its API behind a [`FaultProxy`] of its own
    /// ([`ClusterNode::api_proxy`]).
    pub fn api_behind_proxy(mut self) -> Self {
        self.api_proxy = true;
        self
    }
}

/// One `sluice ingest|store|ingeststore` process on a loopback IP of its
/// own. Methods take `&self` (the process handle is behind a lock) so that
/// a test can query a node from one thread while it stops it from another.
/// Dropping it kills the process; if the test is failing, the tail of the
/// node's log is printed first. Proxies it owns
/// ([`NodeOptions::gossip_behind_proxy`],
/// [`NodeOptions::api_behind_proxy`]) go with it.
pub struct ClusterNode {
    role: String,
    ip: Ipv4Addr,
    options: NodeOptions,
    dir: tempfile::TempDir,
    ports: Mutex<BTreeMap<String, u16>>,
    child: Mutex<Option<Child>>,
    stopped: AtomicBool,
    gossip_proxy: Option<UdpFaultProxy>,
    api_proxy: Option<FaultProxy>,
}

/// Lock `mutex`, also after a panic elsewhere poisoned it: the harness
/// must still be able to kill its processes while a test fails.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The listeners each role runs, in the flags' names.
fn listeners(role: &str) -> &'static [&'static str] {
    match role {
        "store" => &["api", "gossip"],
        "ingest" | "ingeststore" => &[
            "api", "gossip", "fast", "durable", "batch", "fluent", "syslog",
        ],
        other => panic!("unknown role {other:?}: ingest, store or ingeststore"),
    }
}

impl ClusterNode {
    /// Start `role` (`ingest`, `store` or `ingeststore`) in cluster `test`
    /// with `--peer` for each of `seeds` and `extra` args; returns once it
    /// answers `/ready` with 200.
    pub fn start(role: &str, seeds: &[String], extra: &[&str]) -> ClusterNode {
        Self::start_with(role, NodeOptions::default().seeds(seeds).args(extra))
    }

    /// [`start`](Self::start) in cluster `cluster_id`.
    pub fn start_in(cluster_id: &str, role: &str, seeds: &[String], extra: &[&str]) -> ClusterNode {
        Self::start_with(
            role,
            NodeOptions::default()
                .cluster_id(cluster_id)
                .seeds(seeds)
                .args(extra),
        )
    }

    /// Start `role` as `options` say.
    pub fn start_with(role: &str, options: NodeOptions) -> ClusterNode {
        // An unknown role fails here, before anything starts.
        listeners(role);
        assert!(
            options.gossip || !options.gossip_proxy,
            "a gossip proxy needs --gossip: not with no_gossip()"
        );
        let node = ClusterNode {
            role: role.to_string(),
            ip: next_loopback_ip(),
            gossip_proxy: options.gossip_proxy.then(UdpFaultProxy::new),
            api_proxy: options.api_proxy.then(FaultProxy::new),
            options,
            dir: tempfile::tempdir().unwrap(),
            ports: Mutex::new(BTreeMap::new()),
            child: Mutex::new(None),
            stopped: AtomicBool::new(false),
        };
        node.spawn(false);
        node
    }

    /// Start `role` with `--advertise-api` set to a new [`FaultProxy`] in
    /// front of its API: the other nodes reach its API only through the
    /// proxy (gossip is not proxied). After a [`restart`](Self::restart),
    /// point the proxy at the new port: `proxy.set_target(&node.api())`.
    pub fn start_behind_proxy(
        role: &str,
        seeds: &[String],
        extra: &[&str],
    ) -> (ClusterNode, FaultProxy) {
        let proxy = FaultProxy::new();
        let options = NodeOptions::default()
            .seeds(seeds)
            .args(&["--advertise-api", &proxy.addr()])
            .args(extra);
        let node = Self::start_with(role, options);
        proxy.set_target(&node.api());
        (node, proxy)
    }

    /// `role@ip`, for messages.
    pub fn name(&self) -> String {
        format!("{}@{}", self.role, self.ip)
    }

    /// The role it was started as.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// Its loopback IP (`--bind`), the same across restarts.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Its temp dir: `data/`, `node.log`, `ports.json`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its data dir (`--data`).
    pub fn data(&self) -> PathBuf {
        self.dir().join("data")
    }

    fn ports_file(&self) -> PathBuf {
        self.dir().join("ports.json")
    }

    fn log_file(&self) -> PathBuf {
        self.dir().join("node.log")
    }

    /// The options it runs with; change them before a
    /// [`restart`](Self::restart) (e.g. other seeds or args).
    pub fn options_mut(&mut self) -> &mut NodeOptions {
        &mut self.options
    }

    /// The ports of the last start, as its ports file gave them.
    pub fn ports(&self) -> BTreeMap<String, u16> {
        lock(&self.ports).clone()
    }

    /// `ip:port` of listener `name` (`api`, `gossip`, `fast`, ...); panics
    /// if the node runs no such listener.
    pub fn addr(&self, name: &str) -> String {
        let port = lock(&self.ports).get(name).copied();
        let port = port.unwrap_or_else(|| {
            panic!(
                "{} has no {name} listener (ports {:?})",
                self.name(),
                self.ports()
            )
        });
        format!("{}:{port}", self.ip)
    }

    /// Its API address, as bound (not as advertised).
    pub fn api(&self) -> String {
        self.addr("api")
    }

    /// Its gossip address, as bound (not as advertised).
    pub fn gossip(&self) -> String {
        self.addr("gossip")
    }

    /// The gossip address other nodes use, and a seed for them: its
    /// gossip proxy's if it has one, else [`gossip`](Self::gossip).
    pub fn advertised_gossip(&self) -> String {
        match &self.gossip_proxy {
            Some(proxy) => proxy.addr(),
            None => self.gossip(),
        }
    }

    /// The API address other nodes use: its API proxy's if it has one
    /// (not one of [`start_behind_proxy`](Self::start_behind_proxy)),
    /// else [`api`](Self::api).
    pub fn advertised_api(&self) -> String {
        match &self.api_proxy {
            Some(proxy) => proxy.addr(),
            None => self.api(),
        }
    }

    /// The [`UdpFaultProxy`] in front of its gossip socket
    /// ([`NodeOptions::gossip_behind_proxy`]); panics if it has none.
    /// Restarts point it at the new port.
    pub fn gossip_proxy(&self) -> &UdpFaultProxy {
        self.gossip_proxy
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no gossip proxy", self.name()))
    }

    /// The [`FaultProxy`] in front of its API
    /// ([`NodeOptions::api_behind_proxy`]); panics if it has none.
    /// Restarts point it at the new port.
    pub fn api_proxy(&self) -> &FaultProxy {
        self.api_proxy
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no API proxy", self.name()))
    }

    /// Its fast (newline, no ack) listener.
    pub fn fast(&self) -> String {
        self.addr("fast")
    }

    /// Its durable (newline, fsync before close) listener.
    pub fn durable(&self) -> String {
        self.addr("durable")
    }

    /// Its batch listener.
    pub fn batch(&self) -> String {
        self.addr("batch")
    }

    /// Its fluent forward listener.
    pub fn fluent(&self) -> String {
        self.addr("fluent")
    }

    /// Its syslog listener.
    pub fn syslog(&self) -> String {
        self.addr("syslog")
    }

    /// Its node id: `<data>/node-id` (waits for the file, written once at
    /// first start).
    pub fn id(&self) -> String {
        let path = self.data().join("node-id");
        wait_until(
            &format!("the node id of {}", self.name()),
            || match std::fs::read_to_string(&path) {
                Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
                Ok(_) => Err(format!("{} is empty", path.display())),
                Err(e) => Err(format!("{}: {e}", path.display())),
            },
        )
    }

    /// Its process id; panics if it is not running.
    pub fn pid(&self) -> u32 {
        let pid = lock(&self.child).as_ref().map(|c| c.id());
        pid.unwrap_or_else(|| panic!("{} is not running", self.name()))
    }

    /// Whether its process runs (possibly SIGSTOPped).
    pub fn is_running(&self) -> bool {
        self.not_running().is_none()
    }

    /// Why the process is not running, if it is not.
    fn not_running(&self) -> Option<String> {
        match lock(&self.child).as_mut() {
            None => Some("it is not running (killed or stopped by the test)".to_string()),
            Some(child) => child
                .try_wait()
                .unwrap()
                .map(|status| format!("it exited with {status}")),
        }
    }

    /// Panic with the log if the process is not running.
    pub(crate) fn assert_running(&self, while_doing: &str) {
        if let Some(why) = self.not_running() {
            panic!(
                "{} while {while_doing}: {why}; log:\n{}",
                self.name(),
                self.log()
            );
        }
    }

    /// Start the process, wait for its ports file, and (unless the options
    /// say not to) for `/ready`. With `keep_ports`, every listener asks for
    /// the port it had before instead of 0.
    fn spawn(&self, keep_ports: bool) {
        // A stale file would give the old ports.
        match std::fs::remove_file(self.ports_file()) {
            Err(e) if e.kind() != ErrorKind::NotFound => panic!("remove the ports file: {e}"),
            _ => {}
        }
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .unwrap();
        // Restarts append to the same log; mark where each run begins.
        writeln!(log, "=== harness: sluice {} on {} ===", self.role, self.ip).unwrap();
        let old_ports = self.ports();
        let mut command = Command::new(&*BIN);
        command
            .arg(&self.role)
            .arg("--data")
            .arg(self.data())
            .args(["--bind", &self.ip.to_string()]);
        for &name in listeners(&self.role) {
            if name == "gossip" && !self.options.gossip {
                continue;
            }
            let port = if keep_ports {
                old_ports.get(name).copied().unwrap_or(0)
            } else {
                0
            };
            command.arg(format!("--{name}")).arg(port.to_string());
        }
        command
            .arg("--ports-file")
            .arg(self.ports_file())
            .args(["--gossip-interval", &self.options.gossip_interval])
            .args(["--cluster-id", &self.options.cluster_id]);
        for seed in &self.options.seeds {
            command.args(["--peer", seed]);
        }
        // Other nodes reach it through its own proxies.
        if let Some(proxy) = &self.gossip_proxy {
            command.args(["--advertise-gossip", &proxy.addr()]);
        }
        if let Some(proxy) = &self.api_proxy {
            command.args(["--advertise-api", &proxy.addr()]);
        }
        // Replication factor 1 unless the test asks for more: most cluster
        // tests run fewer stores than the default of 2 needs (the
        // replication tests pass --replication-factor).
        let asks_rf = self
            .options
            .args
            .iter()
            .any(|a| a == "--replication-factor" || a == "--rf");
        if !asks_rf {
            command.args(["--replication-factor", "1"]);
        }
        let child = command
            .args(&self.options.args)
            .env("SLUICE_LOG", &self.options.log_filter)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start sluice {}: {e}", self.role));
        *lock(&self.child) = Some(child);
        self.stopped.store(false, Ordering::SeqCst);

        let file = self.ports_file();
        let ports = wait_until(&format!("the ports file of {}", self.name()), || {
            self.assert_running("starting");
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{e}"))?;
            let ports: BTreeMap<String, u16> =
                serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
            if ports.contains_key("api") {
                Ok(ports)
            } else {
                Err(format!("no api port in {text}"))
            }
        });
        *lock(&self.ports) = ports;
        // Before readiness: a node may be ready only once it sees others.
        if let Some(proxy) = &self.gossip_proxy {
            proxy.set_target(&self.gossip());
        }
        if let Some(proxy) = &self.api_proxy {
            proxy.set_target(&self.api());
        }
        if self.options.wait_ready {
            self.wait_ready();
        }
    }

    /// Wait until `/ready` answers 200.
    pub fn wait_ready(&self) {
        let api = self.api();
        wait_until(&format!("{} to become ready", self.name()), || {
            self.assert_running("becoming ready");
            match http_get(&api, "/ready") {
                Some((200, _)) => Ok(()),
                Some((status, body)) => Err(format!("/ready: {status} {body}")),
                None => Err("/ready: no answer".to_string()),
            }
        })
    }

    /// Everything it logged (stderr), across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// Send signal `name` (`STOP`, `TERM`, ...) to the process.
    pub fn signal(&self, name: &str) {
        let pid = self.pid();
        let sent = Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{name} {pid} ({})", self.name());
    }

    /// SIGKILL and reap: no chance to flush or say goodbye. No-op if it is
    /// not running.
    pub fn kill9(&self) {
        let child = lock(&self.child).take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stopped.store(false, Ordering::SeqCst);
    }

    /// SIGSTOP: the process hangs (no gossip, no answers) but keeps its
    /// sockets. Returns once every thread of it has stopped: the signal
    /// stops a process only when one of its threads takes it, and on a
    /// busy machine, until one is scheduled, the others go on answering
    /// (a paused store answered a count within the test's 300 ms node
    /// timeout 3 times in 25 with both cores busy).
    pub fn sigstop(&self) {
        let pid = self.pid();
        self.signal("STOP");
        self.stopped.store(true, Ordering::SeqCst);
        wait_for(&format!("every thread of {} to stop", self.name()), || {
            every_thread_stopped(pid).then_some(())
        });
    }

    /// SIGCONT after [`sigstop`](Self::sigstop).
    pub fn sigcont(&self) {
        self.signal("CONT");
        self.stopped.store(false, Ordering::SeqCst);
    }

    /// SIGTERM without waiting: the node drains (see
    /// [`wait_exit`](Self::wait_exit)).
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Wait (at most [`DEADLINE`]) for the process to exit, reap it and
    /// return its status; [`restart`](Self::restart) may follow.
    pub fn wait_exit(&self) -> ExitStatus {
        let status = wait_until(&format!("{} to exit", self.name()), || {
            match lock(&self.child).as_mut() {
                None => panic!("{} is not running", self.name()),
                Some(child) => child
                    .try_wait()
                    .unwrap()
                    .ok_or_else(|| "still running".to_string()),
            }
        });
        *lock(&self.child) = None;
        status
    }

    /// SIGTERM and [`wait_exit`](Self::wait_exit).
    pub fn sigterm_and_wait(&self) -> ExitStatus {
        self.sigterm();
        self.wait_exit()
    }

    /// Start it again after [`kill9`](Self::kill9) or an exit: same data
    /// dir, IP, id and options; listeners on port 0 again, so ports may
    /// change (the ports file is read anew).
    pub fn restart(&self) {
        self.prepare_restart();
        self.spawn(false);
    }

    /// [`restart`](Self::restart) asking for the ports it had before, so
    /// its gossip and API addresses stay the same. Its IP is its own, so
    /// they are normally free; if one is not, the start fails.
    pub fn restart_keep_ports(&self) {
        self.prepare_restart();
        self.spawn(true);
    }

    fn prepare_restart(&self) {
        let mut child = lock(&self.child);
        if let Some(running) = child.as_mut() {
            let exited = running.try_wait().unwrap().is_some();
            drop(child);
            assert!(
                exited,
                "{} still runs: kill9 or sigterm_and_wait first",
                self.name()
            );
            *lock(&self.child) = None;
        }
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!(
                "=== {} ({}): the last {} lines of its log ===\n{}",
                self.name(),
                self.dir().display(),
                tail.len(),
                tail.join("\n")
            );
        }
        let child = lock(&self.child).take();
        if let Some(mut child) = child {
            // A stopped process dies of SIGKILL too, but let it run first
            // so that nothing is left half-stopped.
            if self.stopped.load(Ordering::SeqCst) {
                let _ = Command::new("kill")
                    .args(["-CONT", &child.id().to_string()])
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Clusters and views
// ---------------------------------------------------------------------------

/// The gossip addresses of `nodes`, as `--peer` seeds (through their
/// gossip proxies, for those behind one).
pub fn gossip_seeds(nodes: &[&ClusterNode]) -> Vec<String> {
    nodes.iter().map(|n| n.advertised_gossip()).collect()
}

/// Start one node per role, the first without seeds and each other seeded
/// with the first, all with `extra` args; wait until every one is ready
/// and every one sees every one live and ready ([`wait_converged`]).
pub fn start_cluster(roles: &[&str], extra: &[&str]) -> Vec<ClusterNode> {
    start_cluster_with(roles, NodeOptions::default().args(extra))
}

/// [`start_cluster`] with `options` for every node (its seeds are added to
/// the first node's gossip address).
pub fn start_cluster_with(roles: &[&str], options: NodeOptions) -> Vec<ClusterNode> {
    let mut nodes: Vec<ClusterNode> = Vec::new();
    // Wait for no node's readiness before all run: a node may be ready only
    // once it sees the others.
    for role in roles {
        let mut options = options.clone().no_wait_ready();
        if let Some(first) = nodes.first() {
            options.seeds.push(first.advertised_gossip());
        }
        nodes.push(ClusterNode::start_with(role, options));
    }
    for node in &nodes {
        node.wait_ready();
    }
    wait_converged(&nodes.iter().collect::<Vec<_>>());
    nodes
}

/// Whether every thread of process `pid` is stopped (state `T` in its
/// `/proc` stat, after the command name's closing parenthesis).
fn every_thread_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
        })
    })
}
