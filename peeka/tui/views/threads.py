"""1 Threads: every thread with its CPU % (refreshed each second), state and daemon flag; the
selected thread's stack below.

``b`` adds the blocked threads (the agent's ``thread`` with ``blocked``, as ``peeka thread -b``):
each waiting thread, what it waits in (lock, condition, event, join...), the lock (its global name
where one holds it), who holds it and where that holder is; threads in a deadlock cycle are red,
and each cycle is spelled out above the table (a → b → a). ``b`` again hides them.

CPU % is each thread's CPU clock advance between two ``thread`` requests over the time between
their answers (the agent reads the clocks to the nanosecond): the request sleeps nothing in the
agent, so it does not hold up the other requests on the TUI's one connection.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable, Static

from ..view import PollingView, Row, Volatile, selected_key, table

COLUMNS = ("name", "CPU %", "state", "daemon", "native id", "frames")
BLOCKED_COLUMNS = ("thread", "waits in", "for", "held by", "holder is at", "waiting at")


def lock_name(lock: dict[str, Any], name_of_object: str | None) -> str:
    name = lock.get("global_name") or name_of_object or f"{lock.get('type', 'lock')} {lock.get('id', '')}"
    return f"{name} ({lock.get('type', '?')})"


def place(at: dict[str, Any] | None, volatile: Volatile) -> str:
    if not at:
        return "?"
    file = str(at.get("file", ""))
    where = volatile.place(file, at.get("line")) if volatile.steady else f"{file.rsplit('/', 1)[-1]}:{at.get('line')}"
    return f"{at.get('function')} {where}"


class View(PollingView):
    TITLE = "Threads"
    REFRESH_S = 1.0
    KEYS = (("b", "show / hide blocked threads: the lock each waits for, its holder, deadlock cycles"),)
    BINDINGS = [Binding("b", "blocked", "blocked")]
    DEFAULT_CSS = """
    #threads-table { height: 1fr; }
    #threads-stack { height: 1fr; border-top: solid $accent; overflow-y: auto; }
    #threads-blocked-info { height: auto; max-height: 4; display: none; }
    #threads-blocked { height: 1fr; display: none; border-top: solid $warning; }
    #view-threads.blocked #threads-blocked-info, #view-threads.blocked #threads-blocked { display: block; }
    """

    def __init__(self) -> None:
        super().__init__(id="view-threads")
        self.previous: dict[int, tuple[float, float]] = {}  # ident -> (cpu seconds, monotonic time)
        self.threads: dict[int, dict[str, Any]] = {}
        self.ran: set[int] = set()  # threads seen using CPU

    def compose(self) -> Any:
        yield table("threads-table", COLUMNS)
        yield Static("", id="threads-blocked-info")
        yield table("threads-blocked", BLOCKED_COLUMNS)
        yield Static("", id="threads-stack")

    @property
    def blocked_mode(self) -> bool:
        return self.has_class("blocked")

    def action_blocked(self) -> None:
        self.toggle_class("blocked")
        self.query_one("#threads-blocked-info", Static).update("asking the agent for blocked threads…")
        self.poll()

    def poll(self) -> None:
        args: dict[str, Any] = {"max_frames": 64}
        if self.blocked_mode:
            args["blocked"] = True
        self.ask("thread", args, self.show)

    def show_blocked(self, result: dict[str, Any]) -> None:
        deadlocks = result.get("deadlocks") or []
        in_cycle = {edge["ident"] for d in deadlocks for edge in d["edges"]}
        lines = []
        for d in deadlocks:
            names = d["threads"]
            locks = ", ".join(lock_name(e["waits_for"], e["waits_for"].get("name_of_object")) for e in d["edges"])
            lines.append(Text.assemble(("DEADLOCK ", "bold red"), " → ".join([*names, names[0]]),
                                       (f"  waiting for {locks}", "red"),
                                       (" (holder inferred)" if d.get("inferred") else "", "dim")))
        entries = result.get("blocked") or []
        if not lines:
            lines.append(Text(f"{len(entries)} thread(s) waiting; no deadlock cycle", style="dim"))
        self.query_one("#threads-blocked-info", Static).update(Text("\n").join(lines))
        rows = []
        for e in entries:
            style = "bold red" if e["ident"] in in_cycle else ""
            holder = e.get("holder")
            held_by = "?" if holder is None else holder["name"] + (" (inferred)" if holder.get("inferred") else "")
            rows.append(Row(str(e["ident"]), (Text(e["name"], style=style), e.get("kind", "?"),
                                              self.volatile.addresses(lock_name(e.get("lock") or {}, e.get("name_of_object"))),
                                              Text(held_by, style=style), place(holder and holder.get("at"), self.volatile),
                                              place(e.get("at"), self.volatile))))
        self.fill(self.query_one("#threads-blocked", DataTable), rows)

    def show(self, result: dict[str, Any]) -> None:
        now = time.monotonic()
        if "blocked" in result and self.blocked_mode:
            self.show_blocked(result)
        self.threads = {}
        rows = []
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
            state = t.get("state") or "?"
            if percent:
                self.ran.add(ident)
            if ident in self.ran:  # a thread that runs: its state is one instant's
                state = self.volatile(state)
            rows.append(Row(str(ident), (
                Text(t["name"], style="bold" if t.get("is_main") else ""),
                "…" if percent is None else self.volatile(f"{percent:5.1f}"),
                state,
                "?" if daemon is None else ("yes" if daemon else "no"),
                self.volatile(str(t.get("native_id") or "?")),
                str(len(t.get("frames") or [])),
            )))
        self.fill(self.query_one("#threads-table", DataTable), rows)
        self.show_stack()

    def selected_ident(self) -> int | None:
        key = selected_key(self.query_one("#threads-table", DataTable))
        return None if key is None else int(key)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "threads-table":
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
            lines.append(Text.assemble("  ", (frame["function"], "cyan"), "  ",
                                       (self.volatile.place(frame["file"], frame["line"]), "dim")))
        if not thread.get("frames"):
            lines.append(Text("  (no Python frames: running C code or not started)", style="dim"))
        if thread.get("frames_omitted"):
            lines.append(Text(f"  … {thread['frames_omitted']} outer frame(s) omitted", style="dim"))
        stack.update(Text("\n").join(lines))
