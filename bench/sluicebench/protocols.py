"""`bench.py protocols`: fluent forward and octet-counted syslog on one connection; and its section."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import BenchError, Ctx, log
from .formatting import mib, mibs, per_s, ratio, table
from .machine import machine_info
from .nodes import running_node
from .procs import Proc
from .results import Report


# ============================================================= protocols --

INPUTS = (("lines", "fast"), ("fluent", "fluent"), ("syslog-lf", "fast"), ("syslog", "syslog"))  # input, port


@dataclass
class ProtocolRun:
    input: str  # the testsvc --format
    port: str  # fast, fluent or syslog
    secs: float
    input_bytes: int
    peak_rss_kib: int | None


@dataclass
class ProtocolsReport(Report):
    events: int
    size: int
    reps: int
    runs: list[ProtocolRun] = field(default_factory=list)

    def best(self, name: str) -> ProtocolRun:
        return min((r for r in self.runs if r.input == name), key=lambda r: r.secs)


def measure_protocol(ctx: Ctx, name: str, port_name: str, inp: Path) -> ProtocolRun:
    """One nc -N connection into a fresh node, timed until every event is queryable (polled every 50 ms)."""
    events, deadline = ctx.args.events, 120 + ctx.args.events / 10000
    os.sync()
    with running_node(ctx, name, protocols=True) as node:
        port = {"fast": node.fast, "fluent": node.fluent, "syslog": node.syslog}[port_name].rsplit(":", 1)[1]
        t0, matched = time.monotonic(), 0
        with open(inp, "rb") as src:
            sender = Proc("nc", ["nc", "-N", "127.0.0.1", port], stdin=src)
        while matched < events:
            if time.monotonic() >= t0 + deadline:
                raise BenchError(f"{name}: {matched} of {events} events queryable after {deadline:g}s")
            time.sleep(0.05)
            node.check_alive()
            matched = node.matched_all("1h", timeout=60)
        secs = time.monotonic() - t0
        if matched != events:
            raise BenchError(f"{name}: {matched} events queryable, {events} sent")
        run = ProtocolRun(name, port_name, secs, inp.stat().st_size, node.peak_rss_kib())
        sender.stop()
    log(f"{name}: {events} events in {secs:.3f}s = {per_s(events, secs)} events/s, "
        f"{mibs(run.input_bytes, secs)} MiB/s of input, peak RSS {run.peak_rss_kib} KiB")
    return run


def cmd_protocols(ctx: Ctx) -> ProtocolsReport:
    """Fluent forward and octet-counted syslog on one connection (section `bench/bench.py protocols`).

    `sluice testsvc --format lines|fluent|syslog-lf|syslog --seed 7` prepares EVENTS events of SIZE
    bytes (fluent: forward-mode frames of 1000 events with a chunk, which the node acks). Each input
    goes over one `nc -N` connection into a fresh node (lines and syslog-lf to the fast port, fluent
    and syslog to their own), timed until every event is queryable; best of REPS (default 2).
    Reports events/s, fluent/lines and syslog/syslog-lf.
    """
    r = ProtocolsReport(ctx.run_id, machine_info(), ctx.args.events, ctx.args.size, ctx.reps(2))
    inputs = {name: ctx.out / f"input-{name}" for name, _ in INPUTS}
    for name, path in inputs.items():
        ctx.scratch.append(path)
        with open(path, "wb") as f:
            gen = Proc("testsvc", [ctx.sluice, "testsvc", "--rate", "0", "--count", str(r.events), "--size",
                                   str(r.size), "--seed", "7", "--format", name], stdout=f)
        if gen.wait(600, f"sluice testsvc --format {name}") != 0:
            raise BenchError(f"sluice testsvc --format {name} failed (rc {gen.rc})")
        log(f"input {name}: {mib(path.stat().st_size)} MiB")
    r.runs = [measure_protocol(ctx, name, port, inputs[name]) for _ in range(r.reps) for name, port in INPUTS]
    return r


def render_protocols(r: ProtocolsReport) -> str:
    m, rows, eps = r.machine, [], {}
    for name, port in INPUTS:
        best, last = r.best(name), [x for x in r.runs if x.input == name][-1]
        eps[name] = round(r.events / best.secs)
        rows.append([name, port, str(eps[name]), mibs(best.input_bytes, best.secs),
                     "n/a" if last.peak_rss_kib is None else f"{last.peak_rss_kib / 1024:.0f}"])
    out = ["## Protocols: fluent forward and syslog on one connection (bench/bench.py protocols)", "",
           f"Run {r.run_id}: {r.events} events of ~{r.size} bytes per run, best of {r.reps}, one `nc -N` connection,",
           "timed from the start of the send until every event is queryable.", f"Machine: {m.cores} cores, {m.cpu},",
           f"{m.gib} RAM; sender, node and poller share it.", "Command: `python3 bench/bench.py protocols`.", ""]
    out += table(["input", "port", "events/s", "MiB/s of input", "peak RSS (MiB)"], "--:::", rows)
    out += ["", f"- fluent forward mode: **{eps['fluent']} events/s** (target 300,000), "
            f"{ratio(eps['fluent'], eps['lines'])}× plain lines of the same messages.",
            f"- octet-counted syslog: **{ratio(eps['syslog'], eps['syslog-lf'])}×** the plain-lines rate of the "
            "same messages (target 0.8).", ""]
    return "\n".join(out) + "\n"
