"""`bench.py run`: corpora, ingest against nc, queries against rg, the forwarder; and its section."""
from __future__ import annotations

import json
import os
import re
import time
from contextlib import suppress
from pathlib import Path

from .common import MIB, BenchError, Ctx, log, tail, wait_until
from .formatting import mib, mibs, per_s, ratio, rss, table
from .machine import commit_id, machine_info
from .nodes import Node, count_lines, running_node
from .procs import Proc, best_of, cpu_ticks, free_ports, need_free, port_listening, proc_field, rg_count
from .results import (FWD_SIZE, SEED, TARGETS, Corpus, ForwardCpuResult, ForwardResult, IngestResult, QueryResult,
                      RunReport)


# ============================================================ run: work --


def gen_corpus(ctx: Ctx, size: int) -> Corpus:
    path = ctx.out / f"corpus-{size}.log"
    ctx.scratch.append(path)
    count = ctx.args.mb * MIB // (size + 1)
    log(f"generating {path}: {count} lines of ~{size} bytes")
    with open(path, "wb") as f:
        gen = Proc("testsvc", [ctx.sluice, "testsvc", "--size", str(size), "--rate", "0", "--count", str(count),
                               "--seed", str(SEED)], stdout=f)
    if gen.wait(600, f"sluice testsvc to write {path}") != 0:
        raise BenchError(f"sluice testsvc failed (rc {gen.rc})")
    if (lines := count_lines(path)) != count:
        raise BenchError(f"testsvc wrote {lines} lines, expected {count}")
    corpus = Corpus(size, str(path), lines, path.stat().st_size, rg_count(["--no-config", "-F", "ERROR"], path))
    log(f"corpus-{size}: {lines} lines, {mib(corpus.bytes)} MiB")
    return corpus


def nc_once(ctx: Ctx, corpus: Corpus) -> float:
    """The transport ceiling: nc -N into nc -d -l writing a file, until the file holds every byte."""
    sink = ctx.out / "nc-sink"
    ctx.scratch.append(sink)
    sink.unlink(missing_ok=True)
    os.sync()
    port = free_ports(1)[0]
    with open(sink, "wb") as out:
        listener = Proc("nc listener", ["nc", "-d", "-l", "127.0.0.1", str(port)], stdout=out)
    wait_until(f"nc listener on port {port}", 10, 0.02, lambda: True if port_listening(port) else None)
    t0 = time.monotonic()
    with open(corpus.path, "rb") as src:
        client = Proc("nc client", ["nc", "-N", "127.0.0.1", str(port)], stdin=src)
    wait_until(f"nc sink to receive {corpus.bytes} bytes", ctx.args.timeout, 0.01,
               lambda: True if sink.stat().st_size >= corpus.bytes else None)
    secs = time.monotonic() - t0
    client.stop()
    listener.stop()
    sink.unlink()
    return secs


def send_until_queryable(ctx: Ctx, node: Node, corpus: Corpus, name: str, argv: list[str],
                         stderr: Path | None = None) -> tuple[Proc, float, float, float]:
    """Start argv reading the corpus on stdin; once it has read all of it (or exited), poll
    `--stats -q ''` every 100 ms until every line is queryable. Fails at once if argv fails.
    Returns (the sender, its start, when it had read everything, when all was queryable)."""
    with open(corpus.path, "rb") as src, open(stderr or os.devnull, "wb") as err:
        t0 = time.monotonic()
        sender = Proc(name, argv, stdin=src, stderr=err)
    t_sent, matched, end = 0.0, 0, t0 + ctx.args.timeout
    while True:
        node.check_alive()
        if not sender.alive and sender.rc != 0:
            raise BenchError(f"{name} exited with status {sender.rc}; last lines of its stderr ({stderr}):\n"
                             + tail(stderr or Path(os.devnull)))
        # The send is over when the sender has exited or read all of its input (nc then waits
        # for the server to close the connection).
        if not t_sent and (not sender.alive or proc_field(sender.pid, "fdinfo/0", "pos") == corpus.bytes):
            t_sent = time.monotonic()
        if t_sent and (matched := node.matched_all("1h")) >= corpus.lines:
            break
        if time.monotonic() >= end:
            pos = proc_field(sender.pid, "fdinfo/0", "pos")
            raise BenchError(f"corpus-{corpus.size} not queryable after {ctx.args.timeout}s: {name} read "
                             f"{'all' if pos is None else pos} of {corpus.bytes} bytes, {matched} of "
                             f"{corpus.lines} records queryable")
        time.sleep(0.1)
    if matched != corpus.lines:
        log(f"WARNING: corpus-{corpus.size}: {matched} records queryable, {corpus.lines} lines sent")
    return sender, t0, t_sent, time.monotonic()


