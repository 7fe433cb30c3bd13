"""5 Tasks: the target's asyncio tasks (and gevent's greenlets, where a hub runs), grouped by stack:
tasks parked at the same frames make one row, with how many, their names, their state and what they
await (an Event, a queue, a sleep, a socket, a lock, other tasks). The selected group's stack and
each of its tasks' awaits are shown below. From the agent's ``tasks`` request every second while shown.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from rich.text import Text
from textual.widgets import DataTable, Static

from ..view import PollingView, Row, selected_key, table

COLUMNS = ("tasks", "names", "state", "awaits", "stack (innermost first)", "loop")
NAMES_SHOWN = 4


class Group(NamedTuple):
    loop: dict[str, Any]
    frames: list[dict[str, Any]]
    tasks: list[dict[str, Any]]


def awaits_text(awaits: dict[str, Any] | None) -> str:
    if not awaits:
        return "-"
    kind, what = awaits.get("kind", "?"), awaits.get("what", "")
    if awaits.get("children"):
        what = f"{what}: {', '.join(awaits['children'][:NAMES_SHOWN])}"
    return f"{kind}: {what}" if what else str(kind)


def stack_key(task: dict[str, Any]) -> tuple[Any, ...]:
    return tuple((f.get("function"), f.get("file"), f.get("line")) for f in task.get("frames") or [])


def group_tasks(result: dict[str, Any]) -> dict[str, Group]:
    """Tasks by (loop, stack, kind of await), in the agent's order."""
    groups: dict[str, Group] = {}
    for loop in result.get("loops") or []:
        for task in loop.get("tasks") or []:
            kind = (task.get("awaits") or {}).get("kind")
            key = repr((loop.get("id"), stack_key(task), kind, task.get("state")))
            if key not in groups:
                groups[key] = Group(loop, task.get("frames") or [], [])
            groups[key].tasks.append(task)
    return groups


class View(PollingView):
    TITLE = "Tasks"
    REFRESH_S = 1.0
    DEFAULT_CSS = """
    #tasks-info { height: 1; color: $text-muted; }
    #tasks-table { height: 1fr; }
    #tasks-detail { height: 1fr; border-top: solid $accent; overflow-y: auto; }
    """

    def __init__(self) -> None:
        super().__init__(id="view-tasks")
        self.groups: dict[str, Group] = {}

    def compose(self) -> Any:
        yield Static("asking the agent…", id="tasks-info")
        yield table("tasks-table", COLUMNS)
        yield Static("", id="tasks-detail")

    def poll(self) -> None:
        self.ask("tasks", {"max_frames": 16}, self.show)

    def show(self, result: dict[str, Any]) -> None:
        self.groups = group_tasks(result)
        loops = result.get("loops") or []
        if loops:
            info = "; ".join(
                f"{lp.get('kind', 'asyncio')} loop in thread {lp.get('thread')}: {lp.get('task_count')} task(s)"
                + (" (truncated)" if lp.get("truncated") else "") for lp in loops)
        else:
            info = "no event loop or gevent hub found in the target"
            if result.get("note"):
                info += f" ({result['note']})"
        self.query_one("#tasks-info", Static).update(info)
        rows = []
        for key, group in sorted(self.groups.items(), key=lambda kv: -len(kv[1].tasks)):
            names = [t.get("name", "?") for t in group.tasks]
            shown = ", ".join(names[:NAMES_SHOWN]) + (f" +{len(names) - NAMES_SHOWN}" if len(names) > NAMES_SHOWN else "")
            states = sorted({t.get("state", "?") for t in group.tasks})
            stack = " ← ".join(f.get("function", "?") for f in group.frames) or "(no frames)"
            rows.append(Row(key, (str(len(group.tasks)), shown, "/".join(states),
                                  self.volatile.addresses(awaits_text(group.tasks[0].get("awaits"))), stack,
                                  str(group.loop.get("thread") or "?"))))
        self.fill(self.query_one("#tasks-table", DataTable), rows)
        self.show_detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def show_detail(self) -> None:
        detail = self.query_one("#tasks-detail", Static)
        key = selected_key(self.query_one("#tasks-table", DataTable))
        if key is None:
            detail.update("")
            return
        group = self.groups.get(key)
        if group is None:
            return
        lines = [Text.assemble((f"{len(group.tasks)} task(s)", "bold"), ("  innermost frame first", "dim"))]
        for f in group.frames:
            lines.append(Text.assemble("  ", (f.get("function", "?"), "cyan"), "  ",
                                       (self.volatile.place(f.get("file"), f.get("line")), "dim")))
        for task in group.tasks:
            awaited_by = task.get("awaited_by") or []
            lines.append(Text.assemble(("  ", ""), (task.get("name", "?"), "bold"), f"  {task.get('state', '?')}  ",
                                       ("awaits ", "dim"), self.volatile.addresses(awaits_text(task.get("awaits"))),
                                       (f"  awaited by {', '.join(awaited_by)}" if awaited_by else "", "dim")))
        detail.update(Text("\n").join(lines))
