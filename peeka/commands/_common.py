"""The attach-then-ask helpers every command uses (the shared options are in ``peeka.options``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..frontend import current
from ..options import Shared
from ..render import console_err, emit_json, escape

if TYPE_CHECKING:
    from ..client import AgentClient


@contextmanager
def agent(pid: int, shared: Shared, extra_timeout: float = 0.0) -> Iterator[AgentClient]:
    """A connected client to PID's agent; attaches first (implicit attach) when none runs, with the
    command's --method and --attach-timeout (plus ``extra_timeout``: a command's own wait)."""
    from ..attach import attach  # not at import: a command's --help or usage error needs none of it

    client, report = attach(pid, method=shared.method, timeout=shared.attach_timeout + extra_timeout)
    if not report.reused and not shared.json:
        console_err.print(
            f"[dim]attached to {pid} via {report.method} in {report.seconds * 1000:.0f} ms "
            f"({escape(report.detail)}); `peeka detach {pid}` removes the agent[/]"
        )
    current().opened(client)
    with client:
        yield client


def ask(pid: int, command: str, args: dict[str, Any], shared: Shared, extra_timeout: float = 0.0) -> Any:
    """One request to PID's agent (attaching first when none runs). With --json the answer is printed
    and None returned: the caller renders only for people."""
    with agent(pid, shared, extra_timeout) as client:
        result = client.request(command, args)
    if shared.json:
        emit_json(result)
        return None
    return result


class Governed:
    """The lines a person reads about a stream's overhead governor (``--overhead-budget``), on stderr:
    each new decision as it comes, and at the end how many calls it kept from the stream."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.last: dict[str, Any] | None = None

    def show(self, data: dict[str, Any]) -> None:
        self.last = data
        for row in data.get("functions", []):
            name, note = row["function"], row.get("note")
            if name in data.get("changed", ()):  # a new decision, or back to every call
                text = note or f"every call of {name} again, under {data['budget_percent']:g}%"
                console_err.print(f"[yellow]{self.command}: {escape(text)}[/]", highlight=False)

    def summary(self) -> None:
        """Calls kept from the stream, per function (the last report's counts when interrupted)."""
        data, self.last = self.last, None
        for row in (data or {}).get("functions", []):
            parts = []
            if row.get("skipped"):
                parts.append(f"{row['skipped']:,} of {row['calls_seen']:,} calls sampled out (not shown)")
            if row.get("unfinished"):
                parts.append(f"{row['unfinished']:,} calls not shown: their probe was off when they "
                             "ended, or they were still running")
            if row.get("estimated_calls"):
                parts.append(f"~{row['estimated_calls']:,} calls while its probe was off (estimated, not seen)")
            if parts:
                console_err.print(f"[yellow]{self.command}: {escape(row['function'])}: {'; '.join(parts)} "
                                  f"to stay under {data['budget_percent']:g}% (governor's estimate "  # type: ignore[index]
                                  f"{data['overhead_percent']:.1f}%)[/]", highlight=False)  # type: ignore[index]


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
                f"[dim]{command}: {escape(str(start.get('affected', '')))} ({escape(listed)}) via {start.get('technique', '?')}; "
                f"ends on Ctrl-C, -n or --timeout; `peeka reset {pid}` removes every probe[/]",
                highlight=False,
            )
        governed = Governed(command)
        for message in stream:
            if isinstance(message, End):
                if json:
                    emit_json({"type": "end", "reason": message.reason, "dropped": message.dropped,
                               "errors": message.errors, "events": shown})
                else:
                    lost = f", {message.dropped} dropped (client too slow)" if message.dropped else ""
                    if message.errors:
                        lost += f", {message.errors} call(s) not reported: Peeka's own code failed on them"
                    console_err.print(f"[dim]{command} ended: {escape(message.reason)}; {shown} event(s){lost}[/]")
                    governed.summary()
                break
            data = message.data
            if isinstance(data, dict) and data.get("type") == "governor":
                # --overhead-budget: what the governor decided and skipped (not an event of the command's own)
                if json:
                    emit_json(data)
                else:
                    governed.show(data)
                continue
            if json:
                emit_json(data)
            else:
                on_event(data)
            shown += 1
    except KeyboardInterrupt:
        if not json:
            console_err.print(f"[dim]{command} stopped; {shown} event(s)[/]")
            governed.summary()
    finally:
        stream.close()  # sends the cancel: the agent takes its probes off
    return shown
