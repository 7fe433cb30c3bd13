"""The agent's command registry: one module per command, named as the CLI verb.

A command module defines ``NAME`` and ``handle(agent, client, args)``. ``handle`` returns a
JSON-ready result, or a ``Stream`` for long-running commands (the client then receives ``event``
messages until ``end``). A module may define ``cleanup(agent)``: detach calls it to undo its changes.
Bad input raises ``CommandError``: the client sees its text; any other exception becomes an
``AgentError`` response with the traceback.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Optional

# Imported once, here: a stream thread that ends after detach took the agent's modules out of
# sys.modules could not import them any more.
from .. import compat, protocol

COMMAND_MODULES = (
    "ping", "thread", "sc", "sm", "inspect", "watch", "trace", "stack", "monitor", "tt", "reset", "detach", "export",
    "logger", "tasks", "source", "top", "memory",
)


class CommandError(Exception):
    """Bad input to a command: the message says what was wrong and what to do."""


class Stream:
    """A long-running command's stream of events to one client.

    Subclasses implement ``run()`` (in its own agent thread) or feed ``emit`` from probes; both
    stop when ``cancelled`` is set. ``emit`` never blocks: a full outbox drops and counts.
    """

    def __init__(self, limit: Optional[int] = None) -> None:
        self.client: Any = None
        self.request_id = 0
        self.cancelled = False
        self.limit = limit
        self.count = 0
        self.dropped = 0

    def describe(self) -> Any:
        return {"stream": True}

    def start(self, client: Any, request_id: int) -> None:
        self.client = client
        self.request_id = request_id
        try:
            self.setup()
        except Exception as exc:
            self.finish("error: %s" % exc)
            return
        compat.spawn(self._run, "peeka-agent-stream-%d" % request_id)

    def setup(self) -> None:
        """Install what feeds the stream (probes, handlers); runs after the first response."""

    def _run(self) -> None:
        try:
            try:
                self.run()
                reason = "done"
            except Exception as exc:
                reason = "error: %s: %s" % (type(exc).__name__, exc)
            self.finish(reason)
        except Exception:
            pass  # nothing of ours reaches the host's stderr, even while detach takes the agent apart

    def run(self) -> None:
        raise NotImplementedError

    def emit(self, data: Any) -> bool:
        return self._queue(protocol.Event(self.request_id, data, self.dropped))

    def emit_later(self, build: Callable[..., Any], *args: Any) -> bool:
        """Queue an event whose data ``build(*args)`` makes in the writer thread, off the host's path.

        For what is costly to render (values, expressions for display): the host thread only
        queues references; a slow build slows this client's stream, never the host.
        """
        return self._queue((self, build, args))  # a tuple: the cheapest thing to make on the host's path

    def _queue(self, message: Any) -> bool:
        if self.cancelled or self.client is None:
            return False
        if not self.client.send(message, droppable=True):
            self.dropped += 1
            return False
        self.count += 1
        if self.limit is not None and self.count >= self.limit:
            self.finish("limit")
        return True

    def finish(self, reason: str) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self.on_stop()
        if self.client is not None:
            self.client.send(protocol.End(self.request_id, reason, self.dropped))
            self.client.streams.pop(self.request_id, None)

    def cancel(self, reason: str) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.on_stop()

    def on_stop(self) -> None:
        """Undo what this stream installed (probes, handlers)."""


def deferred_message(stream: Stream, build: Callable[..., Any], args: tuple) -> Any:
    """The event ``emit_later`` queued as ``(stream, build, args)``, built now, in the writer thread."""
    try:
        data = build(*args)
    except Exception as exc:
        data = {"error": "peeka failed to render this event: %s: %s" % (type(exc).__name__, exc)}
    return protocol.Event(stream.request_id, data, stream.dropped)


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


def run_cleanups(agent: Any) -> None:
    """Detach: every loaded module of this agent (commands or not) that defines ``cleanup(agent)``
    undoes its changes; a module never loaded changed nothing."""
    import sys

    package = __name__.rsplit(".", 1)[0]
    for name, module in list(sys.modules.items()):
        if name.startswith(package + ".") and module is not None:
            cleanup = getattr(module, "cleanup", None)
            if callable(cleanup):
                try:
                    cleanup(agent)
                except Exception:
                    pass


def preload() -> None:
    """Import every command now (the stdlib-only test checks all of them)."""
    for name in COMMAND_MODULES:
        _module(name)
