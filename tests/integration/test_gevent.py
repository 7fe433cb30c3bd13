"""gevent targets (issue 13, part 3): a monkey-patched gevent WSGI server on every Python 3.9-3.14
where gevent's wheels install (tests/targets/gevent_wsgi.py), attached the real way.

What a user checks by eye: ``tasks`` lists the greenlets under their hub like asyncio tasks, each
with what it waits on; ``thread`` lists OS threads only (MainThread = pid, the agent's hidden);
``top`` names the request handler burning the CPU, not the hub's loop; ``watch`` and ``trace`` of a
function that switches greenlets mid-call: what they report (the call's wall time, other greenlets'
work included; trace's tree also holds the calls other greenlets made meanwhile: not fixed yet).
"""

from __future__ import annotations

import ast
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import VERSIONS, Target, gevent_site, python_for

from peeka.attach import attach
from peeka.client import AgentClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module", params=VERSIONS)
def client(request: pytest.FixtureRequest) -> Iterator[tuple[AgentClient, Target]]:
    python = python_for(request.param)
    env = gevent_site(request.param, python)
    process = Target(python, "gevent_wsgi.py", env=env)
    try:
        agent, _ = attach(process.pid, timeout=60)
        with agent:
            yield agent, process
            agent.request("detach")
        assert process.alive(), "the target died"
    finally:
        err = process.stop()
    assert "Traceback" not in err, err


