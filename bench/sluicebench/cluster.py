"""`bench.py cluster`: a loopback cluster (running_cluster) against one ingeststore; and its section."""
from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import BenchError, Ctx, log, tail, wait_until
from .formatting import mib, per_s, ratio, rss, table
from .machine import commit_id, machine_info
from .nodes import Node, is_block_file, running_node
from .procs import Proc, best_of, cpu_ticks, need_free, proc_field, rg_count
from .results import FWD_SIZE, SEED, Corpus, Report
from .run import check_acked, gen_corpus, rare_token


# =============================================================== cluster --

CLUSTER_IPS = {"ingest": "127.0.0.21", "store-1": "127.0.0.22", "store-2": "127.0.0.23"}  # node: --bind
CLUSTER_ID = "sluice-bench"  # nodes gossip only within their cluster id: no test cluster can join
CLUSTER_TARGETS = {"cpu": 1.3, "query": 1.5}  # cluster / ingeststore, at most


@dataclass
class ClusterQuery:
    name: str
    pattern: str
    secs: float
    matches: int
    rg_matches: int

    @property
    def ok(self) -> bool:
        return self.matches == self.rg_matches


@dataclass
class ClusterRun:
    setup: str  # ingeststore or cluster
    nodes: list[str]  # the node processes: role and API address
    sent_secs: float  # the forwarder had read the whole corpus
    exited_secs: float  # the forwarder had exited: every batch acknowledged
    stored_secs: float  # the forwarder had exited and the ingest log was empty (confirmed by a query)
    node_cpu_secs: float  # utime + stime of every node process from the forwarder's start to stored
    forwarder_cpu_secs: float
    settled_secs: float  # after stored: every store segment a block file, every block sorted
    settled_cpu_secs: float  # utime + stime of every node process from the forwarder's start to settled
    store_bytes: int  # store segments on disk once settled
    peak_rss_kib: int | None  # VmHWM summed over the node processes
    queries: list[ClusterQuery] = field(default_factory=list)
    # node CPU from the forwarder's start until the stores held all, with compaction off (one per rep)
    ingest_path_cpu_secs: list[float] = field(default_factory=list)

    def cpu_per_gb(self, nbytes: int, settled: bool = False) -> float:
        return (self.settled_cpu_secs if settled else self.node_cpu_secs) / (nbytes / 1e9)

    def ingest_path_cpu_per_gb(self, nbytes: int) -> float:
        return statistics.median(self.ingest_path_cpu_secs) / (nbytes / 1e9) if self.ingest_path_cpu_secs else 0.0


@dataclass
class ClusterReport(Report):
    date: str
    commit: str
    mb: int
    reps: int
    corpus: Corpus | None = None
    runs: list[ClusterRun] = field(default_factory=list)  # the ingeststore, then the cluster

    def errors(self) -> list[str]:
        return [f"cluster {run.setup} {q.name}: sluice matched {q.matches} records, rg -c counted {q.rg_matches}"
                for run in self.runs for q in run.queries if not q.ok]


def start_cluster_node(ctx: Ctx, name: str, home: Path, seeds: list[str], store_extra: tuple[str, ...] = (),
                       ip: str = "", rf: int = 1) -> Node:
    """`sluice ingest|store` on its own loopback address (ip, default CLUSTER_IPS[name]), every
    listener on port 0; returns once the node has written its ports file (not yet ready: see
    running_cluster)."""
    role, ip = name.split("-")[0], ip or CLUSTER_IPS[name]
    data, ports_file, log_path = home / "data", home / "ports.json", ctx.out / f"node-cluster-{name}.log"
    data.mkdir(parents=True)
    listeners = ["--api", "0", "--gossip", "0"]
    if role == "ingest":
        listeners += ["--fast", "0", "--durable", "0", "--batch", "0", "--fluent", "off", "--syslog", "off"]
    # RF 1: these runs compare the cluster's ingest path and queries with one node's (replication is
    # measured apart).
    argv = [ctx.sluice, role, "--data", str(data), "--bind", ip, *listeners, "--ports-file", str(ports_file),
            "--gossip-interval", "200ms", "--cluster-id", CLUSTER_ID, "--replication-factor", str(rf),
            *(store_extra if role == "store" else ())]
    with open(log_path, "ab") as log_file:
        proc = Proc(f"{role} {name}", argv + [a for seed in seeds for a in ("--peer", seed)],
                    stdout=log_file, stderr=log_file)
    node = Node(ctx, name, proc, data, log_path, "", "", "", "off", "off", role)

    def ports() -> dict[str, int] | None:
        node.check_alive()
        with suppress(OSError, ValueError):
            found = json.loads(ports_file.read_text())  # written whole (renamed into place)
            if isinstance(found, dict) and "api" in found and "gossip" in found:
                return {k: int(v) for k, v in found.items()}
        return None

    found = wait_until(f"{role} {name} to write {ports_file}", 60, 0.05, ports)
    node.api, node.gossip = f"{ip}:{found['api']}", f"{ip}:{found['gossip']}"
    if role == "ingest":
        node.fast, node.batch = f"{ip}:{found['fast']}", f"{ip}:{found['batch']}"
    log(f"cluster {name} (sluice {role}): pid {proc.pid} api {node.api} gossip {node.gossip}"
        + (f" batch {node.batch}" if role == "ingest" else ""))
    return node


