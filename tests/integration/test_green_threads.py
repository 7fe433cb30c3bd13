"""Green-thread servers (issue 13, part 3): a monkey-patched gevent WSGI server (gevent.pywsgi) and
an eventlet one (eventlet.wsgi) on every Python 3.9-3.14 where the library's wheels install
(tests/targets/gevent_wsgi.py, eventlet_wsgi.py: the same app and greenlets, green_app.py),
attached the real way, one target per library and version, every check over one connection.

What a user checks by eye: ``tasks`` lists the greenlets under their hub like asyncio tasks, each
with what it waits on; ``thread`` lists OS threads only (MainThread = pid, the agent's hidden);
``top`` names the functions burning the CPU, not the hub's loop; ``watch`` and ``trace`` of a
function that switches greenlets mid-call while another greenlet computes: the call's wall time,
and a tree of its own greenlet's calls only, with the time switched out awaited, nobody's self.
"""

from __future__ import annotations

import ast
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import VERSIONS, Target, eventlet_site, gevent_site, python_for

from peeka.attach import attach
from peeka.client import AgentClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180), pytest.mark.timing]

LIBRARIES = {  # library: (target, its site, its hub's type, its hub's loop function, top's window in s)
    "gevent": ("gevent_wsgi.py", gevent_site, "gevent.hub.Hub", "Hub.run", 3.0),
    "eventlet": ("eventlet_wsgi.py", eventlet_site, "eventlet.hubs.epolls.Hub", "Hub.wait", 2.0),
}


# Where export's span trees are checked too: one target per probe engine (the code swap below 3.12,
# sys.monitoring from 3.12), one per library: its recorder is the same code on every version.
EXPORT_CHECKED = {("eventlet", "3.9"), ("gevent", "3.12")}


class Server:
    def __init__(self, library: str, version: str, agent: AgentClient, process: Target) -> None:
        self.library = library
        self.version = version
        self.agent = agent
        self.process = process
        self.port = process.ready_line.split()[2]
        _, _, self.hub_type, self.hub_loop, self.top_window = LIBRARIES[library]


