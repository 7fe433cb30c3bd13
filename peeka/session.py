"""A long-lived session over ONE agent connection: requests and several streams at once.

    client, report = peeka.attach.attach(pid)
    with Session(client) as session:
        session.request("thread", {})                        # any thread may ask, concurrently
        top = session.start("top", {"interval": 1})           # a stream: events queue up ...
        watch = session.start("watch", {...}, on_event=f)     # ... or go to a callback
        event = top.next(timeout=2)
        watch.cancel()                                        # the agent takes its probes off
        session.request("logger", {"name": "app", "level": "DEBUG"})
        session.undo_on_close("logger:app", "logger", {"name": "app", "level": "INFO"})
    # close(): every stream still running is cancelled, the undo requests are sent (what the session
    # changed in the target is put back), and close waits until the agent has handled all of it, so
    # nothing of this session is left behind.

The protocol already multiplexes by id: a reader thread owns the socket's receiving side and
hands each response to the request waiting for it and each event/end to its stream. Sends are
serialised by a lock. The agent handles one connection's messages in order, so a request sent
after a cancel is answered only once that cancel was handled: ``close`` uses that as its barrier.

A broken connection (target died, agent detached elsewhere) fails every waiting request with
AgentUnavailable, ends every stream with reason ``broken: ...`` and calls ``on_broken`` once.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from peeka_agent import protocol

from .client import AgentClient
from .errors import AgentUnavailable, PeekaError

CLOSE_BARRIER_TIMEOUT = 5.0  # s: how long close waits for the agent to confirm its cancels


class StreamEnd(NamedTuple):
    """How a stream ended: the agent's reason (done, limit, timeout, reset, error: ...), or
    ``cancelled`` (by this session), or ``broken: ...`` (the connection went)."""

    reason: str
    dropped: int = 0


class Undo(NamedTuple):
    """A request that puts back something the session changed (sent by ``close``)."""

    command: str
    args: dict[str, Any]


class _Pending:
    """A request waiting for its response."""

    __slots__ = ("done", "response", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.response: protocol.Response | None = None
        self.error: PeekaError | None = None


class SessionStream:
    """One running stream. Events go to ``on_event`` (called in the session's reader thread: keep
    it short, and never wait on this session from it) or, without one, into a queue read with ``next``. ``start`` is the agent's first
    answer (what the stream affects: functions probed, technique, ...)."""

    def __init__(self, session: Session, rid: int, command: str,
                 on_event: Callable[[Any], None] | None, on_end: Callable[[StreamEnd], None] | None) -> None:
        self.session = session
        self.id = rid
        self.command = command
        self.start: Any = None
        self.ended: StreamEnd | None = None
        self.events_seen = 0
        self._on_event = on_event
        self._on_end = on_end
        self._queue: queue.Queue[Any] = queue.Queue()
        self._end_lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self.ended is None

    def next(self, timeout: float | None = None) -> Any:
        """The next event's data; StreamEnd once the stream is over; queue.Empty after ``timeout``."""
        if self.ended is not None and self._queue.empty():
            return self.ended
        return self._queue.get(timeout=timeout)

    def cancel(self) -> None:
        """Stop the stream: the agent removes what it installed (probes, handlers, sampler)."""
        if self._end(StreamEnd("cancelled")):
            self.session._send_quietly(protocol.Cancel(self.id))

    def _deliver(self, message: Any) -> None:
        if isinstance(message, protocol.End):
            self._end(StreamEnd(message.reason, message.dropped))
            return
        if self.ended is not None:
            return  # cancelled here; events still in flight are dropped
        self.events_seen += 1
        if self._on_event is not None:
            self._on_event(message.data)
        else:
            self._queue.put(message.data)

    def _end(self, end: StreamEnd) -> bool:
        """Mark the stream over (once); True when this call ended it."""
        with self._end_lock:
            if self.ended is not None:
                return False
            self.ended = end
        self.session._forget(self.id)
        self._queue.put(end)
        if self._on_end is not None:
            self._on_end(end)
        return True


