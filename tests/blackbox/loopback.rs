//! What the cluster harness stands on: a loopback address per node,
//! bounded waits that say what they saw, one raw HTTP request, and a
//! command run under a deadline.

// A toolbox: the cluster tests use most of it, not every part.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpStream},
    process::{Command, Output, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use crate::harness::DEADLINE;

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
pub(crate) fn poll<T>(deadline: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
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
pub(crate) fn run_bounded(mut command: Command, what: &str) -> Output {
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