def cluster_view(node: Node) -> list[dict[str, Any]]:
    """The nodes of node's `GET /cluster` (none if it does not answer)."""
    with suppress(ValueError, TypeError, AttributeError):
        nodes = json.loads(node.http("/cluster", timeout=2) or "{}").get("nodes", [])
        return [n for n in nodes if isinstance(n, dict)]
    return []


@contextmanager
def running_cluster(ctx: Ctx, store_extra: tuple[str, ...] = (),
                    layout: dict[str, str] | None = None, rf: int = 1) -> Iterator[list[Node]]:
    """The nodes of layout (name: --bind address; default CLUSTER_IPS: one `sluice ingest` and two
    `sluice store`), seeded with the first node's gossip address, yielded once every node's /cluster
    shows all of them live and ready; stopped in reverse order when the block ends (and their data
    deleted unless --keep)."""
    layout = layout or CLUSTER_IPS
    base, seen = ctx.out / "data-cluster", [""]
    nodes: list[Node] = []
    shutil.rmtree(base, ignore_errors=True)

    def converged() -> bool | None:
        for node in nodes:
            node.check_alive()
            view = cluster_view(node)
            seen[0] = f"{node.name} sees " + (", ".join(f"{n.get('api')} {'live' if n.get('live') else 'dead'} "
                                                        f"{n.get('health')}" for n in view) or "nothing")
            if len(view) != len(nodes) or not all(n.get("live") is True and n.get("health") == "ready" for n in view):
                return None
        return True

    try:
        for name, ip in layout.items():
            nodes.append(start_cluster_node(ctx, name, base / name, [nodes[0].gossip] if nodes else [], store_extra,
                                            ip, rf))
        wait_until(lambda: f"every node to see {len(nodes)} live ready nodes ({seen[0]})", 60, 0.1, converged)
        log(f"cluster: {len(nodes)} nodes live and ready in every view")
        yield nodes
    except BaseException:
        Proc.stop_all()
        raise
    finally:
        for node in reversed(nodes):  # the stores first: their lanes would retry a stopped ingest node
            node.proc.stop()
        if not ctx.args.keep:
            shutil.rmtree(base, ignore_errors=True)


def ingest_log_left(node: Node) -> str | None:
    """What the ingest log (DATA/ingest) of an ingest node or ingeststore still holds: segments
    being written, sealed or lent (None: nothing, every segment was committed by a store)."""
    with suppress(OSError):
        left = [p.name for p in (node.data / "ingest").iterdir() if p.suffix in (".active", ".flushed", ".pending")]
        return f"{len(left)} segments left in {node.data / 'ingest'}: {' '.join(left[:3])}" if left else None
    return f"cannot list {node.data / 'ingest'}"


def stored_everything(stats: dict[str, Any], lines: int, cluster: bool) -> str | None:
    """What the --stats of `-q ''` say is missing (None: every line, and in a cluster a complete
    answer in which every ingest node of `per_node` matched 0 records)."""
    if (matched := int(stats["records_matched"])) != lines:
        return f"{matched} of {lines} records queryable"
    if not cluster:
        return None
    ingest = [p for p in stats.get("per_node") or [] if isinstance(p, dict) and p.get("role") == "ingest"]
    if not ingest or stats.get("complete") is not True:
        return f"an incomplete answer or no ingest node in per_node: {json.dumps(stats)[:500]}"
    held = sum(int(p.get("records_matched") or 0) for p in ingest)
    return f"the ingest node still holds {held} records" if held else None


