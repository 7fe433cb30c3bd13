"""Loggers and handlers, live: list them with levels and where they write; --name N --level L changes
a level (restored by `peeka reset PID` and by detach); --follow streams records as they are emitted.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Optional

import typer

from ..errors import UsageError
from ..options import Pid, Shared, StreamTimeout, with_options
from ..render import console, console_err, escape, table
from ._common import agent, ask, run_stream

NAME = "logger"

LEVEL_STYLE = {"DEBUG": "dim", "INFO": "green", "WARNING": "yellow", "ERROR": "red", "CRITICAL": "bold red"}


def handler_text(handler: dict[str, Any]) -> str:
    where = ", ".join(f"{k}={v}" for k, v in handler["writes_to"].items())
    level = f" {handler['level']}" if handler["level"] != "NOTSET" else ""
    text = f"{handler['type']}{level}" + (f" -> {where}" if where else "")
    return text + (" (peeka --follow)" if handler.get("peeka") else "")


def show_loggers(result: dict[str, Any]) -> None:
    rows = []
    placeholders = 0
    for entry in result["loggers"]:
        if entry["placeholder"]:
            placeholders += 1
            continue
        level = entry["level"]
        if entry.get("original_level") is not None:
            level += f" (peeka; was {entry['original_level']})"
        flags = [f for f, on in (("no-propagate", not entry["propagate"]), ("DISABLED", entry["disabled"])) if on]
        rows.append([entry["name"], level, entry["effective_level"], " ".join(flags),
                     "\n".join(handler_text(h) for h in entry["handlers"])])
    console.print(table(None, ["LOGGER", "LEVEL", "EFFECTIVE", "FLAGS", "HANDLERS"], rows))
    notes = [f"{len(rows)} logger(s)"]
    if placeholders:
        notes.append(f"{placeholders} placeholder(s) (parents never created) not shown")
    if result.get("disable"):
        notes.append(f"logging.disable({result['disable']}) in force")
    if result.get("changed"):
        notes.append("changed by peeka: " + ", ".join(result["changed"]) + " (`peeka reset PID` restores)")
    console.print(f"[dim]{'; '.join(notes)}[/]")


def show_record(event: dict[str, Any]) -> None:
    when = datetime.datetime.fromtimestamp(event["time"]).strftime("%H:%M:%S.%f")[:-3]
    style = LEVEL_STYLE.get(event["level"], "")
    level = f"[{style}]{event['level']:<8}[/]" if style else f"{event['level']:<8}"
    console.print(f"[dim]{when}[/] {level} [bold]{escape(event['logger'])}[/] {escape(event['message'])} "
                  f"[dim]({escape(str(event['file']))}:{event['line']} {escape(str(event['thread']))})[/]")
    for key in ("exception", "stack"):
        if event.get(key):
            console.print(escape(event[key]))


@with_options()
def command(
    pid: Pid,
    name: Annotated[Optional[str], typer.Option("--name", help="A logger's name (root for the root logger).")] = None,  # noqa: UP045
    level: Annotated[Optional[str], typer.Option("--level", help="Set --name's level (DEBUG, INFO, ... or a number); with --follow: the lowest level streamed.")] = None,  # noqa: UP045,E501
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream records reaching --name (default root) as they are emitted.")] = False,  # noqa: E501
    limit: Annotated[Optional[int], typer.Option("-n", "--limit", min=1, help="With --follow: end after N records.")] = None,  # noqa: UP045
    timeout: StreamTimeout = None,
    max_rate: Annotated[int, typer.Option("--max-rate", min=1, help="With --follow: records per second streamed at most; the rest are counted as dropped.")] = 2000,  # noqa: E501
    *,
    shared: Shared,
) -> None:
    if not follow and (limit is not None or timeout is not None):
        raise UsageError("-n/--limit and --timeout end a --follow stream: add --follow")
    args: dict[str, Any] = {"name": name, "level": level}
    if follow:
        args.update(follow=True, limit=limit, timeout=timeout, max_rate=max_rate)
        with agent(pid, shared) as client:
            run_stream(client, NAME, args, shared.json, show_record, pid, header=_follow_header)
        return
    result = ask(pid, NAME, args, shared)
    if result is None:
        return
    if level is not None:
        was = result["previous_level"]
        console.print(f"{pid}: logger {escape(result['name'])} level {was} -> {result['level']} "
                      f"(effective {result['effective_level']}); `peeka reset {pid}` or detach restores it")
        for warning in result.get("warnings") or ():
            console_err.print(f"[yellow]note: {escape(warning)}[/]")
    else:
        show_loggers(result)


def _follow_header(start: dict[str, Any]) -> None:
    console_err.print(f"[dim]logger: following {escape(start['logger'])} from {start['level']} "
                      f"(effective level {start['effective_level']}), at most {start['max_rate']} records/s; "
                      f"ends on Ctrl-C, -n or --timeout[/]")
    for note in start.get("notes") or ():
        console_err.print(f"[yellow]note: {escape(note)}[/]")
