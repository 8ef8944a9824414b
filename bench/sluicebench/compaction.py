"""`bench.py compaction`: compaction under sustained ingest; and its section."""
from __future__ import annotations

import json
import time
from contextlib import suppress
from dataclasses import dataclass, field
from statistics import median_low
from subprocess import PIPE

from .common import BenchError, Ctx, log, wait_until
from .formatting import mib, mibs, ratio, rss, table
from .machine import machine_info
from .nodes import Node, is_block_file, running_node
from .procs import Proc, run_cmd
from .results import Report


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
