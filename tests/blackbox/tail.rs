//! Live tail: `sluice stream` and `GET /stream`, on one node and on a
//! cluster; lagged readers, `--after` and `--checkpoint`.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use sluice_record::wire::{BatchBuilder, Guarantee};

use crate::{
    cluster_checks::send_lines,
    cluster_harness::{ClusterNode, start_cluster},
    harness::*,
};

/// A `sluice stream` process whose stdout lines are collected.
struct StreamClient {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl StreamClient {
    fn start(api: &str, args: &[&str]) -> StreamClient {
        let mut child = Command::new(&*BIN)
            .arg("stream")
            .arg("--api")
            .arg(api)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run sluice stream");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        StreamClient { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Wait until a printed line satisfies `pred`.
    fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) {
        wait_for(what, || {
            self.lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| pred(l))
                .then_some(())
        });
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for StreamClient {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Wait until a node has a live-tail reader subscribed: lines sent from
/// now on reach it.
fn wait_subscribed(metrics_of: impl Fn() -> f64) {
    wait_for("the stream to subscribe to the ingester", || {
        (metrics_of() >= 1.0).then_some(())
    });
}

/// Numbered lines `"{tag} {i:06}"` for `range`.
fn tagged(tag: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{tag} {i:06}")).collect()
}

fn joined(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

#[test]
fn a_line_sent_to_an_ingester_appears_in_sluice_stream_and_in_http_stream() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let cli = StreamClient::start(&node.api, &["--ulid"]);
    // The HTTP stream, read raw, in JSON.
    let mut http = TcpStream::connect(&node.api).unwrap();
    http.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        http,
        "GET /stream?format=json&q=tail HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let received = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&received);
    let mut reader = http.try_clone().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    wait_for("both streams to subscribe", || {
        (node.metric("sluice_tail_readers") >= 2.0).then_some(())
    });
    send_and_wait_close(&node.fast, b"first tail line\nnot this one\n");
    cli.wait_line("the line in sluice stream", |l| {
        l.ends_with(" first tail line")
    });
    wait_for("the line in /stream", || {
        received
            .lock()
            .unwrap()
            .contains("\"payload\":\"first tail line\"")
            .then_some(())
    });
    let got = received.lock().unwrap().clone();
    assert!(got.contains("200 OK"), "{got}");
    assert!(got.contains("application/x-ndjson"), "{got}");
    assert!(!got.contains("not this one"), "the filter applies: {got}");
    let lines = cli.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].ends_with(" not this one"));
    // The id printed is the record's id, as a query sees it.
    let id = lines[0].split(' ').next().unwrap();
    let queried = node.query(&["--ulid", "-q", "first tail line"]).stdout;
    assert!(String::from_utf8_lossy(&queried).starts_with(id));
}

#[test]
fn with_two_ingesters_a_record_sent_to_both_with_the_same_id_shows_once() {
    let nodes = start_cluster(&["ingest", "ingest", "store"], &[]);
    let (a, b, store) = (&nodes[0], &nodes[1], &nodes[2]);
    // Any node coordinates: tail from the store, which ingests nothing.
    let cli = StreamClient::start(&store.api(), &["--ulid"]);
    wait_for("the stream to subscribe to both ingesters", || {
        let subscribed = |n: &ClusterNode| n.metric("sluice_tail_readers") >= 1.0;
        (subscribed(a) && subscribed(b)).then_some(())
    });
    // What a forwarder does when it fails over: the same batch, the same
    // ids, to the other ingester.
    let base = ulid::Ulid::new();
    let mut builder = BatchBuilder::new();
    for p in ["copy one", "copy two", "copy three"] {
        builder.push(None, p.as_bytes());
    }
    let mut batch = Vec::new();
    builder.encode(&mut batch, 1, "app", Guarantee::Write, Some(base));
    for ingester in [a, b] {
        let mut conn = TcpStream::connect(ingester.batch()).unwrap();
        conn.set_read_timeout(Some(DEADLINE)).unwrap();
        conn.write_all(&batch).unwrap();
        let mut reply = String::new();
        BufReader::new(&conn).read_line(&mut reply).unwrap();
        assert!(reply.starts_with("OK"), "{reply}");
    }
    // Lines sent to each ingester alone all show.
    send_lines(a, b"only on a\n");
    send_lines(b, b"only on b\n");
    cli.wait_line("the line sent to a", |l| l.ends_with(" only on a"));
    cli.wait_line("the line sent to b", |l| l.ends_with(" only on b"));
    // The copies came before those lines from each ingester, so the
    // window has passed them: each shows once.
    let lines = cli.lines();
    let payloads: Vec<&str> = lines.iter().map(|l| &l[27..]).collect();
    for p in ["copy one", "copy two", "copy three"] {
        assert_eq!(
            payloads.iter().filter(|x| **x == p).count(),
            1,
            "{p:?} in {payloads:?}"
        );
    }
    assert_eq!(payloads.len(), 5, "{payloads:?}");
    let ids: Vec<&str> = lines.iter().map(|l| &l[..26]).collect();
    assert!(ids[..3].windows(2).all(|w| w[0] < w[1]), "in id order");
}

#[test]
fn a_reader_that_stops_reading_is_told_it_lagged_and_ingest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["--tail-buffer", "64KiB"]);
    let mut http = TcpStream::connect(&node.api).unwrap();
    http.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        http,
        "GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    wait_subscribed(|| node.metric("sluice_tail_readers"));
    // Far more than the ring, the coordinator's buffers and the sockets
    // hold, while this reader reads nothing.
    let n = 400_000;
    let input = numbered_lines(n, "lag");
    send_and_wait_close(&node.fast, &input);
    node.wait_records(n as u64);
    wait_for("a lagged reader to be counted", || {
        (node.metric("sluice_tail_lagged_records_total") > 0.0).then_some(())
    });
    // Now read: the stream says how many it dropped, and goes on.
    let mut reader = BufReader::new(http);
    let mut lagged = 0u64;
    let mut records = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).unwrap();
        assert!(read > 0, "the stream ended");
        let text = String::from_utf8_lossy(&line);
        if let Some(count) = text.trim().strip_prefix("# lagged ") {
            lagged += count.parse::<u64>().unwrap();
        } else if text.contains(" lag ") {
            records += 1;
        }
        if lagged > 0 && lagged + records >= n as u64 {
            break;
        }
    }
    assert!(lagged > 0);
    assert_eq!(lagged + records, n as u64, "every record shown or counted");
    let counted = node.metric("sluice_tail_lagged_records_total") as u64;
    assert_eq!(counted, lagged);
}

