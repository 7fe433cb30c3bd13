"""What every view of the TUI builds on: the session, worker threads for requests, the status line,
the app-wide filter (``/``) and pause (``p``).

A view fills its tables through ``fill`` (rows with keys): the filter then applies to every table
of the view, and the cursor stays on the same row across refreshes. While the app is paused a view
shows what it showed (``live`` is false): polling views skip their requests, streaming views keep
their events for later or drop them (each says which).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import DataTable

from ..errors import PeekaError
from ..session import Session

FLUSH_S = 0.2  # s between two batches of streamed rows
PLACEHOLDER = "~"  # a volatile cell in steady mode
ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


class Volatile:
    """How views show what differs from run to run although the target does the same: numbers
    measured now (CPU %, RSS, times, costs, sample counts), ids the OS hands out (pids, native
    thread ids), addresses, and the paths and line numbers of this machine's Python. Live (the
    default) shows them as they are. Steady (``PeekaApp(steady=True)``, for the snapshot tests)
    shows each as a fixed placeholder, and a file as its name, with its line numbers only for the
    target's own script: everything else on screen (names, stacks, counts the target fixes,
    layout) is what the attached target answered."""

    def __init__(self, steady: bool = False, own_dir: str = "") -> None:
        self.steady = steady
        self.own_dir = own_dir  # the target's script directory: its files' lines are the target's

    def __call__(self, text: str) -> str:
        return PLACEHOLDER if self.steady else text

    def addresses(self, text: str) -> str:
        return ADDRESS.sub("0x" + PLACEHOLDER, text) if self.steady else text

    def place(self, file: Any, line: Any) -> str:
        """``file:line``; steady: the file's name, the line only in the target's own files."""
        if not self.steady:
            return f"{file}:{line}"
        own = bool(self.own_dir) and os.path.dirname(str(file)) == self.own_dir
        return f"{os.path.basename(str(file))}:{line if own else PLACEHOLDER}"


class Row(NamedTuple):
    key: str
    cells: tuple[Any, ...]


def plain(cell: Any) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def _cell_width(cell: Any) -> int:
    """Terminal cells a table cell takes (a Text, or anything shown as its str)."""
    return cell.cell_len if isinstance(cell, Text) else Text(str(cell)).cell_len


def table(table_id: str, columns: tuple[str, ...]) -> DataTable[Any]:
    """A table of rows selected whole, with its columns."""
    made: DataTable[Any] = DataTable(id=table_id, cursor_type="row")
    made.add_columns(*columns)
    return made


def selected_key(table: DataTable[Any]) -> str | None:
    """The key of the row under the cursor; None in an empty table."""
    if not table.row_count:
        return None
    try:
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except Exception:  # noqa: BLE001 - no valid cursor
        return None
    return None if key is None else str(key)


def matches(row: Row, text: str) -> bool:
    """A row shows under filter ``text`` when any of its cells contains it (case-insensitive)."""
    if not text:
        return True
    text = text.lower()
    return any(text in plain(c).lower() for c in row.cells)


class View(Vertical):
    """One screenful, shown by its number key. ``shown``/``hidden`` start and stop what the view
    costs the target (timers, streams) while nobody looks at it; a view that keeps a stream on
    while hidden (watch) says so in its title. ``KEYS`` lists the view's own keys for ``?``."""

    TITLE = ""
    KEYS: tuple[tuple[str, str], ...] = ()
    filter_text = ""

    @property
    def session(self) -> Session:
        return self.app.session  # type: ignore[attr-defined,no-any-return]

    @property
    def volatile(self) -> Volatile:
        return self.app.volatile  # type: ignore[attr-defined,no-any-return]

    @property
    def live(self) -> bool:
        """False while the app is paused (``p``)."""
        return not getattr(self.app, "paused", False)

    def shown(self) -> None:
        """Now on screen."""

    def hidden(self) -> None:
        """Now off screen."""

    def paused(self) -> None:
        """The app was paused (every view, shown or not): a view whose stream only feeds what it
        shows stops it here."""

    def resumed(self) -> None:
        """The app's pause ended: catch up."""
        self.refill()

    def status(self, text: str, error: bool = False) -> None:
        self.app.show_status(text, error)  # type: ignore[attr-defined]

    # ------------------------------------------------------------ tables and the filter

    def fill(self, table: DataTable[Any], rows: Iterable[Row], fit: bool = False) -> None:
        """Show ``rows`` in ``table`` (those the filter lets through), keeping the cursor on its row;
        ``fit``: the columns' widths start again from these rows."""
        rows = list(rows)
        self._rows()[table.id or ""] = (table, rows)
        self.__dict__.get("_pending", {}).pop(table.id or "", None)  # those are in ``rows`` (or replaced)
        selected = selected_key(table)
        table.clear()
        shown = [row for row in rows if matches(row, self.filter_text)]
        # Widths set here from the cells themselves: DataTable widens columns for new rows lazily,
        # so a screen drawn before it did (a snapshot under load) showed columns as narrow as their
        # labels. ``fit``: as wide as the rows shown from now on, not the widest ever shown (before
        # a filter); otherwise only ever wider.
        for index, column in enumerate(table.columns.values()):
            if column.auto_width:
                widest = max((_cell_width(row.cells[index]) for row in shown if index < len(row.cells)), default=0)
                floor = column.label.cell_len if fit else column.content_width
                column.content_width = max(floor, widest)
        keys = []
        seen: set[Any] = set()
        for row in shown:
            key = row.key
            if key is not None and key in seen:
                # Two rows of one name (the census: ctypes makes many classes named
                # CFUNCTYPE.<locals>.CFunctionType): the table wants unique keys.
                n = 2
                while f"{key}#{n}" in seen:
                    n += 1
                key = f"{key}#{n}"
            seen.add(key)
            table.add_row(*row.cells, key=key)
            keys.append(key)
        if selected in keys:
            table.move_cursor(row=keys.index(selected))

    def append(self, table: DataTable[Any], row: Row, keep: int) -> None:
        """Add one row at the bottom (a streamed event), keeping the last ``keep``. Rows are shown in
        batches every ``FLUSH_S`` (a stream of hundreds of events a second would otherwise keep the
        event loop from the keys); while paused they are only kept, and shown on resume. The cursor
        follows the bottom row when it was there."""
        stored = self._rows().setdefault(table.id or "", (table, []))[1]
        stored.append(row)
        del stored[:-keep]
        pending = self.__dict__.setdefault("_pending", {})
        pending.setdefault(table.id or "", (table, [], keep))[1].append(row)
        if not self.__dict__.get("_flush_due"):
            self.__dict__["_flush_due"] = True
            self.set_timer(FLUSH_S, self._flush)

    def _flush(self) -> None:
        self.__dict__["_flush_due"] = False
        pending, self.__dict__["_pending"] = self.__dict__.get("_pending", {}), {}
        if not self.live:
            return  # kept in _rows: resumed() shows them
        for table, rows, keep in pending.values():
            follow = table.cursor_row >= table.row_count - 1
            for row in rows[-keep:]:
                if matches(row, self.filter_text):
                    table.add_row(*row.cells, key=row.key)
            while table.row_count > keep:
                table.remove_row(next(iter(table.rows)))
            if follow and table.row_count:
                table.move_cursor(row=table.row_count - 1)

    def refill(self, fit: bool = False) -> None:
        """Show every table's kept rows again (after a pause, or a filter change: ``fit``)."""
        for table, rows in list(self._rows().values()):
            self.fill(table, rows, fit)

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.refill(fit=True)

    def _rows(self) -> dict[str, tuple[DataTable[Any], list[Row]]]:
        found = self.__dict__.get("_filled")
        if found is None:
            found = self.__dict__["_filled"] = {}
        return found  # type: ignore[no-any-return]

    # ------------------------------------------------------------ asking the agent

    def ask(self, command: str, args: dict[str, Any], then: Callable[[Any], None],
            failed: Callable[[PeekaError], None] | None = None) -> None:
        """Send a request from a worker thread (the event loop never waits on the target); ``then``
        runs on the event loop with the result. A refusal or a broken connection goes to the status
        line (and to ``failed``, when given)."""

        def work() -> None:
            try:
                result = self.session.request(command, args)
            except PeekaError as exc:
                on_loop(self, self.app.show_error, exc)  # type: ignore[attr-defined]
                if failed is not None:
                    on_loop(self, failed, exc)
                return
            on_loop(self, then, result)

        self.run_worker(work, thread=True, group=f"ask-{command}", exit_on_error=False)


class PollingView(View):
    """A view that asks the agent every ``REFRESH_S`` seconds while shown (``poll``), and not at all
    while hidden or paused."""

    REFRESH_S = 1.0
    timer: Any = None

    def poll(self) -> None:
        raise NotImplementedError

    def _tick(self) -> None:
        if self.live:
            self.poll()

    def shown(self) -> None:
        self.query(DataTable).first().focus()
        self._tick()
        if self.timer is None:
            self.timer = self.set_interval(self.REFRESH_S, self._tick)
        else:
            self.timer.resume()

    def hidden(self) -> None:
        if self.timer is not None:
            self.timer.pause()

    def resumed(self) -> None:
        self._tick()


def on_loop(widget: Any, func: Callable[..., Any], *args: Any) -> None:
    """Run ``func(*args)`` on the app's event loop from a worker thread; nothing once the app is gone
    (a reply that arrives while the app quits is of no use)."""
    try:
        widget.app.call_from_thread(func, *args)
    except RuntimeError:
        pass  # the app stopped running meanwhile
