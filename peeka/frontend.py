"""Who runs a command: the front end (cli, mcp), whether it may change the target, and where the
command's ``--json`` documents go.

The CLI runs every command with the defaults (documents on stdout). ``peeka mcp`` runs each tool call
as the CLI command itself with ``--json``, inside ``running(Call(...))``: the documents go to the
tool's result instead of stdout, and every agent connection the command opens is handed to the call,
so a call the MCP client cancels can break those connections off (the agent then takes the call's
probes off). A ContextVar, not a global: tool calls run at once, each in its own worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any


class Call:
    """One command run by a front end other than the CLI."""

    def __init__(self, frontend: str, read_only: bool, emit: Callable[[Any], None] | None = None) -> None:
        self.frontend = frontend
        self.read_only = read_only
        self.emit = emit  # receives each JSON document the command would print
        self.clients: list[Any] = []  # every AgentClient the command opened
        self.cancelled = False

    def opened(self, client: Any) -> None:
        self.clients.append(client)
        if self.cancelled:  # cancelled while it was attaching
            client.interrupt()

    def cancel(self) -> None:
        """From any thread: break off whatever the command waits on from its agent."""
        self.cancelled = True
        for client in list(self.clients):
            client.interrupt()


CLI = Call("cli", read_only=False)
_current: ContextVar[Call] = ContextVar("peeka_call", default=CLI)


def current() -> Call:
    return _current.get()


@contextmanager
def running(call: Call) -> Iterator[Call]:
    token = _current.set(call)
    try:
        yield call
    finally:
        _current.reset(token)
