"""`bench.py tail`: live-tail latency, and ingest with a stalled reader; and its section."""
from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field
from subprocess import PIPE

from .cluster import running_cluster
from .common import Ctx, log, wait_until
from .formatting import mib, ratio, table
from .machine import commit_id, machine_info
from .nodes import Node, running_node
from .procs import Proc, need_free
from .results import FWD_SIZE, Corpus, Report
from .run import gen_corpus


# =========================================================== tail: work --

TAIL_CLUSTER = {"ingest-1": "127.0.0.24", "ingest-2": "127.0.0.25", "store-1": "127.0.0.26"}
TAIL_TARGETS = {"ingeststore": 200.0, "cluster": 500.0}  # p99 ms, at most
TAIL_TAG = "tailbench"


@dataclass
class TailRun:
    setup: str  # ingeststore or cluster
    lines: int
    rate: int  # lines per second, steady
    received: int
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class StallRun:
    stalled: bool  # a /stream reader subscribed that never reads
    secs: list[float]  # per rep: nc -N of the corpus into the fast port until it exited


@dataclass
class TailReport(Report):
    date: str
    commit: str
    tail_lines: int
    tail_rate: int
    stall_mb: int
    reps: int
    runs: list[TailRun] = field(default_factory=list)
    stall: list[StallRun] = field(default_factory=list)


def tail_readers(nodes: list[Node]) -> bool | None:
    """Every ingest-role node has a live-tail reader subscribed."""
    for node in nodes:
        node.check_alive()
    return True if all(n.metric("sluice_tail_readers") >= 1 for n in nodes if n.role != "store") else None


