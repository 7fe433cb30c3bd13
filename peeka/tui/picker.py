"""The process picker of ``peeka tui`` without a PID (and after ``o``): ``peeka ps``'s table, refreshed
every 2 s, with a filter box; Enter on a row returns its PID (the command then attaches), Esc or q
returns None. A process Peeka cannot attach to stays in the list with the reason, and Enter on it
says so instead of returning."""

from __future__ import annotations

import os
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Input, Static

from ..attach.route import describe
from ..process import python_processes
from .view import selected_key

COLUMNS = ("PID", "USER", "PYTHON", "AGENT", "ATTACH", "COMMAND")
REFRESH_S = 2.0


def processes() -> list[dict[str, Any]]:
    """What `peeka ps` lists, without this process."""
    rows = []
    for target in python_processes():
        if target.pid == os.getpid():
            continue
        try:
            rows.append(describe(target))
        except Exception:  # noqa: BLE001 - exited while we looked
            continue
    return rows


class PickerApp(App["int | None"]):
    TITLE = "peeka: pick a process"
    CSS = """
    #picker-filter { height: 3; }
    #picker-table { height: 1fr; }
    #picker-status { height: 1; background: $panel; padding: 0 1; }
    #picker-status.error { background: $error 40%; }
    """
    BINDINGS = [Binding("escape", "leave", "quit"), Binding("q", "leave", "quit", show=False),
                Binding("ctrl+c", "leave", "quit", show=False, priority=True),
                Binding("slash", "focus_filter", "filter")]

    def __init__(self, message: str = "") -> None:
        super().__init__()
        self.message = message
        self.rows: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: PID, user, Python version or command text", id="picker-filter")
        table: DataTable[Any] = DataTable(id="picker-table", cursor_type="row")
        table.add_columns(*COLUMNS)
        yield table
        yield Static(self.message or "Enter attaches to the selected process; / filters; Esc quits", id="picker-status")
        yield Footer()

    def on_mount(self) -> None:
        if self.message:
            self.query_one("#picker-status").add_class("error")
        self.load()
        self.set_interval(REFRESH_S, self.load)
        self.query_one(DataTable).focus()

    def load(self) -> None:
        self.run_worker(self._load, thread=True, exclusive=True, group="ps", exit_on_error=False)

    def _load(self) -> None:
        rows = processes()
        try:
            self.call_from_thread(self.show, rows)
        except RuntimeError:
            pass  # left meanwhile

    def show(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        text = self.query_one("#picker-filter", Input).value.strip().lower()
        table = self.query_one(DataTable)
        selected = selected_key(table)
        table.clear()
        keys = []
        for r in rows:
            cells = (str(r["pid"]), r["user"], r["python"] or "-", "yes" if r["agent"] else "-", r["method"], r["command"])
            if text and not any(text in c.lower() for c in cells):
                continue
            table.add_row(*cells, key=str(r["pid"]))
            keys.append(str(r["pid"]))
        if selected in keys:
            table.move_cursor(row=keys.index(selected))

    def on_input_changed(self, event: Input.Changed) -> None:
        self.show(self.rows)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(DataTable).focus()

    def action_focus_filter(self) -> None:
        self.query_one("#picker-filter", Input).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        pid = int(str(event.row_key.value))
        row = next((r for r in self.rows if r["pid"] == pid), None)
        if row is not None and str(row["method"]).startswith("none"):
            status = self.query_one("#picker-status", Static)
            status.add_class("error")
            status.update(f"cannot attach to {pid}: {row['method'][6:]}")
            return
        self.exit(pid)

    def action_leave(self) -> None:
        self.exit(None)
