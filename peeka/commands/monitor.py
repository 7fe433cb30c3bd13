"""Monitor functions: calls, successes, failures, failure rate and cost statistics every cycle."""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Optional

import typer

from ..render import console, table
from ._common import (
    Json,
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

NAME = "monitor"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_event(event: dict[str, Any]) -> None:
    when = datetime.datetime.fromtimestamp(event["time"]).strftime("%H:%M:%S")
    rows = [[r["function"], r["calls"], r["success"], r["failures"], f"{r['failure_rate'] * 100:.1f}%",
             _ms(r["avg_ms"]), _ms(r["min_ms"]), _ms(r["p50_ms"]), _ms(r["p99_ms"]), _ms(r["max_ms"])]
            for r in event["functions"]]
    console.print(table(f"{when}  last {event['cycle_s']:g} s",
                        ["function", "calls", "ok", "fail", "fail%", "avg ms", "min", "p50", "p99", "max"], rows))


def command(
    pid: Pid,
    pattern: Pattern,
    cycle: Annotated[float, typer.Option("-c", "--cycle", min=0.05, help="Seconds per report.")] = 5.0,
    cycles: Annotated[Optional[int], typer.Option("-n", "--limit", min=1, help="End after this many reports.")] = None,  # noqa: UP045,E501
    timeout: StreamTimeout = None,
    regex: Regex = False,
    max_match: MaxMatch = 50,
    method: Method = "auto",
    attach_timeout: Timeout = 10.0,
    json: Json = False,
) -> None:
    args = probe_args(pattern, regex, max_match, cycles, timeout, cycle=cycle)
    with agent(pid, method, attach_timeout, quiet=json) as client:
        run_stream(client, NAME, args, json, render_event, pid)
