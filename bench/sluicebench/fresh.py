"""`bench.py fresh`: fresh data under sustained ingest, against rg; and its section."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from subprocess import PIPE

from .common import BenchError, Ctx, log
from .compaction import segment_bytes
from .formatting import mib, ratio, secs3, table
from .machine import machine_info
from .nodes import count_lines, running_node
from .procs import Proc, best_of, rg_count
from .results import Report
from .store import reread


# ================================================================= fresh --


@dataclass
class FreshQuery:
    label: str
    sluice: float
    rg: float
    sluice_matches: int
    rg_matches: int
    bytes_read: int

    @property
    def ok(self) -> bool:
        return self.sluice_matches == self.rg_matches


@dataclass
class FreshReport(Report):
    rate_mb: int
    seconds: int
    window_secs: int
    reps: int
    window_lines: int = 0
    window_bytes: int = 0
    window_lines_later: int = 0
    batch_bytes: int = 0
    block_bytes: int = 0
    queries: list[FreshQuery] = field(default_factory=list)

    def errors(self) -> list[str]:
        return [f"fresh {q.label}: sluice matched {q.sluice_matches} records, rg -c counted {q.rg_matches}"
                for q in self.queries if not q.ok]


FRESH_QUERIES = [("literal `ERROR`", ["-q", "ERROR"], ["-F", "--", "ERROR"]),
                 ("regex `status=5[0-9]{2}`", ["--regex", "-q", "status=5[0-9]{2}"], ["-e", "status=5[0-9]{2}"]),
                 ("`-i QUOTA`", ["-i", "-q", "QUOTA"], ["-F", "-i", "--", "QUOTA"])]


def cmd_fresh(ctx: Ctx) -> FreshReport:
    """Fresh data under sustained ingest, against rg (section `bench/bench.py fresh`).

    `sluice testsvc --rate L --size 200 | nc -N` at RATE_MB MB/s for SECONDS into a fresh node. Half way,
    the window is the WINDOW_SECS of data that ended 1 s before: its lines are dumped (`-q ""`) to a file,
    then, while the send goes on, each query is timed on sluice (best of REPS, over that window) and rg
    (best of REPS, on the dumped file), alternating, so both share the machine with the ingest. Match
    counts are checked against `rg -c`, and the window is dumped again after the send (more lines then:
    the window was not yet whole when asked).
    """
    lps = ctx.args.rate_mb * 1000000 // 200
    count = lps * ctx.args.seconds
    r = FreshReport(ctx.run_id, machine_info(), ctx.args.rate_mb, ctx.args.seconds, ctx.args.window_secs,
                    ctx.reps(3))
    window = ctx.out / "fresh-window"
    ctx.scratch.append(window)
    with running_node(ctx, "fresh") as node:
        log(f"sending {count} lines at {r.rate_mb} MB/s for {r.seconds}s")
        start = time.monotonic()
        gen = Proc("testsvc", [ctx.sluice, "testsvc", "--rate", str(lps), "--size", "200", "--count", str(count)],
                   stdout=PIPE)
        send = Proc("nc", ["nc", "-N", *node.fast.rsplit(":", 1)], stdin=gen.popen.stdout)
        gen.popen.stdout.close()  # type: ignore[union-attr]
        settle = max(r.seconds / 2, r.window_secs + 2)
        while time.monotonic() - start < settle:
            time.sleep(0.2)
            node.check_alive()
        if not send.alive:
            raise BenchError("the send ended before the window was queried: raise --seconds")
        to_ms = time.time_ns() // 1000000 - 1000
        frm, to = str(to_ms - r.window_secs * 1000), str(to_ms)
        r.batch_bytes, r.block_bytes = segment_bytes(node)
        with open(window, "wb") as out:
            if Proc("dump", node.query(["--from", frm, "--to", to, "-q", ""]), stdout=out).wait(600, "dump") != 0:
                raise BenchError("dumping the window failed")
        reread([window])
        r.window_bytes, r.window_lines = window.stat().st_size, count_lines(window)
        for label, sl_args, rg_args in FRESH_QUERIES:
            sl_argv, rg_argv = node.query(["--from", frm, "--to", to, *sl_args]), ["rg", *rg_args, str(window)]
            s_best = r_best = float("inf")
            for _ in range(r.reps):
                s_best, r_best = min(s_best, best_of(1, sl_argv)), min(r_best, best_of(1, rg_argv, maxrc=1))
            if not send.alive:
                log("WARNING: the send ended while the queries ran; raise --seconds")
            stats = node.stats(["--from", frm, "--to", to, *sl_args])
            q = FreshQuery(label, s_best, r_best, int(stats["records_matched"]), rg_count(rg_args, window),
                           int(stats["bytes_read"]))
            log(f"fresh {label}: sluice {q.sluice:.3f}s, rg {q.rg:.3f}s; {q.sluice_matches} / {q.rg_matches} matches")
            r.queries.append(q)
        if send.wait(r.seconds * 10 + 120, "the send") != 0 or gen.wait(5, "testsvc") != 0:
            raise BenchError(f"the send failed (testsvc rc {gen.rc}, nc rc {send.rc})")
        r.window_lines_later = int(node.stats(["--from", frm, "--to", to, "-q", ""])["records_matched"])
    return r


def render_fresh(r: FreshReport) -> str:
    m = r.machine
    out = ["## Fresh data under sustained ingest, against ripgrep (bench/bench.py fresh)", "",
           f"Run {r.run_id} on {m.cores} cores ({m.cpu}), {m.gib}.",
           f"Command: `python3 bench/bench.py fresh` (SLUICE_BENCH_RATE_MB={r.rate_mb}, SLUICE_BENCH_SECONDS={r.seconds}, "
           f"SLUICE_BENCH_WINDOW_SECS={r.window_secs}, best of {r.reps}).",
           f"testsvc lines at {r.rate_mb} MB/s into a fresh ingeststore (sender and node on the same cores). Half way, "
           f"the {r.window_secs} s of data that ended 1 s earlier, {mib(r.window_bytes)} MiB in {r.window_lines} lines, "
           "is queried while the send goes on; rg searches the same lines, dumped to a file (warm), alternating with "
           "sluice so both share the machine with the ingest. Target: sluice/rg ≥ 0.8.",
           f"- When the window was asked, the store held {mib(r.batch_bytes)} MiB in batch files (not yet compacted) "
           f"and {mib(r.block_bytes)} MiB in block files.",
           f"- The window held {r.window_lines} lines when asked and {r.window_lines_later} after the send "
           + ("(whole when asked)." if r.window_lines_later == r.window_lines else "(**not whole when asked**)."), ""]
    out += table(["query", "sluice (s)", "rg (s)", "sluice/rg", "target", "bytes read", "matches sluice / rg"],
                 "-:::-:-",
                 [[q.label, secs3(q.sluice), secs3(q.rg), ratio(q.rg, q.sluice),
                   "≥ 0.8: " + ("met" if q.rg / q.sluice >= 0.8 else "**missed**"),
                   f"{mib(q.bytes_read)} MiB", f"{q.sluice_matches} / {q.rg_matches}" + ("" if q.ok else " **MISMATCH**")]
                  for q in r.queries])
    return "\n".join(out) + "\n"
