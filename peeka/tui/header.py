"""The header, always shown: who the target is and how it is doing, refreshed every second.

Facts come from the agent: the hello (pid, command line, Python, start time), ``ping`` (attach
method), ``memory`` once (GC collections so far), then a ``top`` stream at a low sampling rate whose
summaries carry the process's CPU %, RSS, OS threads and the GC collections of each second, and
what its sampler cost (``sampler.busy_percent``: the share of the second it held the GIL). The TUI's
own cost shown is the sum of that over every top stream the TUI runs (the Top view adds its own).
"""

from __future__ import annotations

import shlex
import time
from collections import deque
from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import Static

from ..errors import PeekaError
from ..session import SessionStream
from .view import on_loop

HEADER_RATE_HZ = 5  # samples per second of the header's own top stream: its summary's process facts need none
SPARK = "▁▂▃▄▅▆▇█"
SPARK_POINTS = 30


class Summary(Message):
    """A top summary arrived (posted from the session's reader thread)."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__()
        self.data = data


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


class ProcessHeader(Static):
    DEFAULT_CSS = "ProcessHeader { height: 2; background: $boost; padding: 0 1; }"

    def __init__(self) -> None:
        super().__init__(id="header")
        self.method = "?"
        self.gc_total: list[int] | None = None
        self.last: dict[str, Any] = {}
        self.rss: deque[float] = deque(maxlen=SPARK_POINTS)
        self.costs: dict[str, float] = {}  # stream name -> its sampler's busy percent, last second
        self.stream: SessionStream | None = None

    def on_mount(self) -> None:
        self.refresh_text()
        self.set_interval(1.0, self.refresh_text)  # the uptime ticks even between summaries
        self.run_worker(self._start, thread=True, exit_on_error=False)

    def _start(self) -> None:
        session = self.app.session  # type: ignore[attr-defined]
        try:
            self.method = session.request("ping", {}).get("method") or "?"
            gc_facts = session.request("memory", {"types": 0})["gc"]
            self.gc_total = [g["collections"] for g in gc_facts["generations"]]
            self.stream = session.start("top", {"interval": 1.0, "rate": HEADER_RATE_HZ, "functions": 1},
                                        on_event=lambda data: self.post_message(Summary(data)))
        except PeekaError as exc:
            on_loop(self, self.app.show_error, exc)  # type: ignore[attr-defined]

    def on_summary(self, message: Summary) -> None:
        self.take(message.data, "header")

    def take(self, summary: dict[str, Any], source: str) -> None:
        """A top summary from any of the TUI's top streams: process facts, and that stream's cost."""
        process = summary.get("process") or {}
        if self.gc_total is not None and source == "header":
            collections = (process.get("gc") or {}).get("collections") or [0, 0, 0]
            self.gc_total = [a + b for a, b in zip(self.gc_total, collections)]
        if process.get("rss_bytes") is not None and source == "header":
            self.rss.append(float(process["rss_bytes"]))
        self.costs[source] = (summary.get("sampler") or {}).get("busy_percent") or 0.0
        if source == "header":
            self.last = process
        self.refresh_text()

    def forget(self, source: str) -> None:
        """A stream that cost something stopped."""
        self.costs.pop(source, None)
        self.refresh_text()

    def refresh_text(self) -> None:
        hello = self.app.session.hello  # type: ignore[attr-defined]
        command = shlex.join(hello.argv) if hello.argv else hello.executable
        uptime = duration(time.time() - hello.start_time) if hello.start_time else "?"
        first = Text.assemble(
            ("pid ", "dim"), (str(hello.pid), "bold"),
            ("  python ", "dim"), f"{hello.python_version} ({hello.implementation})",
            ("  via ", "dim"), self.method,
            ("  up ", "dim"), uptime,
            ("  ", ""), (command, "italic"),
        )
        p = self.last
        cpu = p.get("cpu_percent")
        gc = "/".join(str(n) for n in self.gc_total) if self.gc_total is not None else "?"
        second = Text.assemble(
            ("CPU ", "dim"), (f"{cpu:.1f}%" if cpu is not None else "?", "bold"),
            ("  RSS ", "dim"), (size(p.get("rss_bytes")), "bold"), " ", (sparkline(list(self.rss)), "green"),
            ("  threads ", "dim"), str(p.get("threads", "?")),
            ("  GC collections (gen 0/1/2) ", "dim"), gc,
            ("  peeka's sampler ", "dim"), f"{sum(self.costs.values()):.2f}% GIL",
        )
        first.truncate(self.size.width - 2 if self.size.width > 2 else 200, overflow="ellipsis")
        self.update(Text("\n").join([first, second]))
