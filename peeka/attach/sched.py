"""What the kernel tells about a target's main thread: how often it has run, whether it sleeps.

A ``sys.remote_exec`` request waits for the main thread to run Python code; one that sleeps on
without being scheduled once is blocked in C and will not (``BlockedWatch``). After gdb's
detach the main thread must run once before signals reach it again (``gdb.settle``).
"""

from __future__ import annotations

import time

from ..process import TargetProcess


def main_thread_runs(target: TargetProcess) -> int | None:
    """How many times the main thread has been on a CPU (schedstat's third field); None if unknown."""
    try:
        return int((target.proc / "task" / str(target.pid) / "schedstat").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return None


def main_thread_sleeps(target: TargetProcess) -> bool:
    """The main thread waits in the kernel (state S or D) rather than running or being runnable."""
    try:
        stat = (target.proc / "task" / str(target.pid) / "stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] in ("S", "D")  # after "(comm) "


class BlockedWatch:
    """Called now and then: True once the main thread has slept ``seconds`` without running once.

    A main thread that sleeps between bursts (``time.sleep(0.1)`` in a loop) runs again within
    its period, which resets the watch; one blocked in ``Event().wait()`` or ``pause()`` never
    does. A thread running on a CPU of its own is never "blocked" (it is not asleep). Without
    schedstat in the kernel the watch never fires.
    """

    def __init__(self, target: TargetProcess, seconds: float) -> None:
        self.target = target
        self.seconds = seconds
        self.runs = main_thread_runs(target)
        self.since = time.monotonic()

    def __call__(self) -> bool:
        runs = main_thread_runs(self.target)
        now = time.monotonic()
        if runs is None or runs != self.runs or not main_thread_sleeps(self.target):
            self.runs, self.since = runs, now
            return False
        return now - self.since >= self.seconds
