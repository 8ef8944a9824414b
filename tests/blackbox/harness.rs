//! Test harness: run the real `sluice` binary the way a user would.
//!
//! Every node gets its own temp dir and ports picked at run time on
//! 127.0.0.1. Waits are on readiness (`/ready`, record counts), bounded by
//! deadlines that only turn a hang into a clear failure; no test asserts on
//! timing.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::LazyLock,
    time::{Duration, Instant},
};

/// The binary under test: cargo's build of `sluice`, or the one that
/// `SLUICE_TEST_BIN` names. CI runs this suite a second time against the
/// release binary that `scripts/build-release` makes (see `binary.rs`).
pub static BIN: LazyLock<String> = LazyLock::new(|| {
    std::env::var("SLUICE_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sluice").to_string())
});
/// Generous: CI machines are small and shared.
pub const DEADLINE: Duration = Duration::from_secs(120);

pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free ports, held open together while they are chosen so
/// that the kernel cannot hand out the same one twice.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// Poll `check` until it returns `Some`, or panic with `what` after the deadline.
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "gave up waiting for {what} after {DEADLINE:?}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Minimal HTTP/1.0 GET over std, so the harness has no HTTP dependency.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

pub struct Node {
    pub dir: PathBuf,
    pub api: String,
    pub fast: String,
    pub durable: String,
    pub batch: String,
    pub fluent: String,
    pub syslog: String,
    pub extra_args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    /// Start a node with data in `dir/data`.
    pub fn start(dir: &Path, extra_args: &[&str]) -> Node {
        let mut node = Node {
            dir: dir.to_path_buf(),
            api: String::new(),
            fast: String::new(),
            durable: String::new(),
            batch: String::new(),
            fluent: String::new(),
            syslog: String::new(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        // Another test may take a port between our choosing it and the
        // node binding it; then choose again.
        for _ in 0..5 {
            let [api, fast, durable, batch, fluent, syslog] =
                free_ports::<6>().map(|p| format!("127.0.0.1:{p}"));
            (node.api, node.fast, node.durable, node.batch) = (api, fast, durable, batch);
            (node.fluent, node.syslog) = (fluent, syslog);
            if node.try_spawn() {
                return node;
            }
        }
        panic!("could not start a node on free ports; log:\n{}", node.log());
    }

    /// The node's process id (for its memory use).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node is running").id()
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn spawn(&mut self) {
        assert!(
            self.try_spawn(),
            "sluice could not bind its ports; log:\n{}",
            self.log()
        );
    }

    /// Start the binary and wait until it is ready. Returns false if it
    /// exited because a port was taken.
    fn try_spawn(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .unwrap();
        let child = Command::new(&*BIN)
            .arg("ingeststore")
            .args(["--data", self.data().to_str().unwrap()])
            .args([
                "--api",
                &self.api,
                "--fast",
                &self.fast,
                "--durable",
                &self.durable,
                "--batch",
                &self.batch,
                "--fluent",
                &self.fluent,
                "--syslog",
                &self.syslog,
            ])
            .args(&self.extra_args)
            .env("SLUICE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sluice ingeststore");
        self.child = Some(child);
        let api = self.api.clone();
        wait_for("the node to become ready", || {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = self.log();
                if log.contains("Address already in use") {
                    self.child = None;
                    return Some(false);
                }
                panic!("sluice exited early with {status}; log:\n{log}");
            }
            matches!(http_get(&api, "/ready"), Some((200, _))).then_some(true)
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "sluice exited with {status} on SIGTERM; log:\n{}",
                self.log()
            );
        }
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the node first");
        self.spawn();
    }

    /// Run `sluice query` against this node.
    pub fn query(&self, args: &[&str]) -> Output {
        let mut command = Command::new(&*BIN);
        command.args(["query", "--api", &self.api]);
        if !args.contains(&"--from") {
            command.args(["--from", "24h"]);
        }
        command.args(args).output().expect("run sluice query")
    }

    pub fn stats(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--stats"];
        all.extend_from_slice(args);
        let out = self.query(&all);
        assert!(
            out.status.success(),
            "query --stats failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("stats are JSON")
    }

    /// Wait until exactly `n` records are queryable.
    /// Wait until `n` records are queryable *and* the store holds them:
    /// the ingest log has no segment with records left (queries read the
    /// ingest log too, so the count alone says nothing about the store).
    pub fn wait_records(&self, n: u64) {
        let mut last = 0;
        wait_for(&format!("{n} records to be queryable"), || {
            last = self.stats(&[])["records_matched"].as_u64().unwrap();
            assert!(last <= n, "more records than sent: {last} > {n}");
            (last == n).then_some(())
        });
        self.wait_ingest_drained();
    }

    /// Waits until the ingest directory holds nothing for a store to take:
    /// no flushed or pending segment and no active one with data in it.
    pub fn wait_ingest_drained(&self) {
        let ingest = self.data().join("ingest");
        wait_for("the store to take every ingest segment", || {
            let left = std::fs::read_dir(&ingest)
                .map(|entries| {
                    entries.filter_map(|e| e.ok()).any(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                        name.ends_with(".flushed")
                            || name.ends_with(".pending")
                            || (name.ends_with(".active") && size > 0)
                    })
                })
                .unwrap_or(false);
            (!left).then_some(())
        });
    }

    /// Every payload, in order, as raw lines.
    pub fn all_payloads(&self) -> Vec<Vec<u8>> {
        let out = self.query(&[]);
        assert!(
            out.status.success(),
            "query failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines: Vec<Vec<u8>> = out
            .stdout
            .split(|&b| b == b'\n')
            .map(|l| l.to_vec())
            .collect();
        assert_eq!(lines.pop(), Some(vec![]), "output ends with a newline");
        lines
    }

    pub fn metric(&self, name: &str) -> f64 {
        let (status, body) = http_get(&self.api, "/metrics").expect("metrics");
        assert_eq!(status, 200);
        metric_in(&body, name)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The sum of a metric's samples (every label set) in a `/metrics` body.
pub fn metric_in(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// Send bytes over a raw socket, half-close, and wait for the server to
/// close its side (it does so after reading, writing and, for durable,
/// fsyncing everything).
pub fn send_and_wait_close(addr: &str, bytes: &[u8]) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(bytes).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
}

/// `n` distinct, numbered lines of about 100 bytes, newline-terminated.
pub fn numbered_lines(n: usize, tag: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 110);
    for i in 0..n {
        writeln!(
            out,
            "{tag} line {i:07} level=INFO msg=\"the quick brown fox\" request_id=req-{:016x}",
            i * 7919
        )
        .unwrap();
    }
    out
}

pub fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(|l| l.to_vec()).collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// Store segments (`*.seg`) in `store`, sorted by name.
pub fn store_segments(store: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut segments: Vec<std::path::PathBuf> = std::fs::read_dir(store)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    segments
}

/// Whether a store segment is a block file (its file starts with the block
/// file header frame), as compaction writes them.
pub fn is_block_file(path: &std::path::Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.len() > 16 && &b[8..14] == b"SLUICE")
}

/// What `zstdcat SEGMENT` prints: a block file's lines, as standard tools
/// read them.
pub fn zstdcat(segment: &std::path::Path) -> Vec<u8> {
    let out = std::process::Command::new("zstdcat")
        .arg(segment)
        .output()
        .expect("zstdcat (installed by scripts/setup-test-deps)");
    assert!(
        out.status.success(),
        "zstdcat {}: {}",
        segment.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The store's block files, their bytes on disk and what `zstdcat` prints
/// of them all, read while no compaction replaced any of them: a listing
/// taken again after reading is the same.
pub fn settled_block_files(store: &std::path::Path) -> (Vec<std::path::PathBuf>, u64, Vec<u8>) {
    wait_for(
        "a listing of block files that stays the same while read",
        || {
            let segments = store_segments(store);
            let mut text = Vec::new();
            let mut bytes = 0;
            for segment in &segments {
                bytes += std::fs::metadata(segment).ok()?.len();
                let out = std::process::Command::new("zstdcat")
                    .arg(segment)
                    .output()
                    .expect("zstdcat (installed by scripts/setup-test-deps)");
                if !out.status.success() {
                    return None;
                }
                text.extend_from_slice(&out.stdout);
            }
            (store_segments(store) == segments).then_some((segments, bytes, text))
        },
    )
}

/// A `sluice forward` run by a test, with `--json` and `--api` on a free
/// port. Its stderr goes to a file (a pipe nobody reads could fill); its
/// counts are read from there.
pub struct Forwarder {
    child: Child,
    stderr: PathBuf,
    _logs: tempfile::TempDir,
    /// Its `--api` address: `/health` and `/metrics` (none for a `tcp://`
    /// destination).
    pub api: String,
    /// With [`Forwarder::agent`], its fluent listener.
    pub fluent: String,
    /// With [`Forwarder::agent`], its syslog listener.
    pub syslog: String,
}

/// How a forwarder ended.
pub struct Exited {
    pub status: std::process::ExitStatus,
    pub stderr: String,
    /// Every counts report it printed (`--json`: on SIGUSR1, and at exit),
    /// the final one last.
    pub reports: Vec<serde_json::Value>,
}

impl Exited {
    /// The final counts.
    pub fn counts(&self) -> serde_json::Value {
        self.reports
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("no counts in the forwarder's stderr:\n{}", self.stderr))
    }
}

impl Forwarder {
    /// Forward stdin to `destinations`: write it through
    /// [`take_stdin`](Self::take_stdin) or [`feed`](Self::feed).
    pub fn stdin(destinations: &[&str], args: &[&str]) -> Forwarder {
        Self::spawn(destinations, args, true, false)
    }

    /// Forward what `args` name (`--file ...`), stdin closed.
    pub fn start(destinations: &[&str], args: &[&str]) -> Forwarder {
        Self::spawn(destinations, args, false, false)
    }

    /// A local agent to `destination`: fluent and syslog listeners on free
    /// ports, batches closed after 20 ms.
    pub fn agent(destination: &str, args: &[&str]) -> Forwarder {
        let mut all = vec!["--linger", "20ms"];
        all.extend_from_slice(args);
        Self::spawn(&[destination], &all, false, true)
    }

    fn spawn(destinations: &[&str], args: &[&str], piped: bool, agent: bool) -> Forwarder {
        // Another test may take a port between our choosing it and the
        // forwarder binding it; then choose again.
        for _ in 0..5 {
            let [api, fluent, syslog] = free_ports::<3>().map(|p| format!("127.0.0.1:{p}"));
            let logs = tempfile::tempdir().unwrap();
            let stderr = logs.path().join("forwarder.log");
            // A tcp:// forwarder serves no API: it has no acks to count.
            let serves_api = !destinations.iter().any(|d| d.starts_with("tcp://"));
            let mut command = Command::new(&*BIN);
            command.arg("forward").args(destinations).arg("--json");
            if serves_api {
                command.args(["--api", &api]);
            }
            if agent {
                command
                    .args(["--listen", &format!("fluent://{fluent}")])
                    .args(["--listen", &format!("syslog://{syslog}")]);
            }
            let child = command
                .args(args)
                .stdin(if piped { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&stderr).unwrap())
                .spawn()
                .expect("start sluice forward");
            let mut forwarder = Forwarder {
                child,
                stderr,
                _logs: logs,
                api,
                fluent,
                syslog,
            };
            let ready = wait_for("the forwarder to serve its API", || {
                if let Ok(Some(status)) = forwarder.child.try_wait() {
                    let log = std::fs::read_to_string(&forwarder.stderr).unwrap_or_default();
                    if log.contains("Address already in use") {
                        return Some(false);
                    }
                    panic!("sluice forward exited early with {status}:\n{log}");
                }
                let listening = !agent || TcpStream::connect(&forwarder.fluent).is_ok();
                let serving = !serves_api || http_get(&forwarder.api, "/health").is_some();
                (listening && serving).then_some(true)
            });
            if ready {
                return forwarder;
            }
        }
        panic!("could not start a forwarder on free ports");
    }

    /// The forwarder's stdin (once).
    pub fn take_stdin(&mut self) -> std::process::ChildStdin {
        self.child.stdin.take().expect("a forwarder of stdin")
    }

    /// Write `input` on a thread (the forwarder may push back), run
    /// `during` meanwhile, close stdin, and return the final counts of a
    /// forwarder that exited 0.
    pub fn feed(mut self, input: Vec<u8>, during: impl FnOnce()) -> serde_json::Value {
        let mut stdin = self.take_stdin();
        let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
        during();
        writer.join().unwrap();
        let exited = self.wait();
        assert!(
            exited.status.success(),
            "forwarder failed ({}): {}",
            exited.status,
            exited.stderr
        );
        exited.counts()
    }

    /// The sum of a metric's samples.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = http_get(&self.api, "/metrics").unwrap_or_default();
        metric_in(&body, name)
    }

    /// Send signal `name` (`TERM`, `USR1`).
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// SIGTERM (a second one would make it exit at once).
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Wait for it to exit.
    pub fn wait(mut self) -> Exited {
        let status = wait_for("the forwarder to exit", || self.child.try_wait().unwrap());
        let stderr = std::fs::read_to_string(&self.stderr).unwrap();
        let reports = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .collect();
        Exited {
            status,
            stderr,
            reports,
        }
    }

    /// Wait for the exit: its status and final counts.
    pub fn exited(self) -> (std::process::ExitStatus, serde_json::Value) {
        let exited = self.wait();
        (exited.status, exited.counts())
    }

    /// SIGTERM, then [`exited`](Self::exited).
    pub fn stop(self) -> (std::process::ExitStatus, serde_json::Value) {
        self.sigterm();
        self.exited()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        // A failed test must not leave a forwarder behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A destination that takes connections and never answers.
pub fn black_hole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    addr
}

/// A TCP proxy to `target`: for each client, `up` carries the client's
/// bytes to the server (reading the first, writing the second) and `down`
/// the server's to the client, each on a thread of its own.
fn proxy<U, D>(target: String, up: U, down: D) -> String
where
    U: Fn(TcpStream, TcpStream) + Clone + Send + 'static,
    D: Fn(TcpStream, TcpStream) + Clone + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            let (client_read, server_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (up, down) = (up.clone(), down.clone());
            std::thread::spawn(move || up(client_read, server_write));
            std::thread::spawn(move || down(server, client));
        }
    });
    addr
}

