"""Numbers and Markdown tables as the rendered sections print them."""
from __future__ import annotations

from .common import MIB


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
