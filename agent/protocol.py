"""The one wire protocol between a Peeka client and the agent inside a target.

Framing: a 4-byte big-endian length, then that many bytes of UTF-8 JSON (one message).
Every message is a JSON object with a ``type``:

    hello     agent -> client, once, right after connect: protocol version and target facts
    request   client -> agent: {id, command, args, frontend, read_only}
    response  agent -> client: {id, status: "success"|"error", result | error, error_type, traceback}
    event     agent -> client: one item of a stream started by request {id}: {id, data, dropped}
    end       agent -> client: the stream {id} is over: {id, reason, dropped, errors}
    cancel    client -> agent: stop the stream {id}

Standard library only and valid on Python 3.9: the agent imports this module inside the target,
and the client and the exporter import the very same file.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Dict, Optional, Tuple

PROTOCOL_VERSION = 1
MAX_FRAME = 16 * 1024 * 1024
HEADER = struct.Struct(">I")

# Defaults and limits of request arguments: the one source for the agent, which checks them, and
# the client, which offers them as option defaults.
DEFAULT_LIMIT = 100  # -n: events (calls, trees, records) before a probing stream ends
MAX_LIMIT = 1 << 62
DEFAULT_MAX_MATCH = 50  # -m: functions one pattern may probe
MAX_MAX_MATCH = 10_000
DEFAULT_SEARCH_LIMIT = 100  # sc/sm/source: names listed
MAX_SEARCH_LIMIT = 10_000
DEFAULT_DEPTH = 2  # -x: levels of a rendered value (inspect, watch, tt)
MAX_DEPTH = 4
DEFAULT_MAX_SIZE = 4096  # characters per rendered value
MIN_MAX_SIZE = 64
MAX_MAX_SIZE = 1 << 20
DEFAULT_TOP_RATE = 100  # Hz: top's stack samples per second
MAX_TOP_RATE = 1000
DEFAULT_PROFILE_RATE = 19  # Hz: export's continuous profile (a prime: not in step with a host's periodic work)
DEFAULT_CYCLE = 5.0  # s: monitor's report cycle
MIN_CYCLE = 0.05
DEFAULT_EXPORT_BUDGET = 5.0  # export: percent of the process's CPU its probes may cost (0: no governor)
EXPORT_FLUSH_EVERY = 0.1  # s: export sends what its probes caught this often...
EXPORT_MAX_SLOWER = 8.0  # ...or up to this many times less often, while the governor slows its periodic work
DEFAULT_STREAM_BUDGET = 0.0  # the CLI's probe streams (--overhead-budget): off unless asked for

# The agent's socket server: what one misbehaving or flooding client may hold. The attach passes
# overrides from the client's environment (PEEKA_AGENT_MAX_CLIENTS, PEEKA_AGENT_IDLE_TIMEOUT, ...).
LISTEN_BACKLOG = 512  # connections the kernel queues while the agent's accept loop catches up
MAX_CLIENTS = 32  # connections that have sent a request, served at once; more are refused
MAX_SILENT = 32  # connections that have not sent a request yet; past this the oldest is closed
MAX_REQUEST_FRAME = 1 << 20  # bytes of one client -> agent frame (requests are small)
FIRST_REQUEST_TIMEOUT = 30.0  # s: a connection silent this long after connecting (or mid-frame) is closed
IDLE_TIMEOUT = 600.0  # s: a client with no stream running and no request for this long is closed
SEND_STALL_TIMEOUT = 60.0  # s: a client that takes nothing of what the agent sends for this long is closed
# s: the switch interval while a request is served (0: leave the host's); see runtime._Hurry
SERVE_SWITCH_INTERVAL = 0.0005
AGENT_LIMIT_SETTINGS = {  # agent config key -> (the client's environment variable, default)
    "max_clients": ("PEEKA_AGENT_MAX_CLIENTS", MAX_CLIENTS),
    "max_silent": ("PEEKA_AGENT_MAX_SILENT", MAX_SILENT),
    "first_request_timeout": ("PEEKA_AGENT_FIRST_REQUEST_TIMEOUT", FIRST_REQUEST_TIMEOUT),
    "idle_timeout": ("PEEKA_AGENT_IDLE_TIMEOUT", IDLE_TIMEOUT),
    "send_stall_timeout": ("PEEKA_AGENT_SEND_STALL_TIMEOUT", SEND_STALL_TIMEOUT),
    "serve_switch_interval": ("PEEKA_AGENT_SERVE_SWITCH_INTERVAL", SERVE_SWITCH_INTERVAL),
}
# error_type of the agent's refusals and closings of a connection (the client maps them to errors)
REFUSED_BUSY = "TooManyClients"
CLOSED_IDLE = "Idle"
# error_type of a request refused because it would change the target while read-only; the error
# response's result says what and who held it read-only: {"refused": text, "by": READ_ONLY_BY_*}
REFUSED_READ_ONLY = "ReadOnly"
READ_ONLY_BY_AGENT = "agent"  # attached with --read-only: every client is held to read-only
READ_ONLY_BY_REQUEST = "request"  # the request itself said read_only

FRONTENDS = ("cli", "tui", "mcp", "export")  # who sends requests (Request.frontend)

# The audit trail (agent/audit.py): every request that reaches the agent.
AUDIT_RING = 1000  # entries the agent keeps (the oldest go first)
AUDIT_MAX_VALUE = 200  # characters of one argument value in an entry
AUDIT_FILE_MAX_BYTES = 16 * 1024 * 1024  # --audit-file: past this the file is rotated once to PATH.1
AUDIT_FILE_QUEUE = 10_000  # entries waiting for the audit writer thread; more are dropped (counted)
AUDIT_LOGGER = "peeka.audit"  # the target's logger the trail also goes to with --audit-log

# The first line of the script a detach leaves for a 3.14 sys.remote_exec request still pending:
# the client's attach recognises it (and the agent's runtime writes it).
PENDING_STUB_MARK = "# peeka: run by a sys.remote_exec request that was still pending at detach"


class ProtocolError(Exception):
    """A frame or message that does not follow this protocol."""


_REQUIRED = object()


class Message:
    """A message: named fields in wire order, the trailing ones with defaults.

    Plain classes rather than dataclasses: importing ``dataclasses`` pulls in ``inspect``, ``ast``
    and ``dis`` (milliseconds of an attach), and ``asdict`` deep-copies every event it encodes.
    """

    __slots__: Tuple[str, ...] = ()
    type = ""
    FIELDS: Tuple[Tuple[str, Any], ...] = ()  # (name, default or _REQUIRED)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = self.FIELDS
        if len(args) > len(fields):
            raise TypeError("%s takes %d fields, got %d" % (self.type, len(fields), len(args)))
        kwargs.pop("type", None)
        for (name, _default), value in zip(fields, args):
            if name in kwargs:
                raise TypeError("%s got field %r twice" % (self.type, name))
            setattr(self, name, value)
        for name, default in fields[len(args):]:
            if name in kwargs:
                setattr(self, name, kwargs.pop(name))
            elif default is _REQUIRED:
                raise TypeError("%s is missing field %r" % (self.type, name))
            else:
                setattr(self, name, dict(default) if isinstance(default, dict) else default)
        if kwargs:
            raise TypeError("%s has no field %s" % (self.type, ", ".join(repr(k) for k in sorted(kwargs))))

    def to_dict(self) -> Dict[str, Any]:
        """The message as its JSON object (shallow: values are not copied)."""
        out = {name: getattr(self, name) for name, _ in self.FIELDS}
        out["type"] = self.type
        return out

    def __eq__(self, other: Any) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __repr__(self) -> str:
        return "%s(%s)" % (type(self).__name__, ", ".join("%s=%r" % (n, getattr(self, n)) for n, _ in self.FIELDS))


def _message(name: str, kind: str, fields: Tuple[Tuple[str, Any], ...]) -> Any:
    return type(name, (Message,), {"__slots__": tuple(n for n, _ in fields), "type": kind, "FIELDS": fields})


Hello = _message("Hello", "hello", (
    ("protocol", _REQUIRED), ("agent_version", _REQUIRED), ("pid", _REQUIRED), ("python_version", _REQUIRED),
    ("implementation", _REQUIRED), ("executable", _REQUIRED), ("argv", _REQUIRED), ("start_time", _REQUIRED),
    ("agent_started", _REQUIRED), ("socket_path", _REQUIRED),
    # how the agent was attached: read_only, audit_file, audit_log (attach --read-only/--audit-file/--audit-log)
    ("read_only", False), ("audit_file", None), ("audit_log", False),
    # attached_by: the front end (one of FRONTENDS) whose attach started this agent; None when unknown.
    # An exporter leaves on its exit only an agent an exporter attached (someone else's keeps serving).
    ("attached_by", None),
))
# frontend: who asks (one of FRONTENDS; the audit trail records it). read_only: the client holds
# itself to requests that change nothing in the target; the agent refuses the others (REFUSED_READ_ONLY).
Request = _message("Request", "request", (("id", _REQUIRED), ("command", _REQUIRED), ("args", {}),
                                          ("frontend", "cli"), ("read_only", False)))
Event = _message("Event", "event", (("id", _REQUIRED), ("data", _REQUIRED), ("dropped", 0)))
# errors: exceptions Peeka's own code raised on observed calls (those calls were not reported).
End = _message("End", "end", (("id", _REQUIRED), ("reason", "done"), ("dropped", 0), ("errors", 0)))
Cancel = _message("Cancel", "cancel", (("id", _REQUIRED),))


class Response(Message):
    __slots__ = ("id", "status", "result", "error", "error_type", "traceback")
    type = "response"
    FIELDS = (("id", _REQUIRED), ("status", _REQUIRED), ("result", None), ("error", None), ("error_type", None),
              ("traceback", None))

    @property
    def ok(self) -> bool:
        return self.status == "success"  # type: ignore[attr-defined]


MESSAGE_TYPES = {cls.type: cls for cls in (Hello, Request, Response, Event, End, Cancel)}
_FIELDS = {name: {f for f, _ in cls.FIELDS} | {"type"} for name, cls in MESSAGE_TYPES.items()}


def success(request_id: int, result: Any) -> Response:
    return Response(id=request_id, status="success", result=result)


def failure(request_id: int, error: str, error_type: str = "AgentError", tb: Optional[str] = None) -> Response:
    return Response(id=request_id, status="error", error=error, error_type=error_type, traceback=tb)


def _default(obj: Any) -> Any:
    # Agent handlers render values themselves; anything that slips through becomes its repr.
    try:
        return repr(obj)
    except Exception:
        return "<unrepresentable %s>" % type(obj).__name__


def encode(message: Any) -> bytes:
    """One message -> one frame (header included)."""
    payload = json.dumps(message.to_dict(), separators=(",", ":"), default=_default).encode("utf-8")
    if len(payload) > MAX_FRAME:
        raise ProtocolError("message of %d bytes exceeds the %d-byte frame limit" % (len(payload), MAX_FRAME))
    return HEADER.pack(len(payload)) + payload


def decode(payload: bytes) -> Any:
    """One frame's payload (no header) -> a message object."""
    try:
        raw = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("frame is not valid UTF-8 JSON: %s" % exc) from None
    if not isinstance(raw, dict):
        raise ProtocolError("message must be a JSON object, got %s" % type(raw).__name__)
    kind = raw.get("type")
    cls = MESSAGE_TYPES.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ProtocolError("unknown message type %r" % (kind,))
    known = _FIELDS[kind]  # type: ignore[index]
    try:
        return cls(**{k: v for k, v in raw.items() if k in known})
    except TypeError as exc:
        raise ProtocolError("malformed %s message: %s" % (kind, exc)) from None


def recv_exact(sock: Any, n: int) -> Optional[bytes]:
    """Read exactly n bytes; None when the peer closed the connection first."""
    chunks = []
    remaining = n
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: Any, max_frame: int = MAX_FRAME) -> Optional[bytes]:
    """The next frame's payload; None on a clean close; ProtocolError on an oversize length."""
    header = recv_exact(sock, HEADER.size)
    if header is None:
        return None
    (length,) = HEADER.unpack(header)
    if length > max_frame:
        raise ProtocolError("frame length %d exceeds the %d-byte limit" % (length, max_frame))
    payload = recv_exact(sock, length)
    if payload is None:
        raise ProtocolError("connection closed in the middle of a frame")
    return payload


def read_message(sock: Any) -> Optional[Any]:
    payload = read_frame(sock)
    return None if payload is None else decode(payload)
