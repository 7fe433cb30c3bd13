"""monitor: per function, every cycle: calls, successes, failures, failure rate, cost statistics
(avg/min/max/p50/p99) and cumulative duration histogram buckets (for Prometheus histograms).

args: pattern, regex, max_match, cycle (s, default 5), limit (cycles, default none), timeout (s).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any, Dict, List

from .. import instrument
from ..probes import Call

NAME = "monitor"
# Upper bounds in seconds, as Prometheus' defaults plus finer steps for fast functions.
BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BUCKETS_NS = tuple(int(b * 1e9) for b in BUCKETS)
_SAMPLE_CAP = 200_000  # per function per cycle; past it costs go straight into buckets


class _Window:
    """One function's calls in the current cycle; the hot path only appends."""

    __slots__ = ("costs", "failures", "overflow", "overflow_sum", "overflow_min", "overflow_max")

    def __init__(self) -> None:
        self.costs: List[int] = []
        self.failures = 0
        self.overflow = [0] * (len(BUCKETS) + 1)
        self.overflow_sum = 0
        self.overflow_min = None
        self.overflow_max = 0


class _Totals:
    """Since the monitor started: cumulative buckets, count and sum (histogram semantics)."""

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.count = 0
        self.failures = 0
        self.sum_ns = 0


def _quantile(sorted_costs: List[int], q: float) -> int:
    return sorted_costs[min(len(sorted_costs) - 1, int(q * len(sorted_costs)))]


class Monitor(instrument.ProbeStream):
    def __init__(self, agent: Any, args: Dict[str, Any]) -> None:
        self.cycle = instrument.float_arg(args, "cycle", 5.0, 0.05) or 5.0
        super().__init__(agent, args, limit=None)
        self.max_cycles = args.get("limit")
        self.windows: Dict[str, _Window] = {name: _Window() for name, _ in self.targets}
        self.totals: Dict[str, _Totals] = {name: _Totals() for name, _ in self.targets}
        self.started = time.time()

    light = True

    def on_exit(self, call: Call) -> None:
        # Generators and coroutines (and functions shared with a heavier listener) come here.
        self.on_light(call.probe, call.end - call.start, call.exception is not None)

    def on_light(self, probe: Any, cost: int, failed: bool) -> None:
        window = self.windows[probe.name]
        if failed:
            window.failures += 1
        if len(window.costs) < _SAMPLE_CAP:
            window.costs.append(cost)
        else:
            window.overflow[bisect_left(_BUCKETS_NS, cost)] += 1
            window.overflow_sum += cost
            window.overflow_max = max(window.overflow_max, cost)
            window.overflow_min = cost if window.overflow_min is None else min(window.overflow_min, cost)

    def run(self) -> None:
        cycles = 0
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while not self.cancelled:
            wait = self.cycle if deadline is None else min(self.cycle, max(0.0, deadline - time.monotonic()))
            if self._done.wait(wait):
                return
            self.emit(self.snapshot())
            cycles += 1
            if self.max_cycles and cycles >= self.max_cycles:
                self.finish("limit")
                return
            if deadline is not None and time.monotonic() >= deadline:
                self.finish("timeout")
                return

    def snapshot(self) -> Dict[str, Any]:
        now = time.time()
        rows = []
        for name, _ in self.targets:
            window, self.windows[name] = self.windows[name], _Window()  # swap: the hot path never waits
            rows.append(self._row(name, window))
        return {"time": now, "cycle_s": self.cycle, "functions": rows, "since": self.started}

    def _row(self, name: str, window: _Window) -> Dict[str, Any]:
        costs = sorted(window.costs)
        overflow_count = sum(window.overflow)
        calls = len(costs) + overflow_count
        totals = self.totals[name]
        for cost in costs:
            totals.buckets[bisect_left(_BUCKETS_NS, cost)] += 1
        for i, n in enumerate(window.overflow):
            totals.buckets[i] += n
        total_ns = sum(costs) + window.overflow_sum
        totals.count += calls
        totals.failures += window.failures
        totals.sum_ns += total_ns
        mins = [c for c in (costs[0] if costs else None, window.overflow_min) if c is not None]
        maxs = [c for c in (costs[-1] if costs else None, window.overflow_max or None) if c is not None]
        cumulative, running = [], 0
        for bound, n in zip(BUCKETS + (float("inf"),), totals.buckets):
            running += n
            cumulative.append([bound if bound != float("inf") else "+Inf", running])
        return {
            "function": name,
            "calls": calls,
            "success": calls - window.failures,
            "failures": window.failures,
            "failure_rate": round(window.failures / calls, 4) if calls else 0.0,
            "avg_ms": round(total_ns / calls / 1e6, 4) if calls else None,
            "min_ms": round(min(mins) / 1e6, 4) if mins else None,
            "max_ms": round(max(maxs) / 1e6, 4) if maxs else None,
            "p50_ms": round(_quantile(costs, 0.50) / 1e6, 4) if costs else None,
            "p99_ms": round(_quantile(costs, 0.99) / 1e6, 4) if costs else None,
            "total": {"count": totals.count, "failures": totals.failures, "sum_s": totals.sum_ns / 1e9,
                      "buckets": cumulative},
        }


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Monitor:
    return Monitor(agent, args)
