"""Monitor functions: calls, successes, failures, failure rate and cost statistics every cycle."""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import typer
from peeka_agent import protocol

from ..errors import UsageError
from ..options import Pattern, Pid, ProbeOptions, Shared, with_options
from ..render import console, table
from ._common import agent, run_stream

NAME = "monitor"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _name(row: dict[str, Any]) -> str:
    """The function, and with --overhead-budget the share of the time its probe was on (the counts
    are of that time only; calls while off are estimated apart, on stderr)."""
    governed = row.get("governor") or {}
    duty = governed.get("duty", 1.0)
    return row["function"] if duty >= 0.999 else f"{row['function']} (probed {duty * 100:.1f}% of the time)"


def render_event(event: dict[str, Any]) -> None:
    when = datetime.datetime.fromtimestamp(event["time"]).strftime("%H:%M:%S")
    rows = [[_name(r), r["calls"], r["success"], r["failures"], f"{r['failure_rate'] * 100:.1f}%",
             _ms(r["avg_ms"]), _ms(r["min_ms"]), _ms(r["p50_ms"]), _ms(r["p99_ms"]), _ms(r["max_ms"])]
            for r in event["functions"]]
    console.print(table(f"{when}  last {event['cycle_s']:g} s",
                        ["function", "calls", "ok", "fail", "fail%", "avg ms", "min", "p50", "p99", "max"], rows))


@with_options(probe=True, limit=None)
def command(
    pid: Pid,
    pattern: Pattern,
    # No -c: that is --condition on every probe command (it is declared once, in peeka.options).
    cycle: Annotated[float, typer.Option("--cycle", min=protocol.MIN_CYCLE, help="Seconds per report.")] = protocol.DEFAULT_CYCLE,
    *,
    shared: Shared,
    probe: ProbeOptions,
) -> None:
    if probe.condition is not None and _is_number(probe.condition):
        raise UsageError(f"-c/--condition takes an expression over each call, not the number {probe.condition}",
                         f"For seconds per report use --cycle, e.g. `peeka monitor {pid} {pattern} --cycle {probe.condition}`.")
    with agent(pid, shared) as client:
        run_stream(client, NAME, probe.args(pattern, cycle=cycle), shared.json, render_event, pid)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
