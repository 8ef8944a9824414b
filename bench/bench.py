#!/usr/bin/env python3
"""sluice end-to-end benchmarks: the release binary against nc and rg on this machine.

Each subcommand measures one thing and rewrites only its own generated section of
BENCHMARKS.md (between <!-- BEGIN/END GENERATED: bench/bench.py SUBCOMMAND -->).
Every knob is a flag and an environment variable (the flag wins): see SUBCOMMAND --help.
Raw results (JSON), the generated Markdown and logs go to bench/out/run-ID/.
Python 3.11, standard library only; needs nc (OpenBSD netcat) and rg. See bench/README.md.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import io
import json
import os
import re
import shutil
import statistics
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zlib
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median_low
from subprocess import DEVNULL, PIPE
from typing import IO, Any, TypeVar

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
MIB = 1048576
QUERY_TIMEOUT = 600.0
T = TypeVar("T")
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy for the nodes on 127.0.0.1


class BenchError(Exception):
    """A failed step: main() prints it and exits 1."""


# ------------------------------------------------------------------ knobs --

KNOBS: list[tuple[str, str, str, Any, str]] = [  # subcommands ("*": all), flag, env, default (None: computed), help
    ("*", "--bin", "SLUICE_BIN", "target/release/sluice", "binary under test"),
    ("*", "--output", "SLUICE_BENCH_OUTPUT", "BENCHMARKS.md", "report file; only the subcommand's section is rewritten"),
    ("*", "--no-build", "SLUICE_BENCH_NO_BUILD", False, "skip `cargo build --release --locked`"),
    ("*", "--keep", "SLUICE_BENCH_KEEP", False, "keep corpora, inputs and data dirs under bench/out/run-ID"),
    ("run protocols store fresh cluster tail histogram loki-push", "--reps", "SLUICE_BENCH_REPS", None,
     "repetitions, best reported (default: run 3, protocols 2, store 3, fresh 3, cluster 3, tail 5, histogram 3, loki-push 3)"),
    ("run cluster replication loki-push", "--mb", "SLUICE_BENCH_MB", 512, "MiB per corpus (run needs about 6x this free under bench/out, cluster 4x)"),
    ("run cluster tail replication", "--timeout", "SLUICE_BENCH_TIMEOUT", None,
     "seconds for one ingest to become queryable (default 120 + 2 x MB; tail: 600)"),
    ("run", "--fwd-rate", "SLUICE_BENCH_FWD_RATE", 250000, "lines/s of the forwarder CPU run (x ~201 bytes = ~50 MB/s)"),
    ("run", "--fwd-secs", "SLUICE_BENCH_FWD_SECS", 10, "seconds of the forwarder CPU run"),
    ("protocols", "--events", "SLUICE_BENCH_EVENTS", 2000000, "events per run"),
    ("protocols", "--size", "SLUICE_BENCH_SIZE", 200, "bytes per generated line"),
    ("store histogram", "--store-mb", "SLUICE_BENCH_STORE_MB", 1024, "MiB of the testsvc corpus"),
    ("store", "--nginx-mb", "SLUICE_BENCH_NGINX_MB", 512, "MiB of the nginx access-log corpus (0: left out)"),
    ("store", "--realistic-mb", "SLUICE_BENCH_REALISTIC_MB", 1024, "MiB of the realistic corpus (0: left out)"),
    ("compaction fresh", "--rate-mb", "SLUICE_BENCH_RATE_MB", 150, "MB/s of 200-byte lines to send"),
    ("compaction fresh", "--seconds", "SLUICE_BENCH_SECONDS", 30, "seconds to send for"),
    ("fresh", "--window-secs", "SLUICE_BENCH_WINDOW_SECS", 5, "seconds of fresh data the queries cover"),
    ("replication", "--rf-rate-mb", "SLUICE_BENCH_RF_RATE_MB", 10, "MB/s of batches while the ack latency is measured"),
    ("replication", "--rf-seconds", "SLUICE_BENCH_RF_SECONDS", 10, "seconds of the ack latency measurement"),
    ("tail", "--tail-lines", "SLUICE_BENCH_TAIL_LINES", 12000, "lines whose tail latency is measured"),
    ("tail", "--tail-rate", "SLUICE_BENCH_TAIL_RATE", 2000, "lines/s written while the latency is measured"),
    ("loki-push", "--push-connections", "SLUICE_BENCH_PUSH_CONNECTIONS", 2,
     "connections each input is sent over (each waits for every answer before its next request)"),
    ("tail", "--stall-mb", "SLUICE_BENCH_STALL_MB", 256, "MiB sent with and without a stalled tail reader"),
]


def positive_int(text: str) -> int:
    if not re.fullmatch(r"[1-9][0-9]*", text.strip()):
        raise argparse.ArgumentTypeError(f"must be a positive integer (from the flag or its env variable), got {text!r}")
    return int(text)


def size_or_zero(text: str) -> int:
    """A knob whose 0 leaves its part out ("(0: left out)" in its help)."""
    if not re.fullmatch(r"0|[1-9][0-9]*", text.strip()):
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer (from the flag or its env variable), got {text!r}")
    return int(text)


def add_knobs(parser: argparse.ArgumentParser, command: str) -> None:
    for where, flag, env, default, text in KNOBS:
        if where != "*" and command not in where.split() and command != "all":
            continue
        value, dest = os.environ.get(env), flag[2:].replace("-", "_")
        if default is False:
            parser.add_argument(flag, dest=dest, action="store_true", default=value == "1", help=f"{text} [env {env}=1]")
        elif isinstance(default, str):
            parser.add_argument(flag, dest=dest, default=value or str(ROOT / default),
                                help=f"{text} [env {env}, default {default}]")
        else:  # argparse checks a string default (the environment's) with the type too
            kind = size_or_zero if "(0: left out)" in text else positive_int
            parser.add_argument(flag, dest=dest, type=kind, metavar="N", default=value or default,
                                help=f"{text} [env {env}" + ("]" if default is None else f", default {default}]"))


def parse_args(argv: list[str]) -> argparse.Namespace:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="bench/bench.py", description=__doc__, formatter_class=fmt)
    subs = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for name, func in COMMANDS.items():
        doc = inspect.cleandoc(func.__doc__ or "")
        sub = subs.add_parser(name, help=doc.splitlines()[0], description=doc, formatter_class=fmt)
        if name != "selftest":
            add_knobs(sub, name)
    return parser.parse_args(argv)


@dataclass
class Ctx:
    """What every benchmark needs: the resolved knobs, the run directory, the binary."""

    args: argparse.Namespace
    run_id: str
    out: Path
    sluice: str
    scratch: list[Path] = field(default_factory=list)  # deleted at the end unless --keep

    def reps(self, default: int) -> int:
        return self.args.reps or default


# -------------------------------------------------------- logs and waits --

LOG_FILE: IO[str] | None = None


def log(msg: str) -> None:
    line = f"[bench {time.strftime('%H:%M:%S')}] {msg}"
    print(line, file=sys.stderr, flush=True)
    if LOG_FILE:
        print(line, file=LOG_FILE, flush=True)


def tail(path: Path, n: int = 20) -> str:
    with suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    return "(no log)"


def wait_until(what: str | Callable[[], str], secs: float, interval: float, check: Callable[[], T | None]) -> T:
    """check() every interval seconds until it returns something but None; fails after secs naming what."""
    end = time.monotonic() + secs
    while (value := check()) is None:
        if time.monotonic() >= end:
            raise BenchError(f"timed out after {secs:g}s waiting for {what() if callable(what) else what}")
        time.sleep(interval)
    return value


# ------------------------------------------------------------- processes --


class Proc:
    """A child this program started. A thread reaps it with wait4, which gives its exit time and
    CPU time; stop_all() stops exactly these processes (also on Ctrl-C and errors)."""

    started: list[Proc] = []

    def __init__(self, name: str, argv: list[str], stdin: Any = DEVNULL, stdout: Any = DEVNULL,
                 stderr: Any = None) -> None:
        self.name, self.rc, self.end, self.cpu = name, None, 0.0, 0.0
        # Its own process group: a Ctrl-C reaches this program only, which then stops it.
        self.popen = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, process_group=0)
        self.pid, self.done = self.popen.pid, threading.Event()
        threading.Thread(target=self._reap, daemon=True).start()
        Proc.started.append(self)

    def _reap(self) -> None:
        _, status, usage = os.wait4(self.pid, 0)
        self.end, self.cpu = time.monotonic(), usage.ru_utime + usage.ru_stime
        self.rc = self.popen.returncode = os.waitstatus_to_exitcode(status)
        self.done.set()

    @property
    def alive(self) -> bool:
        return not self.done.is_set()

    def wait(self, secs: float, what: str) -> int:
        if not self.done.wait(secs):
            raise BenchError(f"timed out after {secs:g}s waiting for {what}")
        return self.rc  # type: ignore[return-value]

    def kill(self, sig: int) -> None:
        if self.alive:
            with suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after grace seconds."""
        self.kill(signal.SIGTERM)
        if not self.done.wait(grace):
            log(f"WARNING: {self.name} (pid {self.pid}) ignored SIGTERM for {grace:g}s; sending SIGKILL")
            self.kill(signal.SIGKILL)
            self.done.wait(10)

    @classmethod
    def stop_all(cls) -> None:
        for proc in cls.started:
            proc.kill(signal.SIGTERM)
        for proc in cls.started:
            if not proc.done.wait(2):
                proc.kill(signal.SIGKILL)
        cls.started = []


