"""`bench.py replication`: RF 1, 2 and 3 on a loopback cluster; and its section."""
from __future__ import annotations

import os
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field

from .cluster import running_cluster
from .common import BenchError, Ctx, log, tail, wait_until
from .formatting import mib, mibs, table
from .machine import commit_id, machine_info
from .nodes import Node
from .procs import Proc, cpu_ticks, need_free
from .results import FWD_SIZE, SEED, Corpus, Report
from .run import check_acked, gen_corpus


# ==================================================== replication: work --

RF_CLUSTER = {"ingest-1": "127.0.0.27", "ingest-2": "127.0.0.28", "store-1": "127.0.0.29", "store-2": "127.0.0.30",
              "store-3": "127.0.0.31"}
RF_TARGETS = {"cpu": 2.3, "p99_ms": 1000.0}  # RF 2 CPU per GB over RF 1, at most; p99 replicated ack, at most


@dataclass
class RfRun:
    rf: int
    acked_secs: float  # the forwarder's start to its exit: every line acked `replicated`
    node_cpu_secs: float  # utime + stime of the five nodes over that time
    p50_ms: float  # `replicated` ack latency at a steady rate
    p99_ms: float
    max_ms: float
    batches: int
    path_cpu_secs: float = 0.0  # the same send into fresh nodes with compaction off: the ingest path alone

    def cpu_per_gb(self, nbytes: int) -> float:
        return self.node_cpu_secs / (nbytes / 1e9)

    def path_cpu_per_gb(self, nbytes: int) -> float:
        return self.path_cpu_secs / (nbytes / 1e9)


@dataclass
class ReplicationReport(Report):
    date: str
    commit: str
    mb: int
    rate_mb: int
    seconds: int
    corpus: Corpus | None = None
    runs: list[RfRun] = field(default_factory=list)


def batch_frame(seq: int, lines: list[bytes]) -> bytes:
    """One batch-protocol command (docs/protocol-batch.md) asking for `replicated`."""
    body = b"".join(b"%d - %s\n" % (len(line), line) for line in lines)
    return b"BATCH %d bench %d %d %08x replicated\n" % (seq, len(lines), len(body), zlib.crc32(body)) + body


def ack_latency(nodes: list[Node], rate_mb: int, seconds: int) -> tuple[list[float], int]:
    """Batches of 500 ~200-byte lines written at rate_mb MB/s in total, round robin over the ingest
    nodes' batch ports (one connection each); ms from each batch's write to its `OK`."""
    ingesters = [n for n in nodes if n.role == "ingest"]
    line = b"x" * 190
    per_batch = 500
    batch_bytes = per_batch * (len(line) + 7)
    interval = batch_bytes / (rate_mb * 1e6)
    sent: dict[tuple[int, int], float] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    conns = [socket.create_connection(tuple(n.batch.rsplit(":", 1))) for n in ingesters]  # type: ignore[arg-type]

    def read(i: int, conn: socket.socket) -> None:
        for raw in conn.makefile("rb"):
            now = time.monotonic()
            parts = raw.split()
            if len(parts) >= 2 and parts[0] == b"OK":
                with lock:
                    t = sent.pop((i, int(parts[1])), None)
                    if t is not None:
                        latencies.append((now - t) * 1000)
            elif parts[:1] == [b"ERR"]:
                raise BenchError(f"the ingest node answered {raw!r}")

    readers = [threading.Thread(target=read, args=(i, c), daemon=True) for i, c in enumerate(conns)]
    for r in readers:
        r.start()
    t0, count = time.monotonic(), int(seconds / interval)
    for k in range(count):
        i, seq = k % len(conns), k // len(conns) + 1
        frame = batch_frame(seq, [line] * per_batch)
        with lock:
            sent[(i, seq)] = time.monotonic()
        conns[i].sendall(frame)
        time.sleep(max(0.0, t0 + (k + 1) * interval - time.monotonic()))
    wait_until(lambda: f"every batch acked ({len(latencies)} of {count})", 120, 0.05,
               lambda: True if len(latencies) >= count else None)
    for conn in conns:
        conn.close()
    return sorted(latencies), count


