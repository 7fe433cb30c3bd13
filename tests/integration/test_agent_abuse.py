"""The agent under abuse: floods of connections, silent, half-open and never-reading clients.

Each must leave the agent serving a well-behaved client, with a bounded number of threads, and the
host's own loop beating. The agent's deadlines are shortened through the attaching client's
environment (PEEKA_AGENT_*), which is how an operator tunes them too.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path

import pytest
from conftest import python_for, thread_count

from peeka.attach import attach, detach
from peeka.errors import AgentBusy

pytestmark = [pytest.mark.integration, pytest.mark.timing]

FIRST_REQUEST = 2.0
IDLE = 3.0
STALL = 3.0
MAX_CLIENTS = 6
MAX_SILENT = 8


def _frame(obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def _read(s: socket.socket) -> dict | None:
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    n = struct.unpack(">I", head)[0]
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return json.loads(data)


def _connect(path: str) -> socket.socket:
    # A timeout makes the socket non-blocking underneath: a full accept queue fails the connect
    # at once (EAGAIN) instead of waiting, which is what a flood ran into before.
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    return s


def _closed_with(s: socket.socket, words: str, within: float) -> None:
    """The agent says why (an error naming it) and closes the connection, within the time."""
    s.settimeout(within)
    messages = []
    while True:
        message = _read(s)
        if message is None:
            break
        messages.append(message)
    s.close()
    assert any(m.get("status") == "error" and words in (m.get("error") or "") for m in messages), messages


def _ping_ok(pid: int) -> float:
    started = time.monotonic()
    client, report = attach(pid)
    with client:
        assert report.reused
        assert client.request("ping")["pid"] == pid
    return time.monotonic() - started


@pytest.mark.parametrize("version", ["3.9", "3.14"])
def test_abusive_clients_leave_the_agent_serving(spawn, version: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for env, value in (("FIRST_REQUEST_TIMEOUT", FIRST_REQUEST), ("IDLE_TIMEOUT", IDLE),
                       ("SEND_STALL_TIMEOUT", STALL), ("MAX_CLIENTS", MAX_CLIENTS), ("MAX_SILENT", MAX_SILENT)):
        monkeypatch.setenv("PEEKA_AGENT_" + env, str(value))
    gap_file = tmp_path / "gap"
    target = spawn(python_for(version), "heartbeat_target.py", str(gap_file))
    client, _ = attach(target.pid)
    client.close()
    path = f"/tmp/peeka_{target.pid}.sock"
    base_threads = thread_count(target.pid)

    # A flood: 150 connections at once that never speak. Every connect succeeds (the accept queue
    # is deep enough), a real client is served meanwhile, silent connections past the cap are
    # closed oldest first, and the agent's threads stay bounded.
    flood = [_connect(path) for _ in range(150)]
    assert _ping_ok(target.pid) < 5.0
    assert thread_count(target.pid) <= base_threads + 2 * (MAX_SILENT + MAX_CLIENTS) + 2
    for s in flood[:100]:
        _closed_with(s, "sent no request", within=10)
    for s in flood:
        s.close()

    # 120 short connections in a burst: each connects, asks, reads, closes.
    for i in range(120):
        s = _connect(path)
        assert _read(s)["type"] == "hello"  # type: ignore[index]
        s.sendall(_frame({"type": "request", "id": i + 1, "command": "ping", "args": {}}))
        assert _read(s)["status"] == "success"  # type: ignore[index]
        s.close()

    # A connection that never speaks is closed after the first-request deadline; one that stops in
    # the middle of a frame too. Both say why.
    silent = _connect(path)
    assert _read(silent)["type"] == "hello"  # type: ignore[index]
    half = _connect(path)
    assert _read(half)["type"] == "hello"  # type: ignore[index]
    half.sendall(struct.pack(">I", 100) + b'{"type":')
    _closed_with(silent, "no request within", within=FIRST_REQUEST + 5)
    _closed_with(half, "incomplete", within=FIRST_REQUEST + 5)

    # A client that spoke, then stays idle with no stream, is closed after the idle deadline.
    idle = _connect(path)
    _read(idle)
    idle.sendall(_frame({"type": "request", "id": 1, "command": "ping", "args": {}}))
    assert _read(idle)["status"] == "success"  # type: ignore[index]
    _closed_with(idle, "idle for", within=IDLE + 5)

    # Clients served at once are capped: the next one is refused with an error that says so.
    served = []
    for _ in range(MAX_CLIENTS):
        c, _ = attach(target.pid)
        c.request("ping")
        served.append(c)
    extra, _ = attach(target.pid)
    with pytest.raises(AgentBusy) as refused:
        extra.request("ping")
    assert f"serves {MAX_CLIENTS} clients" in refused.value.message
    extra.close()
    for c in served:
        c.close()

    # A client that starts a busy stream and never reads: its events are dropped (counted) while
    # the agent serves others, and once nothing has left for the stall deadline it is closed and
    # its probe removed.
    greedy = _connect(path)
    _read(greedy)
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    greedy.sendall(_frame({"type": "request", "id": 1, "command": "watch",
                           "args": {"pattern": "__main__.hot", "limit": 1 << 40}}))
    time.sleep(1.0)
    assert _ping_ok(target.pid) < 5.0
    deadline = time.monotonic() + STALL + 15
    clients = -1
    while time.monotonic() < deadline:
        with attach(target.pid)[0] as c:
            clients = c.request("ping")["clients"]
        if clients == 1:  # only the one asking
            break
        time.sleep(0.5)
    assert clients == 1, clients
    # What was in flight when it was closed is still readable, then the end of the connection
    # (its reason could not get past what it never read).
    greedy.settimeout(5)
    while _read(greedy) is not None:
        pass
    greedy.close()

    # The host kept beating through all of it (a generous bound: this is a loaded 2-core machine;
    # a hang would be seconds).
    gap = float(gap_file.read_text())
    print(f"{version}: longest heartbeat gap {gap:.0f} ms")
    assert gap < 1000, gap
    assert detach(target.pid)["detached"] is True
    assert target.alive()
    assert target.stop() == ""
