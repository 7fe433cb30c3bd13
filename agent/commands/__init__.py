"""The agent's command registry: one module per command, named as the CLI verb.

A command module defines ``handle(agent, client, args)``, which returns a JSON-ready result, or a
``streams.Stream`` for long-running commands (the client then receives ``event`` messages until
``end``). The framework they build on (``Stream``, ``CommandError``, argument checks, detach
cleanups) is ``agent/streams.py``; no command module imports another.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict

from ..streams import CommandError

COMMAND_MODULES = (
    "ping", "thread", "sc", "sm", "inspect", "watch", "trace", "stack", "monitor", "tt", "reset", "detach", "export",
    "logger", "tasks", "source", "top", "memory", "audit",
)


_MODULES: Dict[str, Any] = {}


def _module(name: str) -> Any:
    """One command's module, imported on first use: an attach compiles only the server, and a
    target never gets the standard library modules of commands nobody ran."""
    module = _MODULES.get(name)
    if module is None and name in COMMAND_MODULES:
        module = _MODULES[name] = importlib.import_module("." + name, __name__)
    return module


def dispatch(agent: Any, client: Any, request: Any) -> Any:
    module = _module(request.command) if request.command in COMMAND_MODULES else None
    if module is None:
        raise CommandError(
            "unknown command %r; this agent knows: %s" % (request.command, ", ".join(sorted(COMMAND_MODULES)))
        )
    return module.handle(agent, client, request.args)


def preload() -> None:
    """Import every command now (the stdlib-only test checks all of them)."""
    for name in COMMAND_MODULES:
        _module(name)
