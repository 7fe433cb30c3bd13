"""1 Threads: every thread with its CPU % (refreshed each second), state and daemon flag; the
selected thread's stack below.

CPU % is each thread's CPU clock advance between two ``thread`` requests over the time between
their answers (the agent reads the clocks to the nanosecond): the request sleeps nothing in the
agent, so it does not hold up the other requests on the TUI's one connection.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.widgets import DataTable, Static

from ..view import PollingView

COLUMNS = ("name", "CPU %", "state", "daemon", "native id", "frames")


class View(PollingView):
    TITLE = "Threads"
    REFRESH_S = 1.0
    DEFAULT_CSS = """
    #threads-table { height: 1fr; }
    #threads-stack { height: 1fr; border-top: solid $accent; overflow-y: auto; }
    """

    def __init__(self) -> None:
        super().__init__(id="view-threads")
        self.previous: dict[int, tuple[float, float]] = {}  # ident -> (cpu seconds, monotonic time)
        self.threads: dict[int, dict[str, Any]] = {}

    def compose(self) -> Any:
        table: DataTable[Any] = DataTable(id="threads-table", cursor_type="row")
        table.add_columns(*COLUMNS)
        yield table
        yield Static("", id="threads-stack")

    def poll(self) -> None:
        self.ask("thread", {"max_frames": 64}, self.show)

    def show(self, result: dict[str, Any]) -> None:
        now = time.monotonic()
        table = self.query_one(DataTable)
        selected = self.selected_ident()
        table.clear()
        self.threads = {}
        for t in result["threads"]:
            ident = t["ident"]
            self.threads[ident] = t
            cpu = t.get("cpu_seconds")
            percent = None
            if cpu is not None and ident in self.previous:
                before, then = self.previous[ident]
                percent = max(0.0, cpu - before) / max(1e-6, now - then) * 100
            if cpu is not None:
                self.previous[ident] = (cpu, now)
            daemon = t.get("daemon")
            table.add_row(
                Text(t["name"], style="bold" if t.get("is_main") else ""),
                "…" if percent is None else f"{percent:5.1f}",
                t.get("state") or "?",
                "?" if daemon is None else ("yes" if daemon else "no"),
                str(t.get("native_id") or "?"),
                str(len(t.get("frames") or [])),
                key=str(ident),
            )
        rows = [int(k.value) for k in table.rows]  # type: ignore[arg-type]
        if selected in rows:
            table.move_cursor(row=rows.index(selected))
        self.show_stack()

    def selected_ident(self) -> int | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return int(key.value) if key.value is not None else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_stack()

    def show_stack(self) -> None:
        ident = self.selected_ident()
        thread = self.threads.get(ident) if ident is not None else None
        stack = self.query_one("#threads-stack", Static)
        if thread is None:
            stack.update("")
            return
        lines = [Text.assemble((thread["name"], "bold"), ("  innermost frame first", "dim"))]
        for frame in thread.get("frames") or []:
            lines.append(Text.assemble("  ", (frame["function"], "cyan"), "  ", (f"{frame['file']}:{frame['line']}", "dim")))
        if not thread.get("frames"):
            lines.append(Text("  (no Python frames: running C code or not started)", style="dim"))
        if thread.get("frames_omitted"):
            lines.append(Text(f"  … {thread['frames_omitted']} outer frame(s) omitted", style="dim"))
        stack.update(Text("\n").join(lines))
