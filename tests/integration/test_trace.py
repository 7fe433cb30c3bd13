"""trace's contract on every Python here, against a real target whose agent started in-process.

The target (tests/targets/trace_target.py) runs tests/targets/trace_work.py's functions when told on
its stdin; the test traces them through the real agent protocol (AgentClient.stream) and checks the
trees: costs, collapsed repeats, C functions and their exceptions, generators and coroutines,
recursion, --depth, --min-cost, library summaries and --all, a call long enough to be folded on the
host's thread, two traces on two threads at once, and a cancel in the middle of a traced call
leaving no profiler on the thread.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import VERSIONS, Target, agent_library, python_for
from test_commands_inprocess import CmdTarget

from peeka.client import AgentClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120), pytest.mark.parallel]


class TraceTarget(CmdTarget):
    """The target, told what to run on its stdin."""

    def say(self, line: str) -> None:
        stdin = self.process.proc.stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def expect(self, prefix: str) -> str:
        stdout = self.process.proc.stdout
        assert stdout is not None
        line = stdout.readline()
        assert line.startswith(prefix), line
        return line

    def run(self, name: str) -> None:
        self.say(name)
        self.expect("done " + name)

    def open_trace(self, client: AgentClient, pattern: str, **args: Any) -> Iterator[Any]:
        """A trace stream of trace_work.PATTERN, once its probe is in place."""
        stream = client.stream("trace", dict(args, pattern="trace_work." + pattern))
        first = next(stream)
        assert first.data["functions"] == ["trace_work." + pattern], first.data
        deadline = time.monotonic() + 10
        while True:
            self.say("probed " + pattern)
            if self.expect("done probed").split()[-1] == "true":
                return stream
            assert time.monotonic() < deadline, "the probe was never installed"
            time.sleep(0.01)

    def trace(self, pattern: str, run: str | None = None, n: int = 1, **args: Any) -> list[dict[str, Any]]:
        """Start a trace of trace_work.PATTERN, run ``run`` (default: the function itself) and return n trees."""
        with self.client() as client:
            stream = self.open_trace(client, pattern, limit=n, timeout=30, **args)
            self.run(run or pattern)
            events = []
            for message in stream:
                if message.type == "end":
                    assert message.reason == "limit", message
                    break
                events.append(message.data)
        assert len(events) == n
        return events


@pytest.fixture(scope="module", params=VERSIONS)
def target(request: pytest.FixtureRequest) -> Iterator[TraceTarget]:
    tmp = Path(tempfile.mkdtemp(prefix="pk-"))  # short: a Unix socket path has ~100 bytes
    try:
        env = {"TMPDIR": str(tmp), "PYTHONPATH": str(agent_library(tmp)), "PYTHONDONTWRITEBYTECODE": "1"}
        process = Target(python_for(request.param), "trace_target.py", env=env)
        try:
            yield TraceTarget(process, request.param)
            assert process.alive(), "the target died while traced"
        finally:
            assert process.stop() == "", "the target printed to stderr"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def kids(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["function"]: c for c in node["children"]}


def find(node: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Every node of that function anywhere in the tree."""
    found = [node] if node["function"] == name else []
    for c in node["children"]:
        found += find(c, name)
    return found


def test_repeats_collapse_with_count_min_max_total(target: TraceTarget) -> None:
    (event,) = target.trace("work")
    tree = event["tree"]
    assert tree["function"] == "trace_work.work" and tree["count"] == 1
    below = kids(tree)
    step = below["trace_work.step"]
    assert step["count"] == 200
    assert 0 < step["min_ms"] <= step["max_ms"] <= step["total_ms"] <= tree["total_ms"]
    assert step["min_ms"] * 200 <= step["total_ms"] + 1e-3 and step["total_ms"] <= step["max_ms"] * 200 + 1e-3
    inner = kids(step)
    assert inner["trace_work.tiny"]["count"] == 200
    assert any(name.endswith("len") and c.get("c") and c["count"] == 200 for name, c in inner.items()), inner.keys()
    assert sum(c["total_ms"] for c in tree["children"]) <= tree["total_ms"]
    # A C function that raised is marked; the Python function that caught it is not.
    parse = below["trace_work.failing_parse"]
    (raised,) = [c for c in parse["children"] if c.get("c")]
    assert raised["exceptions"] == 1 and "exceptions" not in parse


def test_recursion_nests(target: TraceTarget) -> None:
    (event,) = target.trace("recursive")
    node, depth = event["tree"], 0
    while node["children"]:
        (node,) = node["children"]
        assert node["function"] == "trace_work.fact" and node["count"] == 1
        depth += 1
    assert depth == 6


