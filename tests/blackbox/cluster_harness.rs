//! Cluster test harness: several `sluice ingest|store|ingeststore`
//! processes gossiping on loopback, and a TCP fault proxy to put between
//! them.
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
//! ```
//!
//! Only Linux routes all of 127.0.0.0/8 to loopback without setup; these
//! tests assume it.

// The cluster tests that use this arrive with the cluster itself (the
// binary on this branch has no cluster flags yet); until then, and in any
// test set that uses only part of it, most of this is unused.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, HashMap},
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        Arc, Condvar, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::harness::{BIN, DEADLINE, http_get, lines_of, metric_in};

// ---------------------------------------------------------------------------
// Loopback addresses and waits
// ---------------------------------------------------------------------------

/// The next loopback IP, 127.0.0.x with x in 2..250, never 127.0.0.1 (the
/// single-node tests' address). The sequence starts at an offset taken from
/// the pid so that test binaries running side by side rarely share an IP;
/// since every port is picked by the kernel, sharing one is harmless anyway.
pub fn next_loopback_ip() -> Ipv4Addr {
    static BASE: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = *BASE.get_or_init(|| std::process::id().wrapping_mul(37));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let x = 2 + base.wrapping_add(n) % 248;
    Ipv4Addr::new(127, 0, 0, x as u8)
}

/// Call `check` with a growing pause between calls (10 ms up to 200 ms)
/// until it returns `Some`, or return `None` after `deadline`.
fn poll<T>(deadline: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if started.elapsed() >= deadline {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Like [`crate::harness::wait_for`], but `check` says what it saw when it
/// is not done yet (`Err`), and the panic after [`DEADLINE`] shows the last
/// of that: a cluster test that times out says what the view was.
pub fn wait_until<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let mut last = String::new();
    let done = poll(DEADLINE, || match check() {
        Ok(value) => Some(value),
        Err(seen) => {
            last = seen;
            None
        }
    });
    done.unwrap_or_else(|| {
        panic!("gave up waiting for {what} after {DEADLINE:?}; last seen: {last}")
    })
}

/// An HTTP reply read by [`http_request`].
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// Header names (lowercased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, lossily as UTF-8.
    pub body: String,
}

impl HttpReply {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.0 request with an empty body (`GET`, `HEAD`, `POST`, ...)
/// over std; `None` if the connection failed or the reply did not parse.
/// Reads for at most 30 s, like [`http_get`].
pub fn http_request(addr: &str, method: &str, path: &str) -> Option<HttpReply> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(HttpReply {
        status,
        headers,
        body: body.to_string(),
    })
}

/// Run `command` to its end with stdout and stderr captured, stdin closed.
/// Panics (after killing it) if it runs past [`DEADLINE`]: a query that
/// hangs must fail the test, not hang it.
fn run_bounded(mut command: Command, what: &str) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {what}: {e}"));
    // Read both pipes meanwhile: a full pipe would stop the child.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status = poll(DEADLINE, || child.try_wait().unwrap());
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        let stderr = stderr.join().unwrap_or_default();
        panic!(
            "{what} ran past {DEADLINE:?}; its stderr:\n{}",
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

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

    /// Set `SLUICE_LOG`.
    pub fn log_filter(mut self, filter: &str) -> Self {
        self.log_filter = filter.to_string();
        self
    }
}

/// One `sluice ingest|store|ingeststore` process on a loopback IP of its
/// own. Methods take `&self` (the process handle is behind a lock) so that
/// a test can query a node from one thread while it stops it from another.
/// Dropping it kills the process; if the test is failing, the tail of the
/// node's log is printed first.
pub struct ClusterNode {
    role: String,
    ip: Ipv4Addr,
    options: NodeOptions,
    dir: tempfile::TempDir,
    ports: Mutex<BTreeMap<String, u16>>,
    child: Mutex<Option<Child>>,
    stopped: AtomicBool,
}

