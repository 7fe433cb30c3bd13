"""Remove instrumentation: every probe, or those on functions matching PATTERN (no PATTERN: logger levels too)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..attach import try_connect
from ..options import Pid, Regex, Shared, with_options
from ..process import TargetProcess
from ..render import console, emit_json, escape

NAME = "reset"


@with_options(attach=False)
def command(
    pid: Pid,
    pattern: Annotated[Optional[str], typer.Argument(help="Only functions matching this (default: all).")] = None,  # noqa: UP045,E501
    regex: Regex = False,
    *,
    shared: Shared,
) -> None:
    client = try_connect(TargetProcess(pid))
    if client is None:
        result = {"removed": [], "count": 0, "remaining": [], "note": "no agent running: nothing to reset"}
    else:
        with client:
            result = client.request(NAME, {"pattern": pattern, "regex": regex})
    if shared.json:
        emit_json(result)
        return
    if result.get("note"):
        console.print(f"{pid}: {escape(result['note'])}")
        return
    console.print(f"{pid}: removed {result['count']} probe(s)" + (f": {escape(', '.join(result['removed']))}" if result["removed"] else ""))
    if result["remaining"]:
        console.print(f"  still probed: {escape(', '.join(result['remaining']))}")
    for entry in result.get("loggers") or ():
        console.print(f"  logger {escape(entry['name'])}: "
                      + (f"level {entry['level']} restored" if entry["restored"] else escape(entry["note"])))
