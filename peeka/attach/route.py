"""How Peeka would attach to a process, and the row that describes it: what `peeka ps` lists and
what the TUI's process picker offers."""

from __future__ import annotations

import os

from ..process import SUPPORTED, TargetProcess
from . import gdb_binary


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
        "agent": target.agent_socket_current() if os.geteuid() in (0, target.uid) else None,
        "method": attach_route(target),
        "command": " ".join(target.cmdline),
    }
