"""Show the call path that led to a function, per call (optionally only when --condition holds)."""

from __future__ import annotations

from typing import Any

from rich.tree import Tree

from ..render import console, escape
from ._common import (
    Condition,
    Json,
    Limit,
    MaxMatch,
    Method,
    Pattern,
    Pid,
    Regex,
    StreamTimeout,
    Timeout,
    agent,
    probe_args,
    run_stream,
)

NAME = "stack"


def render_event(event: dict[str, Any]) -> None:
    head = f"[bold]{escape(event['function'])}[/] cost={event.get('cost_ms', 0):.3f} ms [dim]thread={escape(str(event['thread']))}[/]"
    if "error" in event:
        console.print(f"{head}\n  [red]{escape(event['error'])}[/]")
        return
    tree = Tree(head)
    for frame in event.get("stack", []):
        tree.add(f"[green]{escape(str(frame['function']))}[/] [dim]{escape(str(frame['file']))}:{frame['line']}[/]")
    if event.get("exception"):
        tree.add(f"[red]raised {escape(event['exception'])}[/]")
    console.print(tree)


def command(
    pid: Pid,
    pattern: Pattern,
    condition: Condition = None,
    limit: Limit = 100,
    timeout: StreamTimeout = None,
    regex: Regex = False,
    max_match: MaxMatch = 50,
    method: Method = "auto",
    attach_timeout: Timeout = 10.0,
    json: Json = False,
) -> None:
    args = probe_args(pattern, regex, max_match, limit, timeout, condition=condition)
    with agent(pid, method, attach_timeout, quiet=json) as client:
        run_stream(client, NAME, args, json, render_event, pid)
