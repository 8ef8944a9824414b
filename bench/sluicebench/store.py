"""`bench.py store`: the store engine against rg, warm and cold, on three corpora; and its section."""
from __future__ import annotations

import os
import re
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from .common import MIB, BenchError, Ctx, log, wait_until
from .formatting import mib, mibs, ratio, rss, secs3, table
from .machine import machine_info
from .nodes import Node, count_lines, is_block_file, running_node, start_node, ulid_ms
from .procs import WARM_UP_SECS, Proc, best_of, need_free, rg_count, run_cmd, timed_run, warm_up
from .results import Report


# ================================================================= store --


@dataclass
class StoreQuery:
    kind: str  # a key of STORE_TARGETS
    label: str
    sluice_warm: float
    rg_warm: float | None
    sluice_cold: float | None
    rg_cold: float | None
    bytes_read: int
    full_scan_bytes: int
    sluice_matches: int
    rg_matches: int | None

    @property
    def ok(self) -> bool:
        return self.rg_matches in (None, self.sluice_matches)

    @property
    def target(self) -> str:
        """The issue's warm target for this kind of query, and whether it is met."""
        want, max_read = STORE_TARGETS[self.kind]
        if want is None or self.rg_warm is None:
            return "n/a"
        met = self.rg_warm / self.sluice_warm >= want and (max_read is None or self.bytes_read <= max_read * self.full_scan_bytes)
        return f"≥ {want:g}×" + (f", ≤ {max_read:g} read" if max_read else "") + (": met" if met else ": **missed**")


@dataclass
class StoreCorpus:
    name: str
    bytes: int
    lines: int
    sent_secs: float
    queryable_secs: float
    compacted_secs: float
    sorted_secs: float
    disk_bytes: int
    rss_compact_kib: int | None
    queries: list[StoreQuery] = field(default_factory=list)
    rss_query_kib: int | None = None


@dataclass
class StoreReport(Report):
    store_mb: int
    nginx_mb: int
    reps: int
    can_drop: bool
    corpora: list[StoreCorpus] = field(default_factory=list)
    realistic_mb: int = 0

    def errors(self) -> list[str]:
        return [f"store {c.name} {q.kind}: sluice matched {q.sluice_matches} records, rg -c counted {q.rg_matches}"
                for c in self.corpora for q in c.queries if not q.ok]


# kind of query: (warm sluice/rg target, most bytes read as a share of a full scan), from issue 22
STORE_TARGETS: dict[str, tuple[float | None, float | None]] = {
    "rare": (10.0, None), "aligned": (1.5, None), "spread": (1.0, None), "icase": (0.7, None),
    "prefix regex": (1.0, None), "short regex": (1.0, 0.1), "recent": (None, None)}
# corpus: seed of its first run, and its queries as (kind, pattern, how: "" literal, "-i" or "regex").
# "{rare}" and "{spread}" are picked from the corpus at run time (pick_rare, pick_spread_user).
STORE_CORPORA: dict[str, tuple[int, list[tuple[str, str, str]]]] = {
    "testsvc": (7000000, [("rare", "{rare}", ""), ("aligned", "ERROR", ""), ("spread", "quota", ""),
                          ("icase", "QUOTA", "-i"), ("prefix regex", "rows=18[0-9] ", "regex"),
                          ("short regex", "status=5[0-9]{2}", "regex")]),
    "realistic": (9000000, [("rare", "{rare}", ""), ("aligned", "ERROR", ""), ("spread", "{spread}", ""),
                            ("icase", "DEADLINE EXCEEDED", "-i"),
                            ("prefix regex", "deadline exceeded after 4[0-9]{3}ms", "regex"),
                            ("short regex", '" 4[0-9]{2} [0-9]+', "regex")]),
    "nginx": (8000000, [("rare", "{rare}", ""), ("aligned", '" 503 ', ""), ("spread", "draining", ""),
                        ("icase", "DRAINING", "-i"), ("prefix regex", "/api/v1/users/20[0-9]{5}/orders", "regex"),
                        ("short regex", '" 5[0-9]{2} [0-9]+', "regex")]),
}
NGINX_LINE = re.compile(rb"^[0-9]{1,3}(\.[0-9]{1,3}){3} - ")
RARE_ID = {"testsvc": rb"[0-9a-f]{32}", "nginx": rb"[0-9a-f]{32}", "realistic": rb"request_id=[0-9a-f]{16}"}


