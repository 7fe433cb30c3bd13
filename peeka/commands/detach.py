"""Remove the agent: undo every change it made, stop its threads, delete its socket and files."""

from __future__ import annotations

from ..attach import detach
from ..options import Pid, Shared, with_options
from ..render import console, emit_json

NAME = "detach"


@with_options(attach=False)
def command(pid: Pid, *, shared: Shared) -> None:
    result = detach(pid)
    if shared.json:
        emit_json(result)
    elif result.get("detached"):
        console.print(f"[bold green]{pid}[/]: agent detached; the target is as it was")
    else:
        note = " (stale files removed)" if result.get("cleaned_leftovers") else ""
        console.print(f"{pid}: no agent was running{note}")
