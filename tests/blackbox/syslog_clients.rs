//! Real syslog daemons (rsyslog, syslog-ng) forwarding to the syslog listener.
//!
//! `scripts/setup-test-deps` (the test command runs it) unpacks both Debian
//! packages under `target/test-deps` without installing them (they conflict
//! with each other, and installing either starts a system daemon). Each test
//! runs its daemon as a child process in the foreground, with a generated
//! config, pid file, state and ports of its own, fed by `logger` (util-linux)
//! and forwarding over TCP to a node's syslog port: RFC 5424 with octet
//! counting, and RFC 3164 ("BSD") with LF framing.
//!
//! The daemons and `logger` run with `TZ=UTC`: an RFC 3164 timestamp has no
//! zone, and the listener reads it as UTC.

use std::{
    io::Write,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use crate::harness::*;

/// Lines each sender writes.
const LINES: usize = 300;

/// A file under `target/test-deps`, which must be there.
fn test_dep(path: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-deps")
        .join(path);
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/setup-test-deps` (the test command does)",
        path.display()
    );
    path
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// A daemon run as this test's child; killed when dropped.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, command: &mut Command, log: PathBuf) -> Daemon {
        let out = std::fs::File::create(&log).unwrap();
        let child = command
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Daemon { name, child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until `ready`: true once it is, false if the daemon exited first.
    fn wait_ready(&mut self, mut ready: impl FnMut() -> bool) -> bool {
        let what = format!("{} to take input", self.name);
        wait_for(&what, || {
            if ready() {
                return Some(true);
            }
            self.child.try_wait().unwrap().map(|_| false)
        })
    }

    /// Panic with the daemon's log unless it is still running.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited with {status}; its log:\n{}",
                self.name,
                self.log()
            );
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the sender `app` writes: `LINES` numbered lines.
fn message(app: &str, i: usize) -> String {
    format!("{app} message {i:04} level=info the quick brown fox")
}

/// Run `logger` with `args`, writing every line of `app` on its stdin (one
/// message per line), and wait for it to exit.
fn logger(app: &str, args: &[&str]) {
    let mut child = Command::new("logger")
        .args(["-t", app])
        .args(args)
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run logger (util-linux)");
    let mut stdin = child.stdin.take().unwrap();
    for i in 0..LINES {
        writeln!(stdin, "{}", message(app, i)).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "logger {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Clone, Copy, Debug)]
enum Header {
    Rfc5424,
    Rfc3164,
}

/// The timestamp in a forwarded message's header, in UTC milliseconds: RFC
/// 5424's as written (to the millisecond, truncated), RFC 3164's (seconds,
/// no year, UTC) in the year that puts it inside `window`.
fn header_time_ms(payload: &str, header: Header, window: (i64, i64)) -> i64 {
    let after_pri = &payload[payload.find('>').expect("a <PRI>") + 1..];
    match header {
        Header::Rfc5424 => {
            let stamp = after_pri
                .strip_prefix("1 ")
                .expect("RFC 5424 version 1")
                .split(' ')
                .next()
                .unwrap();
            stamp
                .parse::<jiff::Timestamp>()
                .unwrap_or_else(|e| panic!("timestamp {stamp:?}: {e}"))
                .as_millisecond()
        }
        Header::Rfc3164 => {
            // `Mmm dd hh:mm:ss`, the day space-padded.
            let mut fields = after_pri[..15].split_whitespace();
            let (month, day, time) = (
                fields.next().unwrap(),
                fields.next().unwrap(),
                fields.next().unwrap(),
            );
            let months = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            let month = months.iter().position(|m| *m == month).unwrap() as i8 + 1;
            let day: i8 = day.parse().unwrap();
            let hms: Vec<i8> = time.split(':').map(|f| f.parse().unwrap()).collect();
            let year_of = |ms: i64| {
                jiff::Timestamp::from_millisecond(ms)
                    .unwrap()
                    .to_zoned(jiff::tz::TimeZone::UTC)
                    .year()
            };
            let candidates: Vec<i64> = [year_of(window.0), year_of(window.1)]
                .into_iter()
                .map(|year| {
                    jiff::civil::date(year, month, day)
                        .at(hms[0], hms[1], hms[2], 0)
                        .to_zoned(jiff::tz::TimeZone::UTC)
                        .unwrap()
                        .timestamp()
                        .as_millisecond()
                })
                .collect();
            *candidates
                .iter()
                .find(|&&ms| window.0 <= ms && ms <= window.1)
                .unwrap_or(&candidates[0])
        }
    }
}

/// The node's records of topic `app` ("ULID payload" lines), once there
/// are `LINES` of them.
fn wait_forwarded(node: &Node, daemon: &mut Daemon, app: &str) -> Vec<String> {
    wait_for(&format!("{LINES} records of {app}"), || {
        daemon.assert_running();
        let out = node.query(&["--topic", app, "--ulid"]);
        assert!(
            out.status.success(),
            "query: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert!(
            lines.len() <= LINES,
            "{app}: {} records for {LINES} lines",
            lines.len()
        );
        (lines.len() == LINES).then_some(lines)
    })
}

/// Check the records of `app`: each line the sender wrote exactly once, in
/// a payload that is the forwarded message with a `header`, whose timestamp
/// is the record's ULID time and lies within `window` (the test's wall
/// clock, in ms, widened to whole seconds for RFC 3164).
fn check_forwarded(lines: &[String], app: &str, header: Header, window: (i64, i64)) {
    let window = match header {
        Header::Rfc5424 => window,
        Header::Rfc3164 => (window.0 / 1000 * 1000, window.1),
    };
    let mut seen = vec![0; LINES];
    for line in lines {
        let (id, payload) = line.split_once(' ').unwrap();
        let ulid_ms = id.parse::<ulid::Ulid>().unwrap().timestamp_ms() as i64;
        let prefix = format!("{app} message ");
        let at = payload
            .find(&prefix)
            .unwrap_or_else(|| panic!("{app}: no message text in {payload:?}"));
        let i: usize = payload[at + prefix.len()..][..4].parse().unwrap();
        assert!(
            payload.ends_with(&message(app, i)),
            "{app}: the message as written, at the end of {payload:?}"
        );
        seen[i] += 1;
        let header_ms = header_time_ms(payload, header, window);
        assert_eq!(
            ulid_ms, header_ms,
            "{app}: the ULID time is the {header:?} timestamp of {payload:?}"
        );
        assert!(
            window.0 <= ulid_ms && ulid_ms <= window.1,
            "{app}: {payload:?} at {ulid_ms} ms, outside the test's {window:?}"
        );
    }
    let wrong: Vec<(usize, i32)> = seen
        .into_iter()
        .enumerate()
        .filter(|&(_, n)| n != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "{app}: (line, times stored) for lines not stored exactly once: {wrong:?}"
    );
}

/// Nothing but the two senders' lines arrived, and every frame parsed (a
/// misread octet count would leave a frame unparsed, under `syslog`).
fn check_nothing_else(node: &Node) {
    assert_eq!(
        node.stats(&[])["records_matched"].as_u64(),
        Some(2 * LINES as u64),
        "records besides the senders' lines"
    );
    assert_eq!(node.metric("sluice_ingest_syslog_unparsed_total"), 0.0);
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn rsyslog_forwards_octet_counted_rfc5424_and_lf_framed_rfc3164() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let (host, port) = node.syslog.split_once(':').unwrap();
    let rsyslogd = test_dep("rsyslog/usr/sbin/rsyslogd");
    // Its modules are in usr/lib/<multiarch triplet>/rsyslog.
    let modules = std::fs::read_dir(test_dep("rsyslog/usr/lib"))
        .unwrap()
        .map(|entry| entry.unwrap().path().join("rsyslog"))
        .find(|dir| dir.join("imuxsock.so").exists())
        .expect("rsyslog's modules under target/test-deps/rsyslog/usr/lib");
    let work = dir.path().join("rsyslog");
    std::fs::create_dir(&work).unwrap();
    let socket = work.join("log.sock");
    // imuxsock, not on /dev/log, without rate limiting; each sender's
    // messages to one omfwd action. imuxsock stamps a message with the time
    // it arrived (to the microsecond), and that is the time both templates
    // forward. The input has its own ruleset, so rsyslogd's own messages
    // are not forwarded.
    let conf = format!(
        r#"
global(workDirectory="{work}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" RateLimit.Interval="0" Ruleset="forward")
ruleset(name="forward") {{
  if $programname == "rsyslog_5424" then
    action(type="omfwd" target="{host}" port="{port}" protocol="tcp"
           template="RSYSLOG_SyslogProtocol23Format" TCP_Framing="octet-counted")
  if $programname == "rsyslog_3164" then
    action(type="omfwd" target="{host}" port="{port}" protocol="tcp"
           template="RSYSLOG_TraditionalForwardFormat")
}}
"#,
        work = path(&work),
        socket = path(&socket),
    );
    let conf_path = work.join("rsyslog.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut daemon = Daemon::spawn(
        "rsyslogd",
        Command::new(rsyslogd)
            .arg("-n")
            .args(["-f", path(&conf_path)])
            .args(["-i", path(&work.join("rsyslogd.pid"))])
            .args(["-M", path(&modules)]),
        work.join("rsyslogd.log"),
    );
    if !daemon.wait_ready(|| socket.exists()) {
        daemon.assert_running();
    }
    let start = now_ms();
    logger("rsyslog_5424", &["-u", path(&socket)]);
    logger("rsyslog_3164", &["-u", path(&socket)]);
    let rfc5424 = wait_forwarded(&node, &mut daemon, "rsyslog_5424");
    let rfc3164 = wait_forwarded(&node, &mut daemon, "rsyslog_3164");
    let window = (start, now_ms());
    check_forwarded(&rfc5424, "rsyslog_5424", Header::Rfc5424, window);
    check_forwarded(&rfc3164, "rsyslog_3164", Header::Rfc3164, window);
    check_nothing_else(&node);
}

#[test]
fn syslog_ng_forwards_octet_counted_rfc5424_and_lf_framed_rfc3164() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let (host, port) = node.syslog.split_once(':').unwrap();
    let syslog_ng = test_dep("syslog-ng/usr/sbin/syslog-ng");
    let libs = test_dep("syslog-ng/usr/lib/syslog-ng");
    let modules = test_dep("syslog-ng/usr/lib/syslog-ng/3.38");
    let work = dir.path().join("syslog-ng");
    std::fs::create_dir(&work).unwrap();
    // A TCP source for `logger --tcp --rfc5424` (LF framed; the sender's
    // timestamp, to the microsecond, is kept); syslog() sends RFC 5424 with
    // octet counting (with the microseconds), network() sends BSD syslog
    // with LF framing (whole seconds, in the zone of the timestamp received:
    // UTC, as logger runs with TZ=UTC). Both go to one address, so each needs
    // a persist-name. Flow control: nothing is dropped.
    let conf = |input: u16| {
        format!(
            r#"@version: 3.38
options {{ use-dns(no); dns-cache(no); stats-freq(0); }};
source s_logger {{
  network(ip("127.0.0.1") port({input}) transport("tcp") flags(syslog-protocol));
}};
destination d_5424 {{
  syslog("{host}" port({port}) transport("tcp") frac-digits(6) persist-name("d_5424"));
}};
destination d_3164 {{
  network("{host}" port({port}) transport("tcp") persist-name("d_3164"));
}};
log {{
  source(s_logger); filter {{ program("^syslogng_5424$"); }};
  destination(d_5424); flags(flow-control);
}};
log {{
  source(s_logger); filter {{ program("^syslogng_3164$"); }};
  destination(d_3164); flags(flow-control);
}};
"#
        )
    };
    // Another test may take the input port between our choosing it and
    // syslog-ng binding it; then choose again.
    let mut started = None;
    for _ in 0..5 {
        let input = free_port();
        let conf_path = work.join("syslog-ng.conf");
        std::fs::write(&conf_path, conf(input)).unwrap();
        let mut daemon = Daemon::spawn(
            "syslog-ng",
            Command::new(&syslog_ng)
                .env("LD_LIBRARY_PATH", &libs)
                .args(["--foreground", "--no-caps"])
                .args(["--cfgfile", path(&conf_path)])
                .args(["--module-path", path(&modules)])
                .args(["--persist-file", path(&work.join("syslog-ng.persist"))])
                .args(["--pidfile", path(&work.join("syslog-ng.pid"))])
                .args(["--control", path(&work.join("syslog-ng.ctl"))]),
            work.join("syslog-ng.log"),
        );
        if daemon.wait_ready(|| TcpStream::connect(("127.0.0.1", input)).is_ok()) {
            started = Some((daemon, input));
            break;
        }
        assert!(
            daemon.log().contains("Address already in use"),
            "syslog-ng exited; its log:\n{}",
            daemon.log()
        );
    }
    let (mut daemon, input) = started.expect("syslog-ng on a free port");
    let input = input.to_string();
    let start = now_ms();
    let args = [
        "--tcp",
        "--rfc5424",
        "--server",
        "127.0.0.1",
        "--port",
        &input,
    ];
    logger("syslogng_5424", &args);
    logger("syslogng_3164", &args);
    let rfc5424 = wait_forwarded(&node, &mut daemon, "syslogng_5424");
    let rfc3164 = wait_forwarded(&node, &mut daemon, "syslogng_3164");
    let window = (start, now_ms());
    check_forwarded(&rfc5424, "syslogng_5424", Header::Rfc5424, window);
    check_forwarded(&rfc3164, "syslogng_3164", Header::Rfc3164, window);
    check_nothing_else(&node);
}