def tail_latency(ctx: Ctx, setup: str, nodes: list[Node], lines: int, rate: int) -> TailRun:
    """`sluice stream -q TAIL_TAG` on the last node; lines `TAIL_TAG SEQ T_NS` written at a steady
    rate, round robin over the ingest nodes' fast ports, each stamped with the wall clock (ns) just
    before its write; latency = arrival on the stream's stdout - stamp."""
    coordinator, ingesters = nodes[-1], [n for n in nodes if n.role != "store"]
    stream = Proc(f"sluice stream ({setup})", [ctx.sluice, "stream", "--api", coordinator.api, "-q", TAIL_TAG],
                  stdout=PIPE)
    latencies: list[int] = []

    def read() -> None:
        assert stream.popen.stdout is not None
        for raw in stream.popen.stdout:
            now = time.time_ns()
            parts = raw.split()
            if len(parts) == 3 and parts[0] == TAIL_TAG.encode():
                latencies.append(now - int(parts[2]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_until(f"the stream to subscribe to every ingest node of the {setup}", 30, 0.05,
               lambda: tail_readers(ingesters))
    socks = [socket.create_connection(tuple(n.fast.rsplit(":", 1))) for n in ingesters]  # type: ignore[arg-type]
    tick, per_tick = 0.01, max(1, rate // 100)
    t0, seq = time.monotonic(), 0
    while seq < lines:
        for _ in range(min(per_tick, lines - seq)):
            socks[seq % len(socks)].sendall(f"{TAIL_TAG} {seq:07d} {time.time_ns()}\n".encode())
            seq += 1
        time.sleep(max(0.0, t0 + (seq / rate) - time.monotonic()))
    wait_until(lambda: f"{lines} lines on the stream ({len(latencies)} so far)", 60, 0.05,
               lambda: True if len(latencies) >= lines else None)
    for sock in socks:
        sock.close()
    stream.stop()
    ms = sorted(x / 1e6 for x in latencies)
    run = TailRun(setup, lines, rate, len(ms), ms[len(ms) // 2], ms[min(len(ms) - 1, int(len(ms) * 0.99))], ms[-1])
    log(f"tail {setup}: {run.received} lines at {rate}/s: p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms, "
        f"max {run.max_ms:.1f} ms")
    return run


def stalled_ingest(ctx: Ctx, corpus: Corpus, stalled: bool) -> float:
    """nc -N of the corpus into a fresh ingeststore's fast port, with or without a /stream reader
    that never reads, once untimed (it fills every buffer between the ring and the reader, so the
    timed pass sees a reader that is stalled for good) and once timed; seconds until nc exited
    (the node read every byte)."""
    # No compaction: it would run on the first send's data during the timed one.
    with running_node(ctx, "tail-stall" if stalled else "tail-free", extra=("--no-compact",)) as node:
        reader = None
        if stalled:
            reader = socket.create_connection(tuple(node.api.rsplit(":", 1)))  # type: ignore[arg-type]
            reader.sendall(b"GET /stream HTTP/1.1\r\nHost: bench\r\n\r\n")
            wait_until("the stalled reader to subscribe", 30, 0.05, lambda: tail_readers([node]))
        host, port = node.fast.rsplit(":", 1)
        secs = 0.0
        for timed in (False, True):
            os.sync()
            with open(corpus.path, "rb") as src:
                t0 = time.monotonic()
                nc = Proc("nc sender", ["nc", "-N", host, port], stdin=src)
            nc.wait(ctx.args.timeout, "nc to send the corpus")
            secs = nc.end - t0 if timed else 0.0
        if stalled:
            held = node.metric("sluice_tail_ring_bytes")
            log(f"stalled reader: the ring holds {mib(held)} MiB")
            if reader:
                reader.close()
    log(f"ingest {'with a stalled reader' if stalled else 'without readers'}: {secs:.3f}s")
    return secs


def cmd_tail(ctx: Ctx) -> TailReport:
    """Live-tail latency on one node and a cluster; ingest speed with a stalled reader (section `bench/bench.py tail`).

    Latency: a `sluice stream -q tailbench` client on the coordinating node while TAIL_LINES lines
    `tailbench SEQ T_NS` are written at TAIL_RATE lines/s (in steps every 10 ms) over TCP to the fast
    port(s), each stamped with the wall clock just before its write; latency is the arrival of its
    line on the client's stdout minus that stamp. A: one `sluice ingeststore`; B: two `sluice ingest`
    (127.0.0.24, .25, written round robin) and one `sluice store` (127.0.0.26), the client on the store.
    Targets: p99 at most 200 ms on A, 500 ms on B (OK Log's stream showed a line after about 6 s).
    Stalled reader: the run's 200-byte corpus (STALL_MB MiB) sent twice with `nc -N` into a fresh
    `ingeststore --no-compact`'s fast port, with and without a `GET /stream` connection that never reads, REPS
    times alternating; the time of the second send until nc exits (the node read every byte). The
    first send fills every buffer between the ring and the stalled reader.
    """
    args = ctx.args
    args.timeout = args.timeout or 600
    need_free(args.stall_mb * 3)
    r = TailReport(ctx.run_id, machine_info(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), commit_id(),
                   args.tail_lines, args.tail_rate, args.stall_mb, ctx.reps(5))
    with running_node(ctx, "tail-ingeststore") as node:
        r.runs.append(tail_latency(ctx, "ingeststore", [node], r.tail_lines, r.tail_rate))
    with running_cluster(ctx, layout=TAIL_CLUSTER) as nodes:
        r.runs.append(tail_latency(ctx, "cluster", nodes, r.tail_lines, r.tail_rate))
    args.mb = r.stall_mb
    corpus = gen_corpus(ctx, FWD_SIZE)
    r.stall = [StallRun(False, []), StallRun(True, [])]
    for _ in range(r.reps):
        for run in r.stall:
            run.secs.append(stalled_ingest(ctx, corpus, run.stalled))
    return r


def render_tail(r: TailReport) -> str:
    m = r.machine
    rows = []
    for run in r.runs:
        want = TAIL_TARGETS[run.setup]
        rows.append([{"ingeststore": "1 ingeststore", "cluster": "2 ingest + 1 store"}[run.setup],
                     f"{run.received} / {run.lines}", f"{run.rate}", f"{run.p50_ms:.1f}", f"{run.p99_ms:.1f}",
                     f"{run.max_ms:.1f}", f"≤ {want:.0f} ms: " + ("met" if run.p99_ms <= want else "**missed**")])
    out = ["## Live tail (bench/bench.py tail)", "",
           f"Run {r.run_id} on {r.date}, commit {r.commit}: {m.cores} cores ({m.cpu}), {m.gib}.",
           f"Command: `python3 bench/bench.py tail` (SLUICE_BENCH_TAIL_LINES={r.tail_lines}, "
           f"SLUICE_BENCH_TAIL_RATE={r.tail_rate}, SLUICE_BENCH_STALL_MB={r.stall_mb}, reps {r.reps}).", "",
           "Latency from the write of a line (its wall-clock stamp) to its arrival on a `sluice stream` client's "
           "stdout, every line of the run. OK Log's stream: about 6 s.", ""]
    out += table(["setup", "lines received / sent", "lines/s", "p50 ms", "p99 ms", "max ms", "p99 target"],
                 "-::::::", rows)
    free, stalled = (statistics.median(s.secs) if s.secs else 0.0 for s in r.stall)
    spread = max((max(s.secs) - min(s.secs)) / statistics.median(s.secs) for s in r.stall if s.secs)
    out += ["", f"Ingest with a reader that never reads: `nc -N` of {r.stall_mb} MiB of 200-byte lines into a fresh "
            f"`ingeststore --no-compact`'s fast port, until nc exits, after the same send untimed (it fills the buffers between "
            f"the ring and the reader); median of {r.reps}, alternating.", ""]
    out += table(["ingest", "median s", "runs s", "ratio"], "-::-", [
        ["no tail reader", f"{free:.3f}", " ".join(f"{x:.3f}" for x in r.stall[0].secs), "1.00"],
        ["one stalled /stream reader", f"{stalled:.3f}", " ".join(f"{x:.3f}" for x in r.stall[1].secs),
         ratio(stalled, free) + f" (run-to-run spread {spread:.0%})"]])
    return "\n".join(out) + "\n"
