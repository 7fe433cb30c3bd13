"""`thread` on a process of 600 parked threads while two others compute (the GIL always wanted).

Listing reads every thread's /proc stat. Read with Python's file calls, each of the ~5 system calls
per file released the GIL, and getting it back from the computing threads took a switch interval
(5 ms) or more: one answer took 1-31 s on 3.11 (measured 2026-12-05). The reads now keep the GIL
(procfs.all_task_stats). Ground truth: the target's own thread count and which threads compute.
"""

from __future__ import annotations

import time

import pytest
from conftest import python_for

from peeka.attach import attach

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180), pytest.mark.timing]
PARKED, BUSY = 600, 2


@pytest.mark.parametrize("version", ["3.11", "3.14"])
def test_thread_answers_fast_beside_busy_threads(spawn, version: str) -> None:
    target = spawn(python_for(version), "many_threads.py", str(PARKED), str(BUSY), ready_timeout=60)
    client, _ = attach(target.pid, timeout=60)
    with client:
        took = []
        for args in ({}, {}, {"blocked": True}, {"top": 5, "interval_ms": 300}):
            started = time.monotonic()
            answer = client.request("thread", args)
            took.append(time.monotonic() - started)
        # The last answer: the busiest 5 over 0.3 s. Both computing threads lead, sharing the GIL.
        top = answer["threads"]
        assert sorted(t["name"] for t in top[:BUSY]) == ["busy-0", "busy-1"], [(t["name"], t["cpu_percent"]) for t in top]
        assert all(t["cpu_percent"] > 20 for t in top[:BUSY]), top[:BUSY]
        listing = client.request("thread", {"all": True})
    names = [t["name"] for t in listing["threads"]]
    assert sum(n.startswith("parked-") for n in names) == PARKED and "MainThread" in names
    # The first answer also loads the command's code; later ones are warm. Before: 1-31 s each.
    assert took[0] < 5.0 and max(took[1:3]) < 1.5, took
    assert took[3] < 0.3 + 1.5, took
