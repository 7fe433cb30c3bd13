"""A target's CPU time, resident memory and thread count, read from /proc by the exporter itself.

The file is parsed by the agent's own parser (``peeka_agent.procfs``: pure, nothing runs on import).
"""

from __future__ import annotations

import os

from peeka_agent.procfs import parse_stat

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def process_numbers(pid: int, proc: str = "/proc") -> dict[str, float] | None:
    """``{"cpu_seconds", "resident_bytes", "threads"}``, or None when the process is gone."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    stat = parse_stat(raw, _TICKS)
    return {
        "cpu_seconds": stat.cpu_seconds,
        "threads": float(stat.threads),
        "resident_bytes": float(stat.rss_pages * _PAGE),
    }