/// Copy `from` to `to` until either ends, then half-close `to`.
fn pass(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// A TCP proxy to `target` that lets the client's bytes through at about
/// `bytes_per_tick` every 10 ms: a slow destination.
pub fn throttling_proxy(target: String, bytes_per_tick: usize) -> String {
    let slow = move |mut from: TcpStream, mut to: TcpStream| {
        let mut buf = vec![0u8; bytes_per_tick];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
            // The pace of a slow link, not a wait for anything.
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = to.shutdown(Shutdown::Write);
    };
    proxy(target, slow, pass)
}

/// A gate that holds whoever waits at it until a test opens it.
#[derive(Clone, Default)]
pub struct Gate(std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    /// Let every waiter through, now and later.
    pub fn open(&self) {
        let (open, changed) = &*self.0;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }

    /// Wait until the gate is open.
    pub fn wait(&self) {
        let (open, changed) = &*self.0;
        let mut is_open = open.lock().unwrap();
        while !*is_open {
            is_open = changed.wait(is_open).unwrap();
        }
    }
}

/// A proxy to `target` that passes requests at once but holds every reply
/// until `release` opens: the destination has the data, the sender no ack.
pub fn reply_gate(target: String, release: Gate) -> String {
    let held = move |from: TcpStream, to: TcpStream| {
        release.wait();
        pass(from, to);
    };
    proxy(target, pass, held)
}
