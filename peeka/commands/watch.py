"""Watch a function's calls: arguments, result or exception, cost, as they happen.

EXPR (default: params and result/exception) and --condition are safe expressions over args,
kwargs, params, result, exception, target (self), cost (ms) and thread.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Optional

import typer
from peeka_agent.protocol import DEFAULT_DEPTH, DEFAULT_MAX_SIZE

from ..options import Expand, MaxSize, Pattern, Pid, ProbeOptions, Shared, render_args, with_options
from ..render import console, escape, value_tree
from ._common import agent, run_stream

NAME = "watch"


def render_event(event: dict[str, Any]) -> None:
    when = datetime.datetime.fromtimestamp(event["start_ns"] / 1e9).strftime("%H:%M:%S.%f")[:-3]
    cost = f"{event['cost_ms']:.3f} ms" if event.get("cost_ms") is not None else "-"
    yields = f" yields={event['yields']}" if "yields" in event else ""
    head = (f"[dim]{when}[/] [bold]{escape(event['function'])}[/] [magenta]{event.get('location', '')}[/] "
            f"cost={cost}{yields} [dim]thread={escape(str(event['thread']))}[/]")
    if "error" in event:
        console.print(f"{head}\n  [red]{escape(event['error'])}[/]")
    else:
        console.print(value_tree(head, event.get("value")))


@with_options(probe=True)
def command(
    pid: Pid,
    pattern: Pattern,
    expression: Annotated[Optional[str], typer.Argument(help="What to show per call, e.g. \"params['user']\", \"result\".")] = None,  # noqa: UP045,E501
    before: Annotated[bool, typer.Option("--before", help="At entry (arguments only).")] = False,
    success: Annotated[bool, typer.Option("-s", "--success", help="After a normal return.")] = False,
    exception: Annotated[bool, typer.Option("-e", "--exception", help="After an exception.")] = False,
    finish: Annotated[bool, typer.Option("--finish", help="After either (the default).")] = False,
    depth: Expand = DEFAULT_DEPTH,
    max_size: MaxSize = DEFAULT_MAX_SIZE,
    *,
    shared: Shared,
    probe: ProbeOptions,
) -> None:
    at = [p for p, on in (("enter", before), ("success", success), ("exception", exception), ("finish", finish)) if on]
    args = probe.args(pattern, expression=expression, at=at or ["finish"], **render_args(depth, max_size))
    with agent(pid, shared) as client:
        run_stream(client, NAME, args, shared.json, render_event, pid)
