"""Shared by every module: paths and units, BenchError, the knobs and Ctx, the log and waits."""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar


BENCH_DIR = Path(__file__).resolve().parent.parent  # bench/, the parent of this package
ROOT = BENCH_DIR.parent
MIB = 1048576
QUERY_TIMEOUT = 600.0
T = TypeVar("T")
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy for the nodes on 127.0.0.1


class BenchError(Exception):
    """A failed step: main() prints it and exits 1."""


# ------------------------------------------------------------------ knobs --

KNOBS: list[tuple[str, str, str, Any, str]] = [  # subcommands ("*": all), flag, env, default (None: computed), help
    ("*", "--bin", "SLUICE_BIN", "target/dist/sluice", "binary under test (scripts/build-release makes it)"),
    ("*", "--output", "SLUICE_BENCH_OUTPUT", "BENCHMARKS.md", "report file; only the subcommand's section is rewritten"),
    ("*", "--no-build", "SLUICE_BENCH_NO_BUILD", False, "skip the build (`bash scripts/build-release`)"),
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
