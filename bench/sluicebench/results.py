"""Report, which every subcommand's results extend, Corpus, and the typed results of `run`."""
from __future__ import annotations

from dataclasses import dataclass, field

from .machine import Machine


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