def send_replicated(ctx: Ctx, rf: int, corpus: Corpus, nodes: list[Node], label: str) -> tuple[float, float]:
    """The corpus through `sluice forward --guarantee replicated` to every ingest node: seconds until
    it exits (all acked) and the five nodes' CPU seconds over that time."""
    ingesters = [n for n in nodes if n.role == "ingest"]
    errlog, what = ctx.out / f"forward-rf{rf}-{label}.stderr", f"sluice forward --guarantee replicated (RF {rf}, {label})"
    argv = [ctx.sluice, "forward", *(f"sluice://{n.batch}" for n in ingesters), "--mode", "balance",
            "--guarantee", "replicated", "--json"]
    hz = os.sysconf("SC_CLK_TCK")
    os.sync()
    before = [cpu_ticks(n.proc.pid) for n in nodes]
    with open(corpus.path, "rb") as src, open(errlog, "wb") as err:
        t0 = time.monotonic()
        fwd = Proc(what, argv, stdin=src, stderr=err)
    if fwd.wait(ctx.args.timeout, what) != 0:
        raise BenchError(f"{what} exited with status {fwd.rc}; last lines of {errlog}:\n{tail(errlog)}")
    after = [cpu_ticks(n.proc.pid) for n in nodes]
    check_acked(errlog, corpus.lines, what)
    if None in before or None in after:
        raise BenchError(f"RF {rf}: could not read /proc/PID/stat of every node")
    return fwd.end - t0, sum(a - b for a, b in zip(after, before)) / hz  # type: ignore[operator]


def bench_rf(ctx: Ctx, rf: int, corpus: Corpus, rate_mb: int, seconds: int) -> RfRun:
    with running_cluster(ctx, layout=RF_CLUSTER, rf=rf, store_extra=("--no-compact",)) as nodes:
        _, path_cpu = send_replicated(ctx, rf, corpus, nodes, "no-compact")
    with running_cluster(ctx, layout=RF_CLUSTER, rf=rf) as nodes:
        acked, cpu = send_replicated(ctx, rf, corpus, nodes, "compacting")
        latencies, count = ack_latency(nodes, rate_mb, seconds)
    run = RfRun(rf, acked, cpu, latencies[len(latencies) // 2],
                latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], latencies[-1], count, path_cpu)
    log(f"RF {rf}: {corpus.lines} lines acked replicated after {run.acked_secs:.3f}s, node CPU {cpu:.2f}s "
        f"({run.cpu_per_gb(corpus.bytes):.2f} s/GB; compaction off {run.path_cpu_per_gb(corpus.bytes):.2f} s/GB); "
        f"ack at {rate_mb} MB/s: p50 {run.p50_ms:.0f} ms, "
        f"p99 {run.p99_ms:.0f} ms, max {run.max_ms:.0f} ms over {count} batches")
    return run