def bench_ingest(ctx: Ctx, node: Node, corpus: Corpus, nc_secs: float) -> IngestResult:
    os.sync()
    host, port = node.fast.rsplit(":", 1)
    sender, t0, t_sent, t1 = send_until_queryable(ctx, node, corpus, "nc sender", ["nc", "-N", host, port])
    try:  # nc -N exits once the server closes the connection; give it a moment
        sender.wait(5, "nc sender")
    except BenchError:
        log("WARNING: the fast port kept the connection open 5s after all data was queryable; stopping nc")
        sender.stop()
    result = IngestResult(corpus.size, corpus.bytes, corpus.lines, nc_secs, t_sent - t0, t1 - t0,
                          node.peak_rss_kib())
    log(f"sluice corpus-{corpus.size}: sent in {t_sent - t0:.3f}s, queryable after {t1 - t0:.3f}s, "
        f"{mibs(corpus.bytes, t1 - t0)} MiB/s, peak RSS {result.peak_rss_kib} KiB")
    return result


def rare_token(corpus: Corpus) -> str:
    """A request id from a third into the corpus (the generator cycles a ~16 MiB pool)."""
    with open(corpus.path, "rb") as f:
        f.seek(corpus.bytes // 3 - 1)
        if found := re.search(rb"req-[0-9a-f]{16}", f.read(4000000)):
            return found.group().decode()
    raise BenchError(f"could not find a request id in {corpus.path}")


def bench_query(ctx: Ctx, node: Node, corpus: Corpus, name: str, mode: str, pattern: str) -> QueryResult:
    sl_args = ["--from", "1h", "-q", pattern] + (["--regex"] if mode == "regex" else [])
    rg_args = ["--no-config"] + ([] if mode == "regex" else ["-F"]) + ["--", pattern]
    log(f"query {name}: {pattern}")
    s_secs = best_of(ctx.reps(3), node.query(sl_args))
    r_secs = best_of(ctx.reps(3), ["rg", *rg_args, corpus.path], maxrc=1)
    stats = node.stats(sl_args)
    q = QueryResult(name, mode, pattern, corpus.bytes, s_secs, r_secs, int(stats["records_matched"]),
                    rg_count(rg_args, corpus.path), stats.get("bytes"))
    log(f"query {name}: sluice {s_secs:.3f}s rg {r_secs:.3f}s, matches sluice={q.sluice_matches} rg={q.rg_matches}"
        + ("" if q.ok else " MISMATCH"))
    return q


def check_acked(errlog: Path, lines: int, what: str) -> None:
    """The --json counts (the last line of stderr) say every line was read and acked."""
    last = tail(errlog, 1)
    with suppress(ValueError):
        counts = json.loads(last)
        if counts.get("read") == lines and counts.get("acked") == lines:
            return
    raise BenchError(f"{what}: expected {lines} lines read and acked; the forwarder's last report: {last}")


def bench_forward(ctx: Ctx, corpus: Corpus, mode: str) -> ForwardResult:
    name = f"fwd-{mode}-{corpus.size}"
    errlog, what = ctx.out / f"{name}.stderr", f"sluice forward ({mode})"
    os.sync()
    with running_node(ctx, name) as node:
        target = [f"tcp://{node.fast}"] if mode == "tcp" else [f"sluice://{node.batch}", "--guarantee", mode, "--json"]
        fwd, t0, t_sent, t1 = send_until_queryable(ctx, node, corpus, what, [ctx.sluice, "forward", *target], errlog)
        if fwd.wait(ctx.args.timeout, f"{what} to exit (all records were queryable)") != 0:
            raise BenchError(f"{what} exited with status {fwd.rc}; see {errlog}")
        if mode != "tcp":
            check_acked(errlog, corpus.lines, what)
    r = ForwardResult(corpus.size, mode, corpus.bytes, corpus.lines, fwd.end - t0, t1 - t0, t_sent - t0, fwd.cpu)
    log(f"forward {mode} corpus-{corpus.size}: input read after {r.sent_secs:.3f}s, exited after "
        f"{r.exited_secs:.3f}s, queryable after {t1 - t0:.3f}s, {mibs(corpus.bytes, t1 - t0)} MiB/s, "
        f"forwarder CPU {fwd.cpu:.2f}s")
    return r


def bench_forward_cpu(ctx: Ctx, c200: Corpus) -> ForwardCpuResult:
    """testsvc --rate into a FIFO read by `sluice forward sluice://BATCH --guarantee write`;
    cores = CPU time / wall time between the first sample after the forwarder had read 1 MiB
    and the last sample before testsvc exited."""
    rate, secs, hz = ctx.args.fwd_rate, ctx.args.fwd_secs, os.sysconf("SC_CLK_TCK")
    nominal = rate * c200.bytes / c200.lines / 1e6
    what = f"sluice forward (write) fed by testsvc --rate {rate}"
    fifo, errlog = ctx.out / "fwd-fifo", ctx.out / "fwd-cpu.stderr"
    ctx.scratch.append(fifo)
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    with running_node(ctx, "fwd-cpu") as node:
        log(f"forwarder CPU: testsvc --size {FWD_SIZE} --rate {rate} --count {rate * secs} "
            f"(nominal {nominal:.1f} MB/s for {secs}s)")
        # Both ends opened here, the reader first without blocking, so neither child blocks or sees EOF early.
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        wfd = os.open(fifo, os.O_WRONLY)
        os.set_blocking(rfd, True)
        with open(errlog, "wb") as err:
            fwd = Proc(what, [ctx.sluice, "forward", f"sluice://{node.batch}", "--guarantee", "write", "--json"],
                       stdin=rfd, stderr=err)
        gen = Proc("testsvc", [ctx.sluice, "testsvc", "--size", str(FWD_SIZE), "--rate", str(rate), "--count",
                               str(rate * secs), "--seed", str(SEED)], stdout=wfd)
        os.close(rfd)
        os.close(wfd)
        first = last = None
        end = time.monotonic() + 2 * secs + 60
        while gen.alive:
            node.check_alive()
            if not fwd.alive and fwd.rc != 0:
                raise BenchError(f"{what} exited with status {fwd.rc}; last lines of {errlog}:\n{tail(errlog)}")
            # (time, forwarder ticks, forwarder rchar, node ticks, testsvc ticks)
            sample = (time.monotonic(), cpu_ticks(fwd.pid), proc_field(fwd.pid, "io", "rchar"),
                      cpu_ticks(node.proc.pid), cpu_ticks(gen.pid))
            if None not in sample and first:
                last = sample
            elif None not in sample and sample[2] >= MIB:  # type: ignore[operator]
                first = sample
            if time.monotonic() >= end:
                raise BenchError(f"{what}: testsvc still running after {2 * secs + 60}s")
            time.sleep(0.05)
        if gen.wait(5, "testsvc") != 0:
            raise BenchError(f"sluice testsvc exited with status {gen.rc} during the forwarder CPU run")
        if fwd.wait(60, f"{what} to exit after its input ended") != 0:
            raise BenchError(f"{what} exited with status {fwd.rc}; see {errlog}")
        check_acked(errlog, rate * secs, what)
    if not first or not last:
        raise BenchError(f"{what}: too few CPU samples (run longer with SLUICE_BENCH_FWD_SECS)")
    w = last[0] - first[0]
    (tf, rf, nf, gf), (tl, rl, nl, gl) = first[1:], last[1:]
    r = ForwardCpuResult(FWD_SIZE, rate, secs, rate * secs, hz, nominal, (rl - rf) / w / 1e6, w, (tl - tf) / hz / w,
                         (nl - nf) / hz / w, (gl - gf) / hz / w, fwd.cpu, fwd.end - first[0])
    log(f"forwarder CPU: input {r.achieved_mbs:.1f} MB/s over {w:.2f}s: forwarder {r.forwarder_cores:.3f} cores, "
        f"ingeststore {r.node_cores:.3f}, testsvc {r.testsvc_cores:.3f}")
    return r


def cmd_run(ctx: Ctx) -> RunReport:
    """Corpora, ingest vs nc, query vs rg, forwarder and batch protocol (section `bench/bench.py run`).

    1. two corpora from `sluice testsvc --rate 0 --seed 1`: ~100- and ~200-byte lines, MB MiB each;
    2. ingest: the transport ceiling, `nc -N` into `nc -d -l > sink` (best of 3); then each corpus
       sent with `nc -N` to a fresh node's fast port, `sluice query --stats -q ''` polled every
       100 ms until records_matched equals the line count (time to queryable); peak RSS (VmHWM);
    3. query: a rare request id, `ERROR` and `ERROR.*timeout|status=5[0-9][0-9]` with `sluice query`
       and with `rg` over the corpus (best of REPS); records_matched must equal `rg -c`;
    4. forwarder: `sluice forward tcp://FAST` and `sluice forward sluice://BATCH --guarantee
       write|fsync --json`, each into a fresh node, per corpus; then the forwarder's CPU at a fixed
       input rate (`sluice testsvc --rate FWD_RATE` into a FIFO, /proc/PID/stat every 50 ms).
    """
    args = ctx.args
    args.timeout = args.timeout or 120 + 2 * args.mb
    need_free(args.mb * 6)
    r = RunReport(ctx.run_id, machine_info(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), commit_id(),
                  args.mb, ctx.reps(3))
    r.corpora = [gen_corpus(ctx, size) for size in (100, FWD_SIZE)]
    nc_best = {c.size: min(nc_once(ctx, c) for _ in range(3)) for c in r.corpora}
    log("nc best: " + ", ".join(f"corpus-{c.size} {mibs(c.bytes, nc_best[c.size])} MiB/s" for c in r.corpora))
    for c in r.corpora:
        with running_node(ctx, f"ingest-{c.size}") as node:
            r.ingest.append(bench_ingest(ctx, node, c, nc_best[c.size]))
            if c is r.corpora[0]:  # the queries, on the node holding the 100-byte corpus
                for name, mode, pattern in (("rare literal", "literal", rare_token(c)), ("ERROR", "literal", "ERROR"),
                                            ("regex", "regex", "ERROR.*timeout|status=5[0-9][0-9]")):
                    r.queries.append(bench_query(ctx, node, c, name, mode, pattern))
                r.rss_after_query_kib = node.peak_rss_kib()
    r.forward = [bench_forward(ctx, c, mode) for c in r.corpora for mode in ("tcp", "write", "fsync")]
    r.forward_cpu = bench_forward_cpu(ctx, r.corpora[1])
    return r


# ========================================================== run: render --

RUN_INGEST = """\
- nc: `nc -d -l 127.0.0.1 PORT > sink` fed by `nc -N 127.0.0.1 PORT < corpus`; time until the sink holds every byte, best of 3.
- sluice: fresh `sluice ingeststore --data DIR --api .. --fast .. --durable ..`, then `nc -N 127.0.0.1 FAST < corpus`,
  polling `sluice query --api .. --from 1h -q '' --stats` every 100 ms (once nc has read all its input) until
  `records_matched` equals the line count. Time is from the start of the send to the first poll that sees every record,
  so it includes that final full-scan stats query. "sent" is when `nc` had read the whole corpus (or exited).
- Peak RSS is `VmHWM` from `/proc/PID/status` of the ingeststore, read right after the data became queryable."""

RUN_QUERY = """\
Against the ingeststore holding the 100-byte corpus, versus ripgrep over the same corpus file (in page cache).
sluice: `sluice query --api .. --from 1h -q PATTERN [--regex] > /dev/null`;
rg: `rg --no-config [-F] -- PATTERN corpus > /dev/null` (literals with `-F`). Wall time, best of {reps}.
MiB/s is corpus MiB divided by wall time for both tools; "sluice/rg" is the throughput ratio (above 1: sluice faster).
Match counts: `records_matched` of `--stats` versus `rg -c`."""

RUN_FORWARD = """\
Each run starts a fresh ingeststore (as in Ingest, plus `--batch 127.0.0.1:PORT`) and feeds it one corpus file:

- tcp: `sluice forward tcp://127.0.0.1:FAST < corpus` (plain lines to the fast port; the baseline of this section);
- write, fsync: `sluice forward sluice://127.0.0.1:BATCH --guarantee write|fsync --json < corpus` (the batch protocol,
  default batching: 1 MiB batches, 100 ms linger, 64 MiB queue).

"exited" is when the forwarder process exited: for sluice://, every batch was acknowledged (exit status 0 and
`read` = `acked` = line count are checked); for tcp://, every line was sent and the node closed the connection.
"queryable" is measured as in Ingest (polling starts once the forwarder has read all of its input), from the
start of the forwarder. MiB/s and records/s divide the corpus by the queryable time; "÷ tcp" is that MiB/s over the
tcp row's for the same corpus. "fwd CPU" is the forwarder's user + system time over its whole run."""

RUN_FORWARD_CPU = """\
#### Forwarder CPU at a fixed input rate

`sluice testsvc --size {c.size} --rate {c.rate} --count {c.count} --seed 1 > FIFO` and
`sluice forward sluice://127.0.0.1:BATCH --guarantee write --json < FIFO` into a fresh ingeststore; the nominal
input is the rate times the mean line of the {c.size}-byte corpus, for {c.secs}s. utime + stime of each process
is sampled from `/proc/PID/stat` (CLK_TCK {c.clk_tck}) every 50 ms; cores = CPU time / wall time over the window
from the first sample after the forwarder had read 1 MiB (`rchar` in `/proc/PID/io`) to the last sample before
testsvc exited, and "achieved" is the forwarder's `rchar` growth over that window. The three processes share the
machine's {cores} cores. "whole run" is the forwarder's total CPU (from `wait4`'s rusage) over the time from the
window's start to its exit (all acked). MB = 10^6 bytes.
"""


def render_run(r: RunReport) -> str:
    m = r.machine
    out = ["## Results", "", f"Generated by `bench/bench.py run` on {r.date}, commit {r.commit}.",
           f"Corpus size: {r.mb} MiB per corpus (`SLUICE_BENCH_MB={r.mb}`), query repetitions: {r.reps} (best reported).",
           "", "### Machine", "", f"- CPU: {m.cpu} ({m.cores} cores available to the run)",
           f"- Memory: {m.mem_kib / 1048576:.1f} GiB", f"- Kernel: {m.kernel}", f"- Disk under bench/out: {m.fs}",
           f"- Rust: {m.rustc}", f"- Tools: {m.rg}, OpenBSD netcat {m.nc}", "", "### Corpora", "",
           f"Generated with `sluice testsvc --size SIZE --rate 0 --count N --seed {SEED}`.", ""]
    out += table(["corpus", "lines", "MiB", "mean line bytes", "lines with ERROR"], "-::::",
                 [[f"{c.size}-byte", str(c.lines), mib(c.bytes), f"{c.bytes / c.lines - 1:.1f}", str(c.error_lines)]
                  for c in r.corpora])
    rows = []
    for i in r.ingest:
        nc, sl = i.bytes / MIB / i.nc_secs, i.bytes / MIB / i.queryable_secs
        rows.append([f"{i.corpus}-byte", f"{nc:.1f}", f"{i.sent_secs:.2f}", f"{i.queryable_secs:.2f}", f"{sl:.1f}",
                     per_s(i.lines, i.queryable_secs), f"{sl / nc:.2f}", rss(i.peak_rss_kib)])
    out += ["", "### Ingest", "", RUN_INGEST, ""]
    out += table(["corpus", "transport (nc) MiB/s", "sluice sent (s)", "sluice queryable (s)", "sluice MiB/s",
                  "sluice records/s", "sluice/nc", "ingeststore peak RSS"], "-:::::::", rows)
    out += ["", "### Query", "", RUN_QUERY.format(reps=r.reps), ""]
    out += table(["query", "pattern", "sluice (s)", "sluice MiB/s", "rg (s)", "rg MiB/s", "sluice/rg",
                  "matches sluice / rg"], "--:::::-",
                 [[q.name, "`" + q.pattern.replace("|", "\\|") + "`", f"{q.sluice_secs:.3f}",
                   mibs(q.corpus_bytes, q.sluice_secs), f"{q.rg_secs:.3f}", mibs(q.corpus_bytes, q.rg_secs),
                   f"{q.rg_secs / q.sluice_secs:.2f}", f"{q.sluice_matches} / {q.rg_matches}"
                   + ("" if q.ok else " **MISMATCH**")] for q in r.queries])
    if bad := [q.name for q in r.queries if not q.ok]:
        out += ["", f"**Warning:** match counts differ for: {','.join(bad)}."]
    out += ["", f"Peak RSS of the ingeststore after the queries: {rss(r.rss_after_query_kib)}.", "",
            "### Forwarder and batch protocol", "", RUN_FORWARD, ""]
    out += table(["corpus", "forwarder", "exited (s)", "queryable (s)", "MiB/s", "records/s", "÷ tcp", "target",
                  "fwd CPU (s)"], "--:::::-:", [forward_row(r, f) for f in r.forward])
    if c := r.forward_cpu:
        whole = c.forwarder_cpu_secs / c.forwarder_run_secs if c.forwarder_run_secs > 0 else 0
        out += ["", RUN_FORWARD_CPU.format(c=c, cores=m.cores)]
        out += table(["input nominal MB/s", "achieved MB/s", "window (s)", "forwarder cores", "target",
                      "ingeststore cores", "testsvc cores", "forwarder whole run"], "::::-::-",
                     [[f"{c.nominal_mbs:.1f}", f"{c.achieved_mbs:.1f}", f"{c.window_secs:.2f}",
                       f"{c.forwarder_cores:.2f}", "≤ 0.3: " + ("met" if c.forwarder_cores <= 0.3 else "**missed**"),
                       f"{c.node_cores:.2f}", f"{c.testsvc_cores:.2f}",
                       f"{c.forwarder_cpu_secs:.2f} s CPU / {c.forwarder_run_secs:.2f} s = {whole:.2f} cores"]])
    return "\n".join(out) + "\n"


def forward_row(r: RunReport, f: ForwardResult) -> list[str]:
    m = f.bytes / MIB / f.queryable_secs
    base = next((b.bytes / MIB / b.queryable_secs for b in r.forward if b.corpus == f.corpus and b.mode == "tcp"), 0)
    label, rel, target = "tcp:// (fast port)", "1.00", "baseline"
    if f.mode != "tcp":
        label, rel, want = f"sluice:// {f.mode}", ratio(m, base), TARGETS[f.mode]
        target = f"≥ {want:.1f}: " + ("met" if base and m / base >= want else "**missed**")
    return [f"{f.corpus}-byte", label, f"{f.exited_secs:.2f}", f"{f.queryable_secs:.2f}", f"{m:.1f}",
            per_s(f.lines, f.queryable_secs), rel, target, f"{f.cpu_secs:.2f}"]
