"""The agent's audit trail: every request that reached it (refused ones too), with the peer's pid and
uid, its front end (cli, tui, mcp, export), the command, its arguments (secrets redacted) and the
outcome; --follow streams new entries as they are recorded."""

from __future__ import annotations

import datetime
import json as _json
from typing import Annotated, Any, Optional

import typer

from ..attach import try_connect
from ..errors import AgentUnavailable
from ..options import Pid, Shared, StreamTimeout, with_options
from ..process import TargetProcess
from ..render import console, console_err, emit_json, escape, table
from ._common import run_stream

NAME = "audit"

OUTCOME_STYLE = {"ok": "green", "error": "yellow", "refused": "bold red"}


def _args_text(args: dict[str, Any]) -> str:
    shown = {k: v for k, v in args.items() if v not in (None, False, [], {})}
    return " ".join(f"{k}={_json.dumps(v, default=str)}" for k, v in shown.items())


def _row(entry: dict[str, Any]) -> list[str]:
    when = datetime.datetime.fromtimestamp(entry["time"]).strftime("%H:%M:%S.%f")[:-3]
    outcome = entry["outcome"] + (f" {entry['error_type']}" if entry.get("error_type") else "")
    style = OUTCOME_STYLE.get(entry["outcome"], "")
    ro = " (read-only)" if entry.get("read_only") else ""
    return [when, f"{entry['peer_pid']}/{entry['peer_uid']}", f"{entry['frontend']}{ro}", entry["command"],
            escape(_args_text(entry.get("args") or {})), f"[{style}]{escape(outcome)}[/]" if style else escape(outcome)]


HEADERS = ["TIME", "PEER PID/UID", "FRONT END", "COMMAND", "ARGUMENTS", "OUTCOME"]


def _show_entry(entry: dict[str, Any]) -> None:
    console.print("  ".join(_row(entry)), highlight=False)


def _show_stats(result: dict[str, Any]) -> None:
    stats = result["stats"]
    notes = [f"{stats['kept']} of {stats['recorded']} request(s) kept (ring of {stats['ring_size']})",
             "agent read-only (attach --read-only)" if result.get("read_only") else "agent read-write"]
    if stats.get("file"):
        notes.append(f"mirrored to {stats['file']}")
    if stats.get("log"):
        notes.append(f"logged to {stats['log']}")
    if stats.get("dropped") or stats.get("write_errors"):
        notes.append(f"{stats['dropped']} entries dropped, {stats['write_errors']} write error(s) "
                     f"{stats.get('last_write_error') or ''}".rstrip())
    console_err.print(f"[dim]{escape('; '.join(notes))}[/]")


@with_options(attach=False)
def command(
    pid: Pid,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream new entries as they are recorded.")] = False,
    limit: Annotated[Optional[int], typer.Option("-n", "--limit", min=1, help="With --follow: end after N entries.")] = None,  # noqa: UP045
    timeout: StreamTimeout = None,
    *,
    shared: Shared,
) -> None:
    # Never attaches: a process with no agent has no trail (the trail lives in the agent).
    client = try_connect(TargetProcess(pid))
    if client is None:
        raise AgentUnavailable(f"no agent runs in process {pid}: there is no audit trail to read",
                               "The trail lives in the agent from its attach to its detach; "
                               "`peeka attach PID --audit-file PATH` also keeps it in a file.")
    with client:
        if follow:
            def header(start: dict[str, Any]) -> None:
                for entry in start["entries"]:
                    _show_entry(entry)
                _show_stats(start)
            run_stream(client, NAME, {"follow": True, "limit": limit, "timeout": timeout}, shared.json,
                       _show_entry, pid, header=header)
            return
        result = client.request(NAME, {})
    if shared.json:
        emit_json(result)
        return
    console.print(table(None, HEADERS, [_row(e) for e in result["entries"]], markup=True))
    _show_stats(result)
