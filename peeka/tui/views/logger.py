"""6 Logger: the target's loggers with their levels and handlers; records followed live.

``enter`` on a logger asks for a new level, then for a confirmation, then sets it (the agent keeps
the original). Every level the TUI changed is put back when the TUI quits (the session's undo, sent
on q, Ctrl-C, SIGHUP and SIGTERM alike), unless the application changed it since.
``f`` follows the records reaching the selected logger (a handler the agent adds, removed when
following stops or the TUI quits); ``v`` cycles the lowest level followed. Records keep arriving
while the view is hidden; the table keeps the last ``MAX_RECORDS``.
"""

from __future__ import annotations

import datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

from ...errors import PeekaError
from ...session import SessionStream, StreamEnd
from ..view import PollingView, Row, on_loop, selected_key, table

COLUMNS = ("logger", "level", "effective", "handlers", "propagate", "changed")
RECORD_COLUMNS = ("time", "level", "logger", "message", "where")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_RECORDS = 500
LEVEL_STYLES = {"DEBUG": "dim", "INFO": "", "WARNING": "yellow", "ERROR": "red", "CRITICAL": "bold red"}


class Record(Message):
    def __init__(self, data: dict[str, Any], generation: int) -> None:
        super().__init__()
        self.data = data
        self.generation = generation


class Ended(Message):
    def __init__(self, end: StreamEnd, generation: int) -> None:
        super().__init__()
        self.end = end
        self.generation = generation