def store_settled(stores: list[Node]) -> bool | None:
    """Every store segment (of every store-role node) is a block file and every block is sorted."""
    segs = [s for node in stores for s in node.segments()]
    for node in stores:
        node.check_alive()
    if not segs or not all(is_block_file(s) for s in segs):
        return None
    return True if all(node.metric("sluice_store_unsorted_blocks") == 0 for node in stores) else None


def ingest_path_cpu(ctx: Ctx, setup: str, nodes: list[Node], corpus: Corpus) -> float:
    """Node CPU seconds from the forwarder's start into nodes[0] until it exited and nodes[0]'s ingest
    log is empty: the ingest path alone when the nodes run with --no-compact."""
    sink, what = nodes[0], f"sluice forward into the {setup} (compaction off)"
    errlog = ctx.out / f"forward-{setup}-no-compact.stderr"
    argv = [ctx.sluice, "forward", f"sluice://{sink.batch}", "--guarantee", "write", "--json"]
    os.sync()
    before = [cpu_ticks(n.proc.pid) for n in nodes]
    with open(corpus.path, "rb") as src, open(errlog, "wb") as err:
        fwd = Proc(what, argv, stdin=src, stderr=err)

    def stored() -> bool | None:
        for node in nodes:
            node.check_alive()
        if not fwd.alive and fwd.rc != 0:
            raise BenchError(f"{what} exited with status {fwd.rc}; last lines of {errlog}:\n{tail(errlog)}")
        return True if not fwd.alive and ingest_log_left(sink) is None else None

    wait_until(f"{setup}: the stores to hold all (compaction off)", ctx.args.timeout, 0.02, stored)
    after = [cpu_ticks(n.proc.pid) for n in nodes]
    if None in before or None in after:
        raise BenchError(f"{setup}: could not read /proc/PID/stat of every node")
    check_acked(errlog, corpus.lines, what)
    cpu = sum(a - b for a, b in zip(after, before)) / os.sysconf("SC_CLK_TCK")  # type: ignore[operator]
    log(f"{setup}, compaction off: node CPU {cpu:.2f}s ({cpu / (corpus.bytes / 1e9):.2f} s/GB)")
    return cpu