def need_free(mib: int) -> None:
    """Refuse to start without about `mib` MiB free under BENCH_DIR."""
    if (free := shutil.disk_usage(BENCH_DIR).free) <= mib * MIB:
        raise BenchError(f"need about {mib} MiB free under {BENCH_DIR}, have {free // MIB} MiB")


def run_cmd(argv: list[str], timeout: float = QUERY_TIMEOUT, maxrc: int = 0, capture: bool = False) -> bytes:
    """Run a short command; fail naming it if it exits above maxrc or times out. Its stdout if capture."""
    try:
        done = subprocess.run(argv, stdout=PIPE if capture else DEVNULL, stderr=PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout:g}s: {' '.join(argv)}") from None
    if not 0 <= done.returncode <= maxrc:
        raise BenchError(f"command failed (rc {done.returncode}): {' '.join(argv)}\n"
                         + done.stderr.decode(errors="replace")[-2000:])
    return done.stdout or b""


def best_of(n: int, argv: list[str], maxrc: int = 0) -> float:
    """The best wall time of n runs, stdout to /dev/null (rg exits 1 when nothing matches)."""
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        run_cmd(argv, maxrc=maxrc)
        times.append(time.monotonic() - t0)
    return min(times)


# Warm runs of a store query, sluice's and rg's alike, follow this much wall time of untimed runs (at
# least one). On this kind of VM an idle core halts, and after even 0.3 s idle the next ten or so short
# runs are slow (a rare id's query 3.3-4.2 ms, then about 2.4, then 1.9): a 25 ms rg run warms the
# machine by itself, a 2 ms query does not.
WARM_UP_SECS = 0.1


