"""``--overhead-budget`` on the CLI's probe streams: the real ``peeka watch`` (the CLI on the
target's Python) against a target at full speed on every Python, watching a hot leaf called
millions of times a second and a cold function beside it. The target's own throughput (units of
work per CPU second, against an untouched twin in the same windows: see test_export_governor)
stays within the budget plus noise; the governor said what it did on stderr-bound JSON events
and counted every call it kept from the stream; the cold function's calls all arrived (the
target numbers them). Without the option nothing of the governor shows (it is off by default).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from typing import Any

import pytest
from conftest import ROOT, VERSIONS, python_for
from test_export_governor import ALLOWED_LOSS, WINDOW, Windows

from peeka.attach import attach, detach

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150), pytest.mark.timing]

# The CLI runs on the target's own Python, from the client venv scripts/setup.sh made for it (this
# test's own venv for its version; this test's Python where a venv is missing).
CLIENTS = {v: ROOT / (".venv" + v.replace(".", "")) / "bin" / "python" for v in VERSIONS}
CLIENTS[f"{sys.version_info[0]}.{sys.version_info[1]}"] = ROOT / ".venv" / "bin" / "python"
SETTLE = 1.5  # s after the stream started before its cost is judged (the first plans)
JUDGED = 3.5  # s of the stream judged (windows of WINDOW s: paired() wants 10 at least)
UNTOUCHED = 2.0  # s of each untouched phase


def watch(pid: int, client: str, seconds: float) -> tuple[list[dict[str, Any]], float, float]:
    """``peeka watch --overhead-budget 5 --json`` over the hot leaf and the cold function for
    ``seconds``: its JSON lines and the monotonic times it started streaming and ended."""
    proc = subprocess.Popen([client, "-m", "peeka", "watch", str(pid), r"__main__\.(leaf|cold)$", "-E",
                             "params", "-x", "1", "--overhead-budget", "5", "-n", "100000000", "--timeout", str(seconds),
                             "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines, started = [], None
    for line in proc.stdout:
        lines.append(json.loads(line))
        if started is None:
            started = time.monotonic()
    ended = time.monotonic()
    proc.stdout.close()
    error = proc.stderr.read()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    assert proc.wait(30) == 0, error
    assert started is not None and lines[0]["type"] == "start", lines[:3]
    return lines, started, ended


@pytest.mark.parametrize("version", VERSIONS)
def test_watch_overhead_budget_keeps_a_hot_target_within_budget(spawn, version: str) -> None:
    client = str(CLIENTS[version]) if CLIENTS[version].exists() else sys.executable
    target = spawn(python_for(version), "governor_target.py", str(WINDOW))
    twin = spawn(python_for(version), "governor_target.py", str(WINDOW))
    windows, twin_windows = Windows(target.proc), Windows(twin.proc)
    agent, _ = attach(target.pid, timeout=60)
    agent.close()
    t0 = time.monotonic()
    time.sleep(UNTOUCHED)
    t1 = time.monotonic()
    # 3.12 and 3.13 were judged against 15% until 3.12's split superinstructions were found (probes
    # give paused and removed functions fresh code): both read -1.7..-2.4% since, like the others.
    for attempt in (1, 2, 3):
        lines, started, ended = watch(target.pid, client, SETTLE + JUDGED)
        time.sleep(0.3)
        t4 = time.monotonic()
        time.sleep(UNTOUCHED)
        t5 = time.monotonic()
        base = windows.paired(twin_windows, [(t0, t1), (t4, t5)], "cpu")
        got = windows.paired(twin_windows, [(started + SETTLE, ended - 0.3)], "cpu")
        governed = [line for line in lines if line.get("type") == "governor"]
        report = (f"{version} via client {client} (attempt {attempt}): units per cpu-s vs the twin: untouched "
                  f"{base:.3f}, watching {got:.3f} ({got / base - 1:+.1%}); last governor event "
                  f"{json.dumps(governed[-1] if governed else None)}")
        print(report)
        if got >= base * (1 - ALLOWED_LOSS):
            break
        t0, t1 = t4, t5  # a burst of load from elsewhere can land on one phase: judge another run
    detach(target.pid)
    assert got >= base * (1 - ALLOWED_LOSS), report

    # The governor engaged on the hot leaf, said so as it decided, and counted what it kept away.
    assert lines[-1]["type"] == "end" and lines[-1]["reason"] == "timeout", lines[-1]
    final = governed[-1]
    assert final["final"] and final["budget_percent"] == 5.0, report
    rows = {row["function"]: row for row in final["functions"]}
    leaf, cold = rows["__main__.leaf"], rows["__main__.cold"]
    assert any("__main__.leaf" in event["changed"] for event in governed), report
    assert leaf["sampling_ratio"] < 0.5 and "to stay under 5%" in leaf["note"], report
    events = [line for line in lines if line.get("function") and line.get("type") is None]
    leaf_events = sum(1 for e in events if e["function"] == "__main__.leaf")
    # Calls seen while the probe was on are either shown or counted as skipped; none vanish.
    assert leaf["calls_seen"] == leaf_events + leaf["skipped"], report
    assert leaf["skipped"] > 0 or leaf["estimated_calls"] > 0, report

    # The cold function was not starved: from the first call shown to the last, every call (the
    # target numbers them) arrived, and the governor skipped none of it.
    assert cold["skipped"] == 0 and cold["duty"] == 1.0 and cold["sampling_ratio"] == 1.0, report
    numbers = sorted(int(re.search(r"'n': (\d+)", e["value"]["repr"]).group(1))  # type: ignore[union-attr]
                     for e in events if e["function"] == "__main__.cold")
    assert len(numbers) >= 5 and numbers == list(range(numbers[0], numbers[-1] + 1)), numbers


def test_without_the_option_the_governor_stays_out_and_with_it_trace_trees_stay_whole(spawn) -> None:
    """Off by default: no governor event, every call passed on (the -n bound ends the stream). Trace
    under a budget: sampled at the root's start, so each tree shown is whole (handle's 30 leaf calls)."""
    target = spawn(python_for("3.12"), "governor_target.py", "1.0")
    out = subprocess.run([sys.executable, "-m", "peeka", "watch", str(target.pid), "__main__.leaf", "-n", "300",
                          "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert not [line for line in lines if line.get("type") == "governor"]
    assert lines[-1]["reason"] == "limit" and lines[-1]["events"] == 300

    out = subprocess.run([sys.executable, "-m", "peeka", "trace", str(target.pid), "__main__.handle", "--overhead-budget",
                          "5", "-n", "100000000", "--timeout", "3", "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    trees = [line["tree"] for line in lines if "tree" in line]
    assert trees and all([(c["function"], c["count"]) for c in t["children"]] == [("__main__.leaf", 30)] for t in trees)
    final = [line for line in lines if line.get("type") == "governor"][-1]
    handle = final["functions"][0]
    assert final["final"] and handle["function"] == "__main__.handle" and handle["calls_seen"] >= len(trees)
    # Passed at its start, a traced call is never shown when its tree is not whole: still running
    # when the stream ends on its timeout, or its root returned while the governor had its probe
    # paused (3.12+: no return event then). The valve counts these as unfinished: none vanish. (A
    # stale call left in trace's table once made every later call on its thread pass for recursion
    # and vanish: 25-45 of ~11,000 in 1 run of 4-12.)
    unshown = handle["calls_seen"] - len(trees) - handle["skipped"]
    assert unshown == handle["unfinished"], final
    assert handle["unfinished"] <= 1 + handle["calls_seen"] // 100, final
    assert handle["skipped"] + handle["estimated_calls"] > 0, final
    detach(target.pid)


def test_streams_of_one_budget_group_share_the_budget(spawn) -> None:
    """Two probe streams over one session (as the TUI opens a watch and a monitor beside it), both
    with ``overhead_budget`` 5 and the session's ``budget_group``: each plans with its share, so the
    two together stay within the one 5% (each alone would take 5%). Judged on the governors' own
    accounting (their budgets and estimates) and on the target's throughput against its twin. One
    version: the sharing is the agent's arithmetic, the same on every Python (the per-version
    governor is test_watch_overhead_budget's)."""
    from peeka.session import Session

    target = spawn(python_for("3.14"), "governor_target.py", str(WINDOW))
    twin = spawn(python_for("3.14"), "governor_target.py", str(WINDOW))
    windows, twin_windows = Windows(target.proc), Windows(twin.proc)
    client, _ = attach(target.pid, timeout=60)
    session = Session(client)
    try:
        t0 = time.monotonic()
        time.sleep(UNTOUCHED)
        t1 = time.monotonic()
        events: dict[str, list[dict[str, Any]]] = {"watch": [], "monitor": []}
        common = {"overhead_budget": 5, "budget_group": session.budget_group, "timeout": SETTLE + JUDGED}
        session.start("watch", {"pattern": "__main__.leaf", "limit": 10**8, **common}, on_event=events["watch"].append)
        session.start("monitor", {"pattern": "__main__.handle", "cycle": 1, **common}, on_event=events["monitor"].append)
        started = time.monotonic()
        deadline = started + SETTLE + JUDGED + 15
        while session.streams() and time.monotonic() < deadline:
            time.sleep(0.1)
        ended = time.monotonic()
        assert not session.streams(), "the streams did not end on their timeout"
        time.sleep(0.3)
        t4 = time.monotonic()
        time.sleep(UNTOUCHED)
        t5 = time.monotonic()
    finally:
        session.close()
        detach(target.pid)
    finals = {kind: [e for e in got if e.get("type") == "governor" and e.get("final")] for kind, got in events.items()}
    assert all(len(f) == 1 for f in finals.values()), finals
    watch, monitor = finals["watch"][0], finals["monitor"][0]
    report = json.dumps({"watch": watch, "monitor": monitor})
    print(report)
    for final in (watch, monitor):
        assert final["budget_group"]["name"] == session.budget_group and final["budget_group"]["budget_percent"] == 5.0, report
        assert final["budget_percent"] < 5.0, report  # a share, not the whole budget
    assert watch["budget_group"]["streams"] == 2 or monitor["budget_group"]["streams"] == 2, report
    # Their estimates together: within the one budget (estimates lag a plan: 20% over allowed).
    assert watch["overhead_percent"] + monitor["overhead_percent"] <= 5.0 * 1.2, report
    base = windows.paired(twin_windows, [(t0, t1), (t4, t5)], "cpu")
    got = windows.paired(twin_windows, [(started + SETTLE, ended - 0.3)], "cpu")
    assert got >= base * (1 - ALLOWED_LOSS), (base, got, report)
