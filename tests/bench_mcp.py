"""Benchmark: what `peeka mcp` tool calls cost a busy target, and how long one call takes.

    python tests/bench_mcp.py [--versions 3.12,3.14] [--seconds 3] [--rounds 3]

For each interpreter a real target (tests/targets/runtime_bench.py: one thread doing pure-Python work
units, eight idle threads, the agent started in-process) reports its units per second while (a)
nothing asks it anything, (b) an MCP client calls `thread` back to back, (c) `inspect` back to back,
(d) `top` (one-second windows at 100 Hz, back to back), (e) `watch` of the worker's own hot function
with limit 100, back to back. The MCP server is this checkout's `peeka mcp` under this interpreter,
driven by the official SDK's client over stdio. Phases alternate over several rounds; medians are
compared with untouched, as throughput and as process CPU per unit of work. Then the median wall
time of one call of each tool as the client sees it. Not a test: numbers depend on the machine's load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_runtime import Bench  # noqa: E402
from conftest import find_python  # noqa: E402

CALLS: dict[str, dict[str, Any]] = {
    "thread": {},
    "inspect": {"expression": "len(sys.modules)"},
    "top": {"interval": 1.0, "rate": 100},
    "watch": {"pattern": "__main__.unit", "limit": 100},
}


async def call(session: ClientSession, tool: str, pid: int) -> float:
    started = time.perf_counter()
    result = await session.call_tool(tool, {"pid": pid, **CALLS[tool]})
    if result.is_error:
        raise SystemExit(f"{tool} failed: {result.content}")
    return time.perf_counter() - started


async def while_calling(session: ClientSession, bench: Bench, tool: str | None, seconds: float) -> tuple[float, float]:
    measured: list[tuple[float, float]] = []

    async def measure() -> None:
        measured.append(await anyio.to_thread.run_sync(bench.measure, seconds))

    async with anyio.create_task_group() as group:
        group.start_soon(measure)
        while tool is not None and not measured:
            await call(session, tool, bench.proc.pid)
    return measured[0]


async def run(version: str, python: str, seconds: float, rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pkm-"))
    bench = Bench(python, tmp)
    params = StdioServerParameters(command=sys.executable, args=["-m", "peeka", "mcp"],
                                   env=dict(os.environ, TMPDIR=str(tmp)))  # where the target's agent listens
    try:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            bench.measure(1.0)  # warm up
            phases: list[str | None] = [None, *CALLS]
            results: dict[str | None, list[tuple[float, float]]] = {name: [] for name in phases}
            for _ in range(rounds):
                for name in phases:
                    results[name].append(await while_calling(session, bench, name, seconds))
            base_rate = statistics.median(r for r, _ in results[None])
            base_cpu = statistics.median(c for _, c in results[None])
            print(f"Python {version} target, MCP server on {sys.version.split()[0]}: untouched {base_rate:,.0f} "
                  f"units/s, {base_cpu:.1f} us of process CPU per unit")
            for name in CALLS:
                rate = statistics.median(r for r, _ in results[name])
                cpu = statistics.median(c for _, c in results[name])
                print(f"  {name:<8} back to back: throughput ratio {rate / base_rate:.3f} "
                      f"(slowdown {100 * (1 - rate / base_rate):+.1f}%)   CPU per unit ratio {cpu / base_cpu:.3f}")
            for name in CALLS:
                times = [await call(session, name, bench.proc.pid) for _ in range(5)]
                print(f"  one {name} call: {statistics.median(times) * 1000:.0f} ms median of 5")
    finally:
        bench.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", default="3.12,3.14")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at start")
    for version in options.versions.split(","):
        python = find_python(version)
        if python is None:
            print(f"Python {version}: no interpreter here, skipped")
            continue
        anyio.run(run, version, python, options.seconds, options.rounds)
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at end")


if __name__ == "__main__":
    main()
