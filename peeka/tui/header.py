"""The header, always shown: who the target is, how it is doing, and what Peeka costs it now.

What it costs the target to keep the header up: nothing but two cheap requests. CPU %, RSS and the
thread count come from ``/proc/PID/stat``, read by the TUI's own process (the target does nothing
for it); the hello gives pid, command line, Python and start time; ``ping`` the attach method once;
``memory`` without a census every ``GC_EVERY_S`` the GC's collections. No sampler runs for it: the
Top view's sampler runs only while that view is shown.

Peeka's cost, shown on the second line, is measured, not assumed:
  * agent: the CPU the agent's own threads used over the last second (their ``/proc/PID/task/TID/stat``,
    the threads learnt from a ``thread`` request every ``AGENT_THREADS_EVERY_S``), as % of one core;
  * sampler: while the Top view runs ``top``, the share of each second its sampler held the GIL
    (``sampler.busy_percent`` of the summaries): the host's threads could not run Python meanwhile;
  * probes: what the probed calls cost the host's own threads, which no agent thread pays for: the
    calls per second each probe stream of the TUI sees (watch and trace: one event a call, plus the
    calls the overhead governor sampled out, from its events; monitor: its cycles' counts) times what
    one call costs probed that way here, as the agent's governor calibrated it for that kind of
    stream (``ping``'s ``probe_costs``: a dummy function timed bare and probed, once per agent). The
    TUI runs its probe streams with the governor at ``BUDGET_PERCENT`` (``overhead_budget``), one
    budget for all of them (the session's ``budget_group``: the watch and the monitor beside it split
    it), so a hot function is sampled or duty-cycled rather than slowing the target down; a trace's sampled call is
    counted as its root's cost (the calls recorded below it cost more, ``node_ns`` each);
  * streams: events per second the TUI's streams deliver (watch calls, log records).
The sum of agent, sampler and probes is compared with the budget (``BUDGET_PERCENT`` of one core)
and turns red above it.
"""

from __future__ import annotations

import os
import shlex
import time
from collections import deque
from pathlib import Path
from typing import Any

from peeka_agent import procfs
from rich.text import Text
from textual.widgets import Static

from ..errors import PeekaError
from .view import on_loop

SPARK = "▁▂▃▄▅▆▇█"
SPARK_POINTS = 30
GC_EVERY_S = 5.0
AGENT_THREADS_EVERY_S = 5.0  # and the probes' calibrated costs (ping)
PER_CALL_STREAMS = ("watch", "trace", "stack")  # one event per call seen
COST_WINDOW = 5  # readings (seconds) the agent's CPU and the events are averaged over
BUDGET_PERCENT = 5.0  # the project's budget for what a diagnostic costs the target


def sparkline(points: list[float]) -> str:
    if not points:
        return ""
    low, high = min(points), max(points)
    span = (high - low) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((p - low) / span * (len(SPARK) - 1)))] for p in points)


def size(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.1f} GiB"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


def read_stat(path: Path) -> procfs.Stat | None:
    try:
        return procfs.parse_stat(path.read_bytes(), procfs.clock_ticks())
    except (OSError, ValueError, IndexError):
        return None  # the process or thread is gone


class Rate:
    """A counter's advance per second over the last ``window`` readings (CPU times from /proc move
    in clock ticks of 10 ms: over one second a light thread reads 0 or 1 %, over five it is
    closer)."""

    def __init__(self, window: int = 1) -> None:
        self.readings: deque[tuple[float, float]] = deque(maxlen=window + 1)

    def update(self, value: float, now: float) -> float | None:
        self.readings.append((value, now))
        first_value, first_time = self.readings[0]
        if now <= first_time:
            return None
        return max(0.0, value - first_value) / (now - first_time)