def test_generator_consumed_inside_is_one_call(target: TraceTarget) -> None:
    (event,) = target.trace("consume")
    (gen,) = find(event["tree"], "trace_work.numbers")  # below sum(), a C function
    assert gen["count"] == 1, gen  # resumed five times: one call, all its time
    assert kids(gen)["trace_work.tiny"]["count"] == 5


def test_coroutine_cost_spans_its_awaits(target: TraceTarget) -> None:
    (event,) = target.trace("fetch", run="fetch_sync")
    tree = event["tree"]
    assert event["kind"] == "coroutine" and tree["total_ms"] >= 20.0 and tree["resumes"] == 2
    below = kids(tree)
    assert below["trace_work.tiny"]["count"] == 1 and "trace_work.fetch" not in below, below.keys()
    pause = below["trace_work.pause"]
    # Each awaited call is one node call from its first start to its final return: the 10 ms
    # sleep it awaits is in it (on the innermost node, as awaited time), not lost.
    assert pause["count"] == 2 and pause["resumes"] == 2 and pause["min_ms"] >= 10.0, pause
    (sleep,) = [c for c in pause["children"] if c["function"].endswith(".sleep")]
    # awaited: the time the loop ran other things, most of the sleep (its start and its wake-up
    # run in the coroutines, as their own time)
    assert sleep["total_ms"] >= 20.0 and sleep["awaited_ms"] >= 10.0
    assert "awaited_ms" not in pause and "awaited_ms" not in tree
    # The numbers add up: the handler's total is its own time plus its children's.
    assert abs(tree["self_ms"] + sum(c["total_ms"] for c in tree["children"]) - tree["total_ms"]) < 0.05


def test_depth_min_cost_and_library(target: TraceTarget) -> None:
    (event,) = target.trace("deep", depth=3)
    node, levels = event["tree"], 0
    while node["children"]:
        (node,) = node["children"]
        levels += 1
    assert levels == 3
    (event,) = target.trace("alpha", min_cost=20)  # sleep(0.05) stays, tiny goes
    assert [c["function"] for c in event["tree"]["children"]] == ["time.sleep"]
    assert event["tree"]["hidden"] == 1
    (event,) = target.trace("uses_library")
    (dumps,) = event["tree"]["children"]
    assert dumps["function"] == "json.dumps" and dumps["library"] and dumps["children"] == []
    (event,) = target.trace("uses_library", all=True)
    (dumps,) = event["tree"]["children"]
    assert "library" not in dumps and dumps["children"], dumps


def test_long_call_folds_on_the_host_and_stays_exact(target: TraceTarget) -> None:
    (event,) = target.trace("many")  # many(4000): 8,000 log entries, folded in the writer thread
    assert kids(event["tree"])["trace_work.tiny"]["count"] == 4000
    with target.client() as client:  # 40,000 calls: several folds of 16,384 log entries on the host
        stream = target.open_trace(client, "many", limit=1, timeout=30)
        target.say("many_big")
        target.expect("done many_big")
        (event,) = [m.data for m in stream if m.type == "event"]
    assert kids(event["tree"])["trace_work.tiny"]["count"] == 40000


def test_two_threads_traced_at_once(target: TraceTarget) -> None:
    with target.client() as first, target.client() as second:
        a = target.open_trace(first, "alpha", limit=1, timeout=30)
        b = target.open_trace(second, "beta", limit=1, timeout=30)
        target.run("pair")
        (ta,) = [m.data["tree"] for m in a if m.type == "event"]
        (tb,) = [m.data["tree"] for m in b if m.type == "event"]
    assert set(kids(ta)) == {"time.sleep", "trace_work.tiny"}
    assert set(kids(tb)) == {"time.sleep", "trace_work.step"}
    assert kids(kids(tb)["trace_work.step"])["trace_work.tiny"]["count"] == 1


def test_cancel_mid_call_leaves_no_profiler(target: TraceTarget) -> None:
    with target.client() as client:
        stream = target.open_trace(client, "spin", timeout=60)
        target.say("spin")
        target.expect("spinning")
        time.sleep(0.1)
        with target.client() as other:
            other.request("reset", {})  # takes the probe away while spin() runs
        end = [m for m in stream if m.type == "end"]
        assert end and end[0].reason == "reset", end
    target.say("")
    line = target.expect("done spin")
    assert '"profiler": "None"' in line and '"result": "stopped"' in line, line
