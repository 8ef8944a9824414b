"""What `bench.py selftest` checks: canned results like a real run's, and the rows of each table."""
from __future__ import annotations

import re
import subprocess
from typing import Any
from unittest import mock

from .cluster import ClusterQuery, ClusterReport, ClusterRun
from .common import MIB, BenchError
from .compaction import CompactionReport, CompactionSample
from .fresh import FRESH_QUERIES, FreshQuery, FreshReport
from .histogram import HistogramQuery, HistogramReport
from .lokipush import LokiPushReport, PushRun
from .machine import Machine
from .procs import run_cmd, timed_run
from .protocols import INPUTS, ProtocolRun, ProtocolsReport
from .replication import ReplicationReport, RfRun
from .results import Corpus, ForwardCpuResult, ForwardResult, IngestResult, QueryResult, RunReport
from .store import STORE_CORPORA, STORE_TARGETS, StoreCorpus, StoreQuery, StoreReport
from .tail import StallRun, TailReport, TailRun


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


def runner_problems() -> list[str]:
    """What is wrong with how short commands are run and timed (run_cmd, timed_run)."""
    problems = []
    if run_cmd(["sh", "-c", "echo captured"], capture=True) != b"captured\n":
        problems.append("run_cmd(capture=True) lost the command's stdout")
    try:
        run_cmd(["sh", "-c", "echo why >&2; exit 3"])
        problems.append("run_cmd took exit status 3 as success")
    except BenchError as e:
        if "rc 3" not in str(e) or "why" not in str(e):
            problems.append(f"run_cmd's failure does not give the status and stderr: {e}")
    try:
        run_cmd(["sleep", "10"], timeout=0.2)
        problems.append("run_cmd did not time out")
    except BenchError as e:
        if "timed out" not in str(e):
            problems.append(f"run_cmd's timeout says: {e}")
    # subprocess's wait(timeout) polls with sleeps of 0.5, 1, 2, 4 ms..., and timed a 2 ms query up to
    # 1.2 ms slow: a timed run must see the exit as it happens, never through that wait.
    waits: list[float | None] = []
    real_wait = subprocess.Popen.wait

    def recorded_wait(self: subprocess.Popen[bytes], timeout: float | None = None) -> int:
        waits.append(timeout)
        return real_wait(self, timeout)

    with mock.patch.object(subprocess.Popen, "wait", recorded_wait):
        if timed_run(["sh", "-c", "sleep 0.05; exit 1"], maxrc=1) < 0.05:
            problems.append("timed_run timed a 50 ms command at less than 50 ms")
    if any(t is not None for t in waits):
        problems.append(f"timed_run waited through Popen.wait with a timeout (it polls): {waits}")
    return problems
