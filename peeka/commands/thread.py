"""Show the target's threads and their Python stacks (innermost frame first), optionally with locals."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.tree import Tree

from ..render import add_value, console, emit_json, escape
from ._common import Debug, Json, Method, Pid, Timeout, agent

NAME = "thread"


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
            "-x", "--depth", min=0, max=4, help="Show each frame's locals, expanded N levels (0: none)."
        ),
    ] = 0,
    max_frames: Annotated[
        int, typer.Option("--max-frames", min=1, help="Frames per thread (innermost kept).")
    ] = 64,
    max_size: Annotated[
        int, typer.Option("--max-size", min=64, help="Characters per local value before it is cut.")
    ] = 512,
    method: Method = "auto",
    timeout: Timeout = 10.0,
    json: Json = False,
    debug: Debug = False,
) -> None:
    args: dict[str, Any] = {
        "all": all_threads,
        "depth": depth,
        "max_frames": max_frames,
        "max_size": max_size,
    }
    if thread_id is not None:
        args["thread_id"] = thread_id
    with agent(pid, method, timeout, quiet=json) as client:
        result = client.request(NAME, args)
    if json:
        emit_json(result)
        return
    for thread in result["threads"]:
        console.print(thread_tree(thread))
    hidden = result.get("agent_threads_hidden")
    note = f"; {hidden} agent thread(s) hidden (--all shows them)" if hidden else ""
    console.print(f"[dim]{result['count']} thread(s), innermost frame first{note}[/]")


def thread_tree(thread: dict[str, Any]) -> Tree:
    flags = [f"ident {thread['ident']}"]
    if thread.get("native_id") is not None:
        flags.append(f"native {thread['native_id']}")
    if thread.get("is_main"):
        flags.append("main")
    if thread.get("daemon"):
        flags.append("daemon")
    if thread.get("is_agent"):
        flags.append("peeka agent")
    if thread.get("cpu_seconds") is not None:
        flags.append(f"cpu {thread['cpu_seconds']:.2f}s")
    tree = Tree(f"[bold]{escape(str(thread['name']))}[/] [dim]{', '.join(flags)}[/]")
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
