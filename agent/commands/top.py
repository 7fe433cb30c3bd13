"""top: the hottest functions right now, from sampling every thread's stack inside the target.

An agent thread samples ``sys._current_frames()`` at ``rate`` Hz (all threads but the agent's own;
see sampling.py) and every ``interval`` seconds emits a summary of that interval. Shares are of CPU
time: each sample counts the CPU nanoseconds its thread used since its previous sample (its
per-thread CPU clock, threadids.py: no /proc file per thread, nothing that hands the GIL over), so
a thread waiting in select/epoll/poll/sleep/a lock/a queue/recv/accept counts nothing. The sampler
holds the GIL while it samples, so it catches a thread either where the interpreter made it hand
the GIL over or where it gave it up itself, in a wait: CPU that a sample finds behind a wait went
to the stack the previous sample caught that thread running in, else to calls that returned
between samples, which are shared out like that thread's caught CPU of the same interval
(``sampling.apportion``; ``apportioned_percent`` says how much), or, for a thread never caught
running (bursts shorter than the 5 ms switch interval), shown as ``CALLER [calls returned between
samples]``. Which calls give the GIL up is known by name (sampling.WAIT_CALLS: waits, reads,
writes, sends, connects); a system call by another name still draws more samples than its share.
Under gevent the hub's loop counts as a wait, and CPU found there is shared out like the greenlets'
caught CPU (their stacks do not run through the hub's). The kernel's run state of other threads says nothing here (they all wait for the GIL
the sampler holds), so it is not used. py-spy reads the process from outside without the GIL and
can take a thread's state at the instant of its sample; in here, CPU clocks are what is sound.
``idle: true`` counts every sample as 1 (wall-clock shares, all threads, like ``py-spy --idle``)
and reads no clocks. A thread under 1% of a core over the interval counts in ``threads_idle``.

args: ``interval`` (s, default 1, >= 0.1), ``rate`` (Hz, default 100, 1-1000), ``limit`` (summaries,
then the stream ends), ``timeout`` (s), ``record`` (s: sample that long, then emit one ``profile``
event and end), ``idle`` (bool), ``stacks`` (bool: each summary carries its collapsed stacks),
``functions`` (rows per summary, default 30).

Events (numbers in base units; sample counts are CPU-weighted as above, hence fractional: a thread
busy for a whole tick counts 1):
  summary  {type: "summary", time (epoch s), interval_s, ticks (sampling rounds), rate_hz (achieved),
            samples (weighted thread stacks counted), weighting ("cpu", or "wall" with idle or where
            no per-thread CPU clock exists), apportioned_percent, threads_sampled (busy), threads_idle,
            functions: [{function ("module.qualname"), file, line (of the def), self_samples,
                         total_samples, self_percent, total_percent}],
            process: {cpu_percent (100 = one core), cpu_seconds, rss_bytes, threads,
                      gc: {counts [3], collections [3] (this interval), collected [3], uncollectable [3]}},
            sampler: {busy_seconds (GIL held while sampling), busy_percent (of the interval)},
            stacks?: [[collapsed line, samples]]}
  progress (with ``record``, every interval) {type: "progress", elapsed_s, left_s, ticks, samples (thread
            stacks caught so far, waits included)}
  profile  (with ``record``) the whole recording: {type: "profile", time (epoch s, its start), duration_s,
            ticks, rate_hz (asked), weighting, apportioned_percent, samples, functions (as above),
            collapsed: [[line, samples]] ("thread NAME;outer;...;inner"),
            frames: [[function, file, line of the def, line it was at (0: not known)]],
            stacks: [{thread, frames: [indices into frames, innermost first], samples (times the
                      sampler caught the thread there, waits included: wall-clock samples),
                      cpu_ns (CPU the thread used there; null with weighting "wall")}]
                    (heaviest first, up to RECORD_BYTES; stacks_left_out says how many more),
            process (as above, over the last interval), sampler (as above, over the recording)}
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any, Dict, List, Optional

from .. import compat, origins, procfs, protocol, sampling, threadids
from ..streams import Stream, float_arg, int_arg

IDLE_CPU_SHARE = 0.01  # a thread below 1% of one core over the interval counts as idle
# A recording's stacks are sent heaviest first until about this many bytes of JSON (a message is at
# most protocol.MAX_FRAME); the rest are counted in stacks_left_out.
RECORD_BYTES = 12 * 1024 * 1024


class Top(Stream):
    def __init__(self, args: Dict[str, Any]) -> None:
        self.interval = float_arg(args, "interval", 1.0, 0.1) or 1.0
        self.rate = int_arg(args, "rate", protocol.DEFAULT_TOP_RATE, 1, protocol.MAX_TOP_RATE)
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
        self.detail: sampling.Detailed = {}
        self.ticks = 0
        self.cpu_total = 0.0
        self.apportioned = 0.0
        self.caught = 0
        self.busy = 0.0
        if self.record is not None:
            self.sampler.counts = {}
        self.wake = compat.Event()  # a real lock: a gevent-patched Event would wait on a hub nobody runs

    def describe(self) -> Dict[str, Any]:
        return {"stream": True, "rate_hz": self.rate, "interval_s": self.interval, "record_s": self.record,
                "idle": self.idle}

    def on_stop(self) -> None:
        self.wake.set()

    def run(self) -> None:
        period = 1.0 / self.rate
        started = time.monotonic()
        self.started_at = time.time()
        end = None
        if self.record is not None:
            end = started + self.record
        elif self.timeout is not None:
            end = started + self.timeout
        weigh = not self.idle and threadids.can_read_cpu_clocks()
        window = _Window(self.sampler, weigh)
        next_report = started + self.interval
        next_tick = started
        reports = 0
        while not self.cancelled:
            self.sampler.sample()
            next_tick += sampling.jittered(period)
            now = time.monotonic()
            if next_tick < now:  # fell behind (a long GIL wait): skip, do not burst
                next_tick = now + sampling.jittered(period)
            if now >= next_report or (end is not None and now >= end):
                stacks = window.close(self.names, self.rate, self.detail if self.record is not None else None)
                if self.record is not None:
                    sampling.merge(self.recorded, stacks)
                    self.ticks += window.ticks
                    self.cpu_total += window.cpu_total
                    self.apportioned += window.cpu_total * window.apportioned / 100.0
                    self.caught += window.caught
                    self.busy += window.busy
                    if end is not None and now < end:
                        self.emit({"type": "progress", "elapsed_s": round(now - started, 3),
                                   "left_s": round(end - now, 3), "ticks": self.ticks, "samples": self.caught})
                else:
                    self.emit(window.summary(stacks, self.names, self.rows, self.with_stacks))
                    reports += 1
                # Code objects no longer sampled are let go; a recording keeps its labels' locations.
                self.names.forget(where=self.record is None)
                if end is not None and now >= end:
                    if self.record is not None:
                        self.emit(self.profile(now - started, window))
                    self.finish("record" if self.record is not None else "timeout")
                    return
                if self.max_reports and reports >= self.max_reports:
                    self.finish("limit")
                    return
                window = _Window(self.sampler, weigh, window)
                next_report += self.interval
            if self.wake.wait(max(0.0, next_tick - time.monotonic())):
                return

    def profile(self, duration: float, last: _Window) -> Dict[str, Any]:
        samples, functions = sampling.summarize(self.recorded, self.names.where, self.rows)
        frames, stacks, left_out = sampling.frames_and_stacks(self.detail, self.names, last.weigh, RECORD_BYTES)
        return {"type": "profile", "time": self.started_at, "duration_s": round(duration, 3), "ticks": self.ticks,
                "rate_hz": self.rate, "weighting": "cpu" if last.weigh else "wall",
                "apportioned_percent": round(100.0 * self.apportioned / self.cpu_total, 1) if self.cpu_total else 0.0,
                "samples": samples, "functions": functions, "collapsed": sampling.collapsed(self.recorded),
                "frames": frames, "stacks": stacks, "stacks_left_out": left_out, "process": last.process(),
                "sampler": {"busy_seconds": round(self.busy, 6), "busy_percent": round(100 * self.busy / duration, 3)}}


class _Window:
    """One report interval: the sampler's counts plus the process's CPU, RSS and GC around them.

    A window starts from the numbers its predecessor read when it closed, so /proc is read once
    per interval (each read releases the GIL, and taking it back costs the host a switch). Thread
    CPU comes from per-thread CPU clocks (threadids), read by the sampler with no file to open.
    """

    def __init__(self, sampler: sampling.Sampler, weigh: bool, previous: Optional[_Window] = None) -> None:
        self.sampler = sampler
        self.started = time.monotonic() if previous is None else previous.closed
        self.threads = _python_threads()
        sampler.skip = frozenset(i for i, (_name, _nid, agent) in self.threads.items() if agent)
        sampler.use_clocks(threadids.cpu_clocks({i: nid for i, (_name, nid, agent) in self.threads.items()
                                                 if not agent}) if weigh else None)
        self.weigh = weigh
        if previous is None:
            stat = procfs.process_stat()
            self.process_cpu = stat.cpu_seconds if stat else None
            self.gc_before = gc.get_stats()
        else:
            self.process_cpu = previous.process_cpu_after
            self.gc_before = previous.gc_after
        self.idle: List[int] = []

    def close(self, names: sampling.Names, rate: float, detail: Optional[sampling.Detailed] = None) -> sampling.Labelled:
        """The window's stacks, labelled and in samples; with ``detail``, also adds its stacks with
        their lines, CPU nanoseconds and times caught to it (sampling.detail)."""
        thread_cpu = self.sampler.thread_cpu
        raw, self.ticks, self.busy = self.sampler.take()
        counts = self.sampler.take_counts() if detail is not None else {}
        self.caught = sum(counts.values())
        self.apportioned = 0.0
        self.cpu_total = 0.0
        if self.weigh:
            total = self.cpu_total = sum(raw.values())
            raw, shared = sampling.apportion(raw)
            self.apportioned = 100.0 * shared / total if total else 0.0
        self.closed = time.monotonic()
        self.elapsed = max(1e-6, self.closed - self.started)
        stat = procfs.process_stat()
        self.process_cpu_after = stat.cpu_seconds if stat else None
        self.os_threads = stat.threads if stat else threading.active_count()
        self.rss = procfs.rss_bytes()
        self.gc_after = gc.get_stats()
        watched = [i for i, (_name, _nid, agent) in self.threads.items() if not agent]
        self.threads_sampled = len(watched)
        scale = 1.0
        if self.weigh:
            # CPU nanoseconds -> samples: a thread busy for one whole tick counts 1, as a sample would.
            scale = rate / 1e9
            floor = IDLE_CPU_SHARE * self.elapsed * 1e9
            self.idle = [i for i in watched if thread_cpu.get(i, 0) < floor]
        thread_names = {i: name for i, (name, _nid, _agent) in self.threads.items()}
        if detail is not None:
            sampling.detail(raw if self.weigh else None, counts, thread_names, names, detail)
        return sampling.label_stacks(raw, scale, thread_names, names)

    def summary(self, stacks: sampling.Labelled, names: sampling.Names, rows: int, with_stacks: bool) -> Dict[str, Any]:
        samples, functions = sampling.summarize(stacks, names.where, rows)
        event: Dict[str, Any] = {
            "type": "summary", "time": time.time(), "interval_s": round(self.elapsed, 3), "ticks": self.ticks,
            "rate_hz": round(self.ticks / self.elapsed, 1), "samples": samples,
            "weighting": "cpu" if self.weigh else "wall", "apportioned_percent": round(self.apportioned, 1),
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
    frames = compat.current_frames()
    os_ids = threadids.native_ids()
    main = threadids.main_ident()
    out = {}
    for ident, frame in frames.items():
        t = threading._active.get(ident)  # type: ignore[attr-defined]
        name = t.name if t is not None else None
        if ident == main and (t is None or t is threading._main_thread):  # type: ignore[attr-defined]
            name = "MainThread"
        native_id = os_ids.get(ident) or getattr(t, "native_id", None)
        out[ident] = (name or str(ident), native_id, origins.is_agent_thread(name, frame))
    return out


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Top:
    return Top(args)
