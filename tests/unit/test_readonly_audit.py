"""Read-only classification and refusals, the request's new fields, the client's mapping of a
refusal, and the audit trail's redaction and file mirror (agent/readonly.py, agent/audit.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from peeka_agent import audit, protocol, readonly

from peeka.client import AgentClient, checked
from peeka.errors import ReadOnly
from peeka.frontend import Call, running
from peeka.process import TargetProcess

pytestmark = pytest.mark.parallel


@pytest.mark.parametrize("command, args, fragment", [
    ("logger", {"name": "app", "level": "DEBUG"}, "setting logger app's level to DEBUG"),
    ("tt", {"action": "replay", "index": 3}, "tt --replay of record 3"),
    ("inspect", {"expression": "x.f()", "unsafe": True}, "--unsafe"),
    ("watch", {"pattern": "m.f", "condition": "g()", "unsafe": True}, "--unsafe"),
    ("memory", {"tracemalloc": "start"}, "starting tracemalloc"),
    ("memory", {"tracemalloc": "stop"}, "stopping tracemalloc"),
])
def test_changes(command: str, args: dict, fragment: str) -> None:
    assert fragment in readonly.change_of(command, args)


@pytest.mark.parametrize("command, args", [
    ("logger", {}), ("logger", {"name": "app", "level": "DEBUG", "follow": True}), ("tt", {"action": "show", "index": 1}),
    ("tt", {"action": "record", "pattern": "m.f"}), ("memory", {"tracemalloc": "top"}), ("memory", {}),
    ("inspect", {"expression": "x", "unsafe": False}), ("reset", {}), ("detach", {}), ("audit", {"follow": True}),
    ("watch", {"pattern": "m.f"}),
])
def test_not_changes(command: str, args: dict) -> None:
    assert readonly.change_of(command, args) == ""


def test_refusal_by_request_and_by_agent() -> None:
    change = protocol.Request(7, "logger", {"name": "a", "level": "INFO"}, read_only=True)
    refused = readonly.refusal(False, change)
    assert refused is not None and refused.id == 7 and refused.error_type == protocol.REFUSED_READ_ONLY
    assert refused.result == {"refused": "setting logger a's level to INFO", "by": "request"}
    plain = protocol.Request(8, "logger", {"name": "a", "level": "INFO"})
    assert readonly.refusal(False, plain) is None
    held = readonly.refusal(True, plain)
    assert held is not None and held.result["by"] == "agent" and "attached with --read-only" in held.error
    assert readonly.refusal(True, protocol.Request(9, "thread", {})) is None


def test_request_fields_round_trip_and_default() -> None:
    request = protocol.Request(1, "thread", {}, frontend="mcp", read_only=True)
    assert protocol.decode(protocol.encode(request)[4:]) == request
    old = protocol.decode(b'{"type": "request", "id": 1, "command": "thread", "args": {}}')
    assert (old.frontend, old.read_only) == ("cli", False)


def test_client_maps_refusals_to_read_only_exit_17() -> None:
    by_request = readonly.refusal(False, protocol.Request(1, "tt", {"action": "replay", "index": 2}, read_only=True))
    client = AgentClient(TargetProcess(os.getpid()), frontend="mcp", read_only=True)
    with pytest.raises(ReadOnly) as caught:
        client.checked(by_request)
    assert caught.value.exit_code == 17 and caught.value.by == "request"
    assert caught.value.message.startswith("read-only: start the server with --allow-changes to permit this (refused: tt")
    by_agent = readonly.refusal(True, protocol.Request(1, "memory", {"tracemalloc": "start"}))
    with pytest.raises(ReadOnly) as caught:
        checked(by_agent, pid=42)
    assert "the agent was attached with --read-only; detach and attach again without it" in caught.value.message
    assert "`peeka detach 42`" in caught.value.help
    assert caught.value.to_dict()["refused"] == "starting tracemalloc"


def test_client_takes_the_running_front_end() -> None:
    target = TargetProcess(os.getpid())
    assert (AgentClient(target).frontend, AgentClient(target).read_only) == ("cli", False)
    with running(Call("mcp", read_only=True)):
        client = AgentClient(target)
        assert (client.frontend, client.read_only) == ("mcp", True)
        assert client.make_request(3, "thread").to_dict()["frontend"] == "mcp"
    assert AgentClient(target, frontend="export", read_only=True).make_request(1, "export").read_only is True


def test_audit_redacts_secrets_and_truncates() -> None:
    args = audit.redacted_args({
        "api_token": "abc", "expression": "request.headers['Authorization'] == 'Bearer s3cr3t'",
        "condition": "params['password'] == \"hunter2\"", "pattern": "x" * 1000, "limit": 5, "regex": True,
        "watch": ["params", "locals['secret']"],
        "express": "x" * (protocol.AUDIT_MAX_VALUE - 20) + " or token == 'abcdefghijklmnopqrstuvwxyz'",
    })
    assert "abcdefghij" not in args["express"] and args["express"].endswith("'[redacted]'")  # cut, still hidden
    assert args["api_token"] == "[redacted]"
    assert "s3cr3t" not in args["expression"] and "hunter2" not in args["condition"]
    assert args["expression"].startswith("request.headers[")
    assert len(args["pattern"]) == protocol.AUDIT_MAX_VALUE and args["limit"] == 5 and args["regex"] is True


class _Peer:
    peer_pid, peer_uid, number = 1234, 1000, 1


def test_trail_ring_file_and_rotation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "AUDIT_FILE_MAX_BYTES", 2000)
    path = tmp_path / "audit.jsonl"
    trail = audit.Trail({"audit_file": str(path)})
    for i in range(30):
        trail.record(_Peer(), protocol.Request(i, "thread", {"n": i}, frontend="tui"), "ok")
    trail.record(_Peer(), protocol.Request(99, "logger", {"level": "DEBUG"}, read_only=True), "refused", "ReadOnly")
    trail.close()
    lines = [json.loads(line) for p in (Path(str(path) + ".1"), path) for line in p.read_text().splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, 32))[-len(lines):]  # rotated once: the oldest went
    assert path.stat().st_size <= 2000 and Path(str(path) + ".1").exists()
    last = trail.entries()[-1]
    assert lines[-1] == last
    assert (last["peer_pid"], last["peer_uid"], last["outcome"], last["read_only"]) == (1234, 1000, "refused", True)
    assert trail.entries()[0]["frontend"] == "tui" and trail.stats()["recorded"] == 31


def test_trail_never_raises_and_counts_write_errors(tmp_path: Path) -> None:
    trail = audit.Trail({"audit_file": str(tmp_path / "missing-dir" / "audit.jsonl")})
    trail.record(_Peer(), protocol.Request(1, "thread", {}), "ok")
    trail.record(object(), object(), "ok")  # nothing like a client or a request: recorded as far as it goes
    deadline = time.monotonic() + 5
    while not trail.write_errors and time.monotonic() < deadline:
        time.sleep(0.01)
    trail.close()
    assert trail.write_errors >= 1 and "FileNotFoundError" in trail.last_write_error
    assert len(trail.entries()) == 2
