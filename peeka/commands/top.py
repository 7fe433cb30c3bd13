"""Live view of the hottest functions, sampled inside the target from every thread's stack, with
process CPU, RSS, threads and GC in a header; --record S --output FILE writes the recording as
collapsed stacks, pprof or speedscope (--format; built here from the agent's stacks, peeka/profiles)."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from peeka_agent import protocol
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn
from rich.text import Text

from ..errors import CommandFailed, ProtocolMismatch, UsageError
from ..options import Pid, Shared, StreamTimeout, with_options
from ..profiles import FORMATS, OPEN_WITH, encode, from_top_record
from ..render import console, console_err, emit_json, escape, table
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
        typer.Option("--output", "-o", help="The file --record writes, in --format."),
    ] = None,
    format: Annotated[
        str,
        typer.Option("--format",
                     help="--output's format: collapsed stacks (flamegraph.pl), pprof (go tool pprof, gzipped "
                          "protobuf) or speedscope (JSON)."),
    ] = "collapsed",
    idle: Annotated[bool, typer.Option("--idle", help="Count threads that used no CPU too.")] = False,
    rows: Annotated[int, typer.Option("--functions", min=1, help="Functions shown.")] = 25,
    *,
    shared: Shared,
) -> None:
    json = shared.json
    from peeka_agent.protocol import End

    if (record is None) != (output is None):
        raise UsageError("--record and --output go together", "Example: peeka top PID --record 10 --output out.folded")
    if format not in FORMATS:
        raise UsageError(f"--format {format!r} is not a profile format", f"Use one of: {', '.join(FORMATS)}")
    if format != "collapsed" and record is None:
        raise UsageError("--format is the format of --record's --output",
                         "Example: peeka top PID --record 10 --format pprof --output out.pb.gz")
    if output is not None:
        _check_output(output)
    args: dict[str, Any] = {"interval": interval, "rate": rate, "idle": idle, "functions": max(rows, 30),
                            "stacks": json and record is None}
    for key, value in (("limit", limit), ("timeout", timeout), ("record", record)):
        if value is not None:
            args[key] = value
    with agent(pid, shared) as client:
        stream = client.stream(NAME, args)
        # Refreshed in place on a terminal; piped into a file or a log, one table per refresh.
        live = Live(console=console.real, auto_refresh=False) if not json and record is None and console.is_terminal else None
        # --record's progress on stderr: in --json mode only where it is a terminal (no bar in logs).
        progress = _record_progress(record) if record is not None and (not json or console_err.is_terminal) else None
        reports = 0
        ended = "the stream closed"
        written = False
        try:
            start = next(stream).data
            if json:
                emit_json({"type": "start", **start})
            else:
                what = f"recording {record:g} s" if record else "Ctrl-C, -n or --timeout ends it"
                console_err.print(f"[dim]top: sampling every thread at {rate} Hz inside {pid}; {what}[/]")
            if live is not None:
                live.start()
            if progress is not None:
                progress.start()
            for message in stream:
                if isinstance(message, End):
                    ended = message.reason
                    if json:
                        emit_json({"type": "end", "reason": message.reason, "dropped": message.dropped})
                    elif message.reason not in ("limit", "timeout", "record"):
                        console_err.print(f"[dim]top ended: {escape(message.reason)}[/]")
                    break
                data = message.data
                reports += 1
                if data.get("type") == "progress":
                    if progress is not None:
                        progress.update(progress.task_ids[0], completed=data["elapsed_s"], left=data["left_s"],
                                        samples=data["samples"])
                elif data.get("type") == "profile":
                    if progress is not None:
                        progress.update(progress.task_ids[0], completed=record, left=0, samples=_caught(data))
                        progress.stop()
                        progress = None
                    _finish_record(data, output, format, json, rows, idle)  # type: ignore[arg-type]
                    written = True
                elif json:
                    emit_json(data)
                elif live is not None:
                    live.update(render_summary(data, rows), refresh=True)
                elif record is None:
                    console.print(render_summary(data, rows))
        except KeyboardInterrupt:
            if record is not None:
                console_err.print(f"[dim]recording interrupted: nothing written to {escape(str(output))}[/]")
            written = True  # the user's choice: not a failure
        finally:
            if live is not None:
                live.stop()
            if progress is not None:
                progress.stop()
            stream.close()
    if record is not None and not written:
        raise CommandFailed(f"the recording ended before it finished ({ended}): nothing written to {output}",
                            f"Check that {pid} still runs, then record again.")


def _check_output(output: Path) -> None:
    """--output is checked before recording: a mistyped path found only at the end cost the recording."""
    if output.is_dir():
        raise UsageError(f"--output {output} is a directory", "Give a file name, e.g. --output out.folded")
    if not output.parent.is_dir():
        raise UsageError(f"--output {output}: no directory {output.parent}", "Create it first, or write elsewhere.")
    if not os.access(output if output.exists() else output.parent, os.W_OK):
        raise UsageError(f"--output {output} is not writable by you", "Write elsewhere (a directory of yours).")


def _record_progress(seconds: float) -> Progress:
    progress = Progress(TextColumn("[dim]recording[/]"), BarColumn(),
                        TextColumn("{task.fields[left]:.1f} s left, {task.fields[samples]} samples"),
                        console=console_err.real, transient=console_err.is_terminal)
    progress.add_task("record", total=seconds, left=seconds, samples=0)
    return progress


def _caught(event: dict[str, Any]) -> int:
    return sum(stack["samples"] for stack in event.get("stacks", ()))


def _finish_record(event: dict[str, Any], output: Path, format: str, json: bool, rows: int, idle: bool) -> None:
    if "stacks" not in event:
        raise ProtocolMismatch("the agent in this process is older than this client: its recording has no stacks "
                               "with lines", "Run `peeka detach PID`; the next command attaches this version's agent.")
    profile = from_top_record(event)
    try:
        output.write_bytes(encode(profile, format, name=f"peeka top {output.name}"))
    except OSError as exc:  # checked before recording; a full disk or a removed directory since
        raise CommandFailed(f"could not write {output}: {exc.strerror or exc}", "Record again to another file.") from exc
    if json:
        emit_json(event)
        return
    what = "CPU time" if profile.cpu else "wall-clock samples" if idle else "wall-clock samples: no per-thread CPU clocks here"
    left_out = f", {event['stacks_left_out']} lighter ones left out" if event.get("stacks_left_out") else ""
    console.print(f"[bold]{_caught(event)} samples over {event['duration_s']:g} s[/] ({what}), "
                  f"{len(profile.samples)} distinct stacks{left_out} written to {escape(str(output))} as {format} "
                  f"({escape(OPEN_WITH[format].replace('FILE', str(output)))})")
    console.print(functions_table(event, rows))
