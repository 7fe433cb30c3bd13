"""The wire protocol: framing, decoding, and what it refuses."""

from __future__ import annotations

import socket
import struct

import pytest
from peeka_agent import protocol

pytestmark = pytest.mark.parallel


def test_round_trip_every_message_type() -> None:
    messages = [
        protocol.Hello(1, "0.1", 42, "3.12.1", "cpython", "/usr/bin/python3", ["app.py"], 1.5, 2.5, "/tmp/s"),
        protocol.Request(1, "thread", {"all": True}),
        protocol.success(1, {"x": [1, 2]}),
        protocol.failure(2, "bad", "CommandError", "tb"),
        protocol.Event(3, {"v": 1}, dropped=4),
        protocol.End(3, "limit", 4),
        protocol.Cancel(3),
    ]
    for message in messages:
        frame = protocol.encode(message)
        (length,) = struct.unpack(">I", frame[:4])
        assert length == len(frame) - 4
        assert protocol.decode(frame[4:]) == message


def test_unserializable_values_become_their_repr() -> None:
    frame = protocol.encode(protocol.success(1, {"obj": object}))
    assert "class 'object'" in protocol.decode(frame[4:]).result["obj"]


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (b"\xff\xfe", "UTF-8 JSON"),
        (b"{nope", "UTF-8 JSON"),
        (b"[1]", "JSON object"),
        (b'{"type": "shout"}', "unknown message type"),
        (b'{"type": "request"}', "malformed request"),
    ],
)
def test_decode_refuses_bad_payloads(payload: bytes, fragment: str) -> None:
    with pytest.raises(protocol.ProtocolError, match=fragment):
        protocol.decode(payload)


def test_read_frame_limits_and_partial_frames() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack(">I", protocol.MAX_FRAME + 1))
        with pytest.raises(protocol.ProtocolError, match="exceeds"):
            protocol.read_frame(b)
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack(">I", 10) + b"abc")
        a.close()
        with pytest.raises(protocol.ProtocolError, match="middle of a frame"):
            protocol.read_frame(b)
    a, b = socket.socketpair()
    with a, b:
        a.close()
        assert protocol.read_frame(b) is None


def test_oversize_message_is_refused_on_encode() -> None:
    with pytest.raises(protocol.ProtocolError, match="frame limit"):
        protocol.encode(protocol.success(1, "x" * (protocol.MAX_FRAME + 1)))
