"""Show the call path that led to a function, per call (optionally only when --condition holds)."""

from __future__ import annotations

from typing import Any

from ..options import Pattern, Pid, ProbeOptions, Shared, with_options
from ..render import console, escape, new_tree, with_raised
from ._common import agent, run_stream

NAME = "stack"


def render_event(event: dict[str, Any]) -> None:
    head = f"[bold]{escape(event['function'])}[/] cost={event.get('cost_ms', 0):.3f} ms [dim]thread={escape(str(event['thread']))}[/]"
    if "error" in event:
        console.print(f"{head}\n  [red]{escape(event['error'])}[/]")
        return
    tree = new_tree(head)
    for frame in event.get("stack", []):
        tree.add(f"[green]{escape(str(frame['function']))}[/] [dim]{escape(str(frame['file']))}:{frame['line']}[/]")
    console.print(with_raised(tree, event))


@with_options(probe=True)
def command(
    pid: Pid,
    pattern: Pattern,
    *,
    shared: Shared,
    probe: ProbeOptions,
) -> None:
    with agent(pid, shared) as client:
        run_stream(client, NAME, probe.args(pattern), shared.json, render_event, pid)
