"""trace's fold: the tree from a log of real profiler events, the same however the log is split.

The traced call runs for real under the recorder's own profile function (sys.setprofile, in this
interpreter); the log is then folded at once, and again in small pieces as the host's thread does
every FOLD_AT entries, and both trees must be identical and right.
"""

from __future__ import annotations

import sys
from typing import Any

from peeka_agent import probes
from peeka_agent.commands import trace


def leaf(x: int) -> int:
    return x + 1


def numbers(n: int) -> Any:
    for i in range(n):
        yield leaf(i)


def work() -> int:
    total = sum(leaf(i) for i in range(3))
    total += sum(numbers(4))
    try:
        divmod(1, 0)
    except ZeroDivisionError:
        total += 1
    return total


class Agent:
    state: dict[str, Any] = {}


def recorded() -> tuple[trace.Trace, probes.Call, list[Any]]:
    """The log of one real call of work(), recorded the way the agent records it."""
    stream = trace.Trace(Agent(), {"pattern": __name__ + ".work"})
    call = probes.Call(probes.Probe(probes.Engine(), work, __name__ + ".work"), 0)
    recorder = trace.Recorder(stream, call)
    recorder.start()
    work()
    recorder.stop()
    assert sys.getprofile() is None
    log = list(recorder.log)
    # The code swap (3.9-3.11) starts the profiler before the call of the original code, as here;
    # sys.monitoring (3.12+) starts it inside the call: the log begins after the root's call there.
    if probes.MONITORING:
        log = log[[i for i, e in enumerate(log) if type(e) is tuple and e[1] is work.__code__][0] + 1 :]
    return stream, call, log


def fold(stream: trace.Trace, call: probes.Call, log: list[Any], piece: int) -> dict[str, Any]:
    recorder = trace.Recorder(stream, call)
    for i in range(0, len(log), piece):
        recorder.log[:] = log[i : i + piece]
        recorder.fold()
    root = recorder.root or recorder._fold_state()
    return root.to_dict(0)


def test_fold_in_pieces_gives_the_same_tree() -> None:
    stream, call, log = recorded()
    whole = fold(stream, call, log, len(log))
    for piece in (1, 2, 3, 7):
        assert fold(stream, call, log, piece) == whole
    kids = {c["function"]: c for c in whole["children"]}
    assert kids["builtins.sum"]["count"] == 2 and kids["builtins.sum"]["c"]
    below_sum = {c["function"]: c for c in kids["builtins.sum"]["children"]}
    # Generators resumed by sum(): one call each, with all their time
    (genexpr,) = [c for name, c in below_sum.items() if "genexpr" in name]
    assert genexpr["count"] == 1 and [(c["function"], c["count"]) for c in genexpr["children"]] == [
        (__name__ + ".leaf", 3)
    ]
    gen = below_sum[__name__ + ".numbers"]
    assert gen["count"] == 1 and [(c["function"], c["count"]) for c in gen["children"]] == [(__name__ + ".leaf", 4)]
    assert kids["builtins.divmod"]["exceptions"] == 1 and kids["builtins.divmod"]["c"]
    assert all(c["min_ms"] <= c["max_ms"] <= c["total_ms"] for c in whole["children"])


def test_depth_cut_and_events_outside_the_call() -> None:
    stream, call, log = recorded()
    stream.max_depth = 1
    tree = fold(stream, call, log, 5)
    assert tree["children"] and all(c["children"] == [] for c in tree["children"])
    # The agent's own frames around the traced call leave no trace: after it returned, and with
    # the code swap before the call of the original code too.
    noise = [12345, (1, len), 12346, (2, leaf.__code__, -1), 12347]
    assert fold(stream, call, log + noise, 4) == fold(stream, call, log, 4)
    if not probes.MONITORING:
        assert fold(stream, call, noise + log, 4) == fold(stream, call, log, 4)
