"""The client library: one connection to one target's agent.

    client, report = peeka.attach.attach(pid)   # attaches first when no agent runs there
    with client:
        client.request("thread", {})
        for message in client.stream("watch", {...}): ...   # another thread may client.interrupt()

``AgentClient(TargetProcess(pid)).open()`` connects to an agent already running, attaching nothing.

Every request carries the client's front end (``frontend``: cli, tui, mcp, export) for the agent's
audit trail, and ``read_only``: the agent then refuses what would change the target (ReadOnly,
exit 17). Both default to the running ``peeka.frontend`` call's (the CLI: "cli", not read-only).
"""

from __future__ import annotations

import errno
import itertools
import socket
import time
from collections.abc import Iterator
from typing import Any

from peeka_agent import protocol

from .errors import (
    AgentBusy,
    AgentUnavailable,
    CommandFailed,
    PermissionDenied,
    ProtocolMismatch,
    ReadOnly,
    UsageError,
)
from .frontend import current
from .process import TargetProcess

# What a read-only client tells its user to do about a refused change, by front end (the agent
# says what it refused; how to permit it is the front end's business).
READ_ONLY_ADVICE = {
    "mcp": "start the server with --allow-changes to permit this",
    "export": "export never changes the target; use the CLI for changes",
}
_READ_ONLY_DEFAULT_ADVICE = "this client was started read-only; run the command without read-only to permit this"


class AgentClient:
    def __init__(self, target: TargetProcess, timeout: float = 10.0, frontend: str | None = None,
                 read_only: bool | None = None, read_only_advice: str | None = None) -> None:
        self.target = target
        self.timeout = timeout
        call = current()
        self.frontend = frontend if frontend is not None else call.frontend
        self.read_only = read_only if read_only is not None else call.read_only
        self.read_only_advice = read_only_advice or READ_ONLY_ADVICE.get(self.frontend, _READ_ONLY_DEFAULT_ADVICE)
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self.hello: protocol.Hello | None = None

    def open(self) -> AgentClient:
        path = self.target.host_path(self.target.socket_path)
        try:
            sock = _connect(path, self.timeout)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise PermissionDenied(
                    f"the agent's socket {path} refused you ({exc.strerror})",
                    f"Run peeka as the target's user ({self.target.user}) or as root.",
                ) from None
            raise AgentUnavailable(
                f"no agent answers at {path} ({exc.strerror})",
                f"Attach first: `peeka attach {self.target.pid}`.",
            ) from None
        self._sock = sock
        first = self._read()
        if isinstance(first, protocol.Response) and not first.ok:
            self.close()
            raise _refusal(first)
        if not isinstance(first, protocol.Hello):
            self.close()
            raise ProtocolMismatch(f"expected a hello from the agent, got {first!r}", "")
        if first.protocol != protocol.PROTOCOL_VERSION:
            self.close()
            raise ProtocolMismatch(
                f"the agent speaks protocol {first.protocol}, this client {protocol.PROTOCOL_VERSION}",
                f"Detach the old agent (`peeka detach {self.target.pid}`) and attach again.",
            )
        self.hello = first
        return self

    def _read(self) -> Any:
        assert self._sock is not None
        try:
            message = protocol.read_message(self._sock)
        except protocol.ProtocolError as exc:
            raise AgentUnavailable(f"broken reply from the agent: {exc}", "") from None
        except TimeoutError:
            raise AgentUnavailable(
                f"the agent in {self.target.pid} did not answer within {self.timeout:g}s", ""
            ) from None
        except OSError as exc:
            raise AgentUnavailable(f"connection to the agent broke: {exc}", "") from None
        if message is None:
            raise AgentUnavailable(f"the agent in {self.target.pid} closed the connection", "")
        return message

    def _send(self, message: Any) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(protocol.encode(message))
        except OSError as exc:
            raise AgentUnavailable(f"connection to the agent broke: {exc}", "") from None

    def _await_response(self, rid: int) -> protocol.Response:
        while True:
            message = self._read()
            if isinstance(message, protocol.Response) and message.id in (rid, 0):
                return self.checked(message)
            # Events of an earlier, cancelled stream may still be in flight: skip them.

    def make_request(self, rid: int, command: str, args: dict[str, Any] | None = None) -> protocol.Request:
        """A request of this client's: its front end and read-only setting go with every one."""
        return protocol.Request(rid, command, args or {}, frontend=self.frontend, read_only=self.read_only)

    def checked(self, message: protocol.Response) -> protocol.Response:
        """``checked`` with this client's advice for a read-only refusal."""
        return checked(message, self.read_only_advice, self.target.pid)

    def request(self, command: str, args: dict[str, Any] | None = None) -> Any:
        rid = next(self._ids)
        self._send(self.make_request(rid, command, args))
        return self._await_response(rid).result

    def stream(self, command: str, args: dict[str, Any] | None = None) -> Iterator[protocol.Event | protocol.End]:
        """Start a stream; yields the first response's result, then events, then the end."""
        rid = next(self._ids)
        self._send(self.make_request(rid, command, args))
        first = self._await_response(rid)
        assert self._sock is not None
        self._sock.settimeout(None)
        try:
            yield protocol.Event(rid, first.result)
            while True:
                message = self._read()
                if getattr(message, "id", None) != rid:
                    continue
                yield message
                if isinstance(message, protocol.End):
                    return
        finally:
            if self._sock is not None:
                try:
                    self._send(protocol.Cancel(rid))
                except AgentUnavailable:
                    pass

    # For a reader that dispatches every message by id itself (peeka.session.Session).
    def send(self, message: Any) -> None:
        """Send one message (a Request or a Cancel) as it is."""
        self._send(message)

    def receive(self) -> Any:
        """The next message from the agent, whatever its id; AgentUnavailable once the connection broke."""
        return self._read()

    def wait_indefinitely(self) -> None:
        """From now on ``receive`` waits as long as it takes (a stream may be quiet for minutes)."""
        if self._sock is not None:
            self._sock.settimeout(None)

    @property
    def is_open(self) -> bool:
        """open() succeeded and close() has not run since (the connection may still have broken)."""
        return self._sock is not None

    def interrupt(self) -> None:
        """Break off, from another thread, whatever this connection waits on: the thread reading a
        stream or a reply gets AgentUnavailable at once, and the agent sees the client gone (it takes
        that stream's probes off). The reading thread still closes the client."""
        sock = self._sock  # read once: the reading thread may close it meanwhile
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed or never connected: nothing waits on it

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def checked(message: protocol.Response, read_only_advice: str = _READ_ONLY_DEFAULT_ADVICE,
            pid: int | None = None) -> protocol.Response:
    """A response that succeeded, else its failure as the client's error (the one conversion, shared
    with ``peeka.session``)."""
    if message.ok:
        return message
    if message.error_type in _CONNECTION_REFUSALS:
        raise _refusal(message)
    if message.error_type == protocol.REFUSED_READ_ONLY:
        raise read_only_refusal(message, read_only_advice, pid)
    if message.error_type == "CommandError":
        raise UsageError(message.error or "bad request", "")
    raise CommandFailed(
        f"the agent failed: {message.error}",
        "This is a Peeka bug; the target is unharmed. The agent's traceback follows with --debug.",
        error_type=message.error_type or "",
        traceback=message.traceback or "",
    )