def bench_setup(ctx: Ctx, setup: str, nodes: list[Node], corpus: Corpus,
                tokens: list[tuple[str, str, int]]) -> ClusterRun:
    """Forward the corpus into nodes[0]'s batch port until the forwarder has exited and nodes[0]'s
    ingest log is empty (checked every 50 ms: the clock and the CPU stop there), confirmed by `-q ''
    --stats` on the last node (the coordinator); then wait for compaction to settle and time the
    queries (name, pattern, rg count) on that last node."""
    sink, coordinator, stores = nodes[0], nodes[-1], [n for n in nodes if n.role != "ingest"]
    errlog, what = ctx.out / f"forward-{setup}.stderr", f"sluice forward into the {setup}"
    argv = [ctx.sluice, "forward", f"sluice://{sink.batch}", "--guarantee", "write", "--json"]
    hz, all_sql = os.sysconf("SC_CLK_TCK"), ["--from", "24h", "-q", ""]
    os.sync()
    before = [cpu_ticks(n.proc.pid) for n in nodes]
    with open(corpus.path, "rb") as src, open(errlog, "wb") as err:
        t0 = time.monotonic()
        fwd = Proc(what, argv, stdin=src, stderr=err)
    t_sent, seen, end = 0.0, "the forwarder still running", t0 + ctx.args.timeout
    while True:
        for node in nodes:
            node.check_alive()
        if not fwd.alive and fwd.rc != 0:
            raise BenchError(f"{what} exited with status {fwd.rc}; last lines of {errlog}:\n{tail(errlog)}")
        if not t_sent and (not fwd.alive or proc_field(fwd.pid, "fdinfo/0", "pos") == corpus.bytes):
            t_sent = time.monotonic()
        # Every line acked (written to the ingest log) and no segment left in it: the stores hold all.
        if not fwd.alive and (left := ingest_log_left(sink)) is None:
            t_stored, after = time.monotonic(), [cpu_ticks(n.proc.pid) for n in nodes]
            if (missing := stored_everything(coordinator.stats(all_sql), corpus.lines, sink.role == "ingest")) is None:
                break
            if seen != (seen := f"the ingest log was empty, but the query found {missing}"):
                log(f"WARNING: {setup}: {seen}; checking again")
        elif not fwd.alive:
            seen = f"the forwarder exited (all acked), {left}"
        if time.monotonic() >= end:
            raise BenchError(f"{setup}: not all in the stores after {ctx.args.timeout}s: {seen}")
        time.sleep(0.05)
    if None in before or None in after:
        raise BenchError(f"{setup}: could not read /proc/PID/stat of every node")
    check_acked(errlog, corpus.lines, what)
    cpu = sum(a - b for a, b in zip(after, before)) / hz  # type: ignore[operator]
    log(f"{setup}: forwarder read all after {t_sent - t0:.3f}s, exited after {fwd.end - t0:.3f}s; all in the "
        f"stores after {t_stored - t0:.3f}s; node CPU {cpu:.2f}s ({cpu / (corpus.bytes / 1e9):.2f} s/GB), "
        f"forwarder CPU {fwd.cpu:.2f}s")
    wait_until("every store segment compacted to a block file and every block sorted", 1800, 0.5,
               lambda: store_settled(stores))
    t_settled = time.monotonic()
    settled = [cpu_ticks(n.proc.pid) for n in nodes]
    if None in settled:
        raise BenchError(f"{setup}: could not read /proc/PID/stat of every node")
    settled_cpu = sum(a - b for a, b in zip(settled, before)) / hz  # type: ignore[operator]
    disk = sum(s.stat().st_size for n in stores for s in n.segments())
    rss_kib = [n.peak_rss_kib() for n in nodes]
    run = ClusterRun(setup, [f"{n.role} {n.api}" for n in nodes], t_sent - t0, fwd.end - t0, t_stored - t0, cpu,
                     fwd.cpu, t_settled - t_stored, settled_cpu, disk,
                     None if None in rss_kib else sum(rss_kib))  # type: ignore[arg-type]
    log(f"{setup}: compaction settled {run.settled_secs:.3f}s later, {mib(disk)} MiB of store segments; "
        f"node CPU from the start {settled_cpu:.2f}s ({run.cpu_per_gb(corpus.bytes, True):.2f} s/GB)")
    for name, pattern, rg_matches in tokens:
        sl_args = ["--from", "24h", "-q", pattern]
        secs = best_of(ctx.reps(3), coordinator.query(sl_args))
        q = ClusterQuery(name, pattern, secs, int(coordinator.stats(sl_args)["records_matched"]), rg_matches)
        log(f"{setup} query {name} `{pattern}`: {secs:.3f}s, matches sluice={q.matches} rg={q.rg_matches}"
            + ("" if q.ok else " MISMATCH"))
        run.queries.append(q)
    return run