def warm_up(argv: list[str], maxrc: int = 0) -> int:
    """Run argv untimed until WARM_UP_SECS of wall time have passed (at least once); returns the runs."""
    t0, runs = time.monotonic(), 0
    while runs == 0 or time.monotonic() - t0 < WARM_UP_SECS:
        run_cmd(argv, maxrc=maxrc)
        runs += 1
    return runs


def rg_count(args: list[str], path: Path | str) -> int:
    return int(run_cmd(["rg", "-c", *args, str(path)], maxrc=1, capture=True).strip() or 0)


def proc_field(pid: int, name: str, key: str) -> int | None:
    """The integer after "key:" in /proc/PID/NAME; None once the process is gone."""
    with suppress(OSError, ValueError, StopIteration):
        lines = Path(f"/proc/{pid}/{name}").read_text().splitlines()
        return int(next(line for line in lines if line.startswith(key + ":")).split()[1])
    return None


def cpu_ticks(pid: int) -> int | None:
    """utime + stime in clock ticks (comm, in parentheses, may hold spaces: split after the ')')."""
    with suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    return None


def port_listening(port: int) -> bool:
    """Something listens on TCP port: a row in state 0A (LISTEN) of /proc/net/tcp or tcp6."""
    rows = [r.split() for t in ("/proc/net/tcp", "/proc/net/tcp6") for r in Path(t).read_text().splitlines()[1:]]
    return any(r[3] == "0A" and int(r[1].rsplit(":", 1)[1], 16) == port for r in rows)


def free_ports(n: int) -> list[int]:
    """n distinct free ports on 127.0.0.1, held open together while chosen (as the test harness does)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# ----------------------------------------------------------------- nodes --


@dataclass
class Node:
    """A `sluice ingeststore` this program started, on a data dir of its run and free ports
    (or a cluster's `sluice ingest` or `sluice store`: see running_cluster)."""

    ctx: Ctx
    name: str
    proc: Proc
    data: Path
    log: Path
    api: str
    fast: str
    batch: str
    fluent: str
    syslog: str
    role: str = "ingeststore"  # or, in a cluster, ingest or store
    gossip: str = ""  # a cluster node's gossip address

    def check_alive(self) -> None:
        if not self.proc.alive:
            raise BenchError(f"{self.role} {self.name} exited (rc {self.proc.rc}); last lines of {self.log}:\n"
                             + tail(self.log))

    def http(self, path: str, timeout: float = 5.0) -> str | None:
        with suppress(OSError):
            with HTTP.open(f"http://{self.api}{path}", timeout=timeout) as resp:
                return resp.read().decode() if resp.status == 200 else None
        return None

    def metric(self, name: str) -> int:
        """An unlabelled metric from /metrics (0 if absent)."""
        text = self.http("/metrics")
        if text is None:
            raise BenchError(f"could not read http://{self.api}/metrics of {self.role} {self.name}")
        values = [p[1] for p in (line.split() for line in text.splitlines()) if len(p) > 1 and p[0] == name]
        return round(float(values[0])) if values else 0

    def peak_rss_kib(self) -> int | None:
        return proc_field(self.proc.pid, "status", "VmHWM")

    def query(self, args: list[str]) -> list[str]:
        return [self.ctx.sluice, "query", "--api", self.api, *args]

    def stats(self, args: list[str], timeout: float = QUERY_TIMEOUT) -> dict[str, Any]:
        """The --stats JSON of a query: records_matched, bytes (scanned), bytes_read, ..."""
        out = run_cmd(self.query([*args, "--stats"]), timeout, capture=True)
        with suppress(ValueError, TypeError, KeyError):
            stats = json.loads(out)
            int(stats["records_matched"])
            return stats
        raise BenchError(f"sluice query --stats printed no records_matched: {out[:500]!r}")

    def matched_all(self, since: str, timeout: float = QUERY_TIMEOUT) -> int:
        """records_matched of -q '' from since (1h, 24h or Unix ms) to now."""
        return int(self.stats(["--from", since, "-q", ""], timeout)["records_matched"])

    def segments(self) -> list[Path]:
        return sorted((self.data / "store").glob("*.seg"))


def start_node(ctx: Ctx, name: str, data: Path, log_path: Path, protocols: bool,
               extra: tuple[str, ...] = ()) -> Node | None:
    """Start once and wait for /ready; None if a port was taken between choosing and binding it."""
    api, fast, durable, batch, fluent, syslog = (f"127.0.0.1:{p}" for p in free_ports(6))
    if not protocols:
        fluent = syslog = "off"
    with open(log_path, "ab") as log_file:
        proc = Proc(f"ingeststore {name}", [
            ctx.sluice, "ingeststore", "--data", str(data), "--api", api, "--fast", fast, "--durable", durable,
            "--batch", batch, "--fluent", fluent, "--syslog", syslog, *extra], stdout=log_file, stderr=log_file)
    node = Node(ctx, name, proc, data, log_path, api, fast, batch, fluent, syslog)

    def ready() -> bool | None:
        if not proc.alive and "Address already in use" in tail(log_path):
            return False
        node.check_alive()
        return True if node.http("/ready", timeout=2) is not None else None

    return node if wait_until(f"ingeststore {name} ready at http://{api}/ready", 60, 0.1, ready) else None


@contextmanager
def running_node(ctx: Ctx, name: str, protocols: bool = False, extra: tuple[str, ...] = ()) -> Iterator[Node]:
    """A fresh node on OUT/data-NAME (with EXTRA flags), stopped (and its data deleted unless --keep)
    when the block ends."""
    data, log_path = ctx.out / f"data-{name}", ctx.out / f"node-{name}.log"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    for _ in range(5):
        if node := start_node(ctx, name, data, log_path, protocols, extra):
            break
    else:
        raise BenchError(f"could not start ingeststore {name} on free ports; see {log_path}")
    log(f"ingeststore {name}: pid {node.proc.pid} api {node.api} fast {node.fast} batch {node.batch}")
    try:
        yield node
    except BaseException:
        Proc.stop_all()  # an error or Ctrl-C: stop every process now, not one by one
        raise
    finally:
        node.proc.stop()
        if not ctx.args.keep:
            shutil.rmtree(data, ignore_errors=True)


def is_block_file(path: Path) -> bool:
    """A block file (what compaction writes): its header frame says SLUICE at bytes 8..14."""
    with suppress(OSError), open(path, "rb") as f:
        f.seek(8)
        return f.read(6).replace(b"\0", b"") == b"SLUICE"
    return False


def ulid_ms(ulid: str) -> int:
    value = 0
    for c in ulid[:10]:
        value = value * 32 + "0123456789ABCDEFGHJKMNPQRSTVWXYZ".index(c)
    return value


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))


