"""`bench.py histogram`: GET /histogram against a full count, on the store corpus; and its section."""
from __future__ import annotations

import json
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from .common import QUERY_TIMEOUT, BenchError, Ctx, log, wait_until
from .formatting import mib, ratio, table
from .machine import commit_id, machine_info
from .nodes import Node, count_lines, is_block_file, running_node, ulid_ms
from .procs import Proc, best_of, need_free
from .results import Report
from .store import gen_store_corpus


# ====================================================== histogram: work --

HISTOGRAM_TARGET = 10.0  # the full count over the histogram (empty query), at least


@dataclass
class HistogramQuery:
    label: str
    pattern: str  # "" for every record
    histogram_secs: float  # GET /histogram, best of reps
    count_secs: float  # `sluice query -q PATTERN --stats` over the same range, best of reps
    histogram_total: int
    count_matched: int
    buckets: int

    @property
    def ok(self) -> bool:
        return self.histogram_total == self.count_matched


@dataclass
class HistogramReport(Report):
    date: str
    commit: str
    store_mb: int
    reps: int
    corpus_bytes: int = 0
    corpus_lines: int = 0
    queries: list[HistogramQuery] = field(default_factory=list)

    def errors(self) -> list[str]:
        return [f"histogram {q.label}: buckets sum to {q.histogram_total}, the full count matched {q.count_matched}"
                for q in self.queries if not q.ok]


def histogram_query(ctx: Ctx, node: Node, label: str, pattern: str, first_ms: int, last_ms: int,
                    buckets: int = 60) -> HistogramQuery:
    """GET /histogram against `sluice query --stats` (a full count) over [first_ms, last_ms]."""
    url = f"/histogram?from={first_ms}&to={last_ms}&buckets={buckets}&q={urllib.parse.quote(pattern)}"
    answers: list[dict[str, Any]] = []

    def histogram() -> None:
        body = node.http(url, timeout=QUERY_TIMEOUT)
        if body is None:
            raise BenchError(f"GET {url} on {node.api} failed")
        answers.append(json.loads(body))

    times = []
    for _ in range(ctx.reps(3)):
        t0 = time.monotonic()
        histogram()
        times.append(time.monotonic() - t0)
    total = sum(int(b["count"]) for b in answers[-1]["buckets"])
    args = ["--from", str(first_ms), "--to", str(last_ms), "-q", pattern]
    count_secs = best_of(ctx.reps(3), node.query([*args, "--stats"]))
    matched = int(node.stats(args)["records_matched"])
    q = HistogramQuery(label, pattern, min(times), count_secs, total, matched, len(answers[-1]["buckets"]))
    log(f"histogram {label}: {q.histogram_secs:.3f}s, full count {q.count_secs:.3f}s "
        f"({ratio(q.count_secs, q.histogram_secs)}x); {total} / {matched} records" + ("" if q.ok else " MISMATCH"))
    return q


def cmd_histogram(ctx: Ctx) -> HistogramReport:
    """A histogram against a full count, on the store corpus (section `bench/bench.py histogram`).

    The testsvc corpus of `store` (STORE_MB, 16 MiB testsvc runs with distinct seeds) sent with
    `nc -N` into a fresh node; once every segment is a block file and every block sorted, over the
    corpus's whole time range: `GET /histogram?buckets=60` with an empty query (counted from block
    metadata, no decompression) and with `ERROR`, each against the same count by a full query
    (`sluice query -q PATTERN --stats`), best of REPS (default 3). The buckets must sum to the full
    count. Target: the empty-query histogram at least 10x faster than the full count.
    """
    need_free(ctx.args.store_mb * 3)
    r = HistogramReport(ctx.run_id, machine_info(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                        commit_id(), ctx.args.store_mb, ctx.reps(3))
    path = gen_store_corpus(ctx, "testsvc")
    r.corpus_bytes, r.corpus_lines = path.stat().st_size, count_lines(path)
    with running_node(ctx, "histogram") as node:
        host, port = node.fast.rsplit(":", 1)
        with open(path, "rb") as src:
            if Proc("nc", ["nc", "-N", host, port], stdin=src).wait(1800, "nc to send the corpus") != 0:
                raise BenchError("nc failed sending the corpus")
        seen = [0]

        def settled() -> bool | None:
            node.check_alive()
            segs = node.segments()
            if not segs or not all(is_block_file(s) for s in segs) or node.metric("sluice_store_unsorted_blocks"):
                return None
            seen[0] = node.matched_all("24h")
            return True if seen[0] == r.corpus_lines else None

        wait_until(lambda: f"{r.corpus_lines} records compacted and sorted ({seen[0]} queryable)", 1800, 0.5,
                   settled)
        names = [s.name for s in node.segments()]
        first_ms, last_ms = min(ulid_ms(n[:26]) for n in names), max(ulid_ms(n[27:53]) for n in names) + 1
        r.queries = [histogram_query(ctx, node, "every record", "", first_ms, last_ms),
                     histogram_query(ctx, node, "`ERROR`", "ERROR", first_ms, last_ms)]
    return r


def render_histogram(r: HistogramReport) -> str:
    m = r.machine
    rows = [[q.label, str(q.buckets), f"{q.histogram_secs:.3f}", f"{q.count_secs:.3f}",
             ratio(q.count_secs, q.histogram_secs), f"{q.histogram_total} / {q.count_matched}"
             + ("" if q.ok else " **MISMATCH**"),
             (f"≥ {HISTOGRAM_TARGET:.0f}: " + ("met" if q.count_secs >= HISTOGRAM_TARGET * q.histogram_secs
                                               else "**missed**")) if q.pattern == "" else ""]
            for q in r.queries]
    out = ["## Histogram against a full count (bench/bench.py histogram)", "",
           f"Run {r.run_id} on {r.date}, commit {r.commit}: {m.cores} cores ({m.cpu}), {m.gib}.",
           f"Command: `python3 bench/bench.py histogram` (SLUICE_BENCH_STORE_MB={r.store_mb}, best of {r.reps}).",
           f"Corpus: the `store` testsvc corpus, {r.corpus_lines} lines, {mib(r.corpus_bytes)} MiB, compacted and "
           "sorted; both over its whole time range.", ""]
    out += table(["query", "buckets", "histogram s", "full count s", "speed-up", "records (buckets / count)",
                  "target"], "-::::--", rows)
    return "\n".join(out) + "\n"
