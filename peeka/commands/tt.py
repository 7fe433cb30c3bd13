"""Time tunnel: record calls (args, result or exception, cost), then list, search, show or replay them.

  peeka tt PID PATTERN [-n 100]     record calls of PATTERN
  peeka tt PID --list               what is recorded        peeka tt PID --search "cost > 5"
  peeka tt PID --show INDEX [-x 3]  one record in full      peeka tt PID --replay INDEX  call it again
  peeka tt PID --clear
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Optional

import typer
from peeka_agent.protocol import DEFAULT_DEPTH, DEFAULT_MAX_SIZE

from ..errors import UsageError
from ..options import Expand, MaxSize, Pid, ProbeOptions, Shared, render_args, with_options
from ..render import console, console_err, emit_json, escape, table, value_tree
from ._common import agent, run_stream

NAME = "tt"


def _row(r: dict[str, Any]) -> list[Any]:
    when = datetime.datetime.fromtimestamp(r["time"]).strftime("%H:%M:%S.%f")[:-3]
    outcome = "exception" if r["is_exception"] else "return"
    return [r["index"], when, f"{r['cost_ms']:.3f}", outcome, r["function"], r["result"]]


_COLUMNS = ["index", "time", "cost ms", "outcome", "function", "result / exception"]


@with_options(probe=True)
def command(
    pid: Pid,
    pattern: Annotated[Optional[str], typer.Argument(help="Record calls of these functions.")] = None,  # noqa: UP045
    list_: Annotated[bool, typer.Option("--list", "-l", help="List the records.")] = False,
    search: Annotated[Optional[str], typer.Option("--search", help="Records where this expression is true.")] = None,  # noqa: UP045,E501
    show: Annotated[Optional[int], typer.Option("--show", help="Show one record in full.")] = None,  # noqa: UP045
    replay: Annotated[Optional[int], typer.Option("--replay", help="Call the function again with a record's arguments.")] = None,  # noqa: UP045,E501
    clear: Annotated[bool, typer.Option("--clear", help="Delete every record.")] = False,
    depth: Expand = DEFAULT_DEPTH,
    max_size: MaxSize = DEFAULT_MAX_SIZE,
    *,
    shared: Shared,
    probe: ProbeOptions,
) -> None:
    actions = [name for name, on in (("record", pattern is not None), ("list", list_), ("search", search is not None),
                                     ("show", show is not None), ("replay", replay is not None), ("clear", clear)) if on]
    if len(actions) != 1:
        raise UsageError("give exactly one of: PATTERN (record), --list, --search, --show, --replay, --clear",
                         f"e.g. `peeka tt {pid} myapp.views.get_user -n 20`, then `peeka tt {pid} --list`.")
    action = actions[0]
    with agent(pid, shared) as client:
        if action == "record":
            args = probe.args(pattern or "", action="record", **render_args(depth, max_size))
            run_stream(client, NAME, args, shared.json, lambda r: console.print(table(None, _COLUMNS, [_row(r)])), pid)
            return
        if action == "replay":
            console_err.print(f"[yellow]warning: replaying record {replay} calls the function again inside "
                              f"process {pid}, with its side effects[/]")
        result = client.request(NAME, {"action": action, "condition": search, "index": show if show is not None else replay,
                                       **({"unsafe": True} if probe.unsafe else {}), **render_args(depth, max_size)})
    if shared.json:
        emit_json(result)
    elif action in ("list", "search"):
        console.print(table(None, _COLUMNS, [_row(r) for r in result["records"]]))
        if result.get("error"):  # the search's condition failed on some records: said once, with the count
            console_err.print(f"[red]{escape(result['error'])}[/]")
    elif action == "show":
        console.print(table(None, _COLUMNS, [_row(result)]))
        console.print(value_tree("[bold]params[/]", result["params"]))
        console.print(value_tree("[bold]exception[/]" if result["is_exception"] else "[bold]result[/]", result["outcome"]))
    elif action == "replay":
        label = "exception" if "exception" in result else "result"
        console.print(value_tree(f"[bold]replayed {escape(result['function'])}[/] in {result['cost_ms']:.3f} ms: {label}",
                                 result.get(label)))
    else:
        console.print(f"{pid}: cleared {result['cleared']} record(s)")
