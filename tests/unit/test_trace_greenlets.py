"""trace across greenlet switches: a real greenlet switches out mid-call while another greenlet runs
known code; the recorder (switches.py watching the traced greenlet) leaves that code out of the
tree, puts the time switched out in the switching node's ``awaited`` (and every open node's total),
and puts the thread's profiler and greenlet's trace function back as they were.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest
from peeka_agent import probes, switches
from peeka_agent.commands import trace

pytestmark = pytest.mark.timing

greenlet = pytest.importorskip("greenlet", reason="greenlet is not installed here (the test extra has gevent)")


def leaf(x: int) -> int:
    return x + 1


def others_work() -> int:
    """What the other greenlet runs while the traced one is switched out: 20 ms of computing."""
    end = time.perf_counter() + 0.02
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def switching(hub: Any) -> int:
    x = leaf(1)
    hub.switch()
    return x + leaf(2)


class Agent:
    state: dict[str, Any] = {}


def test_tree_of_a_call_that_switches_out() -> None:
    stream = trace.Trace(Agent(), {"pattern": __name__ + ".switching"})
    trees: list[dict[str, Any]] = []

    def traced() -> None:
        call = probes.Call(probes.Probe(probes.Engine(), switching, __name__ + ".switching"), 0)
        recorder = trace.Recorder(stream, call)
        stream.active[call.thread] = recorder
        switches.follow(recorder, stream.green)
        assert recorder.greenlet is greenlet.getcurrent() and greenlet.gettrace() is not None
        recorder.start()
        started = time.perf_counter_ns()
        switching(hub)
        elapsed = time.perf_counter_ns() - started
        recorder.stop()
        del stream.active[call.thread]
        switches.drop(recorder, stream.green)
        recorder.fold()
        root = recorder.root or recorder._fold_state()
        root.total, root.count, root.awaited = elapsed, 1, recorder.switch_gaps
        trees.append(root.to_dict(0))

    def hub_run() -> None:
        others_work()
        worker.switch()  # back into the traced call

    worker = greenlet.greenlet(traced)
    hub = greenlet.greenlet(hub_run)
    worker.switch()
    assert sys.getprofile() is None and greenlet.gettrace() is None and not stream.green
    (tree,) = trees
    names = set()

    def walk(node: dict[str, Any]) -> None:
        names.add(node["function"])
        for child in node["children"]:
            walk(child)

    walk(tree)
    assert __name__ + ".others_work" not in names, names
    # The call that switched (greenlet's switch, a C method) holds the time out as its own awaited time.
    (switch,) = [c for c in tree["children"] if c["function"].endswith("switch")]
    assert switch["switches"] == 1 and switch["awaited_ms"] >= 19, switch
    assert switch["self_ms"] < 5 and tree["self_ms"] < 5, tree
    own = tree["self_ms"] + sum(c["self_ms"] for c in tree["children"])
    assert abs(own + switch["awaited_ms"] - tree["total_ms"]) < 0.01, tree
    assert [c["count"] for c in tree["children"] if c["function"].endswith(".leaf")] == [2]
