"""top weighs samples by CPU (issue 13, part 2): ground truth from a real target on every Python 3.9-3.14.

The target (tests/targets/cpu_truth.py) has threads that only wait (sleep, Event.wait, select,
selectors/epoll, queue.get, Lock.acquire, accept, recv), an idle asyncio loop, a busy asyncio loop
(a callback computing 8 ms every 16 ms), a thread that computes without a pause, one that computes
10 ms then sleeps 20 ms, and one that computes 1 ms then sleeps 20 ms; each computing function
adds its own thread CPU time (time.thread_time_ns) to CPU_NS, read before and after with
``inspect``: the ground truth each share is checked against (10 points). One target per version,
the agent started in-process; one connection for every check.
"""

from __future__ import annotations

import ast
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import VERSIONS, Target, agent_library, python_for
from test_commands_inprocess import CmdTarget

from peeka.client import AgentClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAITERS = ("sleeper", "selector_wait", "poller_wait", "getter", "locker", "acceptor", "receiver",
           "idle_loop", "EpollSelector.select", "selectors.select", "Condition.wait", "threading.wait")


@pytest.fixture(scope="module", params=VERSIONS)
def client(request: pytest.FixtureRequest) -> Iterator[AgentClient]:
    python = python_for(request.param)
    tmp = Path(tempfile.mkdtemp(prefix="pk-"))
    env = {"TMPDIR": str(tmp), "PYTHONPATH": str(agent_library(tmp)), "PYTHONDONTWRITEBYTECODE": "1"}
    process = None
    try:
        process = Target(python, "cpu_truth.py", "inprocess", env=env)
        with CmdTarget(process, request.param).client() as c:
            yield c
        assert process.alive(), "the target died while top ran"
    finally:
        if process is not None:
            process.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _cpu(client: AgentClient) -> dict[str, int]:
    return ast.literal_eval(client.request("inspect", {"expression": "sys.modules['__main__'].CPU_NS"})["value"]["repr"])


def _shares(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    used = {k: after[k] - before[k] for k in after}
    total = sum(used.values())
    return {k: 100.0 * v / total for k, v in used.items()}


def _summary(client: AgentClient, args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    before = _cpu(client)
    events = [m.data for m in client.stream("top", dict({"functions": 500, "rate": 100}, **args))
              if getattr(m, "type", "") == "event" and isinstance(m.data, dict)
              and m.data.get("type") in ("summary", "profile")]
    return events[-1], _shares(before, _cpu(client))


def _rows(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["function"]: f for f in summary["functions"]}


def test_top_ranks_by_cpu_not_by_waiting(client: AgentClient) -> None:
    summary, truth = _summary(client, {"interval": 4, "limit": 1})
    rows = _rows(summary)
    assert summary["weighting"] == "cpu"
    # The busy threads' functions: each one's share of the CPU top caught matches its own clock.
    # The four functions add up to nearly all the target's CPU, so shares of it compare directly.
    for function in ("spin_work", "part_work", "handle"):
        shown = rows[f"__main__.{function}"]["total_percent"]
        assert abs(shown - truth[function]) <= 10, (function, shown, truth, summary["functions"][:12])
    # The 1 ms bursts: (almost) never caught running (the sampler takes the GIL only when it is
    # given up, here at the sleep), so their CPU is under the caller, marked as run between
    # samples, never the sleeping caller's own.
    cruncher = rows["__main__.cruncher"]
    assert abs(cruncher["total_percent"] - truth["crunch"]) <= 10, (cruncher, truth)
    assert cruncher["self_percent"] < 2, cruncher
    unseen = rows.get("__main__.cruncher [calls returned between samples]", {"self_percent": 0.0})["self_percent"]
    caught = rows.get("__main__.crunch", {"total_percent": 0.0})["total_percent"]
    assert abs(unseen + caught - truth["crunch"]) <= 10, (unseen, caught, truth)
    # Waiting is not hot: what waiting functions show is their wakeups' little CPU.
    for label, row in rows.items():
        if any(w in label for w in WAITERS):
            assert row["self_percent"] < 3, row
    assert summary["threads_idle"] >= 9, summary  # 8 waiting threads, the idle loop, the main thread
    assert rows["__main__.compute"] == summary["functions"][0]  # where every busy thread computes


def test_idle_counts_every_sample(client: AgentClient) -> None:
    summary, _ = _summary(client, {"interval": 1, "limit": 1, "idle": True})
    rows = _rows(summary)
    assert summary["weighting"] == "wall" and summary["threads_idle"] == 0
    # Wall-clock shares: each waiting thread is one of 14 sampled threads, waiting all the time.
    for waiting in ("__main__.sleeper", "__main__.selector_wait", "__main__.receiver"):
        assert rows[waiting]["total_percent"] > 3, rows[waiting]


def test_record_and_export_are_weighted_too(client: AgentClient) -> None:
    profile, truth = _summary(client, {"record": 3})
    lines = {line: count for line, count in profile["collapsed"]}
    total = sum(lines.values())
    spin = 100.0 * sum(n for line, n in lines.items() if ";__main__.spin_work;" in line) / total
    assert abs(spin - truth["spin_work"]) <= 10, (spin, truth)
    assert not any(line.endswith(("__main__.sleeper", "__main__.receiver", "__main__.getter")) for line in lines)
    # The exporter's top-function shares (peeka_top_function_share) come from the same weighting.
    stream = client.stream("export", {"monitor": ["__main__.part_work"], "interval": 1.5})
    stats = []
    for message in stream:
        data = getattr(message, "data", None)
        if isinstance(data, dict) and data.get("kind") == "stats":
            stats.append(data)
            if len(stats) == 2:
                break
    stream.close()
    top = dict(stats[-1]["top"])
    assert max(top, key=top.__getitem__) == "__main__.compute", top
    assert top["__main__.compute"] > 0.6, top
    assert not any(share > 0.05 for name, share in top.items() if any(w in name for w in WAITERS)
                   and "between samples" not in name), top


def test_thread_n_ranks_by_cpu(client: AgentClient) -> None:
    before = _cpu(client)
    busiest = client.request("thread", {"interval_ms": 1000, "top": 4})
    shares = _shares(before, _cpu(client))
    names = [t["name"] for t in busiest["threads"]]
    assert "spinner" in names[:2] and {"loop-busy", "part"} <= set(names), busiest["threads"]
    by_name = {t["name"]: t for t in busiest["threads"]}
    # Each thread's CPU share over the interval, from its clock, against what its function measured.
    total = sum(by_name[n]["cpu_percent"] for n in ("spinner", "part", "loop-busy"))
    for name, function in (("spinner", "spin_work"), ("part", "part_work"), ("loop-busy", "handle")):
        share = 100.0 * by_name[name]["cpu_percent"] / total
        assert abs(share - shares[function] * 100.0 / (100.0 - shares["crunch"])) <= 10, (name, share, shares)
    everything = {t["name"]: t for t in client.request("thread", {"interval_ms": 500})["threads"]}
    for waiting in ("sleeper", "waiter", "selector", "poller", "getter", "locker", "acceptor", "receiver"):
        assert everything[waiting]["cpu_percent"] < 3, everything[waiting]