# --------------------------------------------------------------- machine --


@dataclass
class Machine:
    cpu: str
    cores: int
    mem_kib: int
    kernel: str
    fs: str
    rustc: str
    rg: str
    nc: str

    @property
    def gib(self) -> str:
        return f"{self.mem_kib / 1048576:.0f} GiB"


def first_line(argv: list[str], default: str = "unknown") -> str:
    with suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.splitlines()[0].strip()
    return default


def machine_info() -> Machine:
    model = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    mem = re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.M)
    df = subprocess.run(["df", "-PT", str(BENCH_DIR)], capture_output=True, text=True).stdout.splitlines()
    return Machine(model.group(1).strip() if model else "unknown", len(os.sched_getaffinity(0)),
                   int(mem.group(1)) if mem else 0, f"{os.uname().sysname} {os.uname().release}",
                   df[1].split()[1] if len(df) > 1 else "unknown", first_line(["rustc", "--version"]),
                   first_line(["rg", "--version"]),
                   first_line(["dpkg-query", "-W", "-f", "${Version}\n", "netcat-openbsd"], "?"))


def commit_id() -> str:
    commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], "uncommitted")
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True)
    return commit + (" (dirty tree)" if dirty.stdout.strip() else "")


# ------------------------------------------------------------ formatting --


def mib(n: float) -> str:
    return f"{n / MIB:.1f}"


def mibs(n: float, secs: float) -> str:
    return f"{n / MIB / secs:.1f}" if secs > 0 else "n/a"


def per_s(n: float, secs: float) -> str:
    return f"{n / secs:.0f}" if secs > 0 else "n/a"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "n/a"


def secs3(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def rss(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.0f} MiB"


def table(header: list[str], align: str, rows: list[list[str]]) -> list[str]:
    """A Markdown table; align has one '-' (left) or ':' (right) per column."""
    rule = "|" + "|".join("---" if a == "-" else "---:" for a in align) + "|"
    return ["| " + " | ".join(header) + " |", rule] + ["| " + " | ".join(row) + " |" for row in rows]


# =============================================================== results --


@dataclass
class Report:
    """What the results of every subcommand start with."""

    run_id: str
    machine: Machine

    def errors(self) -> list[str]:
        """Match counts that differ: the section is then not written."""
        return []


@dataclass
class Corpus:
    size: int  # nominal line bytes
    path: str
    lines: int
    bytes: int
    error_lines: int


@dataclass
class IngestResult:
    corpus: int
    bytes: int
    lines: int
    nc_secs: float  # the best transport run
    sent_secs: float
    queryable_secs: float
    peak_rss_kib: int | None


@dataclass
class QueryResult:
    name: str
    mode: str  # literal or regex
    pattern: str
    corpus_bytes: int
    sluice_secs: float
    rg_secs: float
    sluice_matches: int
    rg_matches: int
    bytes_scanned: int | None

    @property
    def ok(self) -> bool:
        return self.sluice_matches == self.rg_matches


@dataclass
class ForwardResult:
    corpus: int
    mode: str  # tcp, write or fsync
    bytes: int
    lines: int
    exited_secs: float
    queryable_secs: float
    sent_secs: float
    cpu_secs: float


@dataclass
class ForwardCpuResult:
    size: int
    rate: int
    secs: int
    count: int
    clk_tck: int
    nominal_mbs: float
    achieved_mbs: float
    window_secs: float
    forwarder_cores: float
    node_cores: float
    testsvc_cores: float
    forwarder_cpu_secs: float
    forwarder_run_secs: float  # from the window's start to the forwarder's exit


@dataclass
class RunReport(Report):
    date: str
    commit: str
    mb: int
    reps: int
    corpora: list[Corpus] = field(default_factory=list)
    ingest: list[IngestResult] = field(default_factory=list)
    queries: list[QueryResult] = field(default_factory=list)
    rss_after_query_kib: int | None = None
    forward: list[ForwardResult] = field(default_factory=list)
    forward_cpu: ForwardCpuResult | None = None

    def errors(self) -> list[str]:
        return [f"query {q.name}: sluice matched {q.sluice_matches} records, rg -c counted {q.rg_matches}"
                for q in self.queries if not q.ok]


SEED, FWD_SIZE = 1, 200
TARGETS = {"write": 0.8, "fsync": 0.5}


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
    """Warm: best of REPS, sluice's and rg's each after WARM_UP_SECS of untimed runs (the segments and the
    corpus read back from disk first: see reread)."""
    reread(node.segments())
    warm_up(node.query(sl_args))
    s_warm = best_of(ctx.reps(3), node.query(sl_args))
    stats = node.stats(sl_args)
    r_warm = n_r = None
    if rg_args is not None:
        reread([path])
        warm_up(["rg", *rg_args, str(path)], maxrc=1)
        r_warm = best_of(ctx.reps(3), ["rg", *rg_args, str(path)], maxrc=1)
        n_r = rg_count(rg_args, path)
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
    short literals) and the last 1% of the time range, warm (best of REPS, default 3, each tool's after
    0.1 s of untimed runs) and cold (page cache dropped before each run; needs root, else skipped). The nginx or realistic corpus of 0 MiB is left out.
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
           f"each after {WARM_UP_SECS:g} s of untimed runs of the same command).",
           "sluice: `sluice query --api .. --from 24h -q PATTERN [--regex] > /dev/null` against a fresh ingeststore "
           "holding the corpus;",
           'rg: `rg -F PATTERN corpus > /dev/null` (or `-e REGEX`). "sluice/rg" is rg\'s time over sluice\'s '
           "(above 1: sluice faster).",
           "Warm: sluice's best of the runs after a first one (its block cache holds what that run decoded), "
           "rg's best with the file in the page cache.",
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