def cmd_cluster(ctx: Ctx) -> ClusterReport:
    """One ingeststore against a loopback cluster of 1 ingest + 2 stores (section `bench/bench.py cluster`).

    On the run's 200-byte corpus (`sluice testsvc --size 200 --rate 0 --seed 1`, MB MiB), each of
    A. a fresh `sluice ingeststore` (as run starts it) and
    B. `sluice ingest --bind 127.0.0.21` and `sluice store --bind 127.0.0.22|23 --peer INGEST_GOSSIP`,
       every listener on port 0 (`--ports-file`), `--gossip-interval 200ms`, `--replication-factor 1`, started once every
       node's GET /cluster shows 3 live ready nodes,
    gets the corpus from `sluice forward sluice://BATCH --guarantee write --json`. Time until the
    forwarder has exited (all acked) and the ingest log (DATA/ingest of A or the ingest node) holds
    no .active/.flushed/.pending segment (checked every 50 ms), then confirmed by `sluice query --from
    24h -q '' --stats` on the ingeststore (A) or store 2 (B): records_matched is the line count and,
    for B, the ingest node's per_node records_matched is 0. CPU of every node process (utime + stime
    from /proc/PID/stat) over that time, per GB (10^9 bytes) of corpus, and up to compaction settled.
    Then, once every store segment is a block file and sluice_store_unsorted_blocks is 0 on every
    store, a rare request id and `ERROR` (~1%) with `sluice query` on the same node, best of REPS
    (default 3); counts must equal `rg -c`. Targets, cluster over ingeststore: CPU per GB during
    the ingest at most 1.3, query time at most 1.5.
    """
    args = ctx.args
    args.timeout = args.timeout or 120 + 2 * args.mb
    need_free(args.mb * 4)
    r = ClusterReport(ctx.run_id, machine_info(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), commit_id(),
                      args.mb, ctx.reps(3))
    r.corpus = c = gen_corpus(ctx, FWD_SIZE)
    tokens = [(name, pattern, rg_count(["--no-config", "-F", "--", pattern], c.path))
              for name, pattern in (("rare literal", rare_token(c)), ("ERROR (~1%)", "ERROR"))]
    log("rg -c: " + ", ".join(f"{p} {n}" for _, p, n in tokens))
    with running_node(ctx, "cluster-ingeststore") as node:
        r.runs.append(bench_setup(ctx, "ingeststore", [node], c, tokens))
    with running_cluster(ctx) as nodes:
        r.runs.append(bench_setup(ctx, "cluster", nodes, c, tokens))
    # The ingest path alone: compaction off, fresh nodes each time, alternating A and B.
    for _ in range(r.reps):
        with running_node(ctx, "cluster-ingeststore-nc", extra=("--no-compact",)) as node:
            r.runs[0].ingest_path_cpu_secs.append(ingest_path_cpu(ctx, "ingeststore", [node], c))
        with running_cluster(ctx, ("--no-compact",)) as nodes:
            r.runs[1].ingest_path_cpu_secs.append(ingest_path_cpu(ctx, "cluster", nodes, c))
    return r


CLUSTER_METHOD = """\
- A: a fresh `sluice ingeststore --data DIR --api .. --fast .. --durable .. --batch ..` on 127.0.0.1 (as in `run`).
- B: `sluice ingest --bind 127.0.0.21 --api 0 --gossip 0 --fast 0 --durable 0 --batch 0 --fluent off --syslog off` and
  two `sluice store --bind 127.0.0.22|23 --api 0 --gossip 0 --peer 127.0.0.21:GOSSIP`, each with `--ports-file`,
  `--gossip-interval 200ms`, `--cluster-id {cluster_id}` and `--replication-factor 1`; measured once every node's `GET /cluster` showed all 3
  live and `ready`. All of them and the forwarder share the machine's {cores} cores.
- Ingest: `sluice forward sluice://BATCH --guarantee write --json < corpus` into A's or the ingest node's batch port
  (exit status 0 and `read` = `acked` = line count are checked). "ingest to queryable in the stores" is the time from
  the forwarder's start until it had exited (every line acked, i.e. written to the ingest log) and the ingest log
  (`DATA/ingest` of A or of the ingest node) held no `.active`, `.flushed` or `.pending` segment, checked every 50 ms:
  a segment leaves it only when a store commits it. That moment is then confirmed with
  `sluice query --api .. --from 24h -q '' --stats` on the ingeststore (A) or a store (B): `records_matched` must be
  the line count and, for B, `complete` with `records_matched` 0 in the ingest node's `per_node` entry. This
  confirming query is not timed: on 512 MiB of not yet compacted data one such full scan took 1.5 to 2 s and 2.5 to
  4 CPU seconds of the nodes in B (2026-12-02), so polling with it would mostly measure the polls.
- Node CPU: utime + stime (`/proc/PID/stat`) of every node process (A: 1, B: 3) from just before the forwarder
  started to that moment; per GB divides by the corpus bytes (GB = 10^9 bytes). Compaction runs during the ingest in
  both, so this counts however much of it fits in the window; "from the start to settled" counts up to the moment
  compaction had settled (see Queries), all of the work for the data. The forwarder's own CPU (`wait4`) is apart.
  Since how much compaction falls in the window varies from run to run, the target is checked on the ingest path
  alone: the same ingest into fresh nodes started with `--no-compact` (the ingeststore, or both stores), measured to
  the same moment, {reps} times alternating A and B; the row gives the median.
- Queries: once every store segment was a block file and `sluice_store_unsorted_blocks` was 0 on every store-role
  node (checked every 0.5 s; the same rule for A and B), `sluice query --api .. --from 24h -q PATTERN > /dev/null`
  asked of the ingeststore (A) or of a store (B), which coordinates the other nodes; wall time, best of {reps}. The
  rare literal is a request id from a third into the corpus (as in `run`), `ERROR` is on ~1% of lines;
  `records_matched` must equal `rg -c` over the corpus.
- ratio is B / A; a target is the most B may take relative to A."""


