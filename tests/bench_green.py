"""Benchmark: what ``watch`` and ``trace`` cost a green-thread WSGI server (gevent, eventlet), in one run.

    python tests/bench_green.py [--versions 3.9,3.12,3.14] [--seconds 2]

Per library and Python version, one server (tests/targets/green_bench.py: four client greenlets
hammering a view that makes 40 small calls and switches to the hub in the middle) is attached the
real way, and its requests/s measured in phases (PHASES): untouched; ``watch`` of the view with
every call sent to this client, and with a condition that is never true (the probe's own cost);
``trace`` of the view (each request's tree of 40 calls, the profiler switched off and on again
across the greenlet switch) with no tree sent (``min_cost``) and with every tree sent. Each probed
phase is printed as a ratio to the mean of the untouched phases, all in one run. This client reads
the streams on the same machine. Not a test: numbers depend on the machine's load (quote ``uptime``).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from conftest import VERSIONS, Target, eventlet_site, find_python, gevent_site  # noqa: E402

from peeka.attach import attach  # noqa: E402
from peeka.client import AgentClient  # noqa: E402

VIEW = "__main__.light_view"


def _requests(agent: AgentClient) -> int:
    return ast.literal_eval(agent.request("inspect", {"expression": "sys.modules['__main__'].REQUESTS"})["value"]["repr"])[0]


# (label, command, its arguments besides the pattern): None is the untouched server.
PHASES = (
    ("untouched", None, {}),
    ("watch, every call sent", "watch", {}),
    ("watch, condition false", "watch", {"condition": "cost > 100000"}),
    ("untouched", None, {}),
    ("trace, no tree sent", "trace", {"min_cost": 100000}),
    ("trace, every tree sent", "trace", {}),
    ("untouched", None, {}),
)


def _rate(agent: AgentClient, seconds: float, command: str | None, args: dict[str, object]) -> float:
    before, started = _requests(agent), time.perf_counter()
    if command is None:
        time.sleep(seconds)
    else:
        for _ in agent.stream(command, {"pattern": VIEW, "limit": 1_000_000, "timeout": seconds, **args}):
            pass
    return (_requests(agent) - before) / (time.perf_counter() - started)


def run(library: str, version: str, seconds: float) -> None:
    python = find_python(version)
    if python is None:
        print(f"{library} {version}: no interpreter here")
        return
    site = (gevent_site if library == "gevent" else eventlet_site)
    try:
        env = site(version, python)
    except BaseException as exc:  # conftest skips (a pytest exception) when the library does not import
        print(f"{library} {version}: skipped: {exc}")
        return
    target = Target(python, "green_bench.py", library, env=env)
    try:
        agent, _ = attach(target.pid, timeout=60)
        with agent:
            time.sleep(0.5)
            rates = [_rate(agent, seconds, command, args) for _, command, args in PHASES]
            agent.request("detach")
    finally:
        target.stop()
    base = [r for (_, command, _), r in zip(PHASES, rates) if command is None]
    mean = sum(base) / len(base)
    shown = [f"untouched {mean:.0f} req/s (" + ", ".join(f"{r:.0f}" for r in base) + ")"]
    shown += [f"{label} {r / mean:.2f}x" for (label, command, _), r in zip(PHASES, rates) if command is not None]
    print(f"{library:8} {version:5} " + " | ".join(shown), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", default=",".join(VERSIONS))
    parser.add_argument("--libraries", default="gevent,eventlet")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; requests/s of the server's own client greenlets", flush=True)
    for library in args.libraries.split(","):
        for version in args.versions.split(","):
            run(library, version, args.seconds)


if __name__ == "__main__":
    main()
