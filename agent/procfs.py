"""What Linux's /proc says about this process and its threads, in base units (seconds, bytes).

The parsers are pure functions over the files' bytes (unit-tested with real samples); the readers
return None where /proc is missing (not Linux) or a file vanished (a thread that just ended).
Reading a file releases the GIL: call these off the sampling hot path. Every thread's ``stat`` is
read with the GIL held (see ``all_task_stats``).

The one ``stat`` parser of the project: the exporter reads other processes' files through it too
(importing this module runs nothing but definitions).
"""

from __future__ import annotations

import os
from typing import Callable, Dict, NamedTuple, Optional

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


def _stat(path: str, read: Callable[[str], Optional[bytes]] = _read) -> Optional[Stat]:
    raw = read(path)
    if raw is None:
        return None
    try:
        return parse_stat(raw, clock_ticks())
    except (ValueError, IndexError):
        return None


def task_stat(native_id: int) -> Optional[Stat]:
    """One thread's stat; None when it is gone or not Linux."""
    return _stat("/proc/self/task/%d/stat" % native_id)


_HELD_CHUNK = 256  # files read in one hold of the GIL (a few microseconds each); released between chunks


class _HeldReader:
    """libc's open/read/close called through ``ctypes.PyDLL``, which keeps the GIL across the call.

    Python's own file calls release the GIL around every system call (open, fstat, read to EOF,
    close: five per file). When the host's threads are busy, each time this thread wants the GIL
    back it waits for a switch interval (5 ms) or more, so 600 threads' files took 2-30 s while two
    threads computed; and each of those hand-offs cost the host a switch. Held, 600 files take a few
    milliseconds of GIL."""

    def __init__(self) -> None:
        import ctypes  # only here: a process that never lists its threads never loads it

        libc = ctypes.PyDLL(None)
        self.open, self.read, self.close, self.string_at = libc.open, libc.read, libc.close, ctypes.string_at
        self.open.argtypes, self.open.restype = [ctypes.c_char_p, ctypes.c_int], ctypes.c_int
        self.read.argtypes, self.read.restype = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t], ctypes.c_ssize_t
        self.close.argtypes, self.close.restype = [ctypes.c_int], ctypes.c_int
        self.size = 4096  # a stat file is a few hundred bytes
        self.buffer = ctypes.create_string_buffer(self.size)
        self.flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)

    def __call__(self, path: str) -> Optional[bytes]:
        fd = self.open(path.encode(), self.flags)
        if fd < 0:
            return None
        try:
            n = self.read(fd, self.buffer, self.size)
        finally:
            self.close(fd)
        if n >= self.size:  # not a stat file as we know them: Python's read takes it whole
            return _read(path)
        return self.string_at(self.buffer, n) if n > 0 else None


_held: Optional[_HeldReader] = None
_held_failed = False


def _held_reader() -> Optional[_HeldReader]:
    global _held, _held_failed
    if _held is None and not _held_failed:
        try:
            _held = _HeldReader()
        except Exception:  # no ctypes (a stripped or isolated build) or no libc symbols: Python's reads
            _held_failed = True
    return _held


def all_task_stats() -> Dict[int, Stat]:
    """Every OS thread of this process (Python or not): native id -> its stat."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return {}
    out = {}
    held = _held_reader() if len(tids) > 8 else None
    for n, tid in enumerate(tids):
        if not tid.isdigit():
            continue
        if held is not None and n and not n % _HELD_CHUNK:
            os.sched_yield()  # releases the GIL once: the host runs between chunks
        stat = _stat("/proc/self/task/%s/stat" % tid, held or _read)
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
