"""Show the target's threads with CPU % and state and their Python stacks (innermost frame first); -n the
busiest, -b who waits on which lock and lock-ordering deadlocks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from peeka_agent.protocol import MAX_DEPTH, MIN_MAX_SIZE

from ..options import Pid, Shared, with_options
from ..render import add_value, console, escape, new_tree, table
from ._common import ask

if TYPE_CHECKING:
    from rich.tree import Tree

NAME = "thread"


@with_options()
def command(
    pid: Pid,
    thread_id: Annotated[
        Optional[int],  # noqa: UP045 - typer evaluates this annotation, also on Python 3.9
        typer.Argument(help="Only this thread: its ident or native id (both are listed)."),
    ] = None,
    all_threads: Annotated[
        bool, typer.Option("--all", "-a", help="Include the agent's own threads.")
    ] = False,
    depth: Annotated[
        int,
        typer.Option(
            "-x", "--expand", min=0, max=MAX_DEPTH, help="Show each frame's locals, expanded N levels (0: none)."
        ),
    ] = 0,
    max_frames: Annotated[
        int, typer.Option("--max-frames", min=1, help="Frames per thread (innermost kept).")
    ] = 64,
    max_size: Annotated[
        int, typer.Option("--max-size", min=MIN_MAX_SIZE, help="Characters per local value before it is cut.")
    ] = 512,
    busiest: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("-n", "--top", "--limit", min=1,
                     help="Only the N busiest threads by CPU over the interval, with stacks."),
    ] = None,
    interval: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("-i", "--interval", min=0.0, max=60.0,
                     help="Seconds over which CPU % is measured (default 0.2; 0 with a TID).")
    ] = None,
    blocked: Annotated[
        bool, typer.Option("-b", "--blocked", help="Threads waiting on locks, who holds them, deadlock cycles.")
    ] = False,
    *,
    shared: Shared,
) -> None:
    if interval is None:
        interval = 0.0 if thread_id is not None or blocked else 0.2
    args: dict[str, Any] = {
        "all": all_threads,
        "depth": depth,
        "max_frames": max_frames,
        "max_size": max_size,
        "interval_ms": round(interval * 1000),  # the protocol's unit
        "blocked": blocked,
    }
    if thread_id is not None:
        args["thread_id"] = thread_id
    if busiest is not None:
        args["top"] = busiest
    result = ask(pid, NAME, args, shared, extra_timeout=interval)
    if result is None:
        return
    if blocked:
        render_blocked(result)
        return
    if busiest is None and thread_id is None:
        console.print(cpu_table(result))
    for thread in result["threads"]:
        console.print(thread_tree(thread))
    hidden = result.get("agent_threads_hidden")
    note = f"; {hidden} agent thread(s) hidden (--all shows them)" if hidden else ""
    console.print(f"[dim]{result['count']} thread(s), innermost frame first{note}[/]")


_THREAD_KINDS = (("is_main", "main"), ("daemon", "daemon"), ("is_agent", "peeka agent"))  # answer key -> flag shown


def thread_tree(thread: dict[str, Any]) -> Tree:
    flags = [f"ident {thread['ident']}"]
    if thread.get("native_id") is not None:
        flags.append(f"native {thread['native_id']}")
    flags += [label for key, label in _THREAD_KINDS if thread.get(key)]
    if thread.get("state"):
        flags.append(f"state {thread['state']}")
    if thread.get("cpu_percent") is not None:
        flags.append(f"cpu {thread['cpu_percent']:.1f}%")
    if thread.get("cpu_seconds") is not None:
        flags.append(f"cpu {thread['cpu_seconds']:.2f}s")
    tree = new_tree(f"[bold]{escape(str(thread['name']))}[/] [dim]{', '.join(flags)}[/]")
    frames = thread.get("frames") or []
    if not frames:
        tree.add("[dim](no Python frame: running in C or not started)[/]")
    for frame in frames:
        where = f"{escape(str(frame['file']))}:{frame['line']}"
        branch = tree.add(f"[green]{escape(str(frame['function']))}[/]  [dim]{where}[/]")
        for name, node in (frame.get("locals") or {}).items():
            add_value(branch, node, name)
        if frame.get("locals_omitted"):
            branch.add(f"[dim]... {frame['locals_omitted']} more locals[/]")
        if frame.get("locals_error"):
            branch.add(f"[dim]{escape(frame['locals_error'])}[/]")
    if thread.get("frames_omitted"):
        tree.add(f"[dim]... {thread['frames_omitted']} outer frames (--max-frames)[/]")
    return tree


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def cpu_table(result: dict[str, Any]) -> Any:
    """Every thread (and unmatched OS thread), busiest first."""
    rows = [[t["name"], t["ident"], t.get("native_id"), t.get("state"), _pct(t.get("cpu_percent")),
             t.get("cpu_seconds"), "yes" if t.get("daemon") else ""] for t in result["threads"]]
    rows += [[f"{t['name']} (native)", "", t["native_id"], t["state"], _pct(t["cpu_percent"]), t["cpu_seconds"], ""]
             for t in result.get("native_threads") or ()]
    rows.sort(key=lambda r: -float(r[4]) if r[4] != "-" else 0.0)
    window = result.get("interval_s")
    title = f"CPU over the last {window * 1000:.0f} ms" if window else "CPU (no interval measured)"
    return table(title, ["name", "ident", "native", "state", "cpu %", "cpu s", "daemon"], rows)


def _at(where: dict[str, Any] | None) -> str:
    if not where:
        return "?"
    return f"{where['function']} {where['file']}:{where['line']}"


def _lock_label(lock: dict[str, Any] | None, name: str | None) -> str:
    if not lock:
        return escape(str(name))
    label = lock.get("global_name") or name or f"0x{lock['id']:x}"
    if name and lock.get("global_name") and name != lock["global_name"]:
        label = f"{name} ({lock['global_name']})"
    return escape(f"{lock['type']} {label}")


def render_blocked(result: dict[str, Any]) -> None:
    entries = result.get("blocked") or []
    for cycle in result.get("deadlocks") or []:
        kind = "probable DEADLOCK (a plain Lock's holder is inferred)" if cycle.get("inferred") else "DEADLOCK"
        console.print(f"[bold red]{kind}[/] between {', '.join(escape(n) for n in cycle['threads'])}:")
        for edge in cycle["edges"]:
            console.print(f"  [bold]{escape(edge['name'])}[/] waits for "
                          f"{_lock_label(edge['waits_for'], edge['waits_for'].get('name_of_object'))} "
                          f"held by [bold]{escape(edge['held_by_name'])}[/]  [dim]at {escape(_at(edge['at']))}[/]")
    if not entries:
        console.print("[dim]no thread waits on a lock or a threading primitive[/]")
        return
    for entry in entries:
        what = _lock_label(entry.get("lock"), entry.get("name_of_object"))
        line = f"[bold]{escape(entry['name'])}[/] waits on {entry['kind']} {what}  [dim]at {escape(_at(entry['at']))}[/]"
        holder = entry.get("holder")
        if holder:
            guess = " (inferred: its stack refers to the lock)" if holder.get("inferred") else ""
            line += (f"\n    held by [bold]{escape(holder['name'])}[/]{guess} "
                     f"[dim]now at {escape(_at(holder.get('at')))}[/]")
        elif entry["kind"] == "lock":
            line += "\n    [dim]holder unknown: a plain Lock records no owner, and no single other thread refers to it[/]"
        console.print(line)
    console.print(f"[dim]{len(entries)} waiting thread(s), {len(result.get('deadlocks') or [])} deadlock(s)[/]")
