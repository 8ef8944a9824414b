"""The nodes a benchmark starts (Node, start_node, running_node) and helpers for their files."""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import HTTP, QUERY_TIMEOUT, BenchError, Ctx, log, tail, wait_until
from .procs import Proc, free_ports, proc_field, run_cmd


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
