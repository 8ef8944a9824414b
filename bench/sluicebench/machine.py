"""The machine a report describes (CPU, memory, kernel, disk, tools) and the commit under test."""
from __future__ import annotations

import os
import re
import subprocess
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from .common import BENCH_DIR, ROOT


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