def _greenlets(result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    (hub,) = [loop for loop in result["loops"] if loop.get("kind") == "greenlets"]
    return hub, {t["name"]: t for t in hub["tasks"]}


def test_tasks_lists_greenlets(client: tuple[AgentClient, Target]) -> None:
    # A snapshot of greenlets that keep moving: the client and its handler run a request every
    # 20 ms, so one snapshot may catch them between states. Up to five snapshots; the last judges.
    agent, process = client
    for attempt in range(5):
        try:
            _check_tasks(agent, process)
            return
        except AssertionError:
            if attempt == 4:
                raise
            time.sleep(0.05)


def _check_tasks(agent: AgentClient, process: Target) -> None:
    hub, tasks = _greenlets(agent.request("tasks"))
    assert hub["type"] == "gevent.hub.Hub" and hub["thread"] == "MainThread" and hub["running"], hub
    assert "epoll" in hub["loop"] or "default" in hub["loop"], hub["loop"]
    for n in range(3):
        assert tasks[f"sleeper-{n}"]["awaits"]["kind"] == "timer", tasks[f"sleeper-{n}"]
        assert tasks[f"sleeper-{n}"]["frames"][-1]["function"] == "sleeper"
    assert tasks["event-waiter"]["awaits"]["kind"] == "event" and tasks["event-waiter"]["awaits"]["is_set"] is False
    assert tasks["queue-getter"]["awaits"]["kind"] == "queue" and tasks["queue-getter"]["awaits"]["size"] == 0
    assert tasks["lock-waiter"]["awaits"]["kind"] == "lock" and tasks["lock-waiter"]["awaits"]["locked"] is True
    assert tasks["reader"]["awaits"]["kind"] == "socket read"
    port = process.ready_line.split()[2]
    client_wait = tasks["client"]["awaits"]
    # the client greenlet waits for the reply or sleeps between requests, or is the one running
    # when the agent's thread took the GIL
    assert client_wait["kind"] in ("socket read", "timer", "running"), client_wait
    # The server's handler greenlet for the client's connection: reading the next request from it.
    handlers = [t for t in hub["tasks"] if any(f["function"].endswith("handle_one_request") for f in t["frames"])]
    assert handlers and all(t["state"] in ("pending", "running") for t in handlers)
    assert any(port in str(t["awaits"]) or t["awaits"]["kind"] != "socket read" for t in tasks.values())
    assert all(t["state"] in ("pending", "running", "not started") for t in hub["tasks"])


def test_thread_shows_os_threads_only(client: tuple[AgentClient, Target]) -> None:
    agent, process = client
    result = agent.request("thread", {"interval_ms": 300})
    main, *others = result["threads"]
    assert main["name"] == "MainThread", result["threads"]
    # Besides it only gevent's own thread pool (its resolver runs getaddrinfo there), never the agent's.
    for other in others:
        assert any("gevent" in f["file"] for f in other["frames"]) and not other["is_agent"], other
    assert main["native_id"] == process.pid and main["is_main"] and main["cpu_percent"] is not None
    assert result["agent_threads_hidden"] >= 2  # the listener, this client's thread(s)
    assert result["native_threads"] == [], result["native_threads"]  # the agent's threads are known


def test_top_names_the_handler_not_the_hub(client: tuple[AgentClient, Target]) -> None:
    agent, _ = client
    before = ast.literal_eval(agent.request("inspect", {"expression": "sys.modules['__main__'].CPU_NS"})["value"]["repr"])[0]
    cpu_before = agent.request("thread")["threads"][0]["cpu_seconds"]
    summaries = [m.data for m in agent.stream("top", {"interval": 3, "limit": 1, "functions": 200})
                 if isinstance(getattr(m, "data", None), dict) and m.data.get("type") == "summary"]
    after = ast.literal_eval(agent.request("inspect", {"expression": "sys.modules['__main__'].CPU_NS"})["value"]["repr"])[0]
    cpu_after = agent.request("thread")["threads"][0]["cpu_seconds"]
    rows = {f["function"]: f for f in summaries[-1]["functions"]}
    named = [f for f in summaries[-1]["functions"] if "[calls returned between samples]" not in f["function"]]
    # The hottest of the app's own functions; gevent's socket wrappers may show above it where a
    # system call gave the GIL up without a name the sampler knows for one (documented in top.py).
    mine = [f["function"] for f in named if f["function"].startswith("__main__.")]
    assert mine[0] == "__main__.handle_work", (mine, summaries[-1]["functions"][:6])
    truth = 100.0 * (after - before) / 1e9 / max(1e-9, cpu_after - cpu_before)  # of the main thread's CPU
    # A greenlet's bursts between samples show where it next gave the GIL up (its send or recv, the
    # hub's loop: marked as such), or are shared out like the caught bursts when the hub ran them.
    # Nothing is lost: the handler's share plus what ran unseen covers its CPU.
    shown = rows["__main__.handle_work"]["total_percent"]
    unseen = sum(f["self_percent"] for f in summaries[-1]["functions"] if "between samples" in f["function"])
    assert shown + unseen >= truth - 10, (rows["__main__.handle_work"], unseen, truth)
    assert shown <= 100
    hub_run = [f for name, f in rows.items() if name.endswith("Hub.run")]
    assert all(f["self_percent"] < 3 for f in hub_run), hub_run


def test_watch_and_trace_across_greenlet_switches(client: tuple[AgentClient, Target]) -> None:
    agent, _ = client
    events = [m.data for m in agent.stream("watch", {"pattern": "__main__.fetch", "limit": 3})
              if isinstance(getattr(m, "data", None), dict) and "cost_ms" in m.data]
    # A call's cost is its wall time: the 20 ms it was switched out (other greenlets ran) included.
    assert len(events) == 3 and all(e["cost_ms"] >= 19 for e in events), events
    trees = [m.data for m in agent.stream("trace", {"pattern": "__main__.fetch", "limit": 1})
             if isinstance(getattr(m, "data", None), dict) and m.data.get("tree")]
    root = trees[-1]["tree"]
    assert root["function"] == "__main__.fetch" and root["total_ms"] >= 19, root
    # What trace does not do yet: while the traced greenlet is switched out, the calls of the
    # greenlets that run meanwhile on its thread land in its tree (under gevent.hub.sleep here);
    # README says so. Its own calls are there.
    assert any(c["function"] == "gevent.hub.sleep" for c in root["children"]), root
