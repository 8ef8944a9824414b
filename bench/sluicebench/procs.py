"""The processes this program starts (Proc), the short commands it times, and /proc and port helpers."""
from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import suppress
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

from .common import BENCH_DIR, MIB, QUERY_TIMEOUT, BenchError, log


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
    return _run(argv, timeout, maxrc, capture)[0]


def timed_run(argv: list[str], timeout: float = QUERY_TIMEOUT, maxrc: int = 0) -> float:
    """Run a short command as run_cmd does, stdout to /dev/null; the wall time from its start to its exit."""
    return _run(argv, timeout, maxrc, False)[1]


def _run(argv: list[str], timeout: float, maxrc: int, capture: bool) -> tuple[bytes, float]:
    """(stdout if capture, wall seconds from spawning argv to its exit).

    The exit is seen through a pidfd, which the kernel makes readable the moment the child exits. Not
    through subprocess's wait(timeout): that polls, sleeping 0.5 ms, then 1, 2, 4 ms..., and timed a
    2 ms query 0.3 to 1.2 ms slow (the best and the median of 200 runs), a 26 ms rg run a few percent
    at most. Output goes to temporary files, so a chatty child never blocks on a full pipe."""
    with tempfile.TemporaryFile() as err, (tempfile.TemporaryFile() if capture else open(os.devnull, "wb")) as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        pidfd = os.pidfd_open(proc.pid)
        try:
            exit_watch = select.poll()
            exit_watch.register(pidfd, select.POLLIN)
            if not exit_watch.poll(timeout * 1000):
                raise BenchError(f"timed out after {timeout:g}s: {' '.join(argv)}")
            elapsed = time.monotonic() - t0
        except BaseException:  # the timeout, or Ctrl-C: leave no child behind
            proc.kill()
            proc.wait()
            raise
        finally:
            os.close(pidfd)
        rc = proc.wait()
        if not 0 <= rc <= maxrc:
            err.seek(0)
            raise BenchError(f"command failed (rc {rc}): {' '.join(argv)}\n"
                             + err.read().decode(errors="replace")[-2000:])
        if not capture:
            return b"", elapsed
        out.seek(0)
        return out.read(), elapsed


def best_of(n: int, argv: list[str], maxrc: int = 0) -> float:
    """The best wall time of n runs, stdout to /dev/null (rg exits 1 when nothing matches)."""
    return min(timed_run(argv, maxrc=maxrc) for _ in range(n))


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
