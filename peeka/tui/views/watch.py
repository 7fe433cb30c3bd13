"""4 Watch: type a pattern (as ``peeka watch`` takes it), Enter starts; calls stream into a table
(time, function, cost, outcome, arguments); the selected call's value is shown expanded below.
A new pattern replaces the running watch; Escape (in the pattern box) stops it. The watch keeps
running while other views are shown (its calls are collected); quitting removes its probes.

The pattern box completes names from the target (``sm``, the prefix typed so far; → accepts).
In the table: ``t`` switches between watch and trace mode (the same pattern again, as a ``trace``
stream: each call then shows its call tree with each node's cost), ``m`` shows or hides monitor's
per-function table (calls, failures, avg, p50, p99, max per second) over the same pattern."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import DataTable, Input, Static

from ...errors import PeekaError
from ...session import SessionStream, StreamEnd
from ..header import BUDGET_PERCENT
from ..view import Row, Volatile, on_loop, table
from ..view import View as BaseView

LIMIT = 1_000_000  # calls before the agent ends the watch by itself (-n); the table keeps the last MAX_ROWS
MAX_ROWS = 500
DEPTH = 3  # levels of each call's value: value -> params -> each argument
COLUMNS = ("time", "function", "cost ms", "outcome", "thread", "value")
MONITOR_COLUMNS = ("function", "calls/s", "failures", "avg ms", "p50 ms", "p99 ms", "max ms")
MONITOR_CYCLE_S = 1.0
COMPLETIONS = 20


class NameSuggester(Suggester):
    """Completes a pattern with the first function name the target has with that prefix (``sm``)."""

    def __init__(self, view: View) -> None:
        super().__init__(use_cache=True, case_sensitive=True)
        self.view = view

    async def get_suggestion(self, value: str) -> str | None:
        if len(value) < 3 or any(c in value for c in "*?[ "):
            return None
        try:
            result = await asyncio.to_thread(self.view.session.request, "sm",
                                             {"pattern": value + "*", "limit": COMPLETIONS}, 5.0)
        except PeekaError:
            return None
        names = sorted(f["name"] for f in result.get("functions") or [] if f["name"].startswith(value))
        return names[0] if names else None


class Cycle(Message):
    def __init__(self, data: dict[str, Any], generation: int) -> None:
        super().__init__()
        self.data = data
        self.generation = generation


def tree_lines(node: dict[str, Any], volatile: Volatile, indent: int = 0) -> list[Text]:
    """A trace tree (agent/commands/trace.py's node) as indented lines: function, count, costs."""
    v = volatile
    line = Text("  " * indent)
    line.append(node.get("function", "?"), "bold" if indent == 0 else "")
    line.append(f"  total {v(format(node.get('total_ms', 0), '.3f'))} ms  self {v(format(node.get('self_ms', 0), '.3f'))} ms"
                + (f"  ×{node['count']}" if node.get("count", 1) > 1 else ""), "dim")
    lines = [line]
    for child in node.get("children") or []:
        lines.extend(tree_lines(child, volatile, indent + 1))
    return lines


class Call(Message):
    def __init__(self, data: dict[str, Any], generation: int) -> None:
        super().__init__()
        self.data = data
        self.generation = generation  # which watch it belongs to (see View.generation)


class Ended(Message):
    def __init__(self, end: StreamEnd) -> None:
        super().__init__()
        self.end = end


def value_lines(node: dict[str, Any], key: str = "", indent: int = 0) -> list[Text]:
    """A rendered value (agent/values.py's node) as indented lines: key, type, repr, children."""
    head = Text("  " * indent)
    if key:
        head.append(key, "bold cyan")
        head.append(": ")
    head.append(node.get("repr", ""))
    if node.get("type"):
        head.append(f"  ({node['type']})", "dim")
    lines = [head]
    for child in node.get("children") or []:
        lines.extend(value_lines(child["value"], str(child["key"]), indent + 1))
    return lines


class View(BaseView):
    TITLE = "Watch"
    KEYS = (("enter", "(pattern box) watch the pattern; → accepts the completion"),
            ("esc", "(pattern box) stop the watch; else to the table"),
            ("t", "(table) watch ↔ trace mode: each call's tree with costs"),
            ("m", "(table) monitor's per-function table (p50/p99) on / off"))
    BINDINGS = [Binding("t", "trace_mode", "trace mode"), Binding("m", "monitor", "monitor")]
    DEFAULT_CSS = """
    #watch-pattern { height: 3; }
    #watch-info { height: 1; color: $text-muted; }
    #watch-table { height: 1fr; }
    #watch-monitor { height: auto; max-height: 8; display: none; border-top: solid $accent; }
    #view-watch.monitoring #watch-monitor { display: block; }
    #watch-detail { height: 1fr; border-top: solid $accent; }
    """

    def __init__(self) -> None:
        super().__init__(id="view-watch")
        self.stream: SessionStream | None = None
        self.calls: dict[str, dict[str, Any]] = {}
        self.count = 0
        self.serial = 0
        # Bumped by every start and stop: calls of a replaced or stopped watch still queued as
        # messages (posted before its cancel) are recognised and dropped.
        self.generation = 0
        self.mode = "watch"  # or "trace"
        self.pattern = ""
        self.monitor: SessionStream | None = None
        self.monitor_generation = 0

    def compose(self) -> Any:
        yield Input(placeholder="pattern, e.g. myapp.views.* or module.Class.method — Enter watches, Esc stops",
                    id="watch-pattern", suggester=NameSuggester(self))
        yield Static("no watch running", id="watch-info")
        yield table("watch-table", COLUMNS)
        yield table("watch-monitor", MONITOR_COLUMNS)
        with VerticalScroll(id="watch-detail"):
            yield Static("", id="watch-value")

    def shown(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        pattern = event.value.strip()
        if not pattern:
            return
        self.begin(pattern)

    def begin(self, pattern: str) -> None:
        """Watch (or trace, in trace mode) ``pattern``, replacing what runs."""
        self.stop_watch()
        self.pattern = pattern
        self.fill(self.query_one("#watch-table", DataTable), [])
        self.calls.clear()
        self.count = 0
        self.query_one("#watch-info", Static).update(f"probing {pattern} ({self.mode})…")
        generation = self.generation
        self.run_worker(lambda: self._start(pattern, generation), thread=True, exit_on_error=False)
        if self.monitor is not None:
            self.start_monitor()

    def action_trace_mode(self) -> None:
        self.mode = "trace" if self.mode == "watch" else "watch"
        self.status(f"{self.mode} mode" + ("" if self.pattern else ": type a pattern"))
        if self.pattern:
            self.begin(self.pattern)

    def action_monitor(self) -> None:
        if self.has_class("monitoring"):
            self.stop_monitor()
            self.remove_class("monitoring")
            return
        self.add_class("monitoring")
        if self.pattern:
            self.start_monitor()

    @property
    def header(self) -> Any:
        return self.app.query_one("#header")

    def stop_monitor(self) -> None:
        self.header.monitored("watch-monitor", None)
        self.monitor_generation += 1
        stream, self.monitor = self.monitor, None
        if stream is not None:
            stream.cancel()

    def start_monitor(self) -> None:
        self.stop_monitor()
        generation = self.monitor_generation
        pattern = self.pattern

        def work() -> None:
            try:
                stream = self.session.start("monitor", {"pattern": pattern, "cycle": MONITOR_CYCLE_S,
                                                        "overhead_budget": BUDGET_PERCENT,
                                                        "budget_group": self.session.budget_group},
                                            on_event=lambda data: self.post_message(Cycle(data, generation)))
            except PeekaError as exc:
                on_loop(self, self.app.show_error, exc)  # type: ignore[attr-defined]
                return
            on_loop(self, self._monitor_started, stream, generation)

        self.run_worker(work, thread=True, exit_on_error=False)

    def _monitor_started(self, stream: SessionStream, generation: int) -> None:
        if generation != self.monitor_generation:
            stream.cancel()
            return
        self.monitor = stream

    def on_cycle(self, message: Cycle) -> None:
        if message.generation != self.monitor_generation or message.data.get("type") == "governor":
            return
        cycle = message.data.get("cycle_s") or MONITOR_CYCLE_S
        self.header.monitored("watch-monitor", sum(f["calls"] for f in message.data.get("functions") or []) / cycle)
        if not self.live:
            return
        self.fill(self.query_one("#watch-monitor", DataTable), [
            Row(f["function"], (f["function"], f"{f['calls'] / cycle:.1f}", str(f["failures"]),
                                *(f"{f[k]:.3f}" if f.get(k) is not None else "-"
                                  for k in ("avg_ms", "p50_ms", "p99_ms", "max_ms"))))
            for f in message.data.get("functions") or []])

    def key_escape(self) -> None:
        if self.stream is not None:
            self.stop_watch()
            self.query_one("#watch-info", Static).update("watch stopped (probes removed)")
        else:
            self.query_one("#watch-table", DataTable).focus()

    def stop_watch(self) -> None:
        self.generation += 1
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.cancel()

    def _start(self, pattern: str, generation: int) -> None:
        def arrived(data: Any) -> None:
            self.post_message(Call(data, generation))

        try:
            # The governor keeps the probes' cost to the target within the budget (sampling a hot function).
            # One budget for this stream and the monitor beside it (the session's budget group).
            args: dict[str, Any] = {"pattern": pattern, "limit": LIMIT, "overhead_budget": BUDGET_PERCENT,
                                    "budget_group": self.session.budget_group}
            if self.mode == "watch":
                args["depth"] = DEPTH
            stream = self.session.start(self.mode, args,
                                        on_event=arrived,
                                        on_end=lambda end: self.post_message(Ended(end)))
        except PeekaError as exc:
            on_loop(self, self.app.show_error, exc)  # type: ignore[attr-defined]
            on_loop(self, self.query_one("#watch-info", Static).update, f"not watching: {exc.message}")
            return
        on_loop(self, self._started, stream, generation)

    def _started(self, stream: SessionStream, generation: int) -> None:
        if generation != self.generation:  # stopped or replaced while the agent installed it
            stream.cancel()
            return
        self.stream = stream
        names = stream.start.get("functions", [])
        listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        self.query_one("#watch-info", Static).update(
            f"watching {listed} via {stream.start.get('technique', '?')}; Esc stops (probes removed)")
        self.app.show_status(f"{self.mode} started on {len(names)} function(s)")  # type: ignore[attr-defined]

    def on_call(self, message: Call) -> None:
        if message.generation != self.generation:
            return
        data = message.data
        if data.get("type") == "governor":
            self.governed(data)
            return
        self.count += 1
        self.serial += 1  # row keys stay unique across watches (count starts again with each)
        key = str(self.serial)
        self.calls[key] = data
        v = self.volatile
        when = v(datetime.datetime.fromtimestamp(data["start_ns"] / 1e9).strftime("%H:%M:%S.%f")[:-3])
        cost = data.get("cost_ms")
        if "tree" in data:  # trace mode
            tree = data["tree"]
            outcome = "raised" if tree.get("exceptions") else "tree"
            value = ", ".join(f"{c.get('function')} {v(format(c.get('total_ms', 0), '.3f'))} ms" for c in tree.get("children") or [])
            value = value or "(no calls below)"
        else:
            outcome = "raised" if data.get("location") == "exception" else data.get("location", "")
            value = v.addresses(data.get("error") or (data.get("value") or {}).get("repr", ""))
        self.append(self.query_one("#watch-table", DataTable), Row(key, (when, data["function"], "-" if cost is None else v(f"{cost:.3f}"),
                                                         outcome, str(data.get("thread", "")), value[:200])), MAX_ROWS)
        if len(self.calls) > MAX_ROWS:
            self.calls.pop(next(iter(self.calls)))
        if self.stream is not None:
            functions = ", ".join((self.stream.start or {}).get("functions", [])[:3])
            self.query_one("#watch-info", Static).update(f"{self.count} call(s) of {functions}; Esc (in the pattern box) stops")

    def governed(self, data: dict[str, Any]) -> None:
        """What the overhead governor does to the watched functions (sampling, duty cycle)."""
        if self.stream is not None:
            self.header.governed(self.stream.id, data)
        notes = [f["note"] for f in data.get("functions") or [] if f.get("note")]
        if notes:
            self.status("governor: " + "; ".join(notes[:2]) + (f" (+{len(notes) - 2})" if len(notes) > 2 else ""))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is None or event.row_key.value not in self.calls:
            return
        data = self.calls[event.row_key.value]
        detail = self.query_one("#watch-value", Static)
        if "error" in data:
            detail.update(Text(data["error"], style="red"))
            return
        if "tree" in data:
            head = Text.assemble((data["function"], "bold"), f"  call tree, {self.volatile(format(data.get('cost_ms', 0), '.3f'))} ms"
                                                              f"  thread {data.get('thread')}")
            detail.update(Text("\n").join([head, *tree_lines(data["tree"], self.volatile)]))
            return
        head = Text.assemble((data["function"], "bold"), f"  {data.get('location', '')}  thread {data.get('thread')}")
        detail.update(Text("\n").join([head, *value_lines(data.get("value") or {})]))

    def on_ended(self, message: Ended) -> None:
        # Only the current watch's own end (limit, reset elsewhere, broken): a replaced or stopped
        # watch ended "cancelled", and its End may arrive after the next one started.
        if self.stream is not None and not self.stream.running and message.end.reason != "cancelled":
            self.stream = None
            self.query_one("#watch-info", Static).update(f"watch ended: {message.end.reason}")