class LevelPrompt(ModalScreen["str | None"]):
    """Asks a logger's new level, then asks to confirm it: dismisses with the level or None."""

    DEFAULT_CSS = """
    LevelPrompt { align: center middle; }
    LevelPrompt > Vertical { width: 70; height: auto; border: thick $accent; background: $surface; padding: 1 2; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "cancel")]

    def __init__(self, logger: str, level: str) -> None:
        super().__init__()
        self.logger = logger
        self.level = level
        self.chosen: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Set the level of logger {self.logger!r} (now {self.level}) to "
                         f"({', '.join(LEVELS)}, or a number); Esc cancels", id="level-question")
            yield Input(placeholder="level", id="level-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        level = event.value.strip().upper()
        if not level:
            return
        self.chosen = level
        event.input.display = False
        self.query_one("#level-question", Static).update(
            f"Set logger {self.logger!r} from {self.level} to {level}? It is put back when the TUI quits. y / n")
        self.focus()

    def on_key(self, event: Any) -> None:
        if self.chosen is None:
            return
        if event.key == "y":
            self.dismiss(self.chosen)
        elif event.key in ("n", "escape"):
            self.dismiss(None)
        event.stop()


class View(PollingView):
    TITLE = "Logger"
    REFRESH_S = 1.0
    KEYS = (("enter", "set the selected logger's level (asks to confirm)"),
            ("f", "follow the selected logger's records / stop"), ("v", "cycle the lowest level followed"))
    DEFAULT_CSS = """
    #logger-table { height: 1fr; }
    #logger-info { height: 1; color: $text-muted; }
    #logger-records { height: 1fr; border-top: solid $accent; }
    """
    BINDINGS = [Binding("f", "follow", "follow"), Binding("v", "cycle_level", "follow level")]

    def __init__(self) -> None:
        super().__init__(id="view-logger")
        self.loggers: dict[str, dict[str, Any]] = {}
        self.stream: SessionStream | None = None
        self.follow_level = "DEBUG"
        self.followed: str | None = None
        self.generation = 0
        self.count = 0

    def compose(self) -> Any:
        yield table("logger-table", COLUMNS)
        yield Static("f follows the selected logger's records; v sets the lowest level followed", id="logger-info")
        yield table("logger-records", RECORD_COLUMNS)

    def poll(self) -> None:
        self.ask("logger", {}, self.show)

    def show(self, result: dict[str, Any]) -> None:
        self.loggers = {lg["name"]: lg for lg in result["loggers"] if not lg.get("placeholder")}
        changed = result.get("changed") or {}
        rows = []
        for name, lg in self.loggers.items():
            ours = self.session.undo_pending(f"logger:{name}")
            mark = f"was {ours.args['level']} (TUI)" if ours else (f"was {changed[name]}" if name in changed else "")
            rows.append(Row(name, (Text(name, style="bold" if ours else ""), lg.get("level", "?"),
                                   lg.get("effective_level", "?"), str(len(lg.get("handlers") or [])),
                                   "yes" if lg.get("propagate") else "no", mark)))
        self.fill(self.query_one("#logger-table", DataTable), rows)

    def selected(self) -> str | None:
        return selected_key(self.query_one("#logger-table", DataTable))

    # ------------------------------------------------------------ levels

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id != "logger-table" or event.row_key.value not in self.loggers:
            return
        name = str(event.row_key.value)
        before = self.loggers[name].get("level", "NOTSET")
        self.app.push_screen(LevelPrompt(name, before), lambda level: self.set_level(name, before, level))

    def set_level(self, name: str, before: str, level: str | None) -> None:
        if level is None:
            self.status(f"level of {name} left at {before}")
            return

        def done(result: dict[str, Any]) -> None:
            key = f"logger:{name}"
            self.session.undo_on_close(key, "logger", {"name": name, "level": result["previous_level"]})
            undo = self.session.undo_pending(key)
            if undo is not None and undo.args["level"] == result["level"]:
                self.session.drop_undo(key)  # back where it was before the TUI: nothing to put back
            warnings = "; ".join(result.get("warnings") or [])
            self.status(f"logger {name}: {result['previous_level']} → {result['level']} (put back on quit)"
                        + (f"; {warnings}" if warnings else ""))
            self.poll()

        self.ask("logger", {"name": name, "level": level}, done)

    # ------------------------------------------------------------ following records

    def action_follow(self) -> None:
        if self.stream is not None or self.followed is not None:
            self.stop_follow()
            self.query_one("#logger-info", Static).update("following stopped (handler removed)")
            return
        name = self.selected() or "root"
        self.start_follow(name)

    def action_cycle_level(self) -> None:
        self.follow_level = LEVELS[(LEVELS.index(self.follow_level) + 1) % len(LEVELS)]
        if self.followed is not None:
            name = self.followed
            self.stop_follow()
            self.start_follow(name)
        else:
            self.query_one("#logger-info", Static).update(f"records from {self.follow_level} up will be followed (f)")

    def stop_follow(self) -> None:
        self.generation += 1
        self.followed = None
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.cancel()

    def start_follow(self, name: str) -> None:
        self.generation += 1
        generation = self.generation
        self.followed = name
        level = self.follow_level
        self.query_one("#logger-info", Static).update(f"following {name} from {level}…")

        def work() -> None:
            try:
                stream = self.session.start(
                    "logger", {"follow": True, "name": name, "level": level},
                    on_event=lambda data: self.post_message(Record(data, generation)),
                    on_end=lambda end: self.post_message(Ended(end, generation)))
            except PeekaError as exc:
                on_loop(self, self.app.show_error, exc)  # type: ignore[attr-defined]
                on_loop(self, self._failed, generation, exc)
                return
            on_loop(self, self._started, stream, generation)

        self.run_worker(work, thread=True, exit_on_error=False)

    def _failed(self, generation: int, exc: PeekaError) -> None:
        if generation == self.generation:
            self.followed = None
            self.query_one("#logger-info", Static).update(f"not following: {exc.message}")

    def _started(self, stream: SessionStream, generation: int) -> None:
        if generation != self.generation:
            stream.cancel()
            return
        self.stream = stream
        notes = "; ".join((stream.start or {}).get("notes") or [])
        self.query_one("#logger-info", Static).update(
            f"following {self.followed} from {self.follow_level} (f stops, v changes the level)"
            + (f"; {notes}" if notes else ""))

    def on_record(self, message: Record) -> None:
        if message.generation != self.generation:
            return
        data = message.data
        self.count += 1
        when = self.volatile(datetime.datetime.fromtimestamp(data["time"]).strftime("%H:%M:%S.%f")[:-3])
        level = data.get("level", "?")
        file = str(data.get("file", ""))
        place = self.volatile.place(file, data.get("line")) if self.volatile.steady else f"{file.rsplit('/', 1)[-1]}:{data.get('line')}"
        where = f"{data.get('function')} {place}"
        self.append(self.query_one("#logger-records", DataTable),
                    Row(str(self.count), (when, Text(level, style=LEVEL_STYLES.get(level, "")),
                                          data.get("logger", "?"), data.get("message", ""), where)), MAX_RECORDS)

    def on_ended(self, message: Ended) -> None:
        if message.generation == self.generation and message.end.reason != "cancelled":
            self.stream = None
            self.followed = None
            self.query_one("#logger-info", Static).update(f"following ended: {message.end.reason}")
