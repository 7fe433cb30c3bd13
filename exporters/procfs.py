"""A target's CPU time, resident memory and thread count, read from /proc by the exporter itself."""

from __future__ import annotations

import os

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def process_numbers(pid: int, proc: str = "/proc") -> dict[str, float] | None:
    """``{"cpu_seconds", "resident_bytes", "threads"}``, or None when the process is gone."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])
    return {
        "cpu_seconds": (utime + stime) / _TICKS,
        "threads": float(fields[17]),
        "resident_bytes": float(int(fields[21]) * _PAGE),
    }