/// Lock `mutex`, also after a panic elsewhere poisoned it: the harness
/// must still be able to kill its processes while a test fails.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
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
        let node = ClusterNode {
            role: role.to_string(),
            ip: next_loopback_ip(),
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

    /// Its gossip address: a seed for other nodes.
    pub fn gossip(&self) -> String {
        self.addr("gossip")
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
    fn assert_running(&self, while_doing: &str) {
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
        let mut command = Command::new(BIN);
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
        let child = command
            .args(&self.options.args)
            .env("SLUICE_LOG", &self.options.log_filter)
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

    /// `GET /cluster` as JSON, or what went wrong.
    pub fn try_cluster(&self) -> Result<Value, String> {
        match http_get(&self.api(), "/cluster") {
            Some((200, body)) => serde_json::from_str(&body)
                .map_err(|e| format!("/cluster is not JSON ({e}): {body}")),
            Some((status, body)) => Err(format!("/cluster: {status} {body}")),
            None => Err("/cluster: no answer".to_string()),
        }
    }

    /// `GET /cluster` as JSON; panics if it does not answer 200 with JSON.
    pub fn cluster(&self) -> Value {
        self.try_cluster()
            .unwrap_or_else(|e| panic!("{}: {e}; log:\n{}", self.name(), self.log()))
    }

    /// Poll `/cluster` until `pred` holds for it, and return that view.
    /// `what` names the wait in the panic after [`DEADLINE`], which shows
    /// the last view. Panics at once if the process is not running.
    pub fn wait_view(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_until(&format!("{what} in the view of {}", self.name()), || {
            self.assert_running(&format!("waiting for {what}"));
            let view = self.try_cluster()?;
            if pred(&view) {
                Ok(view)
            } else {
                Err(format!("{view:#}"))
            }
        })
    }

    /// Wait until its view reports node `id` live (`true`) or dead
    /// (`false`); returns the view.
    pub fn wait_node_live(&self, id: &str, live: bool) -> Value {
        let state = if live { "live" } else { "dead" };
        self.wait_view(&format!("node {id} {state}"), |v| {
            view_node(v, id).is_some_and(|n| n["live"].as_bool() == Some(live))
        })
    }

    /// `POST /cluster/forget?node=ID`: the status (200, 404 unknown, 409
    /// live).
    pub fn forget(&self, id: &str) -> u16 {
        let reply = http_request(&self.api(), "POST", &format!("/cluster/forget?node={id}"));
        reply
            .unwrap_or_else(|| panic!("{}: forget {id}: no answer", self.name()))
            .status
    }

    /// The sum of a metric's samples in `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let (status, body) = http_get(&self.api(), "/metrics")
            .unwrap_or_else(|| panic!("{}: /metrics: no answer", self.name()));
        assert_eq!(status, 200, "{}: /metrics: {body}", self.name());
        metric_in(&body, name)
    }

    /// Run `sluice query --api <api> ...args` (with `--from 24h` unless
    /// `args` has a `--from`), bounded by [`DEADLINE`].
    pub fn query(&self, args: &[&str]) -> Output {
        let mut command = Command::new(BIN);
        command.args(["query", "--api", &self.api()]);
        if !args.contains(&"--from") {
            command.args(["--from", "24h"]);
        }
        command.args(args);
        run_bounded(
            command,
            &format!("sluice query {args:?} on {}", self.name()),
        )
    }

    /// `query` with `--stats`: its exit code (0, or 3 when incomplete) and
    /// the stats JSON it printed; panics on another code or no JSON.
    pub fn query_stats(&self, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["--stats"];
        all.extend_from_slice(args);
        let out = self.query(&all);
        let code = out.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            code == 0 || code == 3,
            "query {all:?} on {} exited {}: {stderr}",
            self.name(),
            out.status
        );
        let stats = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "query {all:?} on {} printed no stats JSON ({e}): {}\nstderr: {stderr}",
                self.name(),
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (code, stats)
    }

    /// The payloads `query` prints, one per line; panics unless it exits 0
    /// (a complete answer).
    pub fn payloads(&self, args: &[&str]) -> Vec<Vec<u8>> {
        let out = self.query(args);
        assert!(
            out.status.success(),
            "query {args:?} on {} exited {}: {}",
            self.name(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        lines_of(&out.stdout)
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
    /// sockets.
    pub fn sigstop(&self) {
        self.signal("STOP");
        self.stopped.store(true, Ordering::SeqCst);
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

/// The gossip addresses of `nodes`, as `--peer` seeds.
pub fn gossip_seeds(nodes: &[&ClusterNode]) -> Vec<String> {
    nodes.iter().map(|n| n.gossip()).collect()
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
            options.seeds.push(first.gossip());
        }
        nodes.push(ClusterNode::start_with(role, options));
    }
    for node in &nodes {
        node.wait_ready();
    }
    wait_converged(&nodes.iter().collect::<Vec<_>>());
    nodes
}

/// The `nodes` array of a `/cluster` view (empty if there is none).
pub fn view_nodes(view: &Value) -> Vec<Value> {
    view["nodes"].as_array().cloned().unwrap_or_default()
}

/// The entry of node `id` in a view.
pub fn view_node(view: &Value, id: &str) -> Option<Value> {
    view_nodes(view)
        .into_iter()
        .find(|n| n["id"].as_str() == Some(id))
}

/// Whether a view reports node `id` live.
pub fn is_live(view: &Value, id: &str) -> bool {
    view_node(view, id).is_some_and(|n| n["live"].as_bool() == Some(true))
}

/// The `health` a view reports for node `id`.
pub fn health_of(view: &Value, id: &str) -> Option<String> {
    view_node(view, id).and_then(|n| n["health"].as_str().map(str::to_string))
}

/// Whether a view entry has `role` (`"any"` matches every node; an
/// `ingeststore` has both `ingest` and `store`).
pub fn has_role(node: &Value, role: &str) -> bool {
    role == "any"
        || node["roles"]
            .as_array()
            .is_some_and(|roles| roles.iter().any(|r| r.as_str() == Some(role)))
}

/// How many nodes with `role` (or `"any"`) a view reports live.
pub fn live_count(view: &Value, role: &str) -> usize {
    view_nodes(view)
        .iter()
        .filter(|n| n["live"].as_bool() == Some(true) && has_role(n, role))
        .count()
}

/// Wait until each of `nodes` sees exactly `n` live nodes with `role` (or
/// `"any"`); returns their views, in order.
pub fn wait_live_count(nodes: &[&ClusterNode], role: &str, n: usize) -> Vec<Value> {
    nodes
        .iter()
        .map(|node| {
            node.wait_view(&format!("{n} live nodes with role {role}"), |v| {
                live_count(v, role) == n
            })
        })
        .collect()
}

/// Wait until each of `nodes` sees each of them live with health `ready`;
/// returns their views, in order. Other nodes in the views may be in any
/// state.
pub fn wait_converged(nodes: &[&ClusterNode]) -> Vec<Value> {
    let ids: Vec<String> = nodes.iter().map(|n| n.id()).collect();
    nodes
        .iter()
        .map(|node| {
            node.wait_view(&format!("nodes {ids:?} live and ready"), |v| {
                ids.iter()
                    .all(|id| is_live(v, id) && health_of(v, id).as_deref() == Some("ready"))
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Fault proxy
// ---------------------------------------------------------------------------

/// What a [`FaultProxy`] does with connections and the bytes on them. A
/// switch applies to new connections and to open ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Forward each chunk read after this long (a slow link). Switching
    /// away ends a delay under way.
    Delay(Duration),
    /// Forward nothing until switched to another mode; bytes queue (in the
    /// proxy and the sockets' buffers) and then go on in order.
    Hold,
    /// Read and discard; never answer (the peer sees a hang; a connection
    /// made now is accepted but never reaches the target).
    Blackhole,
    /// Accept and close at once; open connections are closed.
    Reset,
    /// Listen no more: connecting is refused; open connections are closed.
    /// Switching to another mode listens again on the same address.
    Refuse,
}

/// Which way bytes go through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Client to target.
    Requests,
    /// Target to client.
    Replies,
}

/// What a pump does with a chunk (or an end of stream) after asking the
/// mode.
enum Step {
    Forward,
    Discard,
    Close,
}

/// Counts of a [`FaultProxy`]'s work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyStats {
    /// Connections accepted (also those closed at once).
    pub accepted: u64,
    /// Connections open now.
    pub open: usize,
    /// Chunks waiting in [`Mode::Hold`] now (a held request shows here),
    /// and ends of streams kept back by a hold or a black hole.
    pub held: usize,
    /// Bytes forwarded to the target.
    pub request_bytes: u64,
    /// Bytes forwarded to clients.
    pub reply_bytes: u64,
    /// Bytes read and thrown away ([`Mode::Blackhole`]).
    pub discarded_bytes: u64,
}

/// One proxied connection's sockets (clones), to cut it from outside.
struct Conn {
    sockets: Vec<TcpStream>,
    /// Pump threads still using it; at 0 it is forgotten.
    pumps: usize,
}

struct ProxyState {
    requests: Mode,
    replies: Mode,
    target: Option<String>,
    closing: bool,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    held: usize,
}

impl ProxyState {
    fn mode(&self, way: Way) -> Mode {
        match way {
            Way::Requests => self.requests,
            Way::Replies => self.replies,
        }
    }

    /// Close every open connection (their pumps then end).
    fn cut_all(&self) {
        for conn in self.conns.values() {
            for socket in &conn.sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }
}

struct Shared {
    state: Mutex<ProxyState>,
    changed: Condvar,
    accepted: AtomicU64,
    request_bytes: AtomicU64,
    reply_bytes: AtomicU64,
    discarded_bytes: AtomicU64,
    /// Every pump thread; joined when the proxy is dropped.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, ProxyState> {
        lock(&self.state)
    }

    /// What to do with a chunk going `way` (or, with `eof`, with the end of
    /// the stream): waits while the mode holds it, or for a delay.
    fn step(&self, way: Way, eof: bool) -> Step {
        let mut state = self.state();
        loop {
            if state.closing {
                return Step::Close;
            }
            match state.mode(way) {
                Mode::Pass => return Step::Forward,
                Mode::Reset | Mode::Refuse => return Step::Close,
                // An end passed on would be an answer (a close): a black
                // hole keeps it, like a hold.
                Mode::Blackhole if !eof => return Step::Discard,
                Mode::Hold | Mode::Blackhole => {
                    state.held += 1;
                    state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                    state.held -= 1;
                }
                Mode::Delay(delay) => {
                    // The pace of a slow link, not a wait for anything; a
                    // switch of mode ends it.
                    let (after, waited) = self
                        .changed
                        .wait_timeout_while(state, delay, |s| {
                            !s.closing && s.mode(way) == Mode::Delay(delay)
                        })
                        .unwrap_or_else(|p| p.into_inner());
                    state = after;
                    if waited.timed_out() {
                        return Step::Forward;
                    }
                }
            }
        }
    }

    /// Register a socket of connection `id`, and one more pump if `pump`.
    /// Callers hold the lock they checked `closing` under: a proxy being
    /// dropped then either cuts this socket or was seen closing.
    fn register(state: &mut ProxyState, id: u64, socket: &TcpStream, pump: bool) {
        let conn = state.conns.entry(id).or_insert(Conn {
            sockets: Vec::new(),
            pumps: 0,
        });
        if let Ok(clone) = socket.try_clone() {
            conn.sockets.push(clone);
        }
        conn.pumps += usize::from(pump);
    }

    /// A pump of connection `id` ended; the last one closes its sockets.
    fn pump_done(&self, id: u64) {
        let mut state = self.state();
        let last = state.conns.get_mut(&id).is_some_and(|conn| {
            conn.pumps -= 1;
            conn.pumps == 0
        });
        if last && let Some(conn) = state.conns.remove(&id) {
            for socket in conn.sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }

    fn spawn(self: &Arc<Self>, work: impl FnOnce(Arc<Shared>) + Send + 'static) {
        let shared = Arc::clone(self);
        let thread = std::thread::spawn(move || work(shared));
        let mut threads = lock(&self.threads);
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
    }
}

/// The listener's thread; stopped (and the listener closed) by
/// [`FaultProxy::stop_listening`].
struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// A TCP proxy on a loopback IP of its own whose behaviour a test switches
/// at run time ([`Mode`]). Connections reach the target only once a chunk
/// is to be forwarded. Std threads only; every thread ends when it is
/// dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Mutex<Option<Acceptor>>,
}

impl Default for FaultProxy {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultProxy {
    /// A proxy in [`Mode::Pass`] with no target yet: until
    /// [`set_target`](Self::set_target), connections are closed when they
    /// would reach it. Use this when the target needs the proxy's address
    /// to start (`--advertise-api`).
    pub fn new() -> FaultProxy {
        let listener = TcpListener::bind((next_loopback_ip(), 0)).expect("bind the proxy");
        let proxy = FaultProxy {
            addr: listener.local_addr().unwrap(),
            shared: Arc::new(Shared {
                state: Mutex::new(ProxyState {
                    requests: Mode::Pass,
                    replies: Mode::Pass,
                    target: None,
                    closing: false,
                    conns: HashMap::new(),
                    next_conn: 0,
                    held: 0,
                }),
                changed: Condvar::new(),
                accepted: AtomicU64::new(0),
                request_bytes: AtomicU64::new(0),
                reply_bytes: AtomicU64::new(0),
                discarded_bytes: AtomicU64::new(0),
                threads: Mutex::new(Vec::new()),
            }),
            acceptor: Mutex::new(None),
        };
        proxy.listen(listener);
        proxy
    }

    /// A proxy in [`Mode::Pass`] to `target`.
    pub fn to(target: &str) -> FaultProxy {
        let proxy = Self::new();
        proxy.set_target(target);
        proxy
    }

    /// Its address, `127.0.0.x:port`, the same in every mode.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Where new connections go from now on (open ones keep theirs).
    pub fn set_target(&self, target: &str) {
        self.shared.state().target = Some(target.to_string());
    }

    /// The mode of both ways.
    pub fn set_mode(&self, mode: Mode) {
        {
            let mut state = self.shared.state();
            (state.requests, state.replies) = (mode, mode);
            if matches!(mode, Mode::Reset | Mode::Refuse) {
                state.cut_all();
            }
        }
        self.shared.changed.notify_all();
        match mode {
            Mode::Refuse => self.stop_listening(),
            _ => self.start_listening(),
        }
    }

    /// A mode for each way: e.g. requests [`Mode::Pass`] and replies
    /// [`Mode::Hold`] (the target does the work, the client hears nothing).
    /// [`Mode::Reset`] and [`Mode::Refuse`] are for both ways
    /// ([`set_mode`](Self::set_mode)).
    pub fn set_modes(&self, requests: Mode, replies: Mode) {
        for mode in [requests, replies] {
            assert!(
                !matches!(mode, Mode::Reset | Mode::Refuse),
                "{mode:?} applies to whole connections: use set_mode"
            );
        }
        {
            let mut state = self.shared.state();
            (state.requests, state.replies) = (requests, replies);
        }
        self.shared.changed.notify_all();
        self.start_listening();
    }

    /// The modes of requests and of replies.
    pub fn modes(&self) -> (Mode, Mode) {
        let state = self.shared.state();
        (state.requests, state.replies)
    }

    /// Its counts now.
    pub fn stats(&self) -> ProxyStats {
        let state = self.shared.state();
        ProxyStats {
            accepted: self.shared.accepted.load(Ordering::SeqCst),
            open: state.conns.len(),
            held: state.held,
            request_bytes: self.shared.request_bytes.load(Ordering::SeqCst),
            reply_bytes: self.shared.reply_bytes.load(Ordering::SeqCst),
            discarded_bytes: self.shared.discarded_bytes.load(Ordering::SeqCst),
        }
    }

    /// Run the accept loop on `listener`.
    fn listen(&self, listener: TcpListener) {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::clone(&self.shared);
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || accept_loop(listener, shared, stopped));
        *lock(&self.acceptor) = Some(Acceptor { stop, thread });
    }

    /// Listen again if [`Mode::Refuse`] closed the listener.
    fn start_listening(&self) {
        if lock(&self.acceptor).is_some() {
            return;
        }
        // The address is on an IP of our own, so it is normally free again.
        let listener = TcpListener::bind(self.addr)
            .unwrap_or_else(|e| panic!("listen again on the proxy's {}: {e}", self.addr));
        self.listen(listener);
    }

    /// Close the listener (connecting is refused from when this returns).
    fn stop_listening(&self) {
        let acceptor = lock(&self.acceptor).take();
        if let Some(acceptor) = acceptor {
            acceptor.stop.store(true, Ordering::SeqCst);
            // Wake the blocked accept; the loop then sees the stop.
            let _ = TcpStream::connect(self.addr);
            let _ = acceptor.thread.join();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        {
            let mut state = self.shared.state();
            state.closing = true;
            state.cut_all();
        }
        self.shared.changed.notify_all();
        self.stop_listening();
        // Every pump ends now: its sockets are shut down and every wait
        // sees `closing`. Pumps start no new pumps once closing.
        loop {
            let threads = std::mem::take(&mut *lock(&self.shared.threads));
            if threads.is_empty() {
                break;
            }
            for thread in threads {
                let _ = thread.join();
            }
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    for client in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let id = {
            let mut state = shared.state();
            if state.closing || matches!(state.requests, Mode::Reset | Mode::Refuse) {
                continue;
            }
            state.next_conn += 1;
            let id = state.next_conn;
            Shared::register(&mut state, id, &client, true);
            id
        };
        shared.spawn(move |shared| pump_requests(shared, id, client));
    }
}

/// Client to target, on the connection's first thread: connects to the
/// target when the first chunk is to go there, and starts the replies'
/// pump then.
fn pump_requests(shared: Arc<Shared>, id: u64, mut client: TcpStream) {
    let mut server: Option<TcpStream> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // An error ends the stream like an end does.
        let n = client.read(&mut buf).unwrap_or_default();
        let step = shared.step(Way::Requests, n == 0);
        match step {
            Step::Close => break,
            Step::Discard => {
                shared.discarded_bytes.fetch_add(n as u64, Ordering::SeqCst);
                continue;
            }
            Step::Forward if n == 0 => {
                // Pass the half-close on; the reply may still come.
                if let Some(server) = &server {
                    let _ = server.shutdown(Shutdown::Write);
                }
                shared.pump_done(id);
                return;
            }
            Step::Forward => {}
        }
        if server.is_none() {
            match connect_target(&shared, id, &client) {
                Some(connected) => server = Some(connected),
                None => break,
            }
        }
        let Some(to) = server.as_mut() else { break };
        // Counted before the write: whoever sees the bytes' effect sees
        // them counted.
        shared.request_bytes.fetch_add(n as u64, Ordering::SeqCst);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    // Closed by the mode, the proxy, or an error: close both ends.
    let _ = client.shutdown(Shutdown::Both);
    if let Some(server) = &server {
        let _ = server.shutdown(Shutdown::Both);
    }
    shared.pump_done(id);
}

/// Connect connection `id` to the target and start its replies' pump;
/// `None` if there is no target, it is unreachable, or the proxy closes.
fn connect_target(shared: &Arc<Shared>, id: u64, client: &TcpStream) -> Option<TcpStream> {
    let target = shared.state().target.clone()?;
    let server = TcpStream::connect(&target).ok()?;
    let (from, to) = (server.try_clone().ok()?, client.try_clone().ok()?);
    {
        let mut state = shared.state();
        if state.closing {
            return None;
        }
        Shared::register(&mut state, id, &server, true);
    }
    shared.spawn(move |shared| pump_replies(shared, id, from, to));
    Some(server)
}

/// Target to client.
fn pump_replies(shared: Arc<Shared>, id: u64, mut server: TcpStream, mut client: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // An error ends the stream like an end does.
        let n = server.read(&mut buf).unwrap_or_default();
        match shared.step(Way::Replies, n == 0) {
            Step::Close => break,
            Step::Discard => {
                shared.discarded_bytes.fetch_add(n as u64, Ordering::SeqCst);
            }
            Step::Forward if n == 0 => {
                let _ = client.shutdown(Shutdown::Write);
                shared.pump_done(id);
                return;
            }
            Step::Forward => {
                shared.reply_bytes.fetch_add(n as u64, Ordering::SeqCst);
                if client.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    shared.pump_done(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on 127.0.0.1 whose threads end when it is dropped
    /// and its clients have closed.
    struct Echo {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Echo {
        fn start() -> Echo {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let stopped = Arc::clone(&stop);
            let thread = std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(mut conn) = conn else { continue };
                    std::thread::spawn(move || {
                        let mut back = conn.try_clone().unwrap();
                        let _ = std::io::copy(&mut conn, &mut back);
                    });
                }
            });
            Echo {
                addr,
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(self.addr);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    fn connect(proxy: &FaultProxy) -> TcpStream {
        let stream = TcpStream::connect(proxy.addr()).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream
    }

    fn round_trip(stream: &mut TcpStream, bytes: &[u8]) {
        stream.write_all(bytes).unwrap();
        let mut back = vec![0; bytes.len()];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(back, bytes);
    }

    /// Nothing has arrived to read now (without waiting for anything).
    fn nothing_to_read(stream: &TcpStream) {
        stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8];
        let read = (&*stream).read(&mut byte);
        assert!(
            matches!(&read, Err(e) if e.kind() == ErrorKind::WouldBlock),
            "expected nothing to read, got {read:?}"
        );
        stream.set_nonblocking(false).unwrap();
    }

    /// The peer closed: end of stream or a reset.
    fn closed(stream: &mut TcpStream) {
        let mut byte = [0u8];
        match stream.read(&mut byte) {
            Ok(0) => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {}
            other => panic!("expected a closed connection, got {other:?}"),
        }
    }

    fn wait_stats(proxy: &FaultProxy, what: &str, pred: impl Fn(&ProxyStats) -> bool) {
        wait_until(what, || {
            let stats = proxy.stats();
            if pred(&stats) {
                Ok(())
            } else {
                Err(format!("{stats:?}"))
            }
        })
    }

    #[test]
    fn loopback_ips_are_distinct_and_not_the_default() {
        let ips: Vec<Ipv4Addr> = (0..10).map(|_| next_loopback_ip()).collect();
        for ip in &ips {
            let [a, b, c, d] = ip.octets();
            assert_eq!((a, b, c), (127, 0, 0));
            assert!((2..250).contains(&d), "{ip}");
        }
        let mut unique = ips.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ips.len());
    }

    #[test]
    fn passes_and_delays_both_ways() {
        let echo = Echo::start();
        let proxy = FaultProxy::to(&echo.addr.to_string());
        assert!(proxy.addr().starts_with("127.0.0."));
        let mut stream = connect(&proxy);
        round_trip(&mut stream, b"hello");
        proxy.set_mode(Mode::Delay(Duration::from_millis(1)));
        round_trip(&mut stream, b"slow");
        proxy.set_mode(Mode::Pass);
        round_trip(&mut stream, b"again");
        let stats = proxy.stats();
        assert_eq!((stats.accepted, stats.open), (1, 1));
        assert_eq!((stats.request_bytes, stats.reply_bytes), (14, 14));
    }

    #[test]
    fn hold_queues_until_released_also_on_open_connections() {
        let echo = Echo::start();
        let proxy = FaultProxy::to(&echo.addr.to_string());
        let mut open = connect(&proxy);
        round_trip(&mut open, b"before");
        proxy.set_mode(Mode::Hold);
        open.write_all(b"held").unwrap();
        let mut new = connect(&proxy);
        new.write_all(b"queued").unwrap();
        wait_stats(&proxy, "both requests held", |s| s.held == 2);
        nothing_to_read(&open);
        nothing_to_read(&new);
        proxy.set_mode(Mode::Pass);
        let mut back = [0u8; 4];
        open.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"held");
        let mut back = [0u8; 6];
        new.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"queued");
    }

    #[test]
    fn held_replies_reach_the_target_first() {
        let echo = Echo::start();
        let proxy = FaultProxy::to(&echo.addr.to_string());
        proxy.set_modes(Mode::Pass, Mode::Hold);
        let mut stream = connect(&proxy);
        stream.write_all(b"request").unwrap();
        wait_stats(&proxy, "the reply held", |s| {
            s.request_bytes == 7 && s.held == 1
        });
        nothing_to_read(&stream);
        proxy.set_mode(Mode::Pass);
        let mut back = [0u8; 7];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"request");
    }

    #[test]
    fn blackhole_discards_and_pass_resumes() {
        let echo = Echo::start();
        let proxy = FaultProxy::to(&echo.addr.to_string());
        let mut open = connect(&proxy);
        round_trip(&mut open, b"one");
        proxy.set_mode(Mode::Blackhole);
        open.write_all(b"lost").unwrap();
        let mut new = connect(&proxy);
        new.write_all(b"gone").unwrap();
        new.shutdown(Shutdown::Write).unwrap();
        wait_stats(&proxy, "8 bytes discarded", |s| s.discarded_bytes == 8);
        // Neither an answer nor a close: a hang.
        nothing_to_read(&open);
        nothing_to_read(&new);
        proxy.set_mode(Mode::Pass);
        round_trip(&mut open, b"two");
        // The held end of the half-closed one goes on now: it had nothing
        // for the target, so the proxy closes it.
        closed(&mut new);
    }

    #[test]
    fn reset_and_refuse_close_open_connections() {
        let echo = Echo::start();
        let proxy = FaultProxy::to(&echo.addr.to_string());
        let mut open = connect(&proxy);
        round_trip(&mut open, b"x");
        proxy.set_mode(Mode::Reset);
        closed(&mut open);
        let mut reset = connect(&proxy);
        closed(&mut reset);

        proxy.set_mode(Mode::Pass);
        let mut open = connect(&proxy);
        round_trip(&mut open, b"y");
        proxy.set_mode(Mode::Refuse);
        closed(&mut open);
        let refused = TcpStream::connect(proxy.addr()).map(|_| ());
        assert!(
            matches!(&refused, Err(e) if e.kind() == ErrorKind::ConnectionRefused),
            "{refused:?}"
        );

        proxy.set_mode(Mode::Pass);
        let mut again = connect(&proxy);
        round_trip(&mut again, b"z");
        wait_stats(&proxy, "the closed connections forgotten", |s| s.open == 1);
    }

    #[test]
    fn target_set_later_and_drop_closes_everything() {
        let echo = Echo::start();
        let proxy = FaultProxy::new();
        let mut early = connect(&proxy);
        early.write_all(b"nowhere").unwrap();
        closed(&mut early);
        proxy.set_target(&echo.addr.to_string());
        let mut stream = connect(&proxy);
        round_trip(&mut stream, b"there");
        proxy.set_mode(Mode::Hold);
        stream.write_all(b"held").unwrap();
        wait_stats(&proxy, "the request held", |s| s.held == 1);
        let addr = proxy.addr();
        drop(proxy);
        closed(&mut stream);
        let refused = TcpStream::connect(addr).map(|_| ());
        assert!(refused.is_err(), "{refused:?}");
    }
}
