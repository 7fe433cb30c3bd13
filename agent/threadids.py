"""Which OS thread each Python thread is, which one is the main thread, and their CPU clocks.

``threading`` cannot be trusted for either: a thread started with ``_thread`` (or by C code) has no
Thread object, and ``threading`` imported first from a non-main thread records that thread as the
main one (its native id on 3.13+, its ident too before). The kernel can tell: on Linux the main
thread's native id is the pid, and ``pthread_getcpuclockid`` encodes a live thread's native id in
the clock id it returns (``~tid << 3 | 6``, the kernel's ABI for per-thread CPU clocks, produced
the same way by glibc and musl). The same clock read with ``clock_gettime`` is the thread's CPU
time in nanoseconds: no /proc file to open, so reading it never hands the GIL over.
"""

from __future__ import annotations

import collections
import itertools
import os
import sys
import time
from typing import Any, Dict, Optional

from . import compat

_CPUCLOCK_PERTHREAD_SCHED = 6  # CPUCLOCK_PERTHREAD_MASK | CPUCLOCK_SCHED (linux/posix-timers.h)
_LINUX = sys.platform.startswith("linux")
_getcpuclockid = getattr(time, "pthread_getcpuclockid", None) if _LINUX else None
_clock_ns = getattr(time, "clock_gettime_ns", None)

_main: Dict[int, int] = {}  # pid -> the main thread's ident (a fork child has its own)


def cpu_clock(native_id: int) -> int:
    """The clock id of one thread's CPU time (this process's threads only: the kernel refuses others)."""
    return (~native_id << 3) | _CPUCLOCK_PERTHREAD_SCHED


def cpu_ns(clock: int) -> Optional[int]:
    """CPU nanoseconds on a thread's clock; None when the thread is gone (or no such clock here)."""
    if _clock_ns is None:
        return None
    try:
        return _clock_ns(clock)
    except (OSError, OverflowError):
        return None


_readable: Dict[int, bool] = {}


def can_read_cpu_clocks() -> bool:
    pid = os.getpid()
    if pid not in _readable:
        _readable[pid] = _LINUX and _clock_ns is not None and cpu_ns(cpu_clock(pid)) is not None
    return _readable[pid]


def cpu_clocks(native: Dict[int, Optional[int]]) -> Optional[Dict[int, int]]:
    """ident -> CPU clock id for the threads of ``native`` (ident -> native id) whose native id is
    known; None where this OS has no per-thread CPU clocks (then samples can only be counted)."""
    if not can_read_cpu_clocks():
        return None
    return {ident: cpu_clock(tid) for ident, tid in native.items() if tid is not None}


def native_ids() -> Dict[int, int]:
    """ident -> native id for every thread running Python code now ({} where the OS cannot say).

    ``pthread_getcpuclockid`` reads the thread's descriptor, which may be unmapped once the thread
    has ended: the idents are listed and the clocks read in one chain of C calls, with no bytecode
    between them at which the eval loop could hand the GIL to a thread that then exits.
    """
    if _getcpuclockid is None:
        return {}
    listed = itertools.chain.from_iterable(compat.frames_lazily())
    idents, again = itertools.tee(listed)
    try:
        pairs = list(zip(idents, map(_getcpuclockid, again)))
    except (OSError, OverflowError, ValueError):
        return {}
    finally:
        collections.deque(idents, maxlen=0)  # to its end (a failure left it midway): the collector runs again
    return {ident: ~(clock >> 3) for ident, clock in pairs if clock & 7 == _CPUCLOCK_PERTHREAD_SCHED}


def main_ident() -> Optional[int]:
    """The main thread's ident, not trusting ``threading``'s record (see the module's docstring)."""
    pid = os.getpid()
    known = _main.get(pid)
    if known is not None and known in compat.current_frames():
        return known
    found = None
    try:  # 3.13+; eventlet's green _thread has its own, naming a greenlet
        getter = compat.original("_thread", "_get_main_thread_ident")
        found = getter()
    except Exception:
        found = None
    if found not in compat.current_frames():
        found = None
    if found is None:
        found = next((i for i, tid in native_ids().items() if tid == pid), None)
    if found is None:
        threading = sys.modules.get("threading")
        return getattr(threading.main_thread(), "ident", None) if threading is not None else None
    _main.clear()
    _main[pid] = found
    return found


def remember_main(ident: Any) -> None:
    """The boot script ran on the main thread and saw its ident."""
    if type(ident) is int:
        _main.clear()
        _main[os.getpid()] = ident