def render_cluster(r: ClusterReport) -> str:
    m, c = r.machine, r.corpus
    if c is None or len(r.runs) != 2:
        raise BenchError("a cluster report holds its corpus and two runs")
    a, b = r.runs

    def target(want: float, x: float, y: float) -> str:
        return f"≤ {want:.1f}: " + ("met" if x and y / x <= want else "**missed**")

    def row(metric: str, fa: float, fb: float, want: float | None = None) -> list[str]:
        return [metric, f"{fa:.2f}", f"{fb:.2f}", ratio(fb, fa), "" if want is None else target(want, fa, fb)]

    rows = [row("forwarder exited, all acked (s)", a.exited_secs, b.exited_secs),
            row("ingest to queryable in the stores (s)", a.stored_secs, b.stored_secs),
            ["records/s to the stores", per_s(c.lines, a.stored_secs), per_s(c.lines, b.stored_secs),
             ratio(c.lines / b.stored_secs if b.stored_secs else None,
                   c.lines / a.stored_secs if a.stored_secs else None), ""],
            row("node CPU during ingest (s)", a.node_cpu_secs, b.node_cpu_secs),
            row("node CPU per GB ingested, compaction running (s)", a.cpu_per_gb(c.bytes),
                b.cpu_per_gb(c.bytes)),
            row(f"node CPU per GB ingested, compaction off, median of {len(a.ingest_path_cpu_secs)} (s)",
                a.ingest_path_cpu_per_gb(c.bytes), b.ingest_path_cpu_per_gb(c.bytes), CLUSTER_TARGETS["cpu"]),
            row("forwarder CPU (s)", a.forwarder_cpu_secs, b.forwarder_cpu_secs),
            row("compaction settled, after the stores held all (s)", a.settled_secs, b.settled_secs),
            row("node CPU per GB, from the start to settled (s)", a.cpu_per_gb(c.bytes, True),
                b.cpu_per_gb(c.bytes, True)),
            ["store segments on disk (MiB)", mib(a.store_bytes), mib(b.store_bytes),
             ratio(b.store_bytes, a.store_bytes), ""],
            ["peak RSS, all nodes", rss(a.peak_rss_kib), rss(b.peak_rss_kib),
             ratio(b.peak_rss_kib, a.peak_rss_kib), ""]]
    for qa, qb in zip(a.queries, b.queries):
        rows.append([f"query {qa.name} `{qa.pattern}` (s)", f"{qa.secs:.3f}", f"{qb.secs:.3f}",
                     ratio(qb.secs, qa.secs), target(CLUSTER_TARGETS["query"], qa.secs, qb.secs)])
        rows.append([f"matches {qa.name} (sluice / rg -c)", f"{qa.matches} / {qa.rg_matches}"
                     + ("" if qa.ok else " **MISMATCH**"), f"{qb.matches} / {qb.rg_matches}"
                     + ("" if qb.ok else " **MISMATCH**"), "", ""])
    out = ["## Cluster on loopback against one ingeststore (bench/bench.py cluster)", "",
           f"Run {r.run_id} on {r.date}, commit {r.commit}: {m.cores} cores ({m.cpu}), {m.gib}.",
           f"Command: `python3 bench/bench.py cluster` (SLUICE_BENCH_MB={r.mb}, queries best of {r.reps}).",
           f"Corpus: `sluice testsvc --size {c.size} --rate 0 --count {c.lines} --seed {SEED}`, {c.lines} lines, "
           f"{mib(c.bytes)} MiB ({c.bytes / 1e9:.3f} GB).", "",
           CLUSTER_METHOD.format(cluster_id=CLUSTER_ID, cores=m.cores, reps=r.reps), ""]
    out += table(["metric", "1 ingeststore", "1 ingest + 2 stores", "ratio", "target"], "-:::-", rows)
    return "\n".join(out) + "\n"
