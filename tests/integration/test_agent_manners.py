"""The agent as a guest: abuse, repetition, forks, and what it loads."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, TARGETS, peeka_cli, python_for

from peeka.attach import attach, detach

pytestmark = [pytest.mark.integration, pytest.mark.parallel]


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(key)


def _raw(sock_path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sock_path)
    n = struct.unpack(">I", s.recv(4))[0]
    hello = json.loads(s.recv(n))
    assert hello["type"] == "hello" and hello["protocol"] == 1
    return s


def _reply(s: socket.socket) -> dict | None:
    head = s.recv(4)
    if len(head) < 4:
        return None
    n = struct.unpack(">I", head)[0]
    data = b""
    while len(data) < n:
        data += s.recv(n - len(data))
    return json.loads(data)


@pytest.mark.parametrize("version", ["3.9", "3.12", "3.14"])
def test_protocol_abuse_never_kills_the_agent(spawn, version: str) -> None:
    target = spawn(python_for(version), "app.py", "busy")
    client, _ = attach(target.pid)
    client.close()
    path = f"/tmp/peeka_{target.pid}.sock"

    s = _raw(path)  # oversize length: error, then the connection is closed
    s.sendall(struct.pack(">I", 1 << 30))
    reply = _reply(s)
    assert reply is not None and reply["status"] == "error" and "exceeds" in reply["error"]
    assert _reply(s) is None
    s.close()

    s = _raw(path)  # invalid JSON
    body = b"{not json"
    s.sendall(struct.pack(">I", len(body)) + body)
    assert "JSON" in _reply(s)["error"]  # type: ignore[index]
    s.close()

    s = _raw(path)  # unknown command and wrong shapes answer errors, the connection stays usable
    for body_obj in ({"type": "request", "id": 7, "command": "nope", "args": {}},
                     {"type": "request", "id": 8, "command": "ping", "args": [1, 2]},
                     {"type": "response", "id": 9, "status": "success"},
                     [1, 2, 3]):
        body = json.dumps(body_obj).encode()
        s.sendall(struct.pack(">I", len(body)) + body)
        reply = _reply(s)
        assert reply is not None and reply["status"] == "error", reply
    body = json.dumps({"type": "request", "id": 10, "command": "ping", "args": {}}).encode()
    s.sendall(struct.pack(">I", len(body)) + body)
    assert _reply(s)["status"] == "success"  # type: ignore[index]
    s.close()

    s = _raw(path)  # half a frame, then vanish
    s.sendall(struct.pack(">I", 100) + b"{\"type\":")
    s.close()
    s = _raw(path)  # a request, then vanish before reading the answer
    body = json.dumps({"type": "request", "id": 1, "command": "thread", "args": {}}).encode()
    s.sendall(struct.pack(">I", len(body)) + body)
    s.close()

    with attach(target.pid)[0] as again:
        assert again.request("ping")["pid"] == target.pid
    assert detach(target.pid)["detached"] is True
    assert target.stop() == ""


@pytest.mark.parametrize("version", ["3.12", "3.14"])
def test_hundred_attach_detach_cycles(spawn, version: str) -> None:
    target = spawn(python_for(version), "app.py", "sleep")
    threads, fds = _status(target.pid, "Threads"), len(os.listdir(f"/proc/{target.pid}/fd"))
    started = time.monotonic()
    for _ in range(100):
        client, report = attach(target.pid)
        with client:
            assert not report.reused
            client.request("ping")
        assert detach(target.pid)["detached"] is True
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 5
    while _status(target.pid, "Threads") != threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _status(target.pid, "Threads") == threads
    assert len(os.listdir(f"/proc/{target.pid}/fd")) == fds
    assert target.alive()
    print(f"100 cycles on {version}: {elapsed:.1f}s")
    assert target.stop() == ""


@pytest.mark.parametrize("version", ["3.9", "3.11", "3.13", "3.14"])
def test_agent_loads_only_the_standard_library(version: str, tmp_path: Path) -> None:
    """Run the agent in an isolated interpreter (-I -S: no site-packages at all) and compare modules."""
    py = python_for(version)
    src = ROOT / "agent"
    script = f"""
import sys, importlib.util, os
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("_peeka_agent", {str(src / '__init__.py')!r},
                                              submodule_search_locations=[{str(src)!r}])
mod = importlib.util.module_from_spec(spec); sys.modules["_peeka_agent"] = mod; spec.loader.exec_module(mod)
import importlib
rt = importlib.import_module("_peeka_agent.runtime")
importlib.import_module("_peeka_agent.commands").preload()
for name in ("values", "expressions"):
    importlib.import_module("_peeka_agent." + name)
agent = rt.start({{"module": "_peeka_agent", "socket_path": {str(tmp_path / 's.sock')!r},
                   "files_dir": None, "method": "test"}})
rt.detach()
new = set(sys.modules) - before
stdlib = getattr(sys, "stdlib_module_names", None)
bad = sorted(m for m in new if not m.startswith("_peeka_agent")
             and (stdlib is not None and m.split(".")[0] not in stdlib))