# ============================================================ compaction --


@dataclass
class CompactionSample:
    secs: float  # since the send began
    batch_bytes: int
    block_bytes: int
    unsorted_blocks: int
    probe_from_ms: int
    probe_to_ms: int
    query_secs: float
    matched: int | None
    idle_query_secs: float = 0.0
    idle_matched: int | None = None


@dataclass
class CompactionReport(Report):
    rate_mb: int
    seconds: int
    lines_per_s: int
    count: int
    send_secs: float = 0.0  # at the first sample after the send ended
    compacted_during_send: int = 0
    peak_batch_bytes: int = 0
    drained_secs: float = 0.0
    sorted_secs: float = 0.0
    peak_rss_kib: int | None = None
    samples: list[CompactionSample] = field(default_factory=list)


def segment_bytes(node: Node) -> tuple[int, int]:
    """(bytes in batch files, bytes in block files) of the node's store."""
    batches = blocks = 0
    for seg in node.segments():
        with suppress(FileNotFoundError):
            size = seg.stat().st_size
            blocks, batches = (blocks + size, batches) if is_block_file(seg) else (blocks, batches + size)
    return batches, blocks


def probe_query(node: Node, frm: int, to: int) -> tuple[float, int | None]:
    """(seconds, records matched or None) of `sluice query -q ERROR --stats` over [frm, to] in Unix ms."""
    t0 = time.monotonic()
    try:
        out = run_cmd(node.query(["--from", str(frm), "--to", str(to), "-q", "ERROR", "--stats"]), 60, capture=True)
        matched: int | None = int(json.loads(out)["records_matched"])
    except (BenchError, ValueError, KeyError, TypeError):
        matched = None
    return time.monotonic() - t0, matched


def cmd_compaction(ctx: Ctx) -> CompactionReport:
    """Compaction under sustained ingest (section `bench/bench.py compaction`).

    `sluice testsvc --rate L --size 200 | nc -N` at RATE_MB MB/s for SECONDS into a fresh node;
    every 2 s: the bytes in batch files (not yet compacted) and block files, the unsorted blocks, and
    the time of `sluice query -q ERROR --stats` over the second of data that ended 2 s before.
    Then the times to drain the batch-file backlog and to sort every block after the send, and the same
    query windows again on the idle node (a window matching fewer records later is a gap).
    """
    lps = ctx.args.rate_mb * 1000000 // 200
    r = CompactionReport(ctx.run_id, machine_info(), ctx.args.rate_mb, ctx.args.seconds, lps, lps * ctx.args.seconds)
    with running_node(ctx, "compaction") as node:
        log(f"sending {r.count} lines at {r.rate_mb} MB/s for {r.seconds}s")
        start, deadline = time.monotonic(), time.monotonic() + r.seconds * 10 + 120
        gen = Proc("testsvc", [ctx.sluice, "testsvc", "--rate", str(lps), "--size", "200", "--count", str(r.count)],
                   stdout=PIPE)
        send = Proc("nc", ["nc", "-N", *node.fast.rsplit(":", 1)], stdin=gen.popen.stdout)
        gen.popen.stdout.close()  # type: ignore[union-attr]
        while not r.drained_secs:
            if time.monotonic() >= deadline:
                raise BenchError("compaction did not drain the batch-file backlog in time")
            time.sleep(2)
            node.check_alive()
            t = time.monotonic() - start
            batches, blocks = segment_bytes(node)
            r.peak_batch_bytes = max(r.peak_batch_bytes, batches)
            to_ms = time.time_ns() // 1000000 - 2000
            q_secs, matched = probe_query(node, to_ms - 1000, to_ms)
            r.samples.append(CompactionSample(t, batches, blocks, node.metric("sluice_store_unsorted_blocks"), to_ms - 1000,
                                              to_ms, q_secs, matched))
            if not r.send_secs and not send.alive:
                if send.rc != 0 or gen.wait(5, "testsvc") != 0:
                    raise BenchError(f"the send failed (testsvc rc {gen.rc}, nc rc {send.rc})")
                r.send_secs, r.compacted_during_send = t, node.metric("sluice_store_compaction_input_bytes_total")
            if r.send_secs and batches == 0:
                r.drained_secs = t
        # Then the passes with nothing to merge sort the blocks that merges wrote in id order.
        wait_until("the store to sort every block", max(deadline - time.monotonic(), 0), 1,
                   lambda: True if node.metric("sluice_store_unsorted_blocks") == 0 else None)
        r.sorted_secs = time.monotonic() - start
        for s in r.samples:  # the same windows again, with nothing being written or compacted
            s.idle_query_secs, s.idle_matched = probe_query(node, s.probe_from_ms, s.probe_to_ms)
        r.peak_rss_kib = node.peak_rss_kib()
    return r


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