@pytest.fixture(scope="module", params=[(lib, v) for lib in LIBRARIES for v in VERSIONS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    library, version = request.param
    script, site, *_ = LIBRARIES[library]
    python = python_for(version)
    process = Target(python, script, env=site(version, python))
    try:
        agent, _ = attach(process.pid, timeout=60)
        with agent:
            yield Server(library, version, agent, process)
            agent.request("detach")
        assert process.alive(), "the target died"
    finally:
        err = process.stop()
    assert "Traceback" not in err, err


def test_tasks_lists_greenlets(server: Server) -> None:
    check_tasks(server.agent, server.port, server.hub_type, accepts=server.library == "eventlet")


def test_thread_shows_os_threads_only(server: Server) -> None:
    check_thread(server.agent, server.process.pid, server.library)


def test_top_names_the_busy_functions_not_the_hub(server: Server) -> None:
    check_top(server.agent, server.hub_loop, server.top_window)


def test_watch_and_trace_across_greenlet_switches(server: Server, tmp_path: Path) -> None:
    check_switching_call(server.agent)
    if (server.library, server.version) in EXPORT_CHECKED:
        check_export_spans(server.agent, server.process.pid, tmp_path)


FETCH = "green_app.fetch"
FETCH_SLEEP_MS = 20.0  # green_app.FETCH_SLEEP_S
BURN_MS = 8.0  # green_app.BURN_S: CPU another greenlet uses while each fetch is switched out
OTHER_GREENLETS = ("green_app.burn", "green_app.Fetches._burn", "green_app.handle_work", "green_app.app")


def greenlets(result: dict[str, Any], hub_type: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    (hub,) = [loop for loop in result["loops"] if loop.get("kind") == "greenlets"]
    assert hub["type"] == hub_type, hub
    return hub, {t["name"]: t for t in hub["tasks"]}


def check_tasks(agent: AgentClient, port: str, hub_type: str, accepts: bool) -> None:
    """A snapshot of greenlets that keep moving: the client and its handler run a request every
    20 ms, so one snapshot may catch them between states. Up to five snapshots; the last judges."""
    for attempt in range(5):
        try:
            _check_tasks(agent, port, hub_type, accepts)
            return
        except AssertionError:
            if attempt == 4:
                raise
            time.sleep(0.05)


def _check_tasks(agent: AgentClient, port: str, hub_type: str, accepts: bool) -> None:
    hub, tasks = greenlets(agent.request("tasks"), hub_type)
    assert hub["thread"] == "MainThread" and hub["running"] and hub["hub_state"] == "running its loop", hub
    assert "epoll" in hub["loop"] or "default" in hub["loop"], hub["loop"]
    for n in range(3):
        assert tasks[f"sleeper-{n}"]["awaits"]["kind"] == "timer", tasks[f"sleeper-{n}"]
        assert "(0.05)" in tasks[f"sleeper-{n}"]["awaits"]["what"], tasks[f"sleeper-{n}"]
        # outermost: the greenlet's function (gevent), or eventlet's GreenThread.main
        assert tasks[f"sleeper-{n}"]["frames"][-1]["function"] in ("sleeper", "GreenThread.main")
        assert any(f["function"] == "sleeper" for f in tasks[f"sleeper-{n}"]["frames"])
    assert tasks["event-waiter"]["awaits"]["kind"] == "event" and tasks["event-waiter"]["awaits"]["is_set"] is False
    assert tasks["queue-getter"]["awaits"]["kind"] == "queue" and tasks["queue-getter"]["awaits"]["size"] == 0
    assert tasks["lock-waiter"]["awaits"]["kind"] == "lock" and tasks["lock-waiter"]["awaits"]["locked"] is True
    assert tasks["reader"]["awaits"]["kind"] == "socket read"
    # the client greenlet waits for the reply or sleeps between requests, or is the one running
    # when the agent's thread took the GIL
    client_wait = tasks["client"]["awaits"]
    assert client_wait["kind"] in ("socket read", "timer", "running"), client_wait
    # The server's handler greenlet for the client's connection: reading the next request from it,
    # or answering (writing, or computing: running).
    handlers = [t for t in hub["tasks"] if any(f["function"].endswith("handle_one_request") for f in t["frames"])]
    assert handlers and all(t["state"] in ("pending", "running") for t in handlers), hub["tasks"]
    # Reading the server's answer: from the server's port.
    assert client_wait["kind"] != "socket read" or client_wait["peer"] == f"127.0.0.1:{port}", client_wait
    if accepts:  # eventlet's server loop is a greenthread waiting in accept (gevent's is a libev watcher)
        assert any(t["awaits"] == {"kind": "socket accept", "what": f"accept on 127.0.0.1:{port}"}
                   for t in hub["tasks"]), [t["awaits"] for t in hub["tasks"]]
    assert all(t["state"] in ("pending", "running", "not started") for t in hub["tasks"])


def check_thread(agent: AgentClient, pid: int, library: str) -> None:
    result = agent.request("thread", {"interval_ms": 300})
    main, *others = result["threads"]
    assert main["name"] == "MainThread", result["threads"]
    # Besides it only the library's own thread pool (gevent's resolver runs getaddrinfo there), never the agent's.
    for other in others:
        assert any(library in f["file"] for f in other["frames"]) and not other["is_agent"], other
    assert main["native_id"] == pid and main["is_main"] and main["cpu_percent"] is not None
    assert result["agent_threads_hidden"] >= 2  # the listener, this client's thread(s)
    assert result["native_threads"] == [], result["native_threads"]  # the agent's threads are known


def _cpu_ns(agent: AgentClient) -> dict[str, int]:
    """CPU ns each busy function used so far, by its own time.thread_time (green_app.py)."""
    value = agent.request("inspect", {"expression": "(sys.modules['green_app'].CPU_NS[0], "
                                                    "sys.modules['green_app'].FETCHES.burnt[0])"})["value"]
    work, burn = ast.literal_eval(value["repr"])
    return {"green_app.handle_work": work, "green_app.burn": burn}


def check_top(agent: AgentClient, hub_loop: str, interval: float) -> None:
    """``top`` names the functions burning the CPU (ground truth: their own time.thread_time), not the hub."""
    before = _cpu_ns(agent)
    cpu_before = agent.request("thread")["threads"][0]["cpu_seconds"]
    summaries = [m.data for m in agent.stream("top", {"interval": interval, "limit": 1, "functions": 200})
                 if isinstance(getattr(m, "data", None), dict) and m.data.get("type") == "summary"]
    after = _cpu_ns(agent)
    cpu_after = agent.request("thread")["threads"][0]["cpu_seconds"]
    functions = summaries[-1]["functions"]
    rows = {f["function"]: f for f in functions}
    named = [f for f in functions if "[calls returned between samples]" not in f["function"]]
    # The hottest of the app's own functions are the two that compute; the libraries' socket
    # wrappers may show above them where a system call gave the GIL up without a name the sampler
    # knows for one (documented in top.py).
    mine = [f["function"] for f in named if f["function"].startswith("green_app.") and f["self_percent"] > 0]
    assert set(mine[:2]) == set(before), (mine, functions[:6])
    # A greenlet's bursts between samples show where it next gave the GIL up (its send or recv, the
    # hub's loop: marked as such), or are shared out like the caught bursts when the hub ran them.
    # Nothing is lost: each one's share plus what ran unseen covers its CPU (share of the main thread's).
    unseen = sum(f["self_percent"] for f in functions if "between samples" in f["function"])
    for name in before:
        truth = 100.0 * (after[name] - before[name]) / 1e9 / max(1e-9, cpu_after - cpu_before)
        shown = rows[name]["total_percent"]
        # A sample's weight is the thread's CPU since the last one, which may hold both greenlets' bursts:
        # over a 3 s window the split between them moves by +-10 points run to run (24 runs on 3.9-3.14:
        # handle_work 51-72% shown for 60-64% true), once +16 and once -13 (burn, 3.13) in CI; their sum
        # stays within ~10 of the truth (checked below).
        assert truth - 16 <= shown + unseen and shown <= truth + 20, (name, rows[name], unseen, truth)
    together = sum(rows[name]["total_percent"] for name in before) + unseen
    truths = sum(100.0 * (after[n] - before[n]) / 1e9 / max(1e-9, cpu_after - cpu_before) for n in before)
    assert truths - 15 <= together <= truths + 10, (together, truths)
    hub_run = [f for name, f in rows.items() if name.endswith(hub_loop)]
    assert all(f["self_percent"] < 3 for f in hub_run), hub_run


def _fetches(agent: AgentClient) -> list[tuple[int, int, int, int]]:
    """The target's own record of its last fetches: (epoch ns at the start, wall ns inside the call,
    wall ns around it, CPU ns burn used meanwhile)."""
    value = agent.request("inspect", {"expression": "list(sys.modules['green_app'].FETCHES.records)[-50:]"})["value"]
    return [ast.literal_eval(child["value"]["repr"]) for child in value["children"]]


def _truth_of(agent: AgentClient, event: dict[str, Any],
              records: list[tuple[int, int, int, int]] | None = None) -> tuple[int, int, int, int]:
    """The target's record of the call an event reports: the one that started within 3 ms of it
    (fetches start 50 ms apart or more). Read again once: the caller records it just after the call."""
    for _ in range(2):
        near = [r for r in records or _fetches(agent) if abs(r[0] - event["start_ns"]) < 3_000_000]
        if near:
            return near[0]
        time.sleep(0.2)
    raise AssertionError(f"no fetch recorded by the target near {event['start_ns']}")


def _within(cost_ms: float, inner: int, outer: int) -> float:
    """A probe's interval holds the call's own (first line to last) and lies inside its caller's:
    ``inner <= cost <= outer``, to the rounding of its ms. Returns how much the probe added."""
    assert inner / 1e6 - 0.001 <= cost_ms <= outer / 1e6 + 0.001, (cost_ms, inner, outer)
    return cost_ms - inner / 1e6


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = [node]
    for child in node["children"]:
        out.extend(_nodes(child))
    return out


def check_switching_call(agent: AgentClient) -> None:
    """watch and trace of a call that switches greenlets mid-call (it sleeps FETCH_SLEEP_MS while
    another greenlet burns BURN_MS of CPU): watch's cost is the call's wall time, as the target
    measured it inside and around the call; trace's tree holds only the call's own greenlet's
    calls, its total is that same wall time, and the time switched out is awaited, nobody's self."""
    events = [m.data for m in agent.stream("watch", {"pattern": FETCH, "limit": 3})
              if isinstance(getattr(m, "data", None), dict) and "cost_ms" in m.data]
    assert len(events) == 3, events
    added = []
    for event in events:
        _, inner, outer, _ = _truth_of(agent, event)
        added.append(_within(event["cost_ms"], inner, outer))
        assert event["cost_ms"] >= FETCH_SLEEP_MS - 1, event
    # What the probe adds at the call's start and end: microseconds, unless this loaded machine
    # took the GIL or the CPU away right there.
    assert statistics.median(added) < 1.0, added
    trees = [m.data for m in agent.stream("trace", {"pattern": FETCH, "limit": 3, "all": True})
             if isinstance(getattr(m, "data", None), dict) and m.data.get("tree")]
    assert len(trees) == 3, trees
    quiet = 0
    for event in trees:
        root = event["tree"]
        _, inner, outer, burnt = _truth_of(agent, event)
        assert burnt >= 0.9 * BURN_MS * 1e6, (burnt, "burn did not run while this fetch was switched out")
        nodes = _nodes(root)
        names = {n["function"] for n in nodes}
        assert root["function"] == FETCH and not names & set(OTHER_GREENLETS), sorted(names)
        _within(root["total_ms"], inner, outer)
        assert abs(root["total_ms"] - event["cost_ms"]) < 0.001
        own = sum(n["self_ms"] for n in nodes)
        awaited = sum(n.get("awaited_ms", 0.0) for n in nodes)
        # total = self + awaited + the children's totals, at every node: so over the tree, the
        # root's total is every node's self plus every node's own awaited time (4-decimal rounding).
        assert abs(own + awaited - root["total_ms"]) < 0.001 * len(nodes) + 0.001, (own, awaited, root)
        assert awaited >= FETCH_SLEEP_MS - 1 and sum(n.get("switches", 0) for n in nodes) >= 1, root
        # The other greenlet's 8 ms of CPU is not this call's own time (its own code: well under a ms;
        # a preemption of this process while it ran could add to it: so two of the three calls).
        quiet += own < burnt / 1e6 / 2
    assert quiet >= 2, [(e["tree"]["self_ms"], e["cost_ms"]) for e in trees]


def check_export_spans(agent: AgentClient, pid: int, tmp_path: Path) -> None:
    """``peeka export --trace`` of the switching call: each tree's spans are the call's own
    greenlet's, the root span lasts the call's wall time and its children lie within it."""
    spans_file = tmp_path / "spans.jsonl"
    exporter = subprocess.Popen([sys.executable, "-m", "peeka", "export", "--pid", str(pid), "--trace", FETCH,
                                 "--spans-file", str(spans_file), "--interval", "1", "--overhead-budget", "0",
                                 "--keep-agent", "--metrics-address", "127.0.0.1:0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        spans: list[dict[str, Any]] = []
        while time.monotonic() < deadline and sum(s["name"] == FETCH for s in spans) < 3:
            time.sleep(0.5)
            lines = spans_file.read_text().splitlines() if spans_file.exists() else []
            spans = [s for line in lines for rs in json.loads(line)["resourceSpans"]
                     for ss in rs["scopeSpans"] for s in ss["spans"]]
        records = _fetches(agent)  # the target keeps its last 200 fetches, 50 of them read at a time
    finally:
        exporter.terminate()
        _, err = exporter.communicate(timeout=30)
    roots = [s for s in spans if s["name"] == FETCH]
    assert len(roots) >= 3, (len(spans), err[-2000:])
    names = {s["name"] for s in spans}
    assert not names & set(OTHER_GREENLETS), sorted(names)
    for root in sorted(roots, key=lambda r: int(r["startTimeUnixNano"]))[-3:]:
        start, end = int(root["startTimeUnixNano"]), int(root["endTimeUnixNano"])
        _, inner, outer, _ = _truth_of(agent, {"start_ns": start}, records)
        _within((end - start) / 1e6, inner, outer)
        for child in (s for s in spans if s.get("parentSpanId") == root["spanId"]):
            assert start <= int(child["startTimeUnixNano"]) <= int(child["endTimeUnixNano"]) <= end, child
