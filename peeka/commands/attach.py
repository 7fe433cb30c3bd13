"""Attach an agent to a running Python process (every other command does this implicitly).

--read-only, --audit-file and --audit-log set the agent's mode for its life: given to an agent
already running in another mode they are refused (detach, then attach again)."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from ..attach import AgentMode, attach
from ..options import Pid, Shared, with_options
from ..render import console, emit_json, escape

NAME = "attach"


@with_options()
def command(
    pid: Pid,
    read_only: Annotated[bool, typer.Option(
        "--read-only", help="Hold every client of this agent to read-only, whatever its front end: logger level "
                            "changes, tt --replay, --unsafe expressions and tracemalloc start/stop are refused.")] = False,
    audit_file: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--audit-file", help="Mirror the agent's audit trail to this JSON-lines file (written by the target's "
                             "user; rotated once to PATH.1 past 16 MiB).")] = None,
    audit_log: Annotated[bool, typer.Option(
        "--audit-log", help="Also send the audit trail to the target's own logging, logger peeka.audit "
                            "(INFO; refusals WARNING).")] = False,
    *,
    shared: Shared,
) -> None:
    explicit = read_only or audit_file is not None or audit_log
    mode = AgentMode(read_only, os.path.abspath(audit_file) if audit_file else None, audit_log) if explicit else None
    client, report = attach(pid, method=shared.method, timeout=shared.attach_timeout, mode=mode)
    with client:
        hello = client.hello
        assert hello is not None
        facts = {
            "pid": pid,
            "method": report.method,
            "reused": report.reused,
            "seconds": round(report.seconds, 4),
            "where": report.detail,
            "python": hello.python_version,
            "executable": hello.executable,
            "argv": hello.argv,
            "agent_version": hello.agent_version,
            "socket": hello.socket_path,
            "read_only": hello.read_only,
            "audit_file": hello.audit_file,
            "audit_log": hello.audit_log,
        }
    if shared.json:
        emit_json(facts)
        return
    how = "agent already running" if report.reused else f"attached via {report.method} ({escape(report.detail)})"
    console.print(f"[bold green]{pid}[/]: {how} in {report.seconds * 1000:.0f} ms")
    console.print(f"  Python {hello.python_version}  {escape(str(hello.executable))}  {escape(' '.join(hello.argv))}")
    mode_text = "read-only (every client)" if hello.read_only else "read-write"
    if hello.audit_file:
        mode_text += f"; audit trail also in {escape(hello.audit_file)}"
    if hello.audit_log:
        mode_text += "; audit trail also to the target's logger peeka.audit"
    console.print(f"  agent {mode_text}; `peeka audit {pid}` shows who asked what")
    console.print(f"  agent socket {escape(str(hello.socket_path))}; `peeka detach {pid}` removes it")
