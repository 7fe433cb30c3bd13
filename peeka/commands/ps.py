"""List the Python processes you can see, and how Peeka would attach to each."""

from __future__ import annotations

import os

from ..attach import gdb_binary
from ..options import Shared, with_options
from ..process import SUPPORTED, TargetProcess, python_processes
from ..render import console, emit_json, table

NAME = "ps"


def attach_route(target: TargetProcess) -> str:
    """Which attach method applies, or why none does."""
    version = target.python_version
    if version is None:
        return "none: not CPython"
    if not (SUPPORTED[0] <= version <= SUPPORTED[1]):
        return f"none: Python {version[0]}.{version[1]} unsupported (3.9-3.14)"
    me = os.geteuid()
    if me not in (0, target.uid):
        return f"none: owned by {target.user} (run as that user or root)"
    gdb = gdb_binary.available()
    if version >= (3, 14):
        if target.remote_debug_disabled:
            return "gdb (remote debugging disabled)" if gdb else "none: remote debugging disabled, no gdb"
        return "remote-exec" + (" (gdb fallback)" if gdb else "")
    return "gdb" if gdb else "none: install gdb (pip install gdb-for-pwndbg, or apt-get install gdb)"


def describe(target: TargetProcess) -> dict[str, object]:
    version = target.python_version
    return {
        "pid": target.pid,
        "user": target.user,
        "python": f"{version[0]}.{version[1]}" if version else None,
        "agent": target.agent_socket_exists() if os.geteuid() in (0, target.uid) else None,
        "method": attach_route(target),
        "command": " ".join(target.cmdline),
    }


@with_options(attach=False)
def command(*, shared: Shared) -> None:
    rows = []
    for target in python_processes():
        try:
            rows.append(describe(target))
        except Exception:
            continue  # exited while we looked
    if shared.json:
        emit_json(rows)
        return
    console.print(
        table(
            None,
            ["PID", "USER", "PYTHON", "AGENT", "ATTACH", "COMMAND"],
            [
                [r["pid"], r["user"], r["python"], {True: "yes", False: "-", None: "?"}[r["agent"]], r["method"],  # type: ignore[index]
                 str(r["command"])[:120]]
                for r in rows
            ],
        )
    )
