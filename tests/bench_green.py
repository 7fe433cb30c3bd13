"""Benchmark: what ``watch`` and ``trace`` cost a green-thread WSGI server (gevent, eventlet), in one run.

    python tests/bench_green.py [--versions 3.9,3.12,3.14] [--seconds 2]

Per library and Python version, one server (tests/targets/green_bench.py: four client greenlets
hammering a view that makes 40 small calls and switches to the hub in the middle) is attached the
real way, and its requests/s measured in phases (PROBED, each between two untouched phases):
``watch`` of the view with every call sent to this client, and with a condition that is never
true (the probe's own cost); ``trace`` of the view (each request's tree of 40 calls, the profiler
switched off and on again across the greenlet switch) with no tree sent (``min_cost``) and with
every tree sent. Each probed phase is a ratio to the mean of the untouched phases beside it; the
median over ``--rounds`` rounds is printed, all in one run, for requests/s and for the whole
process's CPU per request (the agent's threads included: the steadier figure on a loaded machine,
where an idle-looking server's requests/s depend on how soon the kernel runs it). This client reads
the streams on the same machine. Not a test: numbers depend on the machine's load (quote ``uptime``).
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from conftest import VERSIONS, Target, eventlet_site, find_python, gevent_site  # noqa: E402

from peeka.attach import attach  # noqa: E402
from peeka.client import AgentClient  # noqa: E402

VIEW = "__main__.light_view"


def _requests(agent: AgentClient) -> int:
    return ast.literal_eval(agent.request("inspect", {"expression": "sys.modules['__main__'].REQUESTS"})["value"]["repr"])[0]


# (label, command, its arguments besides the pattern), each measured between two untouched phases.
PROBED = (
    ("watch, every call sent", "watch", {}),
    ("watch, condition false", "watch", {"condition": "cost > 100000"}),
    ("trace, no tree sent", "trace", {"min_cost": 100000}),
    ("trace, every tree sent", "trace", {}),
)


def _cpu_seconds(pid: int) -> float:
    """The whole process's CPU (the agent's threads included), from /proc (10 ms ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Phase(NamedTuple):
    rate: float  # requests/s
    cpu: float  # CPU seconds per request


def _phase(agent: AgentClient, pid: int, seconds: float, command: str | None, args: dict[str, object]) -> Phase:
    before, cpu, started = _requests(agent), _cpu_seconds(pid), time.perf_counter()
    if command is None:
        time.sleep(seconds)
    else:
        for _ in agent.stream(command, {"pattern": VIEW, "limit": 1_000_000, "timeout": seconds, **args}):
            pass
    done = _requests(agent) - before
    return Phase(done / (time.perf_counter() - started), (_cpu_seconds(pid) - cpu) / max(1, done))


def run(library: str, version: str, seconds: float, rounds: int) -> None:
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
    rates: dict[str, list[float]] = {label: [] for label, _, _ in PROBED}
    cpus: dict[str, list[float]] = {label: [] for label, _, _ in PROBED}
    untouched: list[Phase] = []
    try:
        agent, _ = attach(target.pid, timeout=60)
        with agent:
            time.sleep(0.5)
            before = _phase(agent, target.pid, seconds, None, {})
            untouched.append(before)
            for _ in range(rounds):
                for label, command, args in PROBED:
                    probed = _phase(agent, target.pid, seconds, command, args)
                    after = _phase(agent, target.pid, seconds, None, {})
                    untouched.append(after)
                    rates[label].append(probed.rate / ((before.rate + after.rate) / 2))
                    cpus[label].append(probed.cpu / ((before.cpu + after.cpu) / 2))
                    before = after
            agent.request("detach")
    finally:
        target.stop()
    base = [p.rate for p in untouched]
    shown = [f"untouched {statistics.median(base):.0f} req/s ({min(base):.0f}-{max(base):.0f}), "
             f"{statistics.median(p.cpu for p in untouched) * 1e6:.0f} us CPU/req"]
    shown += [f"{label} {statistics.median(rates[label]):.2f}x req/s, {statistics.median(cpus[label]):.2f}x CPU/req"
              for label, _, _ in PROBED]
    print(f"{library:8} {version:5} " + " | ".join(shown), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", default=",".join(VERSIONS))
    parser.add_argument("--libraries", default="gevent,eventlet")
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; requests/s of the server's own client greenlets", flush=True)
    for library in args.libraries.split(","):
        for version in args.versions.split(","):
            run(library, version, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
