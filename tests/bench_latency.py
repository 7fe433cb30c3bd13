"""Benchmark: quick answers from a saturated target (issue 12), before and after in one run.

    python tests/bench_latency.py [--runs 5] [--versions 3.12,3.14] [--baseline main]

Targets (tests/targets/latency_target.py): ``rest`` (the main thread ticks every 1 ms) and
``saturated`` (N = cores Python threads spinning, fighting over the GIL). 3.12 attaches with gdb,
3.14 with sys.remote_exec. Each run attaches a fresh agent, asks, and detaches; the agents
compared take turns on the same target so that the machine's load falls on all alike:

    before   the agent's sources at --baseline (a git revision)
    after    the agent of this tree
    after-   this tree with the switch interval left alone while a request is served
             (PEEKA_AGENT_SERVE_SWITCH_INTERVAL=1: never lower than the host's 5 ms)

Columns (medians, milliseconds): attach (the call until the agent's hello), stop (the longest
the target's threads felt stopped during the attach, from their own clocks), 1st inspect (the
first ``inspect 1+1``: compiles the command), inspect (warm ``inspect 1+1``), thread (warm
``thread``), and the CLI's ``peeka --help`` once per run. Round trips are the client library's,
so they exclude the CLI's start-up. Goals on a saturated target: attach <= 200 ms, round trip
<= 50 ms. Not a test: timings depend on the machine and its load (quote ``uptime``).

``--phases`` says instead where this tree's attach spends its time, at rest and saturated in one
run: when each step ended, counted from the call (medians, ms), and the step's own share. gdb's
steps come from its script's marks (CLOCK_MONOTONIC, shared with this process); the script's
``started`` mark and the socket are polled every 1 ms by a thread of this process. gdb rows come
twice: as attach does it (gdb loads while the files are shipped) and ``gdb, late`` (gdb started
after them, as before), taking turns on the same target.

    gdb:          ship (checks, ELF symbols, files written) | gdb up (gdb and its Python started)
                  | ptrace attached | safe point (a thread reached one) | script ran (the injected
                  statement started the agent's loader) | detached | gdb exited | settled (the main
                  thread ran) | socket (the agent's server listens) | hello (the agent answered)
    remote-exec:  caller started | ship | request sent | script ran | socket | hello
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from conftest import find_python  # noqa: E402

from peeka.attach import attach, detach, files, gdb, remote_exec  # noqa: E402
from peeka.process import TargetProcess  # noqa: E402

GOAL_ATTACH, GOAL_ROUND_TRIP = 0.200, 0.050
METHODS = {"3.9": "gdb", "3.10": "gdb", "3.11": "gdb", "3.12": "gdb", "3.13": "gdb", "3.14": "remote-exec"}
COLUMNS = ("attach", "stop", "1st inspect", "inspect", "thread")

class Target:
    def __init__(self, python: str, state: str) -> None:
        self.proc = subprocess.Popen([python, "-u", str(HERE / "targets" / "latency_target.py"), state],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().startswith("ready")
        self.pid = self.proc.pid

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()

@contextmanager
def agent_sources(root: Path | None, env: dict[str, str]) -> Iterator[None]:
    """Attach with the agent package at ``root`` (None: this tree's) and these environment settings."""
    saved_root, saved_env = files._AGENT_SOURCE, {k: os.environ.get(k) for k in env}
    saved_launch = files.launch_source
    if root is not None:
        files._AGENT_SOURCE = root
        if "sources_file" not in (root / "boot.py").read_text():
            # An agent from before sources.bin reads its sources from the config, inside launch.py.
            files.launch_source = lambda config: saved_launch({**config, "sources": files.agent_sources()})
    os.environ.update(env)
    try:
        yield
    finally:
        files._AGENT_SOURCE = saved_root
        files.launch_source = saved_launch
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

def export_agent(revision: str, into: Path) -> Path:
    """The agent package as it was at ``revision``, written under ``into``."""
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", revision, "agent"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "agent"

def one_run(target: Target, method: str) -> dict[str, float]:
    target.ask("reset")
    started = time.perf_counter()
    client, report = attach(target.pid, method=method, timeout=20.0)
    out = {"attach": time.perf_counter() - started}
    out["stop"] = float(target.ask("gap").split()[1])
    with client:
        for column, command, args in (("1st inspect", "inspect", {"expression": "1+1"}),
                                      ("inspect", "inspect", {"expression": "1+1"}),
                                      ("thread", "thread", {"interval_ms": 0})):
            times = []
            for _ in range(1 if column == "1st inspect" else 5):
                began = time.perf_counter()
                client.request(command, args)
                times.append(time.perf_counter() - began)
            out[column] = statistics.median(times)
    detach(target.pid)
    if report.method != method:
        out["method"] = 0.0  # marks a fallback
    return out

GDB_PHASES = ("ship", "gdb up", "ptrace attached", "safe point", "script ran", "detached", "gdb exited",
              "settled", "socket", "hello")
REMOTE_PHASES = ("caller started", "ship", "request sent", "script ran", "socket", "hello")


class PhaseClock:
    """Marks when each attach step ends, in seconds from the attach call (see --phases)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.marks: dict[str, float] = {}
        self._undo: list[Callable[[], None]] = []

    def mark(self, phase: str, at: float | None = None) -> None:
        self.marks.setdefault(phase, (time.monotonic() if at is None else at) - self.started)

    def wrap(self, owner: object, name: str, phase: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return original(*args, **kwargs)
            finally:
                self.mark(phase)

        setattr(owner, name, wrapper)
        self._undo.append(lambda: setattr(owner, name, original))

    def __enter__(self) -> PhaseClock:
        self.wrap(files, "ship", "ship")
        self.wrap(remote_exec.RemoteExec, "start", "caller started")
        self.wrap(remote_exec.RemoteExec, "send", "request sent")
        self.wrap(gdb, "settle", "settled")
        run_gdb = gdb._run_gdb

        def timed_run_gdb(*args: Any, **kwargs: Any) -> Any:
            events, output = run_gdb(*args, **kwargs)
            self.mark("gdb exited")
            t0 = next((e["monotonic"] for e in events if e["event"] == "start"), None)
            if t0 is not None:
                self.mark("gdb up", t0)
                for event in events:
                    phase = {"attached": "ptrace attached", "hit": "safe point", "fallback": "safe point",
                             "detached": "detached"}.get(event["event"])
                    if phase is not None:
                        self.mark(phase, t0 + event["t"])
            return events, output

        gdb._run_gdb = timed_run_gdb
        self._undo.append(lambda: setattr(gdb, "_run_gdb", run_gdb))
        return self

    def __exit__(self, *exc: object) -> None:
        for undo in reversed(self._undo):
            undo()

    def attach(self, pid: int, method: str) -> tuple[dict[str, float], str]:
        """One attach (and detach) with its steps marked; the marks and the method that attached."""
        target = TargetProcess(pid)
        mark_file = Path(target.host_path(target.files_dir)) / "started"
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                if "script ran" not in self.marks and mark_file.exists():
                    self.mark("script ran")
                if "socket" not in self.marks and target.agent_socket_exists():
                    self.mark("socket")
                time.sleep(0.001)

        self.marks = {}
        self.started = time.monotonic()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            client, report = attach(pid, method=method, timeout=20.0)
            self.mark("hello")
        finally:
            done.set()
            watcher.join()
        client.close()
        detach(pid)
        return dict(self.marks), report.method


def phases(args: argparse.Namespace) -> None:
    """Where this tree's attach spends its time, per version and state, in one run; for gdb also
    with gdb started only once the files are shipped (as before it loaded meanwhile)."""
    print(f"where the attach spends its time: medians of {args.runs} runs, ms from the call until each step "
          "ended (the step's own share in brackets); stop = the longest the target's threads felt stopped")
    with PhaseClock() as clock:
        for version in args.versions.split(","):
            python = find_python(version)
            if python is None:
                print(f"{version:6} (no interpreter found)")
                continue
            method = METHODS[version]
            names = GDB_PHASES if method == "gdb" else REMOTE_PHASES
            variants = ("early", "late") if method == "gdb" else ("early",)
            for state in args.states.split(","):
                ends = {v: {name: [] for name in names} for v in variants}
                stops: dict[str, list[float]] = {v: [] for v in variants}
                other = dict.fromkeys(variants, 0)
                target = Target(python, state)
                try:
                    time.sleep(0.3)
                    clock.attach(target.pid, method)  # warms the code cache and gdb's data directory
                    for _ in range(args.runs):
                        for variant in variants:
                            start_gdb = gdb.start_gdb
                            if variant == "late":
                                gdb.start_gdb = lambda target: None  # type: ignore[assignment,return-value]
                            try:
                                target.ask("reset")
                                marks, used = clock.attach(target.pid, method)
                                stops[variant].append(float(target.ask("gap").split()[1]))
                            finally:
                                gdb.start_gdb = start_gdb
                            if used != method or not all(name in marks for name in names):
                                other[variant] += 1
                                continue
                            for name in names:
                                ends[variant][name].append(marks[name])
                finally:
                    target.stop()
                for variant in variants:
                    cells, previous = [], 0.0
                    for name in names:
                        end = statistics.median(ends[variant][name]) if ends[variant][name] else float("nan")
                        cells.append(f"{name} {end * 1000:.0f} ({(end - previous) * 1000:+.0f})")
                        previous = end
                    note = f"; {other[variant]} runs left out (fallback or a step unseen)" if other[variant] else ""
                    label = method if variant == "early" else "gdb, late"
                    print(f"{version:6} {state:9} {label:11} stop {ms(stops[variant]).strip()} | " + " | ".join(cells)
                          + note, flush=True)


def help_time() -> float:
    exe = Path(sys.executable).with_name("peeka")
    started = time.perf_counter()
    subprocess.run([str(exe), "--help"], capture_output=True, check=True)
    return time.perf_counter() - started

def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.1f}" if values else "       -"

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--versions", default="3.12,3.14")
    parser.add_argument("--states", default="rest,saturated")
    parser.add_argument("--baseline", default="main", help="git revision of the 'before' agent ('' to skip)")
    parser.add_argument("--phases", action="store_true", help="where this tree's attach spends its time, per step")
    args = parser.parse_args()
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}; "
          f"cores: {os.cpu_count()}")
    if args.phases:
        phases(args)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="peeka-bench-"))
    try:
        variants: list[tuple[str, Path | None, dict[str, str]]] = []
        if args.baseline:
            variants.append(("before", export_agent(args.baseline, tmp), {"PEEKA_AGENT_SERVE_SWITCH_INTERVAL": "1"}))
        variants.append(("after", None, {}))
        variants.append(("after-", None, {"PEEKA_AGENT_SERVE_SWITCH_INTERVAL": "1"}))
        helps: list[float] = []
        header = f"{'python':6} {'state':9} {'agent':7} | " + " ".join(f"{c:>11}" for c in COLUMNS) + " | goals"
        print(f"medians of {args.runs} runs, milliseconds\n{header}\n{'-' * len(header)}")
        for version in args.versions.split(","):
            python = find_python(version)
            if python is None:
                print(f"{version:6} (no interpreter found)")
                continue
            for state in args.states.split(","):
                results: dict[str, dict[str, list[float]]] = {v[0]: {c: [] for c in COLUMNS} for v in variants}
                fallbacks: dict[str, int] = dict.fromkeys(results, 0)
                target = Target(python, state)
                try:
                    time.sleep(0.3)
                    for _ in range(args.runs):
                        helps.append(help_time())
                        for name, root, env in variants:
                            with agent_sources(root, env):
                                run = one_run(target, METHODS[version])
                            fallbacks[name] += "method" in run
                            for column in COLUMNS:
                                results[name][column].append(run[column])
                finally:
                    target.stop()
                for name, columns in results.items():
                    verdict = ""
                    if state == "saturated" and name != "before":
                        met = (statistics.median(columns["attach"]) <= GOAL_ATTACH
                               and statistics.median(columns["inspect"]) <= GOAL_ROUND_TRIP
                               and statistics.median(columns["thread"]) <= GOAL_ROUND_TRIP)
                        verdict = "met" if met else "MISS"
                    note = f" ({fallbacks[name]} fell back to gdb)" if fallbacks[name] else ""
                    print(f"{version:6} {state:9} {name:7} | " + " ".join(f"{ms(columns[c]):>11}" for c in COLUMNS)
                          + f" | {verdict}{note}", flush=True)
                if "before" in results:
                    ratios = " ".join(f"{statistics.median(results['after'][c]) / statistics.median(results['before'][c]):11.2f}"
                                      for c in COLUMNS)
                    print(f"{version:6} {state:9} {'after/before':>7} | {ratios}")
        print(f"\npeeka --help: {ms(helps).strip()} ms (median of {len(helps)})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0

if __name__ == "__main__":
    sys.exit(main())
