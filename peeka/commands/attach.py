"""Attach an agent to a running Python process (every other command does this implicitly)."""

from __future__ import annotations

from ..attach import attach
from ..options import Pid, Shared, with_options
from ..render import console, emit_json

NAME = "attach"


@with_options()
def command(pid: Pid, *, shared: Shared) -> None:
    client, report = attach(pid, method=shared.method, timeout=shared.attach_timeout)
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
    if shared.json:
        emit_json(facts)
        return
    how = "agent already running" if report.reused else f"attached via {report.method} ({report.detail})"
    console.print(f"[bold green]{pid}[/]: {how} in {report.seconds * 1000:.0f} ms")
    console.print(f"  Python {hello.python_version}  {hello.executable}  {' '.join(hello.argv)}")
    console.print(f"  agent socket {hello.socket_path}; `peeka detach {pid}` removes it")
