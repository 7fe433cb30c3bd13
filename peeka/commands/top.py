"""Live view of the hottest functions, sampled inside the target from every thread's stack, with
process CPU, RSS, threads and GC in a header; --record S --output FILE writes collapsed stacks."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from peeka_agent import protocol
from rich.console import Group
from rich.live import Live
from rich.text import Text

from ..errors import UsageError
from ..options import Pid, Shared, StreamTimeout, with_options
from ..render import console, console_err, emit_json, table
from ._common import agent

NAME = "top"


def _mib(value: Any) -> str:
    return "-" if value is None else f"{value / 1048576:.1f} MiB"


def header(event: dict[str, Any]) -> str:
    proc = event["process"]
    gc = proc["gc"]
    cpu = "-" if proc["cpu_percent"] is None else f"{proc['cpu_percent']:.1f}%"
    when = datetime.datetime.fromtimestamp(event.get("time", 0)).strftime("%H:%M:%S") if "time" in event else ""
    return (f"{when}  cpu {cpu}  rss {_mib(proc['rss_bytes'])}  threads {proc['threads']}  "
            f"gc collections {'/'.join(str(n) for n in gc['collections'])} (gen 0/1/2)  "
            f"samples {event['samples']:g} from {event.get('threads_sampled', '?')} busy thread(s)"
            f" ({event.get('threads_idle', 0)} idle left out)")


def functions_table(event: dict[str, Any], rows: int) -> Any:
    return table(None, ["self %", "total %", "self", "total", "function", "where"],
                 [[f"{f['self_percent']:.1f}", f"{f['total_percent']:.1f}", f"{f['self_samples']:g}", f"{f['total_samples']:g}",
                   f["function"], f"{f['file']}:{f['line']}"] for f in event["functions"][:rows]])


def render_summary(event: dict[str, Any], rows: int) -> Group:
    return Group(Text(header(event), style="bold"), functions_table(event, rows))


def write_collapsed(path: Path, collapsed: list[list[Any]]) -> None:
    """One ``frame;frame;frame count`` line per stack: what flamegraph.pl and speedscope read."""
    path.write_text("".join(f"{line} {count}\n" for line, count in collapsed))


@with_options()
def command(
    pid: Pid,
    interval: Annotated[float, typer.Option("-i", "--interval", min=0.1, help="Seconds per refresh.")] = 1.0,
    rate: Annotated[int, typer.Option("--rate", min=1, max=protocol.MAX_TOP_RATE, help="Samples per second (Hz).")] = protocol.DEFAULT_TOP_RATE,
    limit: Annotated[Optional[int], typer.Option("-n", "--limit", min=1, help="End after this many refreshes.")] = None,  # noqa: UP045,E501
    timeout: StreamTimeout = None,
    record: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--record", min=0.1, help="Sample this many seconds, write --output, print a summary."),
    ] = None,
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", "-o", help="Collapsed stacks file for --record (flamegraph.pl, speedscope)."),
    ] = None,
    idle: Annotated[bool, typer.Option("--idle", help="Count threads that used no CPU too.")] = False,
    rows: Annotated[int, typer.Option("--functions", min=1, help="Functions shown.")] = 25,
    *,
    shared: Shared,
) -> None:
    json = shared.json
    from peeka_agent.protocol import End

    if (record is None) != (output is None):
        raise UsageError("--record and --output go together", "Example: peeka top PID --record 10 --output out.folded")
    args: dict[str, Any] = {"interval": interval, "rate": rate, "idle": idle, "functions": max(rows, 30),
                            "stacks": json and record is None}
    for key, value in (("limit", limit), ("timeout", timeout), ("record", record)):
        if value is not None:
            args[key] = value
    with agent(pid, shared) as client:
        stream = client.stream(NAME, args)
        # Refreshed in place on a terminal; piped into a file or a log, one table per refresh.
        live = Live(console=console, auto_refresh=False) if not json and record is None and console.is_terminal else None
        reports = 0
        try:
            start = next(stream).data
            if json:
                emit_json({"type": "start", **start})
            else:
                what = f"recording {record:g} s" if record else "Ctrl-C, -n or --timeout ends it"
                console_err.print(f"[dim]top: sampling every thread at {rate} Hz inside {pid}; {what}[/]")
            if live is not None:
                live.start()
            for message in stream:
                if isinstance(message, End):
                    if json:
                        emit_json({"type": "end", "reason": message.reason, "dropped": message.dropped})
                    elif message.reason not in ("limit", "timeout", "record"):
                        console_err.print(f"[dim]top ended: {message.reason}[/]")
                    break
                data = message.data
                reports += 1
                if data.get("type") == "profile":
                    _finish_record(data, output, json, rows)  # type: ignore[arg-type]
                elif json:
                    emit_json(data)
                elif live is not None:
                    live.update(render_summary(data, rows), refresh=True)
                elif record is None:
                    console.print(render_summary(data, rows))
        except KeyboardInterrupt:
            pass
        finally:
            if live is not None:
                live.stop()
            stream.close()


def _finish_record(profile: dict[str, Any], output: Path, json: bool, rows: int) -> None:
    write_collapsed(output, profile["collapsed"])
    if json:
        emit_json(profile)
        return
    console.print(f"[bold]{profile['samples']:g} samples over {profile['duration_s']:g} s[/], "
                  f"{len(profile['collapsed'])} distinct stacks written to {output} "
                  f"(flamegraph.pl {output} > out.svg, or open it in speedscope)")
    console.print(functions_table(profile, rows))
