"""asyncio tasks of every running event loop: coroutine stacks (innermost first) and what each awaits.

Tasks with the same stack and the same kind of wait are shown once, with their count and names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..options import Pid, Shared, with_options
from ..render import console, escape, new_tree
from ._common import ask

if TYPE_CHECKING:
    from rich.tree import Tree

NAME = "tasks"
GROUP_NAMES_SHOWN = 5


def awaits_text(awaits: dict[str, Any]) -> str:
    if awaits["kind"] in ("running", "scheduled"):
        return f"[magenta]{escape(str(awaits['what']))}[/]"
    extra = [f"{k}={v}" for k, v in awaits.items() if k not in ("kind", "what", "task_id") and v is not None]
    return f"[magenta]{escape(awaits['kind'])}[/] {escape(str(awaits['what']))}" + (
        f" [dim]({escape(', '.join(extra))})[/]" if extra else "")


def _signature(task: dict[str, Any]) -> tuple[Any, ...]:
    frames = tuple((f["function"], f["file"], f["line"]) for f in task["frames"])
    return frames, task["state"], task["awaits"]["kind"], not task.get("awaited_by")


def _loop_tree(loop: dict[str, Any]) -> Tree:
    where = f"thread {loop['thread']}" if loop.get("thread") else "thread unknown"
    state = "running" if loop["running"] else "not running"
    tree = new_tree(f"[bold]{escape(loop['type'])}[/] [dim]{where}, {state}, {loop['task_count']} task(s), "
                f"{loop.get('ready')} ready callback(s), {loop.get('scheduled')} timer(s)[/]")
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for task in loop["tasks"]:
        groups.setdefault(_signature(task), []).append(task)
    for members in groups.values():
        first = members[0]
        if len(members) == 1:
            label = f"[bold]{escape(first['name'])}[/] [dim]{first['state']}[/]"
            # a single task awaiting a particular object: show exactly what (another task's name, a peer)
            label += f"  {awaits_text(first['awaits'])}" if first["awaits"]["kind"] in ("running", "scheduled") \
                else f"  awaits {awaits_text(first['awaits'])}"
        else:
            names = ", ".join(t["name"] for t in members[:GROUP_NAMES_SHOWN])
            more = f" and {len(members) - GROUP_NAMES_SHOWN} more" if len(members) > GROUP_NAMES_SHOWN else ""
            label = (f"[bold]{len(members)} tasks[/] [dim]{first['state']} ({escape(names)}{more})[/]"
                     f"  await [magenta]{escape(first['awaits']['kind'])}[/]")
        if first.get("awaited_by"):
            label += f" [dim]awaited by {escape(', '.join(first['awaited_by']))}[/]"
        branch = tree.add(label)
        for frame in first["frames"]:
            branch.add(f"[green]{escape(frame['function'])}[/]  [dim]{escape(str(frame['file']))}:{frame['line']}[/]")
        if first.get("frames_omitted"):
            branch.add(f"[dim]... {first['frames_omitted']} outer frames (--max-frames)[/]")
    if loop["truncated"]:
        tree.add(f"[dim]... only the first {len(loop['tasks'])} tasks shown (--limit)[/]")
    return tree


@with_options()
def command(
    pid: Pid,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most N tasks per loop.")] = 2_000,
    max_frames: Annotated[int, typer.Option("--max-frames", min=1, help="Frames per task (innermost kept).")] = 32,
    scan_gc: Annotated[bool, typer.Option("--scan-gc", help="When no loop is found otherwise (uvloop on 3.14): look through every object once (costly on big heaps).")] = False,  # noqa: E501
    *,
    shared: Shared,
) -> None:
    result = ask(pid, NAME, {"limit": limit, "max_frames": max_frames, "scan_gc": scan_gc}, shared)
    if result is None:
        return
    for loop in result["loops"]:
        console.print(_loop_tree(loop))
    note = result.get("note") or f"{len(result['loops'])} event loop(s), {result['count']} task(s); stacks innermost first"
    console.print(f"[dim]{escape(note)}[/]")
