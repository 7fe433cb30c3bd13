"""The agent's command framework: what every command module builds on.

- ``CommandError``: bad input; the client sees its text (any other exception becomes an
  ``AgentError`` response with the traceback).
- ``Stream``: a long-running command's events to one client, until ``End``.
- ``DeferredEvent``: an event whose data the writer thread builds (``Stream.emit_later``).
- ``int_arg``/``float_arg``/``render_args``: request arguments checked with one wording.
- ``on_detach``/``run_cleanups``: what a module changed in the host, undone at detach.

Commands import this module; it imports no command (tests/unit/test_agent_layout.py checks).
"""

from __future__ import annotations

from time import thread_time as _thread_time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from . import compat, protocol


class CommandError(Exception):
    """Bad input to a command: the message says what was wrong and what to do."""


class DeferredEvent(NamedTuple):
    """An event queued by ``Stream.emit_later``: ``build(*args)`` makes its data in the writer thread."""

    stream: "Stream"
    build: Callable[..., Any]
    args: tuple


# ``make_deferred(DeferredEvent, (stream, build, args))``: made on the host's path for each reported
# call, tuple.__new__ with the fields as one tuple skips the NamedTuple's Python-level __new__.
make_deferred = tuple.__new__


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
        self.errors = 0  # probing streams: Probe.failed counts what this stream raised on observed calls
        self.render_cpu = 0.0  # CPU s the writer spent building this stream's deferred events

    def describe(self) -> Any:
        return {"stream": True}

    def start(self, client: Any, request_id: int, answer: Callable[[], None]) -> None:
        """Install what feeds the stream, then ``answer`` the request: a client that acts on the
        answer (calls the probed function at once) is seen. What the stream sends while it starts
        (calls made during the install, an end at once) is held and follows the answer."""
        self.request_id = request_id
        holding = _Holding(client)
        self.client = holding
        failed: Optional[Exception] = None
        try:
            self.setup()
        except Exception as exc:
            failed = exc
        try:
            answer()
        finally:
            if self.client is holding:
                self.client = client
            holding.release()
        if failed is not None:
            self.finish("error: %s" % failed)
            return
        if not self.cancelled:
            compat.spawn(self._run, "peeka-agent-stream-%d" % request_id)

    def setup(self) -> None:
        """Install what feeds the stream (probes, handlers); runs before the first response."""

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
        return self._queue(make_deferred(DeferredEvent, (self, build, args)))

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
            self.client.send(protocol.End(self.request_id, reason, self.dropped, self.errors))
            self.client.streams.pop(self.request_id, None)

    def cancel(self, reason: str) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.on_stop()

    def on_stop(self) -> None:
        """Undo what this stream installed (probes, handlers)."""


class _Holding:
    """A stream's client while it starts: what is sent waits for the start's answer. Host threads
    reach it only during the install (``Stream.start`` swaps the real client in after the answer)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.streams = client.streams
        self.limit = getattr(client, "max_outbox", 1000)  # a hot function during the install: bounded as the outbox is
        self._lock = compat.lock()
        self._held: List[Tuple[Any, bool]] = []
        self._released = False

    def send(self, message: Any, droppable: bool = False) -> bool:
        with self._lock:
            if not self._released:
                if droppable and len(self._held) >= self.limit:
                    return False  # counted as dropped by the stream, as a full outbox's would be
                self._held.append((message, droppable))
                return True
        return bool(self.client.send(message, droppable))

    def release(self) -> None:
        with self._lock:
            self._released = True
            held, self._held = self._held, []
        for message, droppable in held:
            self.client.send(message, droppable)


def build_event(deferred: DeferredEvent) -> Any:
    """The event ``emit_later`` queued, built now, in the writer thread."""
    stream = deferred.stream
    started = _thread_time()
    try:
        data = deferred.build(*deferred.args)
    except Exception as exc:
        data = {"error": "peeka failed to render this event: %s: %s" % (type(exc).__name__, exc)}
    stream.render_cpu += _thread_time() - started  # an overhead governor's measure of what an event costs
    return protocol.Event(stream.request_id, data, stream.dropped)


# ---------------------------------------------------------------- request arguments


def int_arg(args: Dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    """``args[key]``, a whole number from ``low`` to ``high``; ``default`` when absent or None."""
    value = args.get(key, default)
    if value is None:
        return default
    if type(value) is not int or not (low <= value <= high):
        raise CommandError("%s must be a whole number from %d to %d, got %r" % (key, low, high, value))
    return value


def float_arg(args: Dict[str, Any], key: str, default: Optional[float], low: float) -> Optional[float]:
    """``args[key]``, a number >= ``low``; ``default`` when absent, None when given as None."""
    value = args.get(key, default)
    if value is None:
        return None
    if type(value) not in (int, float) or value < low:
        raise CommandError("%s must be a number >= %g, got %r" % (key, low, value))
    return float(value)


def render_args(args: Dict[str, Any], depth: int = protocol.DEFAULT_DEPTH,
                max_size: int = protocol.DEFAULT_MAX_SIZE) -> Dict[str, int]:
    """``{"depth", "max_size"}`` for ``values.render``, from a request's ``depth`` and ``max_size``."""
    return {
        "depth": int_arg(args, "depth", depth, 1, protocol.MAX_DEPTH),
        "max_size": int_arg(args, "max_size", max_size, protocol.MIN_MAX_SIZE, protocol.MAX_MAX_SIZE),
    }


# ---------------------------------------------------------------- detach


_CLEANUPS: List[Callable[[Any], None]] = []


def on_detach(cleanup: Callable[[Any], None]) -> Callable[[Any], None]:
    """Register ``cleanup(agent)``, run at detach to undo what its module changed in the host.
    A module registers when it is imported: a module never loaded changed nothing."""
    if cleanup not in _CLEANUPS:
        _CLEANUPS.append(cleanup)
    return cleanup


def run_cleanups(agent: Any) -> None:
    """Detach: every registered cleanup, in registration order; one failing stops none of the others."""
    for cleanup in list(_CLEANUPS):
        try:
            cleanup(agent)
        except Exception:
            pass