# The agent's refusals and closings of a connection, by error_type: not a failed command.
_CONNECTION_REFUSALS = ("PermissionDenied", protocol.REFUSED_BUSY, protocol.CLOSED_IDLE)


def read_only_refusal(message: protocol.Response, advice: str, pid: int | None) -> ReadOnly:
    detail = message.result if isinstance(message.result, dict) else {}
    refused = str(detail.get("refused") or message.error or "a change")
    by = str(detail.get("by") or protocol.READ_ONLY_BY_REQUEST)
    if by == protocol.READ_ONLY_BY_AGENT:
        where = f" {pid}" if pid is not None else " PID"
        return ReadOnly(f"read-only: the agent was attached with --read-only; detach and attach again without it "
                        f"(refused: {refused})",
                        f"`peeka detach{where}`, then `peeka attach{where}` (without --read-only).", refused, by)
    return ReadOnly(f"read-only: {advice} (refused: {refused})", "", refused, by)


def _refusal(message: protocol.Response) -> Exception:
    if message.error_type == "PermissionDenied":
        return PermissionDenied(f"the agent refused the connection: {message.error}", "")
    if message.error_type == protocol.REFUSED_BUSY:
        return AgentBusy(f"the agent refused the connection: {message.error}",
                         "Wait for other clients to finish, or end idle peeka sessions.")
    return AgentUnavailable(f"the agent closed the connection: {message.error}", "")


def _connect(path: str, timeout: float) -> socket.socket:
    """Connect to the agent's socket. A Unix socket whose accept queue is full refuses at once
    (EAGAIN) rather than waiting: that is a flood the agent is catching up with, so try again
    until the timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EAGAIN or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
