//! A Jepsen-style run: writers send unique, self-checking records with
//! `replicated` acks to a cluster of 2 ingesters and 3 stores (RF 2) while
//! a seeded nemesis, every few seconds, kills (`kill -9`) and restarts
//! nodes, deletes a killed ingester's ingest log (a lost disk), pauses
//! nodes (SIGSTOP) and partitions them (gossip and API cut by the nodes'
//! fault proxies). After healing and draining, the checker
//! (`jepsen_check.rs`) asks for every record with one `strict` query and
//! each store alone (`scope=local`).
//!
//! - `SLUICE_JEPSEN_SEED`: the nemesis and writer seed (random if unset;
//!   printed at the start and in every failure).
//! - `SLUICE_JEPSEN_SECS`: how long the writers and the nemesis run
//!   (default 60).
//!
//! The nemesis keeps acks possible: at most one store and one ingester are
//! impaired at a time (killed, paused, or on the far side of a cut), and
//! at most one cut is in place.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    sync::Mutex,
    time::{Duration, Instant},
};

use sluice_record::wire::{BatchBuilder, Guarantee, Reply, parse_reply};
use ulid::Ulid;

use crate::{cluster_harness::*, jepsen_check::*};

/// Copies every acked record must have.
const RF: usize = 2;
/// Writer threads.
const WRITERS: u32 = 3;
/// Records per batch: 1 to this many.
const MAX_BATCH_RECORDS: u64 = 20;
/// How long a writer waits for an ack before it calls the batch unknown.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a writer waits to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The least time between two batches of a writer: a bound on the
/// history's size (and so on the checker's queries) whatever the acks do.
const MIN_BATCH_INTERVAL: Duration = Duration::from_millis(50);
/// How long the checker's local query of one store may take.
const LOCAL_QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// The run's settings, from the environment.
struct Settings {
    seed: u64,
    secs: u64,
}

impl Settings {
    fn from_env() -> Settings {
        let number = |name: &str| {
            std::env::var(name).ok().map(|v| {
                v.trim().parse::<u64>().unwrap_or_else(|e| {
                    panic!("{name}={v:?} is not a whole number ({e}); unset it or give one")
                })
            })
        };
        let seed = number("SLUICE_JEPSEN_SEED").unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            Rng::new(nanos ^ u64::from(std::process::id())).next_u64() % 1_000_000_000
        });
        let secs = number("SLUICE_JEPSEN_SECS").unwrap_or(60);
        Settings { seed, secs }
    }
}

/// Nodes of the run: `nodes[0..2]` ingesters, `nodes[2..5]` stores.
const INGESTERS: [usize; 2] = [0, 1];
const STORES: [usize; 3] = [2, 3, 4];

/// Start the cluster: every node's gossip and API behind fault proxies of
/// its own, each seeded with every node before it, and at restarts with
/// every other node (so a restart joins whichever are reachable).
fn start() -> Vec<ClusterNode> {
    let roles = ["ingest", "ingest", "store", "store", "store"];
    let mut nodes: Vec<ClusterNode> = Vec::new();
    for role in roles {
        // A lease of 10 s: a lane gives back at half, so a store killed or
        // paused holds its segments for seconds, not the default minute.
        // A replica may take 2 s before the lane tries the next store.
        let role_args: &[&str] = match role {
            "ingest" => &["--pending-timeout", "10s"],
            _ => &["--replica-timeout", "2s"],
        };
        let options = NodeOptions::default()
            .gossip_behind_proxy()
            .api_behind_proxy()
            .no_wait_ready()
            .seeds(&gossip_seeds(&nodes.iter().collect::<Vec<_>>()))
            .args(&["--replication-factor", "2", "--node-timeout", "3s"])
            .args(role_args);
        nodes.push(ClusterNode::start_with(role, options));
    }
    for node in &nodes {
        node.wait_ready();
    }
    wait_converged(&nodes.iter().collect::<Vec<_>>());
    let seeds: Vec<String> = nodes.iter().map(|n| n.advertised_gossip()).collect();
    for (i, node) in nodes.iter_mut().enumerate() {
        let others: Vec<String> = seeds
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| s.clone())
            .collect();
        node.options_mut().seeds = others;
    }
    nodes
}

// ---------------------------------------------------------------------------
// Writers
// ---------------------------------------------------------------------------

