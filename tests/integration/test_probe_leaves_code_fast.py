"""A function probed and then left (a watch that ended, a probe the governor duty-cycles off, a
detach), or run below a traced call (trace, export's traced spans), runs the same instructions as
before.

Ground truth: the target compares the instructions its hot function runs now, as the interpreter
quickened and specialized them, with those of a fresh copy of the same code warmed the same way
(tests/targets/pairs_target.py). On 3.12, instrumenting a code object splits its superinstructions
(LOAD_FAST__LOAD_CONST...) and removing the events never pairs them again, so a probe left the
function a few percent slower for good; the agent puts the pairs back in the code itself (or,
where it cannot, gives such a function a fresh copy of its code). A traced call's profiler
(sys.setprofile, built on sys.monitoring on 3.12) instruments every code that runs while it is on,
nested functions and frames that never return (the target's main loop) included: after the trees
their pairs are put back too. On the other versions the function keeps its own code object.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
from conftest import VERSIONS, peeka_cli, python_for
from peeka_agent.protocol import End

from peeka.attach import attach, detach

pytestmark = [pytest.mark.integration, pytest.mark.parallel, pytest.mark.timeout(120)]


def check(target: Any) -> dict[str, Any]:
    target.proc.stdin.write("check\n")
    target.proc.stdin.flush()
    return json.loads(target.proc.stdout.readline())


def assert_all_fast(found: dict[str, Any]) -> None:
    """leaf, the nested bump and the never-returning main loop run their pairs as a fresh copy has them."""
    assert found["now"] == found["fresh"], found
    assert found["nested"]["now"] == found["nested"]["fresh"], found["nested"]
    # (3.11 pairs a code once it is warm, so its fresh copy, never run, has none yet: every pair the
    # copy has, the running loop has.)
    assert all(pair in found["loop"]["now"] for pair in found["loop"]["fresh"]), found["loop"]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_probe_taken_off_leaves_the_function_as_fast_as_before(spawn, version: str) -> None:
    target = spawn(python_for(version), "pairs_target.py")
    before = check(target)
    assert_all_fast(before)
    if version == "3.12":  # what the test is about: there are pairs to lose
        assert any("__" in op for op in before["now"]), before
        assert before["loop"]["fresh"] and any("__" in op for op in before["nested"]["now"]), before

    out = peeka_cli("watch", str(target.pid), "__main__.leaf", "-n", "3", "--json", "--timeout", "30")
    assert out.returncode == 0, out.stderr
    after_watch = check(target)
    assert after_watch["now"] == after_watch["fresh"], after_watch

    # A watch under a budget far below what the hot leaf costs: the governor pauses its probe
    # (duty cycle) most of the time. While paused the function runs as it did unprobed.
    proc = subprocess.Popen([sys.executable, "-m", "peeka", "watch", str(target.pid), "__main__.leaf",
                             "--overhead-budget", "1", "-n", "100000000", "--timeout", "6", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3.5)
    during = [check(target) for _ in range(5)]
    out_text, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert any('"duty"' in line or "probed" in line for line in (out_text + err).splitlines()), (out_text, err)
    assert any(d["now"] == d["fresh"] for d in during), during
    after = check(target)
    assert after["now"] == after["fresh"], after

    detach(target.pid)
    last = check(target)
    assert last["now"] == last["fresh"], last
    if version != "3.12":
        assert last["same_code"], "the function got its own code object back"


@pytest.mark.parametrize("version", VERSIONS)
def test_functions_a_traced_call_ran_are_as_fast_as_before(spawn, version: str) -> None:
    target = spawn(python_for(version), "pairs_target.py")
    out = peeka_cli("trace", str(target.pid), "__main__.handle", "-n", "3", "--json", "--timeout", "30")
    assert out.returncode == 0, out.stderr
    assert "__main__.leaf" in out.stdout, out.stdout[:500]  # leaf ran below the traced calls
    after_trace = check(target)
    assert_all_fast(after_trace)

    # A function another stream probes keeps its code (its probe's events are on it): a watch on
    # leaf that runs through a trace of handle still sees leaf's calls after the trace ended.
    watcher, _ = attach(target.pid, timeout=60)
    with watcher:
        watch = watcher.stream("watch", {"pattern": "__main__.leaf", "expression": "result", "limit": 10_000_000,
                                           "timeout": 20})
        next(watch)
        out = peeka_cli("trace", str(target.pid), "__main__.handle", "-n", "3", "--json", "--timeout", "30")
        assert out.returncode == 0, out.stderr
        ended_ns = time.time_ns()  # calls that started after the trace's end (the outbox holds older ones)
        seen_after = 0
        deadline = time.monotonic() + 15
        for message in watch:
            if isinstance(message, End):
                break  # (its timeout: no call seen after the trace)
            if message.data["start_ns"] > ended_ns:
                seen_after += 1
            if seen_after >= 50 or time.monotonic() > deadline:
                break
        watch.close()
    assert seen_after >= 50, seen_after

    client, _ = attach(target.pid, timeout=60)
    with client:
        stream = client.stream("export", {"trace": ["__main__.handle"], "interval": 0.3})
        spans = 0
        for message in stream:
            assert not isinstance(message, End), message.reason
            if message.data.get("kind") == "spans":
                spans += sum(1 for s in message.data["spans"] if s["name"] == "__main__.leaf")
            if spans >= 10:
                break
        stream.close()
        client.request("ping", {})  # (the stream's end is handled before the next request)
    time.sleep(0.5)  # (the last flush's refresh)
    after_export = check(target)
    assert_all_fast(after_export)
    detach(target.pid)