class ProcessHeader(Static):
    DEFAULT_CSS = "ProcessHeader { height: 3; background: $boost; padding: 0 1; }"

    def __init__(self) -> None:
        super().__init__(id="header")
        self.method = "?"
        self.gc_total: list[int] | None = None
        self.rss: deque[float] = deque(maxlen=SPARK_POINTS)
        self.cpu: float | None = None
        self.rss_now: float | None = None
        self.threads: int | None = None
        self.gone = False
        self.costs: dict[str, float] = {}  # source -> its sampler's busy percent, last second
        self.agent_cpu: float | None = None
        self.agent_tids: list[int] = []
        self.events_per_s = 0.0
        self._cpu_rate = Rate()
        self._agent_rates: dict[int, Rate] = {}  # per agent thread: one that comes or goes moves no other's
        self._events_rate = Rate(COST_WINDOW)
        self._next_gc = 0.0
        self._next_threads = 0.0
        self.unit_costs: dict[str, dict[str, float]] = {}  # stream kind -> ping's probe_costs row
        self.skipped: dict[int, int] = {}  # stream id -> calls its governor sampled out so far
        self.monitor_calls: dict[str, float] = {}  # source -> calls/s a monitor stream counts
        self._call_rates: dict[int, tuple[Rate, Rate]] = {}  # stream id -> (events, skipped) per second
        self.probe_calls = 0.0  # calls/s the probes see
        self.probe_percent: float | None = None  # what they cost the host's threads, % of one core
        self.per_call_ns: float | None = None
        self._next_costs = 0.0

    @property
    def pid(self) -> int:
        """The target's PID as this machine's /proc knows it (the hello's may be a container's)."""
        return self.app.session.client.target.pid  # type: ignore[attr-defined,no-any-return]

    def on_mount(self) -> None:
        self.tick()
        self.set_interval(1.0, self.tick)
        self.run_worker(self._ping, thread=True, exit_on_error=False)

    def _ping(self) -> None:
        try:
            self.method = self.app.session.request("ping", {}).get("method") or "?"  # type: ignore[attr-defined]
        except PeekaError as exc:
            on_loop(self, self.app.show_error, exc)  # type: ignore[attr-defined]

    def tick(self) -> None:
        now = time.monotonic()
        proc = Path(f"/proc/{self.pid}")
        stat = read_stat(proc / "stat")
        if stat is None or stat.state in ("Z", "X"):  # gone, or dead and not yet reaped by its parent
            self.gone = True
        else:
            self.cpu = self._cpu_rate.update(stat.cpu_seconds, now)
            self.cpu = None if self.cpu is None else self.cpu * 100
            self.rss_now = float(stat.rss_pages * os.sysconf("SC_PAGE_SIZE"))
            self.rss.append(self.rss_now)
            self.threads = stat.threads
            rates = []
            for tid, thread_rate in self._agent_rates.items():
                thread_stat = read_stat(proc / "task" / str(tid) / "stat")
                if thread_stat is not None:
                    rates.append(thread_rate.update(thread_stat.cpu_seconds, now))
            known = [r for r in rates if r is not None]  # a thread's first reading has no rate yet
            self.agent_cpu = sum(known) * 100 if known else None
        session = self.app.session  # type: ignore[attr-defined]
        streams = session.streams()
        events = sum(s.events_seen for s in streams)
        self.events_per_s = self._events_rate.update(events, now) or 0.0
        self.probes(streams, now)
        if session.broken is None and not session.closed and not self.gone:
            if now >= self._next_gc:
                self._next_gc = now + GC_EVERY_S
                self.run_worker(self._ask_gc, thread=True, group="header-gc", exit_on_error=False)
            if now >= self._next_threads:
                self._next_threads = now + AGENT_THREADS_EVERY_S
                self.run_worker(self._ask_agent_threads, thread=True, group="header-threads", exit_on_error=False)
        self.refresh_text()

    def _ask_gc(self) -> None:
        try:
            gc_facts = self.app.session.request("memory", {"types": 0})["gc"]  # type: ignore[attr-defined]
        except PeekaError:
            return  # the status line hears of a broken connection from the session
        on_loop(self, setattr, self, "gc_total", [g["collections"] for g in gc_facts["generations"]])

    def _ask_agent_threads(self) -> None:
        try:
            threads = self.app.session.request("thread", {"all": True, "max_frames": 1})["threads"]  # type: ignore[attr-defined]
        except PeekaError:
            return
        tids = sorted(t["native_id"] for t in threads if t.get("is_agent") and t.get("native_id"))
        on_loop(self, self._agent_threads, tids)
        self._ask_costs()

    def _ask_costs(self) -> None:
        try:
            costs = self.app.session.request("ping", {}).get("probe_costs") or []  # type: ignore[attr-defined]
        except PeekaError:
            return
        on_loop(self, setattr, self, "unit_costs", {c["stream"]: c for c in costs})

    def probes(self, streams: list[Any], now: float) -> None:
        """Calls/s the TUI's probe streams see, and what they cost the host's threads (None: a
        running probe stream's kind not calibrated yet)."""
        ns_per_s = calls = 0.0
        known = True
        rates = {}
        per_call = []  # each running kind's cost per call that reaches it
        for stream in streams:
            if stream.command not in PER_CALL_STREAMS:
                continue
            events, skipped = rates[stream.id] = self._call_rates.get(stream.id) or (Rate(COST_WINDOW), Rate(COST_WINDOW))
            passed = events.update(stream.events_seen, now) or 0.0
            dropped = skipped.update(self.skipped.get(stream.id, 0), now) or 0.0
            unit = self.unit_costs.get(stream.command)
            calls += passed + dropped
            if unit is None:
                known = False
            else:
                ns_per_s += passed * (unit["base_ns"] + unit["sampled_ns"]) + dropped * unit["base_ns"]
                per_call.append(unit["base_ns"] + unit["sampled_ns"])
        self._call_rates = rates
        for per_s in self.monitor_calls.values():
            unit = self.unit_costs.get("monitor")
            calls += per_s
            if unit is None:
                known = False
            else:
                ns_per_s += per_s * unit["base_ns"]
                per_call.append(unit["base_ns"])
        self.probe_calls = calls
        # What a call costs on average now; with no calls, what the cheapest running kind would.
        self.per_call_ns = ns_per_s / calls if calls and known else min(per_call, default=None)
        running = bool(rates) or bool(self.monitor_calls)
        if not known and now >= self._next_costs:  # a new kind of probe stream: its calibration, soon
            self._next_costs = now + 1.0
            self.run_worker(self._ask_costs, thread=True, group="header-costs", exit_on_error=False)
        self.probe_percent = ns_per_s / 1e9 * 100 if known and running else (None if running else 0.0)

    def governed(self, stream_id: int, event: dict[str, Any]) -> None:
        """A governor event of one of the TUI's probe streams: the calls it sampled out so far."""
        self.skipped[stream_id] = sum(int(f.get("skipped") or 0) for f in event.get("functions") or [])

    def monitored(self, source: str, calls_per_s: float | None) -> None:
        """Calls/s a monitor stream of the TUI counted in its last cycle (None: it stopped)."""
        if calls_per_s is None:
            self.monitor_calls.pop(source, None)
        else:
            self.monitor_calls[source] = calls_per_s

    def _agent_threads(self, tids: list[int]) -> None:
        self._agent_rates = {tid: self._agent_rates.get(tid) or Rate(COST_WINDOW) for tid in tids}
        self.agent_tids = tids

    def take(self, summary: dict[str, Any], source: str) -> None:
        """A top summary from one of the TUI's top streams: what its sampler cost."""
        self.costs[source] = (summary.get("sampler") or {}).get("busy_percent") or 0.0
        self.refresh_text()

    def forget(self, source: str) -> None:
        """A stream that cost something stopped."""
        self.costs.pop(source, None)
        self.refresh_text()

    @property
    def cost_percent(self) -> float:
        return (self.agent_cpu or 0.0) + sum(self.costs.values()) + (self.probe_percent or 0.0)

    def probe_text(self) -> str:
        v = self.app.volatile  # type: ignore[attr-defined]
        if not self._call_rates and not self.monitor_calls:
            return "off"
        if self.probe_percent is None or self.per_call_ns is None:
            return f"{v(format(self.probe_calls, '.0f'))} calls/s × ? (calibrating)"
        return (f"{v(format(self.per_call_ns / 1000, '.1f'))} µs/call × {v(format(self.probe_calls, '.0f'))}/s"
                f" = {v(format(self.probe_percent, '.2f'))}%")

    def refresh_text(self) -> None:
        hello = self.app.session.hello  # type: ignore[attr-defined]
        v = self.app.volatile  # type: ignore[attr-defined]
        argv = list(hello.argv)
        version = hello.python_version
        if v.steady:  # this machine's paths and the interpreter's patch release
            argv[:1] = [os.path.basename(argv[0])] if argv else []
            version = ".".join(version.split(".")[:2] + [v("")])
        command = shlex.join(argv) if argv else hello.executable
        uptime = v(duration(time.time() - hello.start_time)) if hello.start_time else "?"
        first = Text.assemble(
            ("pid ", "dim"), (v(str(hello.pid)), "bold"),
            ("  python ", "dim"), f"{version} ({hello.implementation})",
            ("  via ", "dim"), self.method,
            ("  up ", "dim"), uptime if not self.gone else "EXITED",
            ("  ", ""), (command, "italic"),
        )
        gc = v("/".join(str(n) for n in self.gc_total)) if self.gc_total is not None else "?"
        over = self.cost_percent > BUDGET_PERCENT and not v.steady  # the colour says what the number says
        sampler = sum(self.costs.values())
        second = Text.assemble(
            ("CPU ", "dim"), (v(f"{self.cpu:.1f}") + "%" if self.cpu is not None else "?", "bold"),
            ("  RSS ", "dim"), (v(size(self.rss_now)), "bold"), " ", (v(sparkline(list(self.rss))), "green"),
            ("  threads ", "dim"), v(str(self.threads)) if self.threads is not None else "?",
            ("  GC collections gen0/1/2 ", "dim"), gc,
        )
        third = Text.assemble(
            ("peeka costs: agent threads ", "dim"),
            (v(f"{self.agent_cpu:.2f}") + "% CPU" if self.agent_cpu is not None else "?", "bold red" if over else "bold"),
            (" + sampler ", "dim"), (v(f"{sampler:.2f}") + "% GIL" if self.costs else "off", "bold red" if over else ""),
            (" + probes ", "dim"), (self.probe_text(), "bold red" if over else ""),
            (f" (budget {BUDGET_PERCENT:g}%)", "dim"),
            (f"  {len(self.app.session.streams())} streams ", "dim"),  # type: ignore[attr-defined]
            v(f"{self.events_per_s:.0f}") + " events/s",
        )
        width = self.size.width - 2 if self.size.width > 2 else 200
        for line in (first, second, third):
            line.truncate(width, overflow="ellipsis")
        self.update(Text("\n").join([first, second, third]))
