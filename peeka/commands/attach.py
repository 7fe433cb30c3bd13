"""Attach an agent to a running Python process (every other command does this implicitly)."""

from __future__ import annotations

from ..attach import attach
from ..render import console, emit_json
from ._common import Json, Method, Pid, Timeout

NAME = "attach"


def command(pid: Pid, method: Method = "auto", timeout: Timeout = 10.0, json: Json = False) -> None:
    client, report = attach(pid, method=method, timeout=timeout)
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
        }
    if json:
        emit_json(facts)
        return
    how = "agent already running" if report.reused else f"attached via {report.method} ({report.detail})"
    console.print(f"[bold green]{pid}[/]: {how} in {report.seconds * 1000:.0f} ms")
    console.print(f"  Python {hello.python_version}  {hello.executable}  {' '.join(hello.argv)}")
    console.print(f"  agent socket {hello.socket_path}; `peeka detach {pid}` removes it")
