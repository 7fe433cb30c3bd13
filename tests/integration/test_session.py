"""peeka.session.Session against a real attached target (tests/targets/tui_target.py), 3.12 and 3.14:
requests from several threads while streams run over the same connection, cancel per stream, a
clean close that leaves no probe, and a broken connection reported, not hung on.

The ``attached`` fixture (one real attach per version and module) is shared with test_tui.py.
"""

from __future__ import annotations

import ast
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from conftest import Target, python_for

from peeka.attach import attach
from peeka.client import AgentClient
from peeka.errors import AgentUnavailable, UsageError
from peeka.process import TargetProcess
from peeka.session import Session, StreamEnd

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120), pytest.mark.parallel]

TUI_VERSIONS = ("3.12", "3.14")  # gdb and remote_exec attaches; the client is this test's venv


class Attached(NamedTuple):
    process: Target
    version: str
    method: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self) -> AgentClient:
        return AgentClient(TargetProcess(self.pid), timeout=10).open()


def probes_left(target: Attached) -> list[str]:
    """The functions the agent has probes on now, asked over a separate connection (reset with a
    pattern that matches nothing removes nothing and lists what remains)."""
    with target.client() as other:
        return other.request("reset", {"pattern": "no_such_module_zz.nothing"})["remaining"]


def probes_become(target: Attached, expected: list[str], within: float = 10.0) -> bool:
    """Whether the agent's probes become EXPECTED within the time (it takes a gone client's off when
    it notices)."""
    deadline = time.monotonic() + within
    while probes_left(target) != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def watched_params(event: dict[str, Any]) -> dict[str, Any]:
    """A watch event's parameters (its value node's 'params' child, a dict's repr)."""
    params = next(c["value"] for c in event["value"]["children"] if c["key"] == "'params'")
    return ast.literal_eval(params["repr"])


@pytest.fixture(scope="module", params=TUI_VERSIONS)
def attached(request: pytest.FixtureRequest) -> Iterator[Attached]:
    python = python_for(request.param)
    tmp = Path(tempfile.mkdtemp(prefix="pk-"))  # short: a Unix socket path has ~100 bytes
    process = Target(python, "tui_target.py", env={"TMPDIR": str(tmp), "PYTHONDONTWRITEBYTECODE": "1"})
    try:
        client, report = attach(process.pid, timeout=30)
        client.close()
        yield Attached(process, request.param, report.method)
        assert process.alive(), "the target died while the session/TUI tests ran"
    finally:
        process.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def session(attached: Attached) -> Iterator[Session]:
    s = Session(attached.client())
    yield s
    s.close()


def test_requests_from_threads_while_streams_run(attached: Attached, session: Session) -> None:
    watched: queue.Queue[Any] = queue.Queue()
    watch = session.start("watch", {"pattern": "__main__.place_order", "limit": 1000},
                          on_event=watched.put)
    top = session.start("top", {"interval": 0.5})
    assert watch.start["functions"] == ["__main__.place_order"]
    # Several threads ask at once over the one connection: each gets its own answer.
    answers: dict[int, Any] = {}

    def ask(i: int) -> None:
        answers[i] = session.request("inspect", {"expression": f"{i} * 7"})["value"]["repr"]

    askers = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in askers:
        t.start()
    names = {t["name"] for t in session.request("thread", {})["threads"]}
    for t in askers:
        t.join(30)
    assert answers == {i: str(i * 7) for i in range(8)}
    assert {"MainThread", "burner", "orders", "napper"} <= names
    # The watch's calls: place_order(order_id, sku) with order_id counting up in the target.
    ids = []
    while len(ids) < 3:
        event = watched.get(timeout=20)
        params = watched_params(event)
        assert params["sku"] == f"sku-{params['order_id'] % 5}"
        ids.append(params["order_id"])
    assert ids == sorted(ids) and len(set(ids)) == 3
    # top over the same connection names the burner's function as the hottest.
    deadline = time.monotonic() + 30
    hottest = ""
    while time.monotonic() < deadline and "crunch" not in hottest:
        summary = top.next(timeout=20)
        if summary["functions"]:
            hottest = summary["functions"][0]["function"]
    assert hottest == "__main__.crunch"
    # Cancelling one stream takes its probe off; the other runs on.
    watch.cancel()
    assert watch.ended == StreamEnd("cancelled")
    session.request("ping", {})  # handled after the cancel: the probe is off by now
    assert probes_left(attached) == []
    assert isinstance(top.next(timeout=20), dict) and top.running


def test_close_cancels_streams_and_leaves_no_probe(attached: Attached) -> None:
    session = Session(attached.client())
    ends: list[StreamEnd] = []
    session.start("watch", {"pattern": "__main__.place_order"}, on_end=ends.append)
    session.start("top", {"interval": 0.5}, on_end=ends.append)
    assert probes_left(attached) == ["__main__.place_order"]
    session.close()
    assert probes_left(attached) == []
    assert ends == [StreamEnd("cancelled"), StreamEnd("cancelled")]
    with pytest.raises(AgentUnavailable, match="closed"):
        session.request("ping", {})
    assert attached.process.alive()


def test_interrupt_breaks_off_a_waiting_stream_from_another_thread(attached: Attached) -> None:
    """AgentClient.interrupt() (the exporter's stop): the thread blocked reading a quiet stream gets
    AgentUnavailable at once, and the agent, seeing the client gone, takes the stream's probe off."""
    client = attached.client()
    stream = client.stream("watch", {"pattern": "__main__.place_order", "condition": "cost < 0"})  # never true
    next(stream)  # the start: the agent answers once the probe is in
    assert probes_left(attached) == ["__main__.place_order"]
    timer = threading.Timer(0.3, client.interrupt)
    started = time.monotonic()
    timer.start()
    with pytest.raises(AgentUnavailable):
        next(stream)
    assert time.monotonic() - started < 5
    stream.close()
    client.close()
    client.interrupt()  # on a closed client: nothing to break off, no error
    assert probes_become(attached, [])
    assert attached.process.alive()


def test_errors_and_stream_end(attached: Attached, session: Session) -> None:
    with pytest.raises(UsageError, match="no_such_module_zz"):
        session.start("watch", {"pattern": "no_such_module_zz.f"})
    assert session.streams() == []
    # A stream the agent ends itself (limit) ends here with the agent's reason.
    limited = session.start("watch", {"pattern": "__main__.place_order", "limit": 2})
    got = [limited.next(timeout=20) for _ in range(3)]
    assert got[2] == StreamEnd("limit") and all(isinstance(g, dict) for g in got[:2])
    assert session.streams() == []
    # The session still answers after errors.
    assert session.request("ping", {})["pid"] == attached.pid


def test_broken_connection_is_reported(attached: Attached) -> None:
    """The agent goes (detached from elsewhere): streams end 'broken', requests fail at once, the
    on_broken callback fires; then the target is attached again for the tests after this one."""
    broken: list[Exception] = []
    session = Session(attached.client(), on_broken=broken.append)
    top = session.start("top", {"interval": 0.5})
    with attached.client() as other:
        other.request("detach", {})
    deadline = time.monotonic() + 20
    while not broken and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(broken) == 1 and isinstance(broken[0], AgentUnavailable)
    assert top.ended is not None and top.ended.reason.startswith("broken: ")
    with pytest.raises(AgentUnavailable):
        session.request("ping", {})
    session.close()
    assert attached.process.alive()
    client, _report = attach(attached.pid, timeout=30)
    client.close()