class Session:
    """Requests and streams over one open AgentClient, which the session then owns (closes)."""

    def __init__(self, client: AgentClient, on_broken: Callable[[PeekaError], None] | None = None) -> None:
        if not client.is_open or client.hello is None:
            raise ValueError("Session needs an open AgentClient (attach() or AgentClient(...).open())")
        self.client = client
        self.hello: protocol.Hello = client.hello
        self.timeout = client.timeout
        self.on_broken = on_broken
        self.broken: PeekaError | None = None
        self.closed = False
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # guards _pending/_streams and serialises sends
        self._pending: dict[int, _Pending] = {}
        self._streams: dict[int, SessionStream] = {}
        self._undo: dict[str, Undo] = {}
        # The probe streams that pass it as ``budget_group`` share one overhead budget in the agent
        # (a front end's watch and monitor together stay within it); unique to this session.
        self.budget_group = f"session-{os.getpid()}-{id(self):x}"
        client.wait_indefinitely()  # the reader waits for streams that may be quiet for long
        self._reader = threading.Thread(target=self._read_loop, name=f"peeka-session-{client.target.pid}",
                                        daemon=True)
        self._reader.start()

    # ------------------------------------------------------------ asking

    def request(self, command: str, args: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """One request's result; the agent's refusal as UsageError/CommandFailed, a broken
        connection or no answer within ``timeout`` (default: the client's) as AgentUnavailable."""
        rid, pending = self._submit(command, args)
        return self._wait(rid, pending, command, timeout).result

    def start(self, command: str, args: dict[str, Any] | None = None, *,
              on_event: Callable[[Any], None] | None = None,
              on_end: Callable[[StreamEnd], None] | None = None, timeout: float | None = None) -> SessionStream:
        """Start a stream; returns once the agent accepted it (its first answer is ``.start``)."""
        with self._lock:
            self._check_open()
            rid = next(self._ids)
            stream = SessionStream(self, rid, command, on_event, on_end)
            # Registered before the request leaves: its events may follow the response at once.
            self._streams[rid] = stream
        try:
            rid, pending = self._submit(command, args, rid)
            stream.start = self._wait(rid, pending, command, timeout).result
        except BaseException:
            with self._lock:
                self._streams.pop(rid, None)
            raise
        return stream

    def undo_on_close(self, key: str, command: str, args: dict[str, Any]) -> None:
        """Send ``command(args)`` on close, to put back what the session changed. ``key`` names the
        change: the first undo given for a key is kept (it holds the state before the session's first
        change); ``drop_undo`` forgets it (the change was undone already)."""
        with self._lock:
            self._undo.setdefault(key, Undo(command, args))

    def drop_undo(self, key: str) -> None:
        with self._lock:
            self._undo.pop(key, None)

    def undo_pending(self, key: str) -> Undo | None:
        with self._lock:
            return self._undo.get(key)

    def streams(self) -> list[SessionStream]:
        with self._lock:
            return list(self._streams.values())

    def _submit(self, command: str, args: dict[str, Any] | None, rid: int | None = None) -> tuple[int, _Pending]:
        pending = _Pending()
        with self._lock:
            self._check_open()
            if rid is None:
                rid = next(self._ids)
            self._pending[rid] = pending
            try:
                self.client.send(self.client.make_request(rid, command, args))
            except PeekaError:
                self._pending.pop(rid, None)
                raise
        return rid, pending

    def _wait(self, rid: int, pending: _Pending, command: str, timeout: float | None) -> protocol.Response:
        limit = self.timeout if timeout is None else timeout
        if not pending.done.wait(limit):
            with self._lock:
                self._pending.pop(rid, None)
            raise AgentUnavailable(f"the agent in {self.hello.pid} did not answer {command} within {limit:g}s",
                                   "The target may be saturated; try again, or give a longer timeout.")
        if pending.error is not None:
            raise pending.error
        assert pending.response is not None
        return self.client.checked(pending.response)

    def _check_open(self) -> None:
        if self.broken is not None:
            raise self.broken
        if self.closed:
            raise AgentUnavailable("this session is closed", "Open a new session.")

    def _send_quietly(self, message: Any) -> None:
        """Send if the connection still works (a cancel on a broken connection has nothing to undo:
        the agent already took off the probes of a client that went)."""
        with self._lock:
            if self.broken is not None or not self.client.is_open:
                return
            try:
                self.client.send(message)
            except PeekaError:
                pass  # the reader sees the break and reports it

    def _forget(self, rid: int) -> None:
        with self._lock:
            self._streams.pop(rid, None)

    # ------------------------------------------------------------ the reader

    def _read_loop(self) -> None:
        try:
            while True:
                message = self.client.receive()
                rid = getattr(message, "id", None)
                if isinstance(message, protocol.Response):
                    if rid == 0 and not message.ok:
                        # Not an answer to one request: the agent speaks about the whole connection
                        # (closing it for idleness or a full house: fatal; a message it could not
                        # parse: not ours to fail, since every request of ours is well-formed).
                        if message.error_type in (protocol.CLOSED_IDLE, protocol.REFUSED_BUSY):
                            self.client.checked(message)  # raises the connection's error
                        continue
                    with self._lock:
                        pending = self._pending.pop(rid, None)
                    if pending is not None:
                        pending.response = message
                        pending.done.set()
                    continue
                with self._lock:
                    stream = self._streams.get(rid)  # type: ignore[arg-type]
                if stream is not None:
                    stream._deliver(message)
                # else: an event of a stream cancelled here, still in flight
        except PeekaError as exc:
            self._break(exc)
        except Exception as exc:  # a callback failed: the session cannot trust its state any more
            self._break(AgentUnavailable(f"the session's reader failed: {type(exc).__name__}: {exc}", ""))

    def _break(self, error: PeekaError) -> None:
        if self.closed:
            error = AgentUnavailable("this session is closed", "Open a new session.")
        with self._lock:
            first = self.broken is None
            if first:
                self.broken = error
            pending, self._pending = list(self._pending.values()), {}
            streams = list(self._streams.values())
        for p in pending:
            p.error = error
            p.done.set()
        for stream in streams:
            stream._end(StreamEnd(f"broken: {error.message}"))
        if first and not self.closed and self.on_broken is not None:
            self.on_broken(error)

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        """Cancel every stream still running, wait (bounded) until the agent handled the cancels,
        then close the connection. The agent stays: other clients may use it."""
        if self.closed:
            return
        for stream in self.streams():
            stream.cancel()
        with self._lock:
            undo, self._undo = list(self._undo.values()), {}
        for command, args in undo:
            try:
                self.request(command, args, timeout=CLOSE_BARRIER_TIMEOUT)
            except PeekaError:
                pass  # refused or broken: a gone client's changes are the agent's to undo (detach)
        if self.broken is None:
            try:
                # The agent handles this connection's messages in order: once ping is answered,
                # every cancel above was handled and their probes are off.
                self.request("ping", {}, timeout=CLOSE_BARRIER_TIMEOUT)
            except PeekaError:
                pass  # broken meanwhile: the agent drops a gone client's streams itself
        self.closed = True
        self.client.interrupt()  # wakes the reader, which sees the connection end
        self._reader.join(CLOSE_BARRIER_TIMEOUT)
        self.client.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