def cmd_replication(ctx: Ctx) -> ReplicationReport:
    """RF 1, 2 and 3 on a loopback cluster of 2 ingest and 3 store nodes (section `bench/bench.py replication`).

    For each RF, a fresh cluster (`sluice ingest` on 127.0.0.27-28, `sluice store` on .29-31, all with
    `--replication-factor RF`): the run's 200-byte corpus (MB MiB) with `sluice forward` to both ingest
    nodes (`--mode balance --guarantee replicated --json`), timed until the forwarder exits (every line
    acknowledged `replicated`: committed with RF replicas), with the CPU of the five node processes
    over that time (and again into fresh nodes with `--no-compact` on the stores: the ingest path alone,
    on which the CPU target is checked, since each copy is compacted later on its store); then the
    `replicated` ack latency at a steady RATE_MB MB/s for SECONDS s: batches of
    500 lines over the batch protocol, one connection per ingest node, ms from each write to its OK.
    Targets: RF 2 at most 2.3x the node CPU per GB of RF 1; p99 ack latency under 1 s.
    """
    args = ctx.args
    args.timeout = args.timeout or 120 + 2 * args.mb
    need_free(args.mb * 8)
    r = ReplicationReport(ctx.run_id, machine_info(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                          commit_id(), args.mb, args.rf_rate_mb, args.rf_seconds)
    r.corpus = c = gen_corpus(ctx, FWD_SIZE)
    r.runs = [bench_rf(ctx, rf, c, args.rf_rate_mb, args.rf_seconds) for rf in (1, 2, 3)]
    return r


def render_replication(r: ReplicationReport) -> str:
    m, c = r.machine, r.corpus
    if c is None or not r.runs:
        raise BenchError("a replication report holds its corpus and its runs")
    one = r.runs[0]
    rows = []
    for run in r.runs:
        cpu_ratio = run.cpu_per_gb(c.bytes) / one.cpu_per_gb(c.bytes) if one.node_cpu_secs else 0.0
        path_ratio = run.path_cpu_secs / one.path_cpu_secs if one.path_cpu_secs else 0.0
        target = ""
        if run.rf == 2:
            target = (f"path CPU ≤ {RF_TARGETS['cpu']:.1f}x: "
                      + ("met" if path_ratio <= RF_TARGETS["cpu"] else "**missed**"))
        rows.append([str(run.rf), f"{run.acked_secs:.2f}", mibs(c.bytes, run.acked_secs),
                     f"{run.path_cpu_per_gb(c.bytes):.2f}", f"{path_ratio:.2f}",
                     f"{run.cpu_per_gb(c.bytes):.2f}", f"{cpu_ratio:.2f}", f"{run.p50_ms:.0f}", f"{run.p99_ms:.0f}",
                     f"{run.max_ms:.0f}", f"p99 < 1 s: " + ("met" if run.p99_ms < RF_TARGETS["p99_ms"] else "**missed**")
                     + (f"; {target}" if target else "")])
    out = ["## Replication: RF 1, 2 and 3 (bench/bench.py replication)", "",
           f"Run {r.run_id} on {r.date}, commit {r.commit}: {m.cores} cores ({m.cpu}), {m.gib}.",
           f"Command: `python3 bench/bench.py replication` (SLUICE_BENCH_MB={r.mb}, "
           f"SLUICE_BENCH_RF_RATE_MB={r.rate_mb}, SLUICE_BENCH_RF_SECONDS={r.seconds}).",
           f"Corpus: `sluice testsvc --size {c.size} --rate 0 --count {c.lines} --seed {SEED}`, {c.lines} lines, "
           f"{mib(c.bytes)} MiB. Two `sluice ingest` and three `sluice store` nodes on 127.0.0.27-31 share the "
           f"machine's {m.cores} cores with the forwarder.", "",
           "\"acked\" is `sluice forward --mode balance --guarantee replicated` of the corpus to both ingest nodes, "
           "until it exits (every line committed with RF replicas); node CPU is utime + stime of the five nodes "
           "over that time, with compaction off on the stores (the ingest path: receive, write, replicate, commit) "
           "and with it running (each store also compacts every copy it holds, as much as fits in the window). "
           "Ack latency (compaction running): batches of 500 lines at a steady {r.rate_mb} MB/s for {r.seconds} s, "
           "from each write to its `OK`.", ""]
    out += table(["RF", "acked (s)", "MiB/s", "path CPU s/GB", "path / RF 1", "CPU s/GB, compacting",
                  "compacting / RF 1", "ack p50 ms", "ack p99 ms", "ack max ms", "targets"], "-::::::::::", rows)
    return "\n".join(out) + "\n"