/// One connection to an ingester's batch port, with its reply reader.
struct Connection {
    stream: TcpStream,
    replies: BufReader<TcpStream>,
}

impl Connection {
    fn open(addr: &str) -> Option<Connection> {
        let addr: SocketAddr = addr.parse().ok()?;
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ok()?;
        stream.set_read_timeout(Some(ACK_TIMEOUT)).ok()?;
        stream.set_write_timeout(Some(ACK_TIMEOUT)).ok()?;
        let replies = BufReader::new(stream.try_clone().ok()?);
        Some(Connection { stream, replies })
    }

    /// Send batch `seq` and wait for its reply: the outcome.
    fn send(&mut self, seq: u64, wire: &[u8]) -> Outcome {
        if let Err(e) = self.stream.write_all(wire) {
            return Outcome::Unknown(format!("send: {e}"));
        }
        let mut line = Vec::new();
        match self.replies.read_until(b'\n', &mut line) {
            Err(e) => return Outcome::Unknown(format!("read the ack: {e}")),
            Ok(0) => return Outcome::Unknown("closed before the ack".to_string()),
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        match parse_reply(&line) {
            Some(Reply::Ok {
                seq: got,
                first,
                last,
            }) if got == seq => Outcome::Acked { first, last },
            // The server read the header and refused it: not written.
            Some(Reply::Err {
                seq: Some(got),
                reason,
            }) if got == seq => Outcome::Failed(reason),
            Some(Reply::Err { seq: None, reason }) => Outcome::Failed(reason),
            // Not this batch's reply: a protocol error, so nothing is
            // known of the batch.
            _ => Outcome::Unknown(format!("unexpected reply {text:?}")),
        }
    }
}

/// Writer `writer`: small batches, one at a time, to one ingester until
/// something goes wrong, then to the other; every batch's outcome goes
/// into `history`. Stops at `until` (after the batch in flight).
fn write(
    writer: u32,
    seed: u64,
    ingesters: [&ClusterNode; 2],
    until: Instant,
    history: &Mutex<History>,
) {
    let mut rng = Rng::new(seed ^ (u64::from(writer) + 1).wrapping_mul(0x9e37_79b9));
    let mut builder = BatchBuilder::new();
    let mut target = writer as usize % 2;
    let mut connection: Option<Connection> = None;
    let mut seq = 0u64;
    while Instant::now() < until {
        let ingester = ingesters[target];
        let Some(open) = connection.as_mut() else {
            // Ports are read anew each time: a restart may keep or change
            // them. Nothing is sent until a connection is open, so a
            // refused connect is no batch at all.
            connection = ingester
                .is_running()
                .then(|| ingester.batch())
                .and_then(|addr| Connection::open(&addr));
            if connection.is_none() {
                target = 1 - target;
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        };
        let started = Instant::now();
        seq += 1;
        let payloads: Vec<String> = (0..1 + rng.below(MAX_BATCH_RECORDS))
            .map(|r| payload((writer, seq, r as u32), &mut rng))
            .collect();
        builder.clear();
        for p in &payloads {
            builder.push(None, p.as_bytes());
        }
        let mut wire = Vec::new();
        builder.encode(&mut wire, seq, "jepsen", Guarantee::Replicated, None);
        let outcome = open.send(seq, &wire);
        let acked = matches!(outcome, Outcome::Acked { .. });
        lock(history).insert(
            (writer, seq),
            Sent {
                ingester: ingester.name(),
                payloads,
                outcome,
            },
        );
        if !acked {
            // The framing may be lost: start afresh, on the other one.
            connection = None;
            target = 1 - target;
        }
        std::thread::sleep(MIN_BATCH_INTERVAL.saturating_sub(started.elapsed()));
    }
}

// ---------------------------------------------------------------------------
// Nemesis
// ---------------------------------------------------------------------------

/// A fault in place.
#[derive(Debug, Clone)]
enum Fault {
    /// `kill -9`; healed by a restart on the same ports.
    Killed(usize),
    /// `kill -9` of an ingester and the loss of its ingest log (its disk):
    /// what it acked must be on the stores already. Healed by a restart on
    /// the same ports, with the same node id and an empty log.
    Wiped(usize),
    /// SIGSTOP; healed by SIGCONT.
    Paused(usize),
    /// These nodes cut from all the others, gossip and API both ways (the
    /// API by refusing or by a black hole); healed by clearing the rules.
    Cut(Vec<usize>, Mode),
}

impl Fault {
    /// The nodes it impairs.
    fn nodes(&self) -> Vec<usize> {
        match self {
            Fault::Killed(n) | Fault::Wiped(n) | Fault::Paused(n) => vec![*n],
            Fault::Cut(side, _) => side.clone(),
        }
    }
}

/// The nemesis: its faults in place (with the step each heals at), its
/// generator and what it did, for the failure message.
struct Nemesis<'a> {
    nodes: &'a [ClusterNode],
    rng: Rng,
    active: Vec<(Fault, u32)>,
    log: Vec<String>,
    /// Faults added, by kind.
    counts: BTreeMap<&'static str, usize>,
    started: Instant,
}

impl<'a> Nemesis<'a> {
    fn new(nodes: &'a [ClusterNode], seed: u64) -> Nemesis<'a> {
        Nemesis {
            nodes,
            rng: Rng::new(seed),
            active: Vec::new(),
            log: Vec::new(),
            counts: BTreeMap::new(),
            started: Instant::now(),
        }
    }

    fn note(&mut self, what: String) {
        let line = format!("{:6.1}s {what}", self.started.elapsed().as_secs_f64());
        eprintln!("jepsen nemesis: {line}");
        self.log.push(line);
    }

    fn name(&self, n: usize) -> String {
        self.nodes[n].name()
    }

    fn impaired(&self) -> Vec<usize> {
        self.active.iter().flat_map(|(f, _)| f.nodes()).collect()
    }

    /// The kinds of fault it may add now, each with its possible faults,
    /// keeping acks possible: no second impaired store, no second impaired
    /// ingester, no second cut.
    fn choices(&self) -> Vec<(&'static str, Vec<Fault>)> {
        let impaired = self.impaired();
        let free = |group: &[usize]| !group.iter().any(|n| impaired.contains(n));
        let cut_in_place = self.active.iter().any(|(f, _)| matches!(f, Fault::Cut(..)));
        let mut kinds: Vec<(&'static str, Vec<Fault>)> = Vec::new();
        for (group, role) in [(&STORES[..], "store"), (&INGESTERS[..], "ingester")] {
            if !free(group) {
                continue;
            }
            kinds.push(("kill", group.iter().map(|&n| Fault::Killed(n)).collect()));
            kinds.push(("pause", group.iter().map(|&n| Fault::Paused(n)).collect()));
            if !cut_in_place {
                let cuts = group
                    .iter()
                    .flat_map(|&n| [Mode::Refuse, Mode::Blackhole].map(|m| Fault::Cut(vec![n], m)))
                    .collect();
                kinds.push(("cut", cuts));
            }
            if role == "ingester" {
                kinds.push(("wipe", group.iter().map(|&n| Fault::Wiped(n)).collect()));
            }
        }
        // A split: one ingester and one store on a side of their own.
        if !cut_in_place && free(&STORES) && free(&INGESTERS) {
            let splits = INGESTERS
                .iter()
                .flat_map(|&i| STORES.map(|s| Fault::Cut(vec![i, s], Mode::Refuse)))
                .collect();
            kinds.push(("split", splits));
        }
        kinds
    }

    fn apply(&mut self, fault: &Fault) {
        let nodes = self.nodes;
        match fault {
            Fault::Killed(n) => {
                self.note(format!("kill -9 {}", self.name(*n)));
                nodes[*n].kill9();
            }
            Fault::Wiped(n) => {
                self.note(format!(
                    "kill -9 {} and delete its ingest log",
                    self.name(*n)
                ));
                nodes[*n].kill9();
                let dir = nodes[*n].data().join("ingest");
                std::fs::remove_dir_all(&dir)
                    .unwrap_or_else(|e| panic!("delete {}: {e}", dir.display()));
            }
            Fault::Paused(n) => {
                self.note(format!("SIGSTOP {}", self.name(*n)));
                nodes[*n].sigstop();
            }
            Fault::Cut(side, mode) => {
                let names: Vec<String> = side.iter().map(|&n| self.name(n)).collect();
                self.note(format!("cut {names:?} from the rest (API {mode:?})"));
                let rest: Vec<usize> = (0..nodes.len()).filter(|n| !side.contains(n)).collect();
                for &a in side {
                    for &b in &rest {
                        for (x, y) in [(a, b), (b, a)] {
                            nodes[x]
                                .gossip_proxy()
                                .set_mode_for(nodes[y].ip(), UdpMode::Drop);
                            nodes[x].api_proxy().set_mode_for(nodes[y].ip(), *mode);
                        }
                    }
                }
            }
        }
    }

    fn heal(&mut self, fault: &Fault) {
        let nodes = self.nodes;
        match fault {
            Fault::Killed(n) | Fault::Wiped(n) => {
                self.note(format!("restart {}", self.name(*n)));
                nodes[*n].restart_keep_ports();
            }
            Fault::Paused(n) => {
                self.note(format!("SIGCONT {}", self.name(*n)));
                nodes[*n].sigcont();
            }
            Fault::Cut(..) => {
                self.note("heal the cut".to_string());
                // One cut at a time: every rule per IP is its.
                for node in nodes {
                    node.gossip_proxy().clear_modes_for_all();
                    node.api_proxy().clear_modes_for_all();
                }
            }
        }
    }

    /// Until `until`: every 2 to 5 s, heal the faults due, then add one.
    /// Each fault stays for 1 or 2 steps; the last ones until `until`.
    fn run(&mut self, until: Instant) {
        let mut step = 0u32;
        loop {
            let pause = Duration::from_millis(2000 + self.rng.below(3000));
            let left = until.saturating_duration_since(Instant::now());
            if pause >= left {
                std::thread::sleep(left);
                break;
            }
            std::thread::sleep(pause);
            step += 1;
            let (due, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.active)
                .into_iter()
                .partition(|(_, at)| *at <= step);
            self.active = kept;
            for (fault, _) in due {
                self.heal(&fault);
            }
            let kinds = self.choices();
            // One step in six adds nothing: the cluster gets a calm moment
            // now and then.
            if kinds.is_empty() || self.rng.below(6) == 0 {
                self.note("no new fault".to_string());
                continue;
            }
            let (kind, faults) = &kinds[self.rng.below(kinds.len() as u64) as usize];
            let fault = faults[self.rng.below(faults.len() as u64) as usize].clone();
            *self.counts.entry(kind).or_default() += 1;
            self.apply(&fault);
            let lasts = 1 + self.rng.below(2) as u32;
            self.active.push((fault, step + lasts));
        }
    }

    /// Heal every fault in place.
    fn heal_all(&mut self) {
        for (fault, _) in std::mem::take(&mut self.active) {
            self.heal(&fault);
        }
    }
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

/// Wait until no ingester holds a segment a store has not taken: no
/// flushed or pending segment, no active one with data.
fn wait_drained(ingesters: &[&ClusterNode]) {
    for node in ingesters {
        let dir = node.data().join("ingest");
        wait_until(&format!("{} to be drained", node.name()), || {
            let left: Vec<String> = std::fs::read_dir(&dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                    let waiting = name.ends_with(".flushed")
                        || name.ends_with(".pending")
                        || (name.ends_with(".active") && size > 0);
                    waiting.then_some(name)
                })
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("segments left: {left:?}"))
            }
        });
    }
}

/// The strict query over everything on `node`: `(id, payload)` in the
/// order printed. Retried until it succeeds (bounded): right after
/// healing, a node may still be catching up with the others.
fn strict_query(node: &ClusterNode) -> Vec<(Ulid, String)> {
    let out = wait_until(&format!("a strict query on {}", node.name()), || {
        let out = node.query(&["--consistency", "strict", "--ulid", "--topic", "jepsen"]);
        if out.status.success() {
            Ok(out)
        } else {
            Err(format!(
                "exit {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let (id, payload) = line.split_once(' ').unwrap_or((line, ""));
            let id = Ulid::from_string(id)
                .unwrap_or_else(|e| panic!("strict query: no ULID ({e}) in {line:?}"));
            (id, payload.to_string())
        })
        .collect()
}

/// The payloads store `node` holds itself (`scope=local`).
fn local_payloads(node: &ClusterNode) -> Vec<String> {
    let path = "/query?scope=local&from=24h&topic=jepsen&format=json";
    let what = format!("{}: GET {path}", node.name());
    // The harness's GET reads for 30 s at most; a store with a long run's
    // records may take longer to answer all of them.
    let mut stream = TcpStream::connect(node.api()).unwrap_or_else(|e| panic!("{what}: {e}"));
    stream.set_read_timeout(Some(LOCAL_QUERY_TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n",
        node.api()
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut response = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut response)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{what}: {head}\n{body}"
    );
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let record: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{what}: not a record ({e}): {l}"));
            record["payload"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: no payload in {l}"))
                .to_string()
        })
        .collect()
}

/// Print a line on stderr even while the test harness captures output
/// (it captures `eprintln!`, not the stream): a passing run still shows
/// its seed and summary.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Says the seed again if the test fails anywhere (a wait that gives up,
/// a node that does not restart), not only in the checker's assertion.
struct SeedOnFailure(String);

impl Drop for SeedOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            say(&format!("jepsen: FAILED with {}", self.0));
        }
    }
}