#[test]
fn after_joins_history_and_tail_with_no_gap_and_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    // Send continuously, one line at a time on one connection, until told
    // to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Vec::<String>::new()));
    let sender = {
        let (stop, sent, fast) = (Arc::clone(&stop), Arc::clone(&sent), node.fast.clone());
        thread::spawn(move || {
            let mut conn = TcpStream::connect(fast).unwrap();
            for i in 0..1_000_000 {
                let line = format!("seam {i:06}");
                conn.write_all(format!("{line}\n").as_bytes()).unwrap();
                sent.lock().unwrap().push(line);
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if i % 50 == 0 {
                    thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    // The id of an early line to start after.
    let first = wait_for("an early line to be queryable", || {
        let out = node.query(&["--ulid", "-q", "seam 000010"]).stdout;
        let text = String::from_utf8_lossy(&out).to_string();
        text.split(' ')
            .next()
            .filter(|id| id.len() == 26)
            .map(str::to_string)
    });
    let cli = StreamClient::start(&node.api, &["--after", &first]);
    // Keep sending across the seam, then stop.
    cli.wait_line("history printed", |l| l == "seam 000011");
    let at_seam = sent.lock().unwrap().len();
    wait_for("lines sent after the stream started", || {
        (sent.lock().unwrap().len() >= at_seam + 2000).then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.join().unwrap();
    let sent = sent.lock().unwrap().clone();
    let last = sent.last().unwrap().clone();
    cli.wait_line("the last line sent", |l| l == last);
    let want = &sent[11..];
    let got = cli.lines();
    assert_eq!(got.len(), want.len(), "no gap, no duplicate");
    assert_eq!(got, want);
}

#[test]
fn checkpoint_resumes_right_after_the_last_saved_id_when_the_client_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let checkpoint = dir.path().join("stream.checkpoint");
    let cp = checkpoint.to_str().unwrap();
    // Saved at every 300th record only: the last save (line 899) is not
    // the last line printed (999), as after a crash between saves.
    let args = [
        "--ulid",
        "--checkpoint",
        cp,
        "--checkpoint-every",
        "300",
        "--checkpoint-interval",
        "1h",
    ];
    let mut first = StreamClient::start(&node.api, &args);
    wait_subscribed(|| node.metric("sluice_tail_readers"));
    let before = tagged("cp", 0..1000);
    send_and_wait_close(&node.fast, &joined(&before));
    first.wait_line("the last line of the first part", |l| {
        l.ends_with(" cp 000999")
    });
    wait_for("a checkpoint", || checkpoint.exists().then_some(()));
    first.kill9();
    let saved = std::fs::read_to_string(&checkpoint)
        .unwrap()
        .trim()
        .to_string();
    let printed = first.lines();
    let at = printed
        .iter()
        .position(|l| l.starts_with(&saved))
        .expect("the checkpoint names a printed line");
    // Sent while no client runs.
    let during = tagged("cp", 1000..1500);
    send_and_wait_close(&node.fast, &joined(&during));
    node.wait_records(1500);
    let second = StreamClient::start(&node.api, &args);
    second.wait_line("the lines sent while it was down", |l| {
        l.ends_with(" cp 001499")
    });
    let after = tagged("cp", 1500..1600);
    send_and_wait_close(&node.fast, &joined(&after));
    second.wait_line("the lines sent after it came back", |l| {
        l.ends_with(" cp 001599")
    });
    let resumed: Vec<String> = second.lines().iter().map(|l| l[27..].to_string()).collect();
    let all: Vec<String> = before
        .iter()
        .chain(&during)
        .chain(&after)
        .cloned()
        .collect();
    assert_eq!(at, 899, "the last save: {saved}");
    assert_eq!(
        resumed,
        all[at + 1..],
        "exactly the lines after the checkpoint"
    );
}

#[test]
fn a_forwarder_failing_over_between_two_ingesters_shows_each_line_once() {
    // Two ingesters and no store: a `replicated` batch is written and
    // tailed, but never acknowledged, so the forwarder still holds it
    // when its ingester dies.
    let nodes = start_cluster(&["ingest", "ingest"], &[]);
    let (a, b) = (&nodes[0], &nodes[1]);
    let cli = StreamClient::start(&b.api(), &["--ulid"]);
    wait_for("the stream to subscribe to both ingesters", || {
        (a.metric("sluice_tail_readers") >= 1.0 && b.metric("sluice_tail_readers") >= 1.0)
            .then_some(())
    });
    let mut forwarder = Forwarder::stdin(
        &[
            &format!("sluice://{}", a.batch()),
            &format!("sluice://{}", b.batch()),
        ],
        &["--guarantee", "replicated"],
    );
    let mut stdin = forwarder.take_stdin();
    let sent = tagged("failover", 0..100);
    stdin.write_all(&joined(&sent)).unwrap();
    stdin.flush().unwrap();
    cli.wait_line("the lines written by the first ingester", |l| {
        l.ends_with(" failover 000099")
    });
    assert_eq!(
        b.metric("sluice_ingest_records_total"),
        0.0,
        "the forwarder sent to its first destination"
    );
    // The first ingester dies before it could acknowledge: the forwarder
    // sends the same batch, with the same ids, to the second.
    a.kill9();
    wait_for("the second ingester to write the re-sent batch", || {
        (b.metric("sluice_ingest_records_total") >= 100.0).then_some(())
    });
    // A line after the copies, through the same ingester: once it shows,
    // the copies went through the stream's window.
    send_lines(b, b"after the failover\n");
    cli.wait_line("the line after the failover", |l| {
        l.ends_with(" after the failover")
    });
    let lines = cli.lines();
    let payloads: Vec<&str> = lines.iter().map(|l| &l[27..]).collect();
    let mut want: Vec<&str> = sent.iter().map(String::as_str).collect();
    want.push("after the failover");
    assert_eq!(payloads, want, "each line once, in order");
    drop(stdin);
    forwarder.kill9();
}

#[test]
fn a_closed_stdout_ends_sluice_stream_quietly_with_status_0() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let mut child = Command::new(&*BIN)
        .args(["stream", "--api", &node.api])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_subscribed(|| node.metric("sluice_tail_readers"));
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    send_and_wait_close(&node.fast, b"one\n");
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "one\n");
    // As `sluice stream | head -1` does: the reader goes away.
    drop(stdout);
    let status = wait_for("sluice stream to exit after its stdout closed", || {
        send_and_wait_close(&node.fast, b"two\n");
        child.try_wait().unwrap()
    });
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(stderr, "", "quietly");
}

#[test]
fn an_ingester_that_joins_later_is_tailed_too() {
    let nodes = start_cluster(&["ingest", "store"], &[]);
    let (first, store) = (&nodes[0], &nodes[1]);
    let cli = StreamClient::start(&store.api(), &[]);
    wait_subscribed(|| first.metric("sluice_tail_readers"));
    let late = ClusterNode::start("ingest", &[first.advertised_gossip()], &[]);
    late.wait_ready();
    // The stream re-reads the view and subscribes to the new ingester.
    wait_subscribed(|| late.metric("sluice_tail_readers"));
    send_lines(&late, b"from the late ingester\n");
    send_lines(first, b"from the first ingester\n");
    cli.wait_line("the late ingester's line", |l| {
        l == "from the late ingester"
    });
    cli.wait_line("the first ingester's line", |l| {
        l == "from the first ingester"
    });
}
