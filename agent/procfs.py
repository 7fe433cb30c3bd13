"""What Linux's /proc says about this process and its threads, in base units (seconds, bytes).

The parsers are pure functions over the files' bytes (unit-tested with real samples); the readers
return None where /proc is missing (not Linux) or a file vanished (a thread that just ended).
Reading a file releases the GIL: call these off the sampling hot path.

The one ``stat`` parser of the project: the exporter reads other processes' files through it too
(importing this module runs nothing but definitions).
"""

from __future__ import annotations

import os
from typing import Dict, NamedTuple, Optional

_CLOCK_TICKS: Optional[int] = None

# /proc/PID/stat fields after the ")" that ends the command name, counted from 0 (man 5 proc).
_STATE, _UTIME, _STIME, _NUM_THREADS, _STARTTIME, _RSS = 0, 11, 12, 17, 19, 21


class Stat(NamedTuple):
    """A process's or thread's ``stat`` file, the fields Peeka reads."""

    name: str
    state: str  # R running, S sleeping, D disk wait, ...
    cpu_seconds: float  # user + system
    threads: int  # of the process
    start_ticks: int  # when it started, in clock ticks after boot
    rss_pages: int  # resident pages (the process's; a thread shows its process's)


def clock_ticks() -> int:
    global _CLOCK_TICKS
    if _CLOCK_TICKS is None:
        _CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
    return _CLOCK_TICKS


def parse_stat(raw: bytes, ticks: int) -> Stat:
    """A ``stat`` file (process or task), ``ticks`` clock ticks a second; ValueError/IndexError when
    it is not one. The command name may hold spaces and parentheses: fields follow its last ")"."""
    head, _, rest = raw.rpartition(b")")
    name = head.split(b"(", 1)[1].decode("utf-8", "replace")
    fields = rest.split()
    cpu = (int(fields[_UTIME]) + int(fields[_STIME])) / ticks
    return Stat(name, fields[_STATE].decode("ascii", "replace"), cpu, int(fields[_NUM_THREADS]),
                int(fields[_STARTTIME]), int(fields[_RSS]))


def parse_kb_table(raw: bytes) -> Dict[str, int]:
    """``status`` / ``smaps_rollup`` lines ``Key:   123 kB`` -> {key: bytes}; other lines skipped."""
    out: Dict[str, int] = {}
    for line in raw.splitlines():
        key, sep, value = line.partition(b":")
        parts = value.split()
        if sep and len(parts) == 2 and parts[1] == b"kB" and parts[0].isdigit():
            out[key.decode("ascii", "replace")] = int(parts[0]) * 1024
    return out


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _stat(path: str) -> Optional[Stat]:
    raw = _read(path)
    if raw is None:
        return None
    try:
        return parse_stat(raw, clock_ticks())
    except (ValueError, IndexError):
        return None


def task_stat(native_id: int) -> Optional[Stat]:
    """One thread's stat; None when it is gone or not Linux."""
    return _stat("/proc/self/task/%d/stat" % native_id)


def all_task_stats() -> Dict[int, Stat]:
    """Every OS thread of this process (Python or not): native id -> its stat."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return {}
    out = {}
    for tid in tids:
        if tid.isdigit():
            stat = task_stat(int(tid))
            if stat is not None:
                out[int(tid)] = stat
    return out


def process_stat() -> Optional[Stat]:
    return _stat("/proc/self/stat")


def start_time() -> Optional[float]:
    """This process's start, wall-clock seconds since the epoch; None without /proc."""
    import time

    stat = process_stat()
    uptime = _read("/proc/uptime")
    if stat is None or uptime is None:
        return None
    try:
        return time.time() - float(uptime.split()[0]) + stat.start_ticks / clock_ticks()
    except (ValueError, IndexError):
        return None


def memory() -> Dict[str, Optional[int]]:
    """Resident, virtual, peak resident, unique (USS), proportional (PSS) and swapped bytes.

    USS is what the process alone holds (Private_Clean + Private_Dirty of smaps_rollup, Linux
    4.14+): what would be freed if it exited. Missing numbers are None.
    """
    status = parse_kb_table(_read("/proc/self/status") or b"")
    rollup = parse_kb_table(_read("/proc/self/smaps_rollup") or b"")
    private = [rollup[k] for k in ("Private_Clean", "Private_Dirty") if k in rollup]
    return {
        "rss_bytes": status.get("VmRSS"),
        "vms_bytes": status.get("VmSize"),
        "peak_rss_bytes": status.get("VmHWM"),
        "uss_bytes": sum(private) if len(private) == 2 else None,
        "pss_bytes": rollup.get("Pss"),
        "swap_bytes": status.get("VmSwap"),
    }


def rss_bytes() -> Optional[int]:
    return parse_kb_table(_read("/proc/self/status") or b"").get("VmRSS")
