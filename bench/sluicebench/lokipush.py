"""`bench.py loki-push`: Loki push against sluice's batch protocol, the same lines; and its section."""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import QUERY_TIMEOUT, ROOT, BenchError, Ctx, log, wait_until
from .formatting import mib, mibs, table
from .machine import commit_id, machine_info
from .procs import cpu_ticks, need_free, run_cmd
from .nodes import running_node
from .results import FWD_SIZE, SEED, Corpus, Report
from .run import gen_corpus


# ============================================================== loki-push --

PUSH_BATCH = 1000  # lines per Loki push and per batch-protocol batch
PUSH_TARGET = 0.7  # Loki push events/s over the batch protocol's, at least
PUSH_INPUTS = (("batch", "batch protocol (`write`)"), ("loki", "Loki push (protobuf+snappy)"))


@dataclass
class PushRun:
    mode: str  # batch or loki
    events: int
    bytes: int  # corpus bytes (lines + newlines), the same for both modes
    requests: int
    secs: float  # the load generator's clock: first request to last answer
    node_cpu_secs: float  # utime + stime of the node over the send

    def events_per_s(self) -> float:
        return self.events / self.secs if self.secs else 0.0

    def cpu_per_gb(self) -> float:
        return self.node_cpu_secs / (self.bytes / 1e9) if self.bytes else 0.0


@dataclass
class LokiPushReport(Report):
    date: str
    commit: str
    mb: int
    reps: int
    connections: int
    corpus: Corpus | None = None
    runs: list[PushRun] = field(default_factory=list)  # the best (fastest) run of each mode


def push_load(ctx: Ctx) -> str:
    """The load generator (crates/sluice-push/examples/push_load.rs), built unless --no-build."""
    binary = Path(ctx.sluice).parent / "examples" / "push_load"
    if not ctx.args.no_build and subprocess.run(
            ["cargo", "build", "--release", "--locked", "-q", "-p", "sluice-push", "--example", "push_load"],
            cwd=ROOT).returncode != 0:
        raise BenchError("cargo build --example push_load failed")
    if not os.access(binary, os.X_OK):
        raise BenchError(f"no load generator at {binary}")
    return str(binary)


def measure_push(ctx: Ctx, load: str, mode: str, corpus: Corpus, rep: int) -> PushRun:
    with running_node(ctx, f"push-{mode}-{rep}") as node:
        addr = node.api if mode == "loki" else node.batch
        before = cpu_ticks(node.proc.pid)
        out = run_cmd([load, mode, addr, corpus.path, str(PUSH_BATCH), str(ctx.args.push_connections)],
                      timeout=QUERY_TIMEOUT, capture=True)
        after = cpu_ticks(node.proc.pid)
        if before is None or after is None:
            raise BenchError(f"could not read /proc/{node.proc.pid}/stat")
        result = json.loads(out)
        wait_until(f"{corpus.lines} {mode} lines queryable", 120 + ctx.args.mb, 0.5,
                   lambda: True if node.matched_all("1h") == corpus.lines else None)
    run = PushRun(mode, int(result["events"]), corpus.bytes, int(result["requests"]), float(result["secs"]),
                  (after - before) / os.sysconf("SC_CLK_TCK"))
    log(f"{mode}: {run.events} lines in {run.secs:.3f}s ({run.events_per_s():.0f}/s), node CPU "
        f"{run.node_cpu_secs:.2f}s ({run.cpu_per_gb():.2f} s/GB)")
    return run


def cmd_loki_push(ctx: Ctx) -> LokiPushReport:
    """Loki push against sluice's batch protocol, the same lines (section `bench/bench.py loki-push`).

    The run's 200-byte corpus (MB MiB) is sent to a fresh `sluice ingeststore` twice: as Loki pushes
    (protobuf in a snappy block, PUSH_BATCH = 1,000 lines each, one stream, as Alloy sends them) to
    `POST /loki/api/v1/push`, and as batches of the same 1,000 lines over the batch protocol with the
    `write` guarantee (what a push's 204 means), both by `crates/sluice-push/examples/push_load.rs`
    over PUSH_CONNECTIONS connections that each wait for every answer, with requests encoded before
    the clock starts. Each run waits until every line is queryable. Reported: events/s (the load
    generator's clock, best of REPS) and the node's CPU per GB of lines over the send.
    Target: Loki push at least 0.7x the batch protocol's events/s.
    """
    args = ctx.args
    need_free(args.mb * 4)
    load = push_load(ctx)
    r = LokiPushReport(ctx.run_id, machine_info(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       commit_id(), args.mb, ctx.reps(3), args.push_connections)
    r.corpus = c = gen_corpus(ctx, FWD_SIZE)
    for mode, _ in PUSH_INPUTS:
        runs = [measure_push(ctx, load, mode, c, rep) for rep in range(r.reps)]
        r.runs.append(min(runs, key=lambda run: run.secs))
    return r


def render_loki_push(r: LokiPushReport) -> str:
    m, c = r.machine, r.corpus
    if c is None or len(r.runs) != len(PUSH_INPUTS):
        raise BenchError("a loki-push report holds its corpus and one run per input")
    base = r.runs[0]
    rows = []
    for run, (_, label) in zip(r.runs, PUSH_INPUTS):
        speed = run.events_per_s() / base.events_per_s() if base.events_per_s() else 0.0
        target = "" if run is base else (f"≥ {PUSH_TARGET}x: " + ("met" if speed >= PUSH_TARGET else "**missed**"))
        rows.append([label, str(run.events), str(run.requests), f"{run.secs:.2f}", f"{run.events_per_s():,.0f}",
                     mibs(run.bytes, run.secs), f"{run.cpu_per_gb():.2f}", f"{speed:.2f}", target])
    out = ["## Loki push against the batch protocol (bench/bench.py loki-push)", "",
           f"Run {r.run_id} on {r.date}, commit {r.commit}: {m.cores} cores ({m.cpu}), {m.gib}.",
           f"Command: `python3 bench/bench.py loki-push` (SLUICE_BENCH_MB={r.mb}, SLUICE_BENCH_REPS={r.reps}, "
           f"SLUICE_BENCH_PUSH_CONNECTIONS={r.connections}).",
           f"Corpus: `sluice testsvc --size {c.size} --rate 0 --count {c.lines} --seed {SEED}`, {c.lines} lines, "
           f"{mib(c.bytes)} MiB, sent in requests of {PUSH_BATCH:,} lines over {r.connections} connections by "
           "`crates/sluice-push/examples/push_load.rs` (requests encoded before the clock starts; each "
           "connection waits for every answer). Best of the runs; node CPU is its utime + stime over the send.", ""]
    out += table(["input", "lines", "requests", "s", "lines/s", "MiB/s", "node CPU s/GB", "vs batch protocol",
                  "target"], "-::::::::", rows)
    return "\n".join(out) + "\n"
