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
    time::{Duration, Instant},
};

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");
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
        let child = Command::new(BIN)
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
        let mut command = Command::new(BIN);
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
    pub fn wait_records(&self, n: u64) {
        let mut last = 0;
        wait_for(&format!("{n} records to be queryable"), || {
            last = self.stats(&[])["records_matched"].as_u64().unwrap();
            assert!(last <= n, "more records than sent: {last} > {n}");
            (last == n).then_some(())
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
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
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
