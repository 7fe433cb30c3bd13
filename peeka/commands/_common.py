"""Options shared by every command, defined once, and the attach-then-ask helper."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Optional

import typer

from ..attach import attach
from ..client import AgentClient
from ..render import console_err, emit_json

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


def ask(pid: int, command: str, args: dict[str, Any], method: str, timeout: float, json: bool) -> Any:
    """One request to PID's agent (attaching first when none runs). With --json the answer is printed
    and None returned: the caller renders only for people."""
    with agent(pid, method, timeout, quiet=json) as client:
        result = client.request(command, args)
    if json:
        emit_json(result)
        return None
    return result


# -- what every probing command (watch, trace, stack, monitor, tt) shares
Pattern = Annotated[
    str, typer.Argument(help="Functions to probe: module.func, module.Class.method, wildcards (myapp.views.*).")
]
Regex = Annotated[bool, typer.Option("-E", "--regex", help="PATTERN is a regular expression.")]
MaxMatch = Annotated[
    int, typer.Option("-m", "--max-match", min=1, help="Refuse when more functions than this match.")
]
Limit = Annotated[int, typer.Option("-n", "--limit", min=1, help="End after this many hits.")]
StreamTimeout = Annotated[
    Optional[float],  # noqa: UP045 - typer evaluates this annotation, also on Python 3.9
    typer.Option("--timeout", min=0.0, help="End after this many seconds."),
]
Condition = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--condition", "-c", help="Only calls where this expression is true, e.g. \"cost > 100\"."),
]


def probe_args(pattern: str, regex: bool, max_match: int, limit: int | None, timeout: float | None,
               **extra: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"pattern": pattern, "regex": regex, "max_match": max_match, "timeout": timeout}
    if limit is not None:
        args["limit"] = limit
    args.update({k: v for k, v in extra.items() if v is not None})
    return args


def run_stream(client: AgentClient, command: str, args: dict[str, Any], json: bool,
               on_event: Callable[[dict[str, Any]], None], pid: int,
               header: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Start a stream, say what it affects (``header``: for streams other than probes), show each
    event; Ctrl-C ends it. Returns events shown."""
    from peeka_agent.protocol import End

    stream = client.stream(command, args)
    shown = 0
    try:
        start = next(stream).data
        if json:
            emit_json({"type": "start", **start})
        elif header is not None:
            header(start)
        else:
            names = start.get("functions", [])
            listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            console_err.print(
                f"[dim]{command}: {start.get('affected', '')} ({listed}) via {start.get('technique', '?')}; "
                f"ends on Ctrl-C, -n or --timeout; `peeka reset {pid}` removes every probe[/]",
                highlight=False,
            )
        for message in stream:
            if isinstance(message, End):
                if json:
                    emit_json({"type": "end", "reason": message.reason, "dropped": message.dropped, "events": shown})
                else:
                    lost = f", {message.dropped} dropped (client too slow)" if message.dropped else ""
                    console_err.print(f"[dim]{command} ended: {message.reason}; {shown} event(s){lost}[/]")
                break
            if json:
                emit_json(message.data)
            else:
                on_event(message.data)
            shown += 1
    except KeyboardInterrupt:
        if not json:
            console_err.print(f"[dim]{command} stopped; {shown} event(s)[/]")
    finally:
        stream.close()  # sends the cancel: the agent takes its probes off
    return shown