def render_compaction(r: CompactionReport) -> str:
    m, sent = r.machine, r.count * 201
    busy, idle = [s.query_secs for s in r.samples], [s.idle_query_secs for s in r.samples]
    pairs = [(s.matched, s.idle_matched) for s in r.samples if s.matched is not None and s.idle_matched is not None]
    out = ["## Compaction under sustained ingest (bench/bench.py compaction)", "",
           f"Run {r.run_id} on {m.cores} cores ({m.cpu}), {m.gib}.",
           f"Command: `python3 bench/bench.py compaction` (SLUICE_BENCH_RATE_MB={r.rate_mb}, "
           f"SLUICE_BENCH_SECONDS={r.seconds}):",
           f"`sluice testsvc --rate {r.lines_per_s} --size 200 --count {r.count} | nc -N 127.0.0.1 FAST` into a fresh "
           "ingeststore, sender and node on the same cores.", "",
           f"- The send took {r.send_secs:.3f}s or less (sampled every 2 s): {mibs(sent, r.send_secs)} MiB/s.",
           f"- Compaction read {mib(r.compacted_during_send)} MiB of segments during the send: "
           f"{mibs(r.compacted_during_send, r.send_secs)} MiB/s, {ratio(r.compacted_during_send, sent)} of the bytes "
           "sent (its inputs include block files merged again with small neighbours, so this can pass 1).",
           f"- Peak batch-file backlog {mib(r.peak_batch_bytes)} MiB; every segment was a block file at {r.drained_secs:.3f}s, "
           f"{r.drained_secs - r.send_secs:.3f}s after the send ended.",
           "- Merges write blocks in id order; passes with nothing to merge then sort them "
           f"(`sluice_store_unsorted_blocks`): every block was sorted at {r.sorted_secs:.3f}s, "
           f"{r.sorted_secs - r.send_secs:.3f}s after the send ended.",
           f"- Peak RSS of the ingeststore: {rss(r.peak_rss_kib)}.",
           "- Query during the send (`sluice query -q ERROR --stats` over one second of data, at every sample): "
           f"median {median_low(busy):.3f}s, max {max(busy):.3f}s. The same {len(r.samples)} windows on the idle node "
           f"afterwards, every block sorted: median {median_low(idle):.3f}s, max {max(idle):.3f}s.",
           f"- Matched counts: {sum(b < a for a, b in pairs)} windows matched fewer records afterwards than during "
           f"the send (a gap), {sum(b > a for a, b in pairs)} matched more (records still in flight when first asked).",
           ""]
    out += table(["seconds", "batch files MiB (not yet compacted)", "block files MiB", "unsorted blocks", "query (s)", "matched"],
                 "::::::", [[f"{s.secs:.3f}", mib(s.batch_bytes), mib(s.block_bytes), str(s.unsorted_blocks),
                             f"{s.query_secs:.3f}", "n/a" if s.matched is None else str(s.matched)]
                            for s in r.samples])
    return "\n".join(out) + "\n"


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


# ========================================================== output, main --

NEW_FILE_HEADER = "# sluice benchmarks\n\nGenerated by `bench/bench.py` (see bench/README.md).\n\n"


def replace_generated(text: str, label: str, body: str) -> str:
    """text with the section between label's markers replaced by body (appended if there is none)."""
    begin, end = f"<!-- BEGIN GENERATED: {label} -->", f"<!-- END GENERATED: {label} -->"
    section, lines = f"{begin}\n{body}{end}\n", text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == begin]
    if not starts:
        return text + ("\n" if text else NEW_FILE_HEADER) + section
    stops = [i for i in range(starts[0], len(lines)) if lines[i].rstrip("\n") == end]
    if not stops:
        raise BenchError(f"{begin} has no {end}")
    return "".join(lines[:starts[0]]) + section + "".join(lines[stops[0] + 1:])


RENDER: dict[str, Callable[[Any], str]] = {"run": render_run, "protocols": render_protocols, "store": render_store,
                                           "compaction": render_compaction, "fresh": render_fresh, "cluster": render_cluster,
                                           "tail": render_tail, "histogram": render_histogram,
                                           "replication": render_replication, "loki-push": render_loki_push}


def build(ctx: Ctx) -> None:
    if ctx.args.no_build:
        log("skipping build (SLUICE_BENCH_NO_BUILD=1)")
    elif subprocess.run(["cargo", "build", "--release", "--locked", "-q"], cwd=ROOT).returncode != 0:
        raise BenchError("cargo build --release failed")
    if not os.access(ctx.sluice, os.X_OK):
        raise BenchError(f"no binary at {ctx.sluice}")
    if not shutil.which("nc") or not shutil.which("rg"):
        raise BenchError("nc or rg missing; install with: apt-get install -y netcat-openbsd ripgrep")
    nc_help = subprocess.run(["nc", "-h"], capture_output=True, text=True)
    if "-N" not in nc_help.stdout + nc_help.stderr:
        raise BenchError("nc is not OpenBSD netcat (no -N); install with: apt-get install -y netcat-openbsd")


