"""The one wire protocol between a Peeka client and the agent inside a target.

Framing: a 4-byte big-endian length, then that many bytes of UTF-8 JSON (one message).
Every message is a JSON object with a ``type``:

    hello     agent -> client, once, right after connect: protocol version and target facts
    request   client -> agent: {id, command, args}
    response  agent -> client: {id, status: "success"|"error", result | error, error_type, traceback}
    event     agent -> client: one item of a stream started by request {id}: {id, data, dropped}
    end       agent -> client: the stream {id} is over: {id, reason, dropped}
    cancel    client -> agent: stop the stream {id}

Standard library only and valid on Python 3.9: the agent imports this module inside the target,
and the client and the exporter import the very same file.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional

PROTOCOL_VERSION = 1
MAX_FRAME = 16 * 1024 * 1024
HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """A frame or message that does not follow this protocol."""


@dataclass
class Hello:
    protocol: int
    agent_version: str
    pid: int
    python_version: str
    implementation: str
    executable: str
    argv: List[str]
    start_time: float
    agent_started: float
    socket_path: str
    type: str = "hello"


@dataclass
class Request:
    id: int
    command: str
    args: Dict[str, Any] = field(default_factory=dict)
    type: str = "request"


@dataclass
class Response:
    id: int
    status: str
    result: Any = None
    error: Optional[str] = None
    error_type: Optional[str] = None
    traceback: Optional[str] = None
    type: str = "response"

    @property
    def ok(self) -> bool:
        return self.status == "success"


@dataclass
class Event:
    id: int
    data: Any
    dropped: int = 0
    type: str = "event"


@dataclass
class End:
    id: int
    reason: str = "done"
    dropped: int = 0
    type: str = "end"


@dataclass
class Cancel:
    id: int
    type: str = "cancel"


MESSAGE_TYPES = {cls.type: cls for cls in (Hello, Request, Response, Event, End, Cancel)}  # type: ignore[attr-defined]
_FIELDS = {name: {f.name for f in fields(cls)} for name, cls in MESSAGE_TYPES.items()}


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
    payload = json.dumps(asdict(message), separators=(",", ":"), default=_default).encode("utf-8")
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