def store_corpus_mb(ctx: Ctx, name: str) -> int:
    return int(getattr(ctx.args, {"testsvc": "store_mb", "nginx": "nginx_mb", "realistic": "realistic_mb"}[name]))


def gen_store_corpus(ctx: Ctx, name: str) -> Path:
    """~200-byte lines as 16 MiB testsvc runs with distinct seeds (one long run repeats a 16 MiB pool,
    which would put every id on 128 lines per 2 GiB); nginx keeps only the combined-format access lines;
    realistic is one run of `testsvc --corpus realistic` (no pool: its ids recur on purpose, 2-8 lines)."""
    path = ctx.out / f"corpus-{name}"
    ctx.scratch.append(path)
    want = store_corpus_mb(ctx, name) * MIB // (190 if name == "nginx" else 201)
    seed, left = STORE_CORPORA[name][0], want * 5 if name == "nginx" else want
    with open(path, "wb") as f:
        if name == "realistic" and want > 0:
            gen = Proc("testsvc", [ctx.sluice, "testsvc", "--corpus", "realistic", "--rate", "0", "--count",
                                   str(want * 201 // 170), "--seed", str(seed)], stdout=f)
            if gen.wait(1800, "testsvc --corpus realistic") != 0:
                raise BenchError("testsvc --corpus realistic failed")
            left = want = 0
        while left > 0 and want > 0:
            n = min(left, 80000)
            data = run_cmd([ctx.sluice, "testsvc", "--rate", "0", "--size", "200", "--count", str(n), "--seed",
                            str(seed)], 600, capture=True)
            lines = data.splitlines(keepends=True)
            if name == "nginx":
                lines = [line for line in lines if NGINX_LINE.match(line)][:want]
            f.writelines(lines)
            left, seed, want = left - n, seed + 1, want - len(lines)
    if path.stat().st_size == 0:
        raise BenchError(f"no lines for corpus {name} in testsvc output")
    return path


def pick_rare(name: str, path: Path, lines: int) -> tuple[str, int]:
    """The rarest (by rg -c) of 20 ids: every 997th from the second half of the corpus."""
    hexid, candidates, seen = re.compile(RARE_ID[name]), [], 0
    with open(path, "rb") as f:
        for i, line in enumerate(f, 1):
            for found in hexid.finditer(line) if i >= lines // 2 else ():
                if seen % 997 == 0:
                    candidates.append(found.group().decode())
                seen += 1
            if len(candidates) >= 20:
                break
    if not candidates:
        raise BenchError(f"no id like {RARE_ID[name]!r} in the second half of {path}")
    count, _, rare = min((rg_count(["-F", "--", c], path), i, c) for i, c in enumerate(candidates[:20]))
    return rare, count


def pick_spread_user(path: Path, lines: int) -> str:
    """A word on about 1% of lines that no sort key follows: the user id (of the Zipf-skewed users, as
    the number alone, which access, plain and JSON lines all write) whose share of the first 200,000
    lines is nearest 1%."""
    counts: dict[bytes, int] = {}
    user, sample = re.compile(rb"user_id=([0-9]+)"), 0
    with open(path, "rb") as f:
        for sample, line in enumerate(f, 1):
            if (found := user.search(line)) is not None:
                counts[found.group(1)] = counts.get(found.group(1), 0) + 1
            if sample >= 200000:
                break
    if not counts:
        raise BenchError(f"no user_id in {path}")
    plain_share = sum(counts.values()) / max(sample, 1)  # user_id= is on part of the lines only
    best = min(counts, key=lambda u: abs(counts[u] / max(sample, 1) / plain_share - 0.01))
    return best.decode()


def reread(paths: list[Path]) -> None:
    """Drop the page cache's copy of each file and read it back, so its pages are as a read leaves them
    (readahead's large folios), not as writing left them: a file just written is searched by mmap about
    half as fast (rg 0.125 s against 0.062 s on the same 1 GB)."""
    os.sync()
    for path in paths:
        with suppress(FileNotFoundError), open(path, "rb") as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            while f.read(1 << 24):
                pass


def drop_caches() -> bool:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def store_query(ctx: Ctx, node: Node, path: Path, kind: str, label: str, sl_args: list[str],
                rg_args: list[str] | None) -> StoreQuery:
    """Warm: each tool's best of REPS timed runs, taken in turns (sluice's, rg's, sluice's, rg's...), so
    that a slow spell of this kind of VM (a second or more, when a 2 ms query takes 4) falls on both
    tools. A turn is WARM_UP_SECS of untimed runs of the tool's command, then one timed run: rg's 1 GB
    scan empties the CPU's caches (nginx's rare id's query took a median of 2.7 ms right after an rg
    run, against 1.8 to 2.1 after its own runs), so each timed run finds the caches as its own tool's
    runs leave them. The segments and the corpus are read back from disk first (see reread)."""
    sl_argv = node.query(sl_args)
    rg_argv = None if rg_args is None else ["rg", *rg_args, str(path)]
    reread(node.segments())
    if rg_argv is not None:
        reread([path])
    s_times: list[float] = []
    r_times: list[float] = []
    for _ in range(ctx.reps(3)):
        for argv, times, maxrc in ((sl_argv, s_times, 0), (rg_argv, r_times, 1)):
            if argv is not None:
                warm_up(argv, maxrc=maxrc)
                times.append(timed_run(argv, maxrc=maxrc))
    s_warm, r_warm = min(s_times), min(r_times, default=None)
    stats = node.stats(sl_args)
    n_r = None if rg_args is None else rg_count(rg_args, path)
    full = node.stats(["--from", "24h", "-q", ""])
    q = StoreQuery(kind, label, s_warm, r_warm, None, None, int(stats["bytes_read"]), int(full["bytes_read"]),
                   int(stats["records_matched"]), n_r)
    log(f"{node.name} {kind}: sluice {secs3(s_warm)} s warm, rg {secs3(r_warm)} s warm; "
        f"{q.sluice_matches} / {'n/a' if n_r is None else n_r} matches" + ("" if q.ok else " MISMATCH"))
    return q


def restart_node(ctx: Ctx, node: Node) -> Node:
    """The node stopped and started again on its data dir (new ports): nothing of it is in memory."""
    node.proc.stop()
    for _ in range(5):
        if again := start_node(ctx, node.name, node.data, node.log, False):
            return again
    raise BenchError(f"could not restart ingeststore {node.name}; see {node.log}")


def cold_runs(ctx: Ctx, node: Node, path: Path, queries: list[tuple[StoreQuery, list[str], list[str] | None]]) -> None:
    """One cold run of each query: the node restarted (its caches empty) and the page cache dropped
    before sluice's run, the page cache dropped before rg's."""
    current = node
    try:
        for q, sl_args, rg_args in queries:
            current = restart_node(ctx, current)
            drop_caches()
            q.sluice_cold = best_of(1, current.query(sl_args))
            if rg_args is not None:
                drop_caches()
                q.rg_cold = best_of(1, ["rg", *rg_args, str(path)], 1)
            log(f"{node.name} {q.kind}: sluice {secs3(q.sluice_cold)} s cold, rg {secs3(q.rg_cold)} s cold")
    finally:
        if current is not node:
            current.proc.stop()


def query_args(pattern: str, how: str) -> tuple[list[str], list[str], str]:
    """(sluice query args, rg args, label) of one pattern."""
    if how == "regex":
        return ["--regex", "-q", pattern], ["-e", pattern], f"regex `{pattern}`"
    if how == "-i":
        return ["-i", "-q", pattern], ["-F", "-i", "--", pattern], f"`-i {pattern}`"
    return ["-q", pattern], ["-F", "--", pattern], f"literal `{pattern}`"


def bench_store_corpus(ctx: Ctx, name: str, path: Path, can_drop: bool) -> StoreCorpus:
    nbytes, lines, seen = path.stat().st_size, count_lines(path), [0]
    log(f"corpus {name}: {mib(nbytes)} MiB, {lines} lines")
    with running_node(ctx, name) as node:

        def queryable() -> bool | None:
            node.check_alive()
            seen[0] = node.matched_all("24h")
            return True if seen[0] == lines else None

        def compacted() -> bool | None:
            node.check_alive()
            return True if (segs := node.segments()) and all(is_block_file(s) for s in segs) else None

        def all_sorted() -> bool | None:
            node.check_alive()
            return True if node.metric("sluice_store_unsorted_blocks") == 0 else None

        host, port = node.fast.rsplit(":", 1)
        t0 = time.monotonic()
        with open(path, "rb") as src:
            if Proc("nc", ["nc", "-N", host, port], stdin=src).wait(1800, f"nc to send corpus {name}") != 0:
                raise BenchError(f"nc failed sending corpus {name}")
        t_sent = time.monotonic()
        wait_until(lambda: f"{lines} records queryable ({seen[0]} were)", 600, 0.2, queryable)
        t_q = time.monotonic()
        wait_until("every segment compacted to a block file", 1800, 0.5, compacted)
        t_c = time.monotonic()
        wait_until("every block sorted", 1800, 0.5, all_sorted)
        t_s = time.monotonic()
        disk = sum(s.stat().st_size for s in node.segments())
        c = StoreCorpus(name, nbytes, lines, t_sent - t0, t_q - t0, t_c - t0, t_s - t0, disk, node.peak_rss_kib())
        log(f"{name}: queryable after {t_q - t0:.3f} s, compacted after {t_c - t0:.3f} s, "
            f"sorted after {t_s - t0:.3f} s, {mib(disk)} MiB on disk")
        names = [s.name for s in node.segments()]  # ULID ranges: FIRST-LAST.seg
        first_ms, last_ms = min(ulid_ms(n[:26]) for n in names), max(ulid_ms(n[27:53]) for n in names)
        runs: list[tuple[StoreQuery, list[str], list[str] | None]] = []
        for kind, pattern, how in [*STORE_CORPORA[name][1], ("recent", "", "")]:
            extra = ""
            if pattern == "{rare}":
                pattern, found = pick_rare(name, path, lines)
                extra = f" ({found} lines)"
            elif pattern == "{spread}":
                pattern = pick_spread_user(path, lines)
                extra = " (a Zipf user's id)"
            sl_args, rg_args, label = query_args(pattern, how)
            sl_args = ["--from", "24h", *sl_args]
            if kind == "recent":
                sl_args, rg_args = ["--from", str(last_ms - (last_ms - first_ms) // 100), "-q", ""], None
                label, extra = "last 1% of the time range, all lines", ""
            runs.append((store_query(ctx, node, path, kind, label + extra, sl_args, rg_args), sl_args, rg_args))
        c.queries = [q for q, _, _ in runs]
        c.rss_query_kib = node.peak_rss_kib()
        if can_drop:
            cold_runs(ctx, node, path, runs)
    return c


def cmd_store(ctx: Ctx) -> StoreReport:
    """The store engine against rg, warm and cold (section `bench/bench.py store`).

    Three corpora, each sent with `nc -N` into a fresh node: testsvc (STORE_MB, 16 MiB testsvc runs with
    distinct seeds, so ids stay rare), realistic (REALISTIC_MB of `testsvc --corpus realistic`) and
    nginx (NGINX_MB of testsvc's access lines). Times to queryable, to every segment compacted to a block
    file and to every block sorted; bytes on disk. Then, with `sluice query` and `rg` on the same lines,
    the kinds of query of issue 22 (a rare id, a literal aligned with level or status, a word on about 1%
    of lines spread evenly, a case-insensitive literal, a regex with a literal prefix, a regex with only
    short literals) and the last 1% of the time range, warm (best of REPS, default 3, in turns: see
    store_query) and cold (page cache dropped before each run; needs root, else skipped). The nginx or
    realistic corpus of 0 MiB is left out.
    """
    if not (can_drop := drop_caches()):
        log("WARNING: cannot drop the page cache (not root?): cold runs are skipped")
    r = StoreReport(ctx.run_id, machine_info(), ctx.args.store_mb, ctx.args.nginx_mb, ctx.reps(3), can_drop,
                    realistic_mb=ctx.args.realistic_mb)
    names = [name for name in STORE_CORPORA if store_corpus_mb(ctx, name) > 0]
    need_free(sum(store_corpus_mb(ctx, name) for name in names) * 2)
    for name in names:  # one corpus at a time on disk
        path = gen_store_corpus(ctx, name)
        r.corpora.append(bench_store_corpus(ctx, name, path, can_drop))
        if not ctx.args.keep:
            path.unlink(missing_ok=True)
    return r


def render_store(r: StoreReport) -> str:
    m = r.machine
    out = ["## Store engine against ripgrep (bench/bench.py store)", "",
           f"Run {r.run_id} on {m.cores} cores ({m.cpu}), {m.gib}.",
           f"Command: `python3 bench/bench.py store` (SLUICE_BENCH_STORE_MB={r.store_mb}, "
           f"SLUICE_BENCH_REALISTIC_MB={r.realistic_mb}, SLUICE_BENCH_NGINX_MB={r.nginx_mb}, best of {r.reps} warm, "
           "in turns).",
           "sluice: `sluice query --api .. --from 24h -q PATTERN [--regex] > /dev/null` against a fresh ingeststore "
           "holding the corpus;",
           'rg: `rg -F PATTERN corpus > /dev/null` (or `-e REGEX`). "sluice/rg" is rg\'s time over sluice\'s '
           "(above 1: sluice faster).",
           f"Warm: the tools take {r.reps} turns each, sluice's then rg's, so that a slow spell of the machine "
           f"falls on both; a turn is {WARM_UP_SECS:g} s of untimed runs of the tool's command, then one timed "
           "run (sluice's block cache then holds what they decoded, rg's file is in the page cache). A tool's "
           "time is its best timed run, from its spawn to its exit.",
           "Cold: the node restarted (its caches empty) and `echo 3 > /proc/sys/vm/drop_caches` before each "
           "single sluice run; the page cache dropped before each single rg run."
           + ("" if r.can_drop else " (Skipped in this run: no permission.)"),
           '"bytes read" is the query\'s `bytes_read` (from `--stats`) against that of a full scan.']
    for c in r.corpora:
        out += ["", f"#### Corpus `{c.name}`: {mib(c.bytes)} MiB, {c.lines} lines", "",
                f"- Queryable {c.queryable_secs:.3f} s after the send began ({mibs(c.bytes, c.queryable_secs)} MiB/s); "
                f"the send itself took {c.sent_secs:.3f} s.",
                f"- Compaction had rewritten every segment as a block file {c.compacted_secs:.3f} s after the send began, "
                f"{c.compacted_secs - c.queryable_secs:.3f} s after the data was queryable: "
                f"{mibs(c.bytes, c.compacted_secs)} MiB/s of corpus end to end.",
                f"- Every block was sorted {c.sorted_secs:.3f} s after the send began, "
                f"{c.sorted_secs - c.compacted_secs:.3f} s after compaction: "
                f"{mibs(c.bytes, c.sorted_secs - c.compacted_secs)} MiB/s sorted. The queries below run on sorted blocks.",
                f"- On disk after compaction: {mib(c.disk_bytes)} MiB, **{ratio(c.disk_bytes, c.bytes)}** of the raw text.",
                f"- Peak RSS of the ingeststore through ingest and compaction: {rss(c.rss_compact_kib)}.", ""]
        out += table(["kind", "query", "sluice warm (s)", "rg warm (s)", "sluice/rg warm", "target (warm)",
                      "sluice cold (s)", "rg cold (s)", "sluice/rg cold", "bytes read", "matches sluice / rg"],
                     "--:::-:::--",
                     [[q.kind, q.label, secs3(q.sluice_warm), secs3(q.rg_warm), ratio(q.rg_warm, q.sluice_warm), q.target,
                       secs3(q.sluice_cold), secs3(q.rg_cold), ratio(q.rg_cold, q.sluice_cold),
                       f"{mib(q.bytes_read)} MiB ({ratio(q.bytes_read, q.full_scan_bytes)} of a full scan)",
                       f"{q.sluice_matches} / {'n/a' if q.rg_matches is None else q.rg_matches}"
                       + ("" if q.ok else " **MISMATCH**")] for q in c.queries])
        out += ["", f"Peak RSS of the ingeststore after the warm queries: {rss(c.rss_query_kib)} "
                "(the block cache, `--block-cache`, holds decoded blocks)."]
    return "\n".join(out) + "\n"