print("BAD", bad)
print("LEFT", sorted(m for m in sys.modules if m.startswith("_peeka")))
"""
    out = subprocess.run([py, "-I", "-S", "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "BAD []" in out.stdout, out.stdout
    assert "LEFT []" in out.stdout, out.stdout


def test_listing_threads_cannot_hang_a_311_host() -> None:
    """CPython 3.11 (gh-106883): a collection that starts inside sys._current_frames() and frees a
    threading.local hangs the whole process for good (a 500-thread target froze when an export
    started). The agent lists threads with the collector paused there; the target makes that
    collection due (tests/targets/current_frames_gc.py). 3.9/3.10 and 3.12+ do not collect there."""
    py = python_for("3.11")
    script = str(TARGETS / "current_frames_gc.py")
    out = subprocess.run([py, script, str(ROOT / "agent"), "agent"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("listed 51 51 gc True"), (out.stdout, out.stderr)
    # The same target listing with a plain sys._current_frames() hangs here on 3.11.0-3.11.8 (checked
    # by hand on 3.11.7: killed after 10 s); 3.11.9+ carries CPython's own fix.


@pytest.mark.parametrize("version", ["3.9", "3.12"])
def test_fork_child_gets_a_fresh_agent(spawn, version: str) -> None:
    # A prefork server's master forks workers while a watch runs on it: a worker must not inherit
    # the probe (the code swap below 3.12, the sys.monitoring tool on 3.12+), nor the agent.
    target = spawn(python_for(version), "forker.py")
    client, _ = attach(target.pid)
    watch = client.stream("watch", {"pattern": "__main__.work", "expression": "result"})
    next(watch)  # the start
    assert client.request("ping")["pid"] == target.pid  # (the probe is in once the start is answered)
    target.proc.stdin.write("fork\n")  # type: ignore[union-attr]
    target.proc.stdin.flush()  # type: ignore[union-attr]
    lines = dict(target.proc.stdout.readline().split(None, 1) for _ in range(2))  # type: ignore[union-attr]
    child = int(lines["child"])
    try:
        state = json.loads(lines["state"])
        assert state["pid"] == child
        # (3.12: an equal, fresh copy of the code: test_probe_leaves_code_fast)
        assert not state["code_swapped"] or (version == "3.12" and state["code_equal"]), state
        assert state["kwdefaults"] == "None", state
        assert state["tools"] == [] and state["agent_modules"] == [], state
        assert not state["switch_interval_changed"], state
        # The parent's watch goes on: the child closed its copies of the connections without
        # cutting them.
        assert client.request("ping")["pid"] == target.pid
        watch.close()
        client.close()
        # The child starts a new agent when attached.
        child_client, report = attach(child)
        with child_client:
            assert not report.reused
            assert child_client.request("ping")["pid"] == child
        with attach(target.pid)[0] as parent_client:
            assert parent_client.request("ping")["pid"] == target.pid
        assert detach(child)["detached"] is True
        assert detach(target.pid)["detached"] is True
    finally:
        os.kill(child, 9)


def test_gevent_monkeypatched_target(spawn) -> None:
    # The client venv's interpreter has gevent (test extras): a host that patched socket and
    # threading before the agent arrived. The agent must use the unpatched primitives and serve.
    pytest.importorskip("gevent", reason="gevent is in peeka's test extras; this venv lacks it")
    target = spawn(sys.executable, "gevent_target.py")
    threads = json.loads(peeka_cli("thread", str(target.pid), "--json").stdout)
    assert any(t["name"] == "MainThread" for t in threads["threads"]), threads
    out = peeka_cli("watch", str(target.pid), "__main__.tick", "params['n']", "-n", "5", "--timeout", "20",
                    "--json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert lines[-1]["reason"] == "limit" and len(lines) == 7, lines  # start, 5 hits, end
    assert all(isinstance(e["value"]["repr"], str) for e in lines[1:-1])
    assert peeka_cli("detach", str(target.pid), "--json").returncode == 0
    assert target.alive()
    assert target.stop() == ""


@pytest.mark.parametrize("version", ["3.9", "3.14"])
def test_attach_does_not_import_asyncio_into_the_target(spawn, version: str) -> None:
    # A guest imports what it needs of the standard library, never what changes how the host
    # looks to itself: a WSGI app must not find asyncio in sys.modules after an attach.
    target = spawn(python_for(version), "app.py", "sleep")
    out = peeka_cli("tasks", str(target.pid), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["loops"] == [] and "asyncio is not imported" in result["note"], result
    assert peeka_cli("detach", str(target.pid)).returncode == 0
    assert target.stop() == ""


@pytest.mark.parametrize("version", ["3.9", "3.14"])
def test_boot_restores_the_switch_interval_exactly(version: str, tmp_path: Path) -> None:
    """The boot lowers the switch interval while the agent loads (a busy host hands the GIL back
    sooner), then puts the host's own value back to the bit once the server listens."""
    from peeka.attach import files

    socket_path = tmp_path / "agent.sock"
    config = {"module": "_peeka_agent", "sources": files.agent_sources(), "socket_path": str(socket_path),
              "files_dir": str(tmp_path), "method": "test", "limits": {}, "boot_switch_interval": 0.0005}
    (tmp_path / "launch.py").write_text(files.launch_source(config))
    script = f"""
import sys, time
sys.setswitchinterval(0.0123)
before = sys.getswitchinterval()
exec(compile(open({str(tmp_path / 'launch.py')!r}).read(), "launch.py", "exec"), {{"__name__": "__peeka_launch__"}})
lowered = sys.getswitchinterval()
deadline = time.monotonic() + 20
while sys.getswitchinterval() == lowered and time.monotonic() < deadline:
    time.sleep(0.001)
runtime = sys.modules["_peeka_agent.runtime"]
print(repr(before), repr(lowered), repr(sys.getswitchinterval()), runtime.current() is not None)
runtime.detach()
"""
    out = subprocess.run([python_for(version), "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    before, lowered, after, running = out.stdout.split()
    assert float(lowered) == pytest.approx(0.0005) and running == "True", out.stdout
    assert after == before, out.stdout
