"""Benchmark: peeka's safe-point gdb injection against the naive pyrasite recipe.

    python tests/bench_attach.py [--runs 7] [--versions 3.9,3.12] [--states busy,sleep,blocked]

For each Python on this machine and each target state, injects a tiny statement ``--runs`` times
with each method into a fresh target (tests/targets/gdb_target.py) and prints medians of:

    e2e      seconds from the call to gdb's exit (what a user waits for)
    stopped  seconds gdb held the target stopped, measured inside gdb (attach to detach, minus
             the time the target ran freely while gdb waited for a safe point)

and the ratios peeka / naive. Goals for peeka: e2e <= 150 ms, stopped <= 50 ms. A failed or
crashing run is counted, not timed (the naive recipe is expected to fail now and then).

A second table is what a user waits for with ``peeka attach``: the whole attach with the agent up
and answering (per method: gdb, and sys.remote_exec on 3.14; goal <= 50 ms for remote-exec on an
active target), then the median latency of one ``thread`` request once attached (goal <= 30 ms).
A third says where a remote-exec attach of a busy 3.14 target spends its time: when each step
ended, counted from the call (the script's mark and the socket are polled every 1 ms by a
thread of this process, which costs it some CPU).
Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from conftest import VERSIONS, find_python  # noqa: E402

from peeka.attach import attach, detach, files, remote_exec  # noqa: E402
from peeka.attach.gdb import GdbInjection, inject_naive_gdb, inject_with_gdb  # noqa: E402
from peeka.errors import PeekaError  # noqa: E402
from peeka.process import TargetProcess  # noqa: E402

STATES = {"busy": "busy", "sleep": "sleep", "blocked": "event"}  # label -> gdb_target.py state
GOAL_E2E, GOAL_STOPPED = 0.150, 0.050
GOAL_REMOTE_EXEC, GOAL_THREAD = 0.050, 0.030
Method = Callable[[TargetProcess, str, float], GdbInjection]


def start_target(python: str, state: str, workdir: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [python, "-u", str(HERE / "targets" / "gdb_target.py"), state, workdir],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    if not ready or not proc.stdout.readline().startswith(b"ready"):
        stop_target(proc)
        raise RuntimeError(f"target {python} {state} did not start")
    return proc


def stop_target(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc.stdout:
        proc.stdout.close()


def on_target(python: str, state: str, runs: int, one_run: Callable[[int], None], outcomes: Counter[str]) -> None:
    """Call ``one_run(pid)`` ``runs`` times on one target in ``state``; a crashed target is counted and restarted."""
    with tempfile.TemporaryDirectory(prefix="peeka-bench-") as workdir:
        proc = start_target(python, state, workdir)
        try:
            for _ in range(runs):
                one_run(proc.pid)
                if proc.poll() is not None:
                    outcomes[f"target-crashed:{proc.returncode}"] += 1
                    proc = start_target(python, state, workdir)
        finally:
            stop_target(proc)


def measure(
    python: str, state: str, method: Method, runs: int
) -> tuple[list[float], list[float], Counter[str]]:
    e2e: list[float] = []
    stopped: list[float] = []
    outcomes: Counter[str] = Counter()

    def one_run(pid: int) -> None:
        try:
            result = method(TargetProcess(pid), "pass", 10.0)
        except PeekaError as exc:
            outcomes[f"error:{type(exc).__name__}"] += 1
            return
        e2e.append(result.elapsed)
        stopped.append(result.stopped)
        where = result.where.split(":")
        outcomes[where[0] + (":" + where[1] if result.where.startswith("safe") else "")] += 1

    on_target(python, state, runs, one_run, outcomes)
    return e2e, stopped, outcomes


def measure_full(python: str, state: str, method: str, runs: int) -> tuple[list[float], list[float], Counter[str]]:
    """Whole attaches (agent up, hello read) and ``thread`` answers, each attach on a fresh agent."""
    attaches: list[float] = []
    answers: list[float] = []
    outcomes: Counter[str] = Counter()

    def one_run(pid: int) -> None:
        try:
            client, report = attach(pid, method=method, timeout=10.0)
        except PeekaError as exc:
            outcomes[f"error:{type(exc).__name__}"] += 1
            return
        with client:
            attaches.append(report.seconds)
            outcomes[report.method] += 1
            for _ in range(10):
                started = time.perf_counter()
                client.request("thread", {})
                answers.append(time.perf_counter() - started)
        detach(pid)

    on_target(python, state, runs, one_run, outcomes)
    return attaches, answers, outcomes


PHASES = ("caller started", "files shipped", "request sent", "script ran", "socket", "agent answered")


def profile_remote_exec(python: str, runs: int) -> dict[str, list[float]]:
    """Seconds from the attach call to the end of each phase, per run, on a busy target."""
    ends: dict[str, list[float]] = {phase: [] for phase in PHASES}
    marks: dict[str, float] = {}
    started = 0.0

    def timed(cls_or_module: object, name: str, phase: str) -> Callable[[], None]:
        original = getattr(cls_or_module, name)

        def wrapper(*args: object, **kwargs: object) -> object:
            try:
                return original(*args, **kwargs)
            finally:
                marks[phase] = time.monotonic() - started

        setattr(cls_or_module, name, wrapper)
        return lambda: setattr(cls_or_module, name, original)

    def one_run(pid: int) -> None:
        nonlocal started
        target = TargetProcess(pid)
        mark = Path(target.host_path(target.files_dir)) / "started"
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                now = time.monotonic() - started
                if "script ran" not in marks and mark.exists():
                    marks["script ran"] = now
                if "socket" not in marks and target.agent_socket_exists():
                    marks["socket"] = now
                time.sleep(0.001)

        marks.clear()
        started = time.monotonic()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            client, report = attach(pid, method="remote-exec", timeout=10.0)
        except PeekaError:
            return
        finally:
            done.set()
            watcher.join()
        marks["agent answered"] = report.seconds
        client.close()
        detach(pid)
        if all(phase in marks for phase in PHASES):
            for phase in PHASES:
                ends[phase].append(marks[phase])

    undo = [
        timed(remote_exec.RemoteExec, "start", "caller started"),
        timed(files, "ship", "files shipped"),
        timed(remote_exec.RemoteExec, "send", "request sent"),
    ]
    try:
        on_target(python, "busy", runs, one_run, Counter())
    finally:
        for restore in undo:
            restore()
    return ends


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.1f}" if values else "      -"


def ratio(a: list[float], b: list[float]) -> str:
    return f"{statistics.median(a) / statistics.median(b):5.2f}" if a and b else "    -"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--versions", default=",".join(VERSIONS))
    parser.add_argument("--states", default=",".join(STATES))
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")

    header = (
        f"{'python':7} {'state':8} | {'peeka e2e':>9} {'stopped':>8} | {'naive e2e':>9} {'stopped':>8} | "
        f"{'e2e ratio':>9} {'stop ratio':>10} | goals | peeka where / naive outcomes"
    )
    print(f"medians of {args.runs} runs, milliseconds; ratio = peeka / naive")
    print(header)
    print("-" * len(header))
    met = True
    for version in args.versions.split(","):
        python = find_python(version)
        if python is None:
            print(f"{version:7} (no interpreter found)")
            continue
        # Warm the caches (symbols, gdb's data directory) outside the measurement.
        measure(python, "busy", inject_with_gdb, 1)
        for label in args.states.split(","):
            state = STATES[label]
            pe, ps, pw = measure(python, state, inject_with_gdb, args.runs)
            ne, ns, nw = measure(python, state, inject_naive_gdb, args.runs)
            ok = bool(pe) and statistics.median(pe) <= GOAL_E2E and statistics.median(ps) <= GOAL_STOPPED
            met = met and ok
            print(
                f"{version:7} {label:8} | {ms(pe):>9} {ms(ps):>8} | {ms(ne):>9} {ms(ns):>8} | "
                f"{ratio(pe, ne):>9} {ratio(ps, ns):>10} | {'met' if ok else 'MISS':5} | "
                f"{dict(pw)} / {dict(nw)}",
                flush=True,
            )
    print(
        f"\ngoals (peeka e2e <= {GOAL_E2E * 1000:.0f} ms, stopped <= {GOAL_STOPPED * 1000:.0f} ms): {'all met' if met else 'missed somewhere'}"
    )
    print("\nwhole attach (agent up and answering), then one `thread` request; medians, milliseconds")
    print(f"{'python':7} {'state':8} {'method':12} | {'attach':>8} | {'thread':>7} | outcomes")
    for version in args.versions.split(","):
        python = find_python(version)
        if python is None:
            continue
        methods = ["gdb", "auto"] if version == "3.14" else ["gdb"]  # auto: remote-exec, gdb when blocked
        for label in args.states.split(","):
            for method in methods:
                a, t, o = measure_full(python, STATES[label], method, args.runs)
                goal = GOAL_REMOTE_EXEC if method == "auto" and label != "blocked" else GOAL_E2E
                verdict = "met" if a and statistics.median(a) <= goal and statistics.median(t) <= GOAL_THREAD else "MISS"
                print(f"{version:7} {label:8} {method:12} | {ms(a):>8} | {ms(t):>7} | {verdict} {dict(o)}", flush=True)
    python = find_python("3.14") if "3.14" in args.versions.split(",") else None
    if python is not None:
        ends = profile_remote_exec(python, max(args.runs, 9))
        print("\nwhere a remote-exec attach of a busy 3.14 target spends its time: each step's end, ms from the call")
        print(" | ".join(f"{phase} {ms(ends[phase]).strip()}" for phase in PHASES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
