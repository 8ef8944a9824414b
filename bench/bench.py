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
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The sluicebench package lies beside this file: found from any cwd, also where the script's directory
# is not put on sys.path (python3 -P, or this file loaded by path).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from sluicebench import common
from sluicebench.cluster import cmd_cluster
from sluicebench.common import BENCH_DIR, ROOT, BenchError, Ctx, add_knobs, log
from sluicebench.compaction import cmd_compaction
from sluicebench.fresh import cmd_fresh
from sluicebench.histogram import cmd_histogram
from sluicebench.lokipush import cmd_loki_push
from sluicebench.nodes import ulid_ms
from sluicebench.output import RENDER, replace_generated
from sluicebench.procs import Proc
from sluicebench.protocols import cmd_protocols
from sluicebench.replication import cmd_replication
from sluicebench.run import cmd_run
from sluicebench.selftest import EXPECTED_ROWS, canned, runner_problems, tables
from sluicebench.store import cmd_store
from sluicebench.tail import cmd_tail


# ------------------------------------------------------------------ knobs --


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


# ========================================================== output, main --


def build(ctx: Ctx) -> None:
    if ctx.args.no_build:
        log("skipping build (SLUICE_BENCH_NO_BUILD=1)")
    elif subprocess.run(["bash", "scripts/build-release", "-q"], cwd=ROOT, stdout=subprocess.DEVNULL).returncode != 0:
        raise BenchError("bash scripts/build-release failed")
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
    args = parse_args(argv)
    if args.command == "selftest":
        return selftest()
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    ctx = Ctx(args, run_id, BENCH_DIR / "out" / f"run-{run_id}", str(Path(args.bin).resolve()))
    ctx.out.mkdir(parents=True, exist_ok=True)
    common.LOG_FILE = open(ctx.out / "bench.log", "a")  # log() reads it from common
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
    problems += runner_problems()
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
