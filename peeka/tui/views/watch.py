"""4 Watch: type a pattern (as ``peeka watch`` takes it), Enter starts; calls stream into a table
(time, function, cost, outcome, arguments); the selected call's value is shown expanded below.
A new pattern replaces the running watch; Escape (in the pattern box) stops it. The watch keeps
running while other views are shown (its calls are collected); quitting removes its probes."""

from __future__ import annotations

import datetime
from typing import Any

from rich.text import Text
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from ...errors import PeekaError
from ...session import SessionStream, StreamEnd
from ..view import View as BaseView
from ..view import on_loop

LIMIT = 1_000_000  # calls before the agent ends the watch by itself (-n); the table keeps the last MAX_ROWS
MAX_ROWS = 500
DEPTH = 3  # levels of each call's value: value -> params -> each argument
COLUMNS = ("time", "function", "cost ms", "outcome", "thread", "value")


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
    DEFAULT_CSS = """
    #watch-pattern { height: 3; }
    #watch-info { height: 1; color: $text-muted; }
    #watch-table { height: 1fr; }
    #watch-detail { height: 1fr; border-top: solid $accent; }
    """

    def __init__(self) -> None:
        super().__init__(id="view-watch")
        self.stream: SessionStream | None = None
        self.calls: dict[str, dict[str, Any]] = {}
        self.count = 0
        # Bumped by every start and stop: calls of a replaced or stopped watch still queued as
        # messages (posted before its cancel) are recognised and dropped.
        self.generation = 0

    def compose(self) -> Any:
        yield Input(placeholder="pattern, e.g. myapp.views.* or module.Class.method — Enter watches, Esc stops",
                    id="watch-pattern")
        yield Static("no watch running", id="watch-info")
        table: DataTable[Any] = DataTable(id="watch-table", cursor_type="row")
        table.add_columns(*COLUMNS)
        yield table
        with VerticalScroll(id="watch-detail"):
            yield Static("", id="watch-value")

    def shown(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        pattern = event.value.strip()
        if not pattern:
            return
        self.stop_watch()
        self.query_one(DataTable).clear()
        self.calls.clear()
        self.count = 0
        self.query_one("#watch-info", Static).update(f"probing {pattern}…")
        generation = self.generation
        self.run_worker(lambda: self._start(pattern, generation), thread=True, exit_on_error=False)

    def key_escape(self) -> None:
        if self.stream is not None:
            self.stop_watch()
            self.query_one("#watch-info", Static).update("watch stopped (probes removed)")
        else:
            self.query_one(DataTable).focus()

    def stop_watch(self) -> None:
        self.generation += 1
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.cancel()

    def _start(self, pattern: str, generation: int) -> None:
        def arrived(data: Any) -> None:
            self.post_message(Call(data, generation))

        try:
            stream = self.session.start("watch", {"pattern": pattern, "limit": LIMIT, "depth": DEPTH},
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
        self.app.show_status(f"watch started on {len(names)} function(s)")  # type: ignore[attr-defined]

    def on_call(self, message: Call) -> None:
        if message.generation != self.generation:
            return
        data = message.data
        self.count += 1
        key = str(self.count)
        self.calls[key] = data
        when = datetime.datetime.fromtimestamp(data["start_ns"] / 1e9).strftime("%H:%M:%S.%f")[:-3]
        cost = data.get("cost_ms")
        outcome = "raised" if data.get("location") == "exception" else data.get("location", "")
        value = data.get("error") or (data.get("value") or {}).get("repr", "")
        table = self.query_one(DataTable)
        follow = table.cursor_row >= table.row_count - 1  # at the bottom: keep following new calls
        table.add_row(when, data["function"], "-" if cost is None else f"{cost:.3f}", outcome,
                      str(data.get("thread", "")), value[:200], key=key)
        if table.row_count > MAX_ROWS:
            oldest = next(iter(table.rows))
            table.remove_row(oldest)
            self.calls.pop(str(oldest.value), None)
        if follow and table.row_count:
            table.move_cursor(row=table.row_count - 1)
        if self.stream is not None:
            functions = ", ".join((self.stream.start or {}).get("functions", [])[:3])
            self.query_one("#watch-info", Static).update(f"{self.count} call(s) of {functions}; Esc (in the pattern box) stops")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is None or event.row_key.value not in self.calls:
            return
        data = self.calls[event.row_key.value]
        detail = self.query_one("#watch-value", Static)
        if "error" in data:
            detail.update(Text(data["error"], style="red"))
            return
        head = Text.assemble((data["function"], "bold"), f"  {data.get('location', '')}  thread {data.get('thread')}")
        detail.update(Text("\n").join([head, *value_lines(data.get("value") or {})]))

    def on_ended(self, message: Ended) -> None:
        # Only the current watch's own end (limit, reset elsewhere, broken): a replaced or stopped
        # watch ended "cancelled", and its End may arrive after the next one started.
        if self.stream is not None and not self.stream.running and message.end.reason != "cancelled":
            self.stream = None
            self.query_one("#watch-info", Static).update(f"watch ended: {message.end.reason}")
