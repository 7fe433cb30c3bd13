"""Options shared by every command, defined once, and the attach-then-ask helper."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from ..attach import attach
from ..client import AgentClient
from ..render import console_err

Pid = Annotated[int, typer.Argument(help="PID of the target Python process (`peeka ps` lists them).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (one document, or JSON lines for streams).")]
Method = Annotated[
    str, typer.Option("--method", help="How to attach when no agent runs yet: auto, remote-exec (3.14+) or gdb.")
]
Timeout = Annotated[float, typer.Option("--attach-timeout", help="Seconds to wait for the agent to come up.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show the agent's traceback when it fails.")]


@contextmanager
def agent(pid: int, method: str = "auto", timeout: float = 10.0, quiet: bool = False) -> Iterator[AgentClient]:
    """A connected client to PID's agent; attaches first (implicit attach) when none runs."""
    client, report = attach(pid, method=method, timeout=timeout)
    if not report.reused and not quiet:
        console_err.print(
            f"[dim]attached to {pid} via {report.method} in {report.seconds * 1000:.0f} ms "
            f"({report.detail}); `peeka detach {pid}` removes the agent[/]"
        )
    with client:
        yield client