def run_bench(ctx: Ctx, name: str) -> list[str]:
    """Measure, save the raw results and the Markdown, and write the section unless a check failed."""
    log(f"{name}: output in {ctx.out}")
    report = COMMANDS[name](ctx)
    (ctx.out / f"{name}.json").write_text(json.dumps(dataclasses.asdict(report), indent=1) + "\n")
    (ctx.out / f"{name}.md").write_text(body := RENDER[name](report))
    if failed := report.errors():
        log(f"{name}: NOT writing {ctx.args.output}: match counts differ:\n  " + "\n  ".join(failed))
    else:  # a whole new file, renamed over the old one
        output, label = Path(ctx.args.output), f"bench/bench.py {name}"
        fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=output.name + ".")
        with os.fdopen(fd, "w") as f:
            f.write(replace_generated(output.read_text() if output.exists() else "", label, body))
        os.replace(tmp, output)
        log(f"wrote section `{label}` of {output}")
    return failed


def cmd_all(ctx: Ctx) -> None:
    """run, protocols, store, compaction, fresh, cluster, tail, histogram, replication and loki-push, in that order, in one run directory."""


def cleanup(ctx: Ctx) -> None:
    Proc.stop_all()
    if not ctx.args.keep:
        for path in ctx.scratch:
            path.unlink(missing_ok=True)
        for data in ctx.out.glob("data-*"):
            shutil.rmtree(data, ignore_errors=True)


def main(argv: list[str]) -> int:
    global LOG_FILE
    args = parse_args(argv)
    if args.command == "selftest":
        return selftest()
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    ctx = Ctx(args, run_id, BENCH_DIR / "out" / f"run-{run_id}", str(Path(args.bin).resolve()))
    ctx.out.mkdir(parents=True, exist_ok=True)
    LOG_FILE = open(ctx.out / "bench.log", "a")
    for sig in (signal.SIGINT, signal.SIGTERM):  # both raise KeyboardInterrupt (even if SIGINT came in ignored)
        signal.signal(sig, signal.default_int_handler)
    try:
        build(ctx)
        failed = [f for name in (RENDER if args.command == "all" else [args.command]) for f in run_bench(ctx, name)]
    except (BenchError, OSError) as e:
        log(f"FAILED: {e}\nlogs are in {ctx.out}")
        return 1
    except KeyboardInterrupt:
        log(f"interrupted; logs are in {ctx.out}")
        return 130
    finally:
        cleanup(ctx)
    log(f"FAILED: match counts differ; results in {ctx.out}" if failed else f"done; results in {ctx.out}")
    return 1 if failed else 0


# ============================================================== selftest --


def canned() -> dict[str, Any]:
    """Typed results like a real run's."""
    m = Machine("AMD EPYC", 2, 24641536, "Linux 6.1", "ext4", "rustc 1.95.0", "ripgrep 13.0.0", "1.219-1")
    corpora = [Corpus(100, "c100", 5315553, 542937088, 62720), Corpus(200, "c200", 2670999, 537395200, 26080)]
    queries = [QueryResult(n, mode, p, corpora[0].bytes, 0.09, 0.04, 32, 32, 1) for n, mode, p in (
        ("rare literal", "literal", "req-f32339d02a198d31"), ("ERROR", "literal", "ERROR"),
        ("regex", "regex", "ERROR.*timeout|status=5[0-9][0-9]"))]
    run = RunReport("20260101T000000Z", m, "2026-01-01 00:00 UTC", "abc1234", 512, 3, corpora,
                    [IngestResult(c.size, c.bytes, c.lines, 0.56, 1.57, 2.2, 20480) for c in corpora], queries, 20480,
                    [ForwardResult(c.size, mode, c.bytes, c.lines, 1.5, 2.2, 1.4, 0.5)
                     for c in corpora for mode in ("tcp", "write", "fsync")],
                    ForwardCpuResult(200, 250000, 10, 2500000, 100, 50.3, 50.3, 9.93, 0.07, 0.14, 0.02, 0.74, 10.07))
    protocols = ProtocolsReport("20260101T000000Z", m, 2000000, 200, 2,
                                [ProtocolRun(n, p, 1.2 + i / 10, 400000000, 20480) for i, (n, p) in enumerate(INPUTS * 2)])
    queries = [StoreQuery(k, k, 0.1, 0.2, 0.3, 3.0, 40 * MIB, 600 * MIB, 10, 10) for k in STORE_TARGETS if k != "recent"]
    queries.append(StoreQuery("recent", "recent", 0.1, None, 0.3, None, 4 * MIB, 600 * MIB, 10, None))
    store = StoreReport("20260101T000000Z", m, 2048, 512, 3, True, [
        StoreCorpus(n, 2048 * MIB, 10683998, 8.5, 11.9, 15.7, 42.6, 700 * MIB, 136192, queries, 245760)
        for n in STORE_CORPORA], 1024)
    compaction = CompactionReport("20260101T000000Z", m, 150, 30, 750000, 22500000, 30.7, 5120 * MIB, 370 * MIB,
                                  33.1, 89.9, 190464, [CompactionSample(2.0 * i, 100 * MIB, 30 * MIB * i, 190, 0, 1000,
                                                                        0.25, 7364, 0.016, 7364) for i in range(13)])
    c200 = corpora[1]
    cluster = ClusterReport("20260101T000000Z", m, "2026-01-01 00:00 UTC", "abc1234", 512, 3, c200, [
        ClusterRun(setup, nodes, 1.4, 1.5, 2.9 * k, 4.1 * k, 0.74, 30.5, 40.2 * k, 180 * MIB, 307200 * k,
                   [ClusterQuery("rare literal", "req-f32339d02a198d31", 0.01 * k, 32, 32),
                    ClusterQuery("ERROR (~1%)", "ERROR", 0.09 * k, 26080, 26080)], [1.7 * k, 1.8 * k, 1.6 * k])
        for setup, nodes, k in (("ingeststore", ["ingeststore 127.0.0.1:7650"], 1.0),
                                ("cluster", [f"{role} 127.0.0.{i}:7650" for i, role in
                                             ((21, "ingest"), (22, "store"), (23, "store"))], 1.2))])
    tail = TailReport("20260101T000000Z", m, "2026-01-01 00:00 UTC", "abc1234", 12000, 2000, 256, 3,
                      [TailRun("ingeststore", 12000, 2000, 12000, 2.1, 6.5, 12.0),
                       TailRun("cluster", 12000, 2000, 12000, 110.2, 205.0, 240.1)],
                      [StallRun(False, [1.01, 1.05, 0.99]), StallRun(True, [1.02, 1.0, 1.04])])
    histogram = HistogramReport("20260101T000000Z", m, "2026-01-01 00:00 UTC", "abc1234", 2048, 3, 2147483648,
                                10683998, [HistogramQuery("every record", "", 0.05, 1.2, 10683998, 10683998, 60),
                                           HistogramQuery("`ERROR`", "ERROR", 0.3, 0.35, 104000, 104000, 60)])
    replication = ReplicationReport("20260101T000000Z", m, "2026-01-01 00:00 UTC", "abc1234", 512, 10, 10, c200,
                                    [RfRun(rf, 3.0 * rf, 4.0 * rf, 150.0, 400.0, 600.0, 1000, 2.0 * rf)
                                     for rf in (1, 2, 3)])
    loki_push = LokiPushReport("20260101T000000Z", m, "2026-01-01 00:00 UTC", "abc1234", 512, 3, 2, c200,
                               [PushRun("batch", c200.lines, c200.bytes, 2671, 2.1, 2.4),
                                PushRun("loki", c200.lines, c200.bytes, 2671, 2.6, 3.1)])
    fresh = FreshReport("20260101T000000Z", m, 150, 30, 5, 3, 3730000, 750 * MIB, 3730000, 300 * MIB, 2000 * MIB,
                        [FreshQuery(label, 0.3, 0.25, 37000, 37000, 700 * MIB) for label, _, _ in FRESH_QUERIES])
    return {"run": run, "protocols": protocols, "store": store, "compaction": compaction, "fresh": fresh,
            "cluster": cluster,
            "tail": tail, "histogram": histogram, "replication": replication, "loki-push": loki_push}


