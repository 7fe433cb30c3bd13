"""top: the hottest functions right now, from sampling every thread's stack inside the target.

An agent thread samples ``sys._current_frames()`` at ``rate`` Hz (all threads but the agent's own;
see sampling.py) and every ``interval`` seconds emits a summary of that interval. Shares are of CPU
time: each thread's samples count by the share of a core it used over the interval (from
/proc/self/task/TID/stat), so a thread that sleeps or waits (below 1% of a core: left out, counted
in ``threads_idle``) does not drown the busy ones, as py-spy leaves idle samples out. A partly busy
thread's waiting samples still count at its weight. ``idle: true`` counts every sample as 1
(wall-clock shares, all threads, like ``py-spy --idle``).

args: ``interval`` (s, default 1, >= 0.1), ``rate`` (Hz, default 100, 1-1000), ``limit`` (summaries,
then the stream ends), ``timeout`` (s), ``record`` (s: sample that long, then emit one ``profile``
event and end), ``idle`` (bool), ``stacks`` (bool: each summary carries its collapsed stacks),
``functions`` (rows per summary, default 30).

Events (numbers in base units; sample counts are CPU-weighted as above, hence fractional):
  summary  {type: "summary", time (epoch s), interval_s, ticks (sampling rounds), rate_hz (achieved),
            samples (weighted thread stacks counted), threads_sampled (busy), threads_idle (left out),
            functions: [{function ("module.qualname"), file, line (of the def), self_samples,
                         total_samples, self_percent, total_percent}],
            process: {cpu_percent (100 = one core), cpu_seconds, rss_bytes, threads,
                      gc: {counts [3], collections [3] (this interval), collected [3], uncollectable [3]}},
            sampler: {busy_seconds (GIL held while sampling), busy_percent (of the interval)},
            stacks?: [[collapsed line, samples]]}
  profile  (with ``record``) the whole recording: {type: "profile", duration_s, ticks, samples,
            functions (as above), collapsed: [[line, samples]] ("thread NAME;outer;...;inner"),
            process (as above, over the last interval)}
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any, Dict, List, Optional

from .. import compat, origins, procfs, sampling
from ..streams import Stream, float_arg, int_arg

IDLE_CPU_SHARE = 0.01  # a thread below 1% of one core over the interval counts as idle


class Top(Stream):
    def __init__(self, args: Dict[str, Any]) -> None:
        self.interval = float_arg(args, "interval", 1.0, 0.1) or 1.0
        self.rate = int_arg(args, "rate", 100, 1, 1000)
        self.record = float_arg(args, "record", None, 0.1)
        self.timeout = float_arg(args, "timeout", None, 0.0)
        self.max_reports = int_arg(args, "limit", 0, 0, 10**9)
        self.rows = int_arg(args, "functions", 30, 1, 10_000)
        self.idle = bool(args.get("idle", False))
        self.with_stacks = bool(args.get("stacks", False))
        super().__init__(limit=None)
        self.sampler = sampling.Sampler()
        self.names = sampling.Names()
        self.recorded: sampling.Labelled = {}
        self.wake = compat.Event()  # a real lock: a gevent-patched Event would wait on a hub nobody runs

    def describe(self) -> Dict[str, Any]:
        return {"stream": True, "rate_hz": self.rate, "interval_s": self.interval, "record_s": self.record,
                "idle": self.idle}

    def on_stop(self) -> None:
        self.wake.set()

    def run(self) -> None:
        period = 1.0 / self.rate
        started = time.monotonic()
        end = None
        if self.record is not None:
            end = started + self.record
        elif self.timeout is not None:
            end = started + self.timeout
        window = _Window(self.sampler)
        next_report = started + self.interval
        next_tick = started
        reports = 0
        while not self.cancelled:
            self.sampler.sample()
            next_tick += period
            now = time.monotonic()
            if next_tick < now:  # fell behind (a long GIL wait): skip, do not burst
                next_tick = now + period
            if now >= next_report or (end is not None and now >= end):
                stacks = window.close(self.names, self.idle)
                if self.record is not None:
                    sampling.merge(self.recorded, stacks)
                else:
                    self.emit(window.summary(stacks, self.names, self.rows, self.with_stacks))
                    reports += 1
                if end is not None and now >= end:
                    if self.record is not None:
                        self.emit(self.profile(now - started, window))
                    self.finish("record" if self.record is not None else "timeout")
                    return
                if self.max_reports and reports >= self.max_reports:
                    self.finish("limit")
                    return
                window = _Window(self.sampler, window)
                next_report += self.interval
            if self.wake.wait(max(0.0, next_tick - time.monotonic())):
                return

    def profile(self, duration: float, last: _Window) -> Dict[str, Any]:
        samples, functions = sampling.summarize(self.recorded, self.names.where, self.rows)
        return {"type": "profile", "duration_s": round(duration, 3), "samples": samples,
                "functions": functions, "collapsed": sampling.collapsed(self.recorded),
                "process": last.process()}


class _Window:
    """One report interval: the sampler's counts plus the process and thread CPU around them.

    A window starts from the numbers its predecessor read when it closed, so /proc is read once
    per interval (each read releases the GIL, and taking it back costs the host a switch).
    """

    def __init__(self, sampler: sampling.Sampler, previous: Optional[_Window] = None) -> None:
        self.sampler = sampler
        self.started = time.monotonic() if previous is None else previous.closed
        self.threads = _python_threads()
        sampler.skip = frozenset(i for i, (_name, _nid, agent) in self.threads.items() if agent)
        if previous is None:
            self.cpu_before = _thread_cpu(self.threads)
            stat = procfs.process_stat()
            self.process_cpu = stat[2] if stat else None
            self.gc_before = gc.get_stats()
        else:
            self.cpu_before = previous.cpu_after
            self.process_cpu = previous.process_cpu_after
            self.gc_before = previous.gc_after
        self.cpu_after: Dict[int, float] = {}
        self.idle: List[int] = []

    def close(self, names: sampling.Names, keep_idle: bool) -> sampling.Labelled:
        raw, self.ticks, self.busy = self.sampler.take()
        self.closed = time.monotonic()
        self.elapsed = max(1e-6, self.closed - self.started)
        weights: Optional[Dict[int, float]] = None
        sampled = {i for i, _codes in raw}
        self.cpu_after = _thread_cpu(self.threads)
        stat = procfs.process_stat()
        self.process_cpu_after = stat[2] if stat else None
        self.os_threads = stat[3] if stat else threading.active_count()
        self.rss = procfs.rss_bytes()
        self.gc_after = gc.get_stats()
        if not keep_idle:
            weights = {}
            for ident in sampled:
                now = self.cpu_after.get(ident)
                if now is None:
                    weights[ident] = 1.0  # no native id (a _thread thread): no way to tell, count it
                    continue
                # A thread first seen in this window started in it: all its CPU time is this window's.
                share = (now - self.cpu_before.get(ident, 0.0)) / self.elapsed
                if share >= IDLE_CPU_SHARE:
                    weights[ident] = min(1.0, share)
                else:
                    self.idle.append(ident)
        thread_names = {i: name for i, (name, _nid, _agent) in self.threads.items()}
        self.threads_sampled = len(sampled)
        return sampling.label_stacks(raw, weights, thread_names, names)

    def summary(self, stacks: sampling.Labelled, names: sampling.Names, rows: int, with_stacks: bool) -> Dict[str, Any]:
        samples, functions = sampling.summarize(stacks, names.where, rows)
        event: Dict[str, Any] = {
            "type": "summary", "time": time.time(), "interval_s": round(self.elapsed, 3), "ticks": self.ticks,
            "rate_hz": round(self.ticks / self.elapsed, 1), "samples": samples,
            "threads_sampled": self.threads_sampled - len(self.idle), "threads_idle": len(self.idle),
            "functions": functions, "process": self.process(),
            "sampler": {"busy_seconds": round(self.busy, 6), "busy_percent": round(100 * self.busy / self.elapsed, 3)},
        }
        if with_stacks:
            event["stacks"] = sampling.collapsed(stacks)[:5000]
        return event

    def process(self) -> Dict[str, Any]:
        """The process over this (closed) window: CPU, RSS, threads, GC."""
        cpu_percent = None
        if self.process_cpu_after is not None and self.process_cpu is not None:
            cpu_percent = round(100.0 * (self.process_cpu_after - self.process_cpu) / self.elapsed, 1)
        deltas = {key: [a[key] - b[key] for a, b in zip(self.gc_after, self.gc_before)]
                  for key in ("collections", "collected", "uncollectable")}
        return {
            "cpu_percent": cpu_percent,
            "cpu_seconds": None if self.process_cpu_after is None else round(self.process_cpu_after, 3),
            "rss_bytes": self.rss,
            "threads": self.os_threads,
            "gc": dict(counts=list(gc.get_count()), **deltas),
        }


def _python_threads() -> Dict[int, Any]:
    """ident -> (name, native id, is the agent's) for every thread running Python code."""
    import sys

    frames = sys._current_frames()
    out = {}
    for ident, frame in frames.items():
        t = threading._active.get(ident)  # type: ignore[attr-defined]
        name = t.name if t is not None else None
        out[ident] = (name or str(ident), getattr(t, "native_id", None), origins.is_agent_thread(name, frame))
    return out


def _thread_cpu(threads: Dict[int, Any]) -> Dict[int, float]:
    out = {}
    for ident, (_name, native_id, agent) in threads.items():
        if native_id is not None and not agent:
            stat = procfs.task_stat(native_id)
            if stat is not None:
                out[ident] = stat[2]
    return out


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Top:
    return Top(args)