#[test]
fn jepsen_replicated_acks_survive_kills_pauses_and_partitions() {
    let settings = Settings::from_env();
    let (seed, secs) = (settings.seed, settings.secs);
    say(&format!(
        "jepsen: seed={seed} secs={secs} (SLUICE_JEPSEN_SEED={seed} replays this nemesis schedule)"
    ));
    let _seed_on_failure = SeedOnFailure(format!(
        "seed={seed} secs={secs}: SLUICE_JEPSEN_SEED={seed} SLUICE_JEPSEN_SECS={secs}"
    ));
    let nodes = start();
    let history = Mutex::new(History::new());
    let until = Instant::now() + Duration::from_secs(secs);
    let mut nemesis = Nemesis::new(&nodes, seed);
    let ingesters = [&nodes[0], &nodes[1]];
    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let history = &history;
            scope.spawn(move || write(writer, seed, ingesters, until, history));
        }
        nemesis.run(until);
        nemesis.heal_all();
    });
    let history = history.into_inner().unwrap_or_else(|p| p.into_inner());
    let nemesis_log = nemesis.log.join("\n");
    let context = format!("seed={seed} secs={secs}; nemesis:\n{nemesis_log}");

    // Healed: every node back and seeing every other, and every segment
    // taken by the stores.
    wait_converged(&nodes.iter().collect::<Vec<_>>());
    wait_drained(&ingesters);

    // The coordinator, by seed: a store or an ingester.
    let strict = strict_query(&nodes[(seed % nodes.len() as u64) as usize]);
    let stores: Vec<(String, Vec<String>)> = STORES
        .iter()
        .map(|&s| (nodes[s].name(), local_payloads(&nodes[s])))
        .collect();
    let verdict = check(&history, &strict, &stores, RF);

    let count = |f: fn(&Outcome) -> bool| history.values().filter(|s| f(&s.outcome)).count();
    let acked = count(|o| matches!(o, Outcome::Acked { .. }));
    let failed = count(|o| matches!(o, Outcome::Failed(_)));
    let unknown = count(|o| matches!(o, Outcome::Unknown(_)));
    let summary = format!(
        "jepsen: seed={seed} secs={secs} acked={acked} failed={failed} unknown={unknown} \
         lost={} duplicated={} under_replicated={} corrupt={} unsent={} out_of_order={} \
         (batches; records: acked={} unacked_seen={} partial_unacked_batches={})",
        verdict.lost.len(),
        verdict.duplicated.len(),
        verdict.under_replicated.len(),
        verdict.corrupt.len(),
        verdict.unsent.len(),
        verdict.out_of_order.len(),
        verdict.acked_records,
        verdict.unacked_seen,
        verdict.partial_unacked,
    );
    say(&summary);
    say(&format!("jepsen: faults added {:?}", nemesis.counts));
    let reasons: Vec<String> = history
        .values()
        .filter_map(|s| match &s.outcome {
            Outcome::Failed(r) | Outcome::Unknown(r) => Some(format!("{}: {r}", s.ingester)),
            Outcome::Acked { .. } => None,
        })
        .take(10)
        .collect();
    assert!(
        verdict.ok(),
        "{summary}\n{}{context}\nsome unacked batches: {reasons:#?}",
        verdict.samples()
    );
    assert!(
        acked > 0,
        "no batch was acked: {summary}\n{context}\n{reasons:#?}"
    );
}