EXPECTED_ROWS = {"run": [2, 2, 3, 6, 1], "protocols": [4], "store": [7, 7, 7], "compaction": [13], "fresh": [3],
                 "cluster": [15], "tail": [2, 2], "histogram": [2], "replication": [3],
                 "loki-push": [2]}  # per table


def tables(markdown: str) -> list[tuple[str, int]]:
    """(header row, number of data rows) of every Markdown table."""
    found, lines = [], markdown.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("|") and re.fullmatch(r"\|(-{3}:?\|)+", lines[i + 1]):
            rows = 0
            while i + 2 + rows < len(lines) and lines[i + 2 + rows].startswith("|"):
                rows += 1
            found.append((line, rows))
    return found


def selftest() -> int:
    """Render every section from canned results and check its tables (no sluice run).

    Each table must have the header of the same table in the committed BENCHMARKS.md and the
    expected number of rows; rewriting a section must keep the text outside its markers.
    """
    problems, committed = [], (ROOT / "BENCHMARKS.md").read_text()
    doc = "# head\n\nprose\n"
    for name, report in canned().items():
        body, label = RENDER[name](report), f"bench/bench.py {name}"
        json.dumps(dataclasses.asdict(report))
        found = tables(body)
        if [n for _, n in found] != EXPECTED_ROWS[name]:
            problems.append(f"{name}: tables have {[n for _, n in found]} rows, expected {EXPECTED_ROWS[name]}")
        section = re.search(f"<!-- BEGIN GENERATED: {re.escape(label)} -->\n(.*?)<!-- END GENERATED", committed, re.S)
        if not section:
            problems.append(f"{name}: BENCHMARKS.md has no section `{label}`")
        elif (want := [h for h, _ in tables(section.group(1))]) != [h for h, _ in found]:
            problems.append(f"{name}: table headers differ from BENCHMARKS.md's: {set(want) ^ {h for h, _ in found}}")
        doc = replace_generated(doc, label, body) + "trailer\n"
        if replace_generated(doc, label, body) != doc or not doc.startswith("# head\n\nprose\n"):
            problems.append(f"{name}: rewriting the section changed the text outside its markers")
    if ulid_ms("01ARYZ6S41TSV4RRFFQ69G5FAV") != 1469918176385:
        problems.append("ulid_ms is wrong")
    # A knob documented "(0: left out)" takes 0; the others do not.
    if parse_args(["store", "--nginx-mb", "0", "--realistic-mb", "0"]).nginx_mb != 0:
        problems.append("--nginx-mb 0 is not taken")
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            parse_args(["store", "--store-mb", "0"])
        problems.append("--store-mb 0 is taken")
    except SystemExit:
        pass
    for p in problems:
        print(f"selftest: {p}", file=sys.stderr)
    print(f"selftest: {'FAILED' if problems else 'ok'} ({len(RENDER)} sections rendered)")
    return 1 if problems else 0


COMMANDS: dict[str, Callable[[Ctx], Any]] = {"run": cmd_run, "protocols": cmd_protocols, "store": cmd_store,
                                             "compaction": cmd_compaction, "fresh": cmd_fresh, "cluster": cmd_cluster, "tail": cmd_tail,
                                             "histogram": cmd_histogram, "replication": cmd_replication,
                                             "loki-push": cmd_loki_push, "all": cmd_all,
                                             "selftest": selftest}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
