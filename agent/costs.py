"""Call costs per function and cycle, as ``monitor`` streams them and ``export`` turns them into metrics.

Every cycle, per function: calls, successes, failures, failure rate, cost statistics
(avg/min/max/p50/p99) and cumulative duration histogram buckets (for Prometheus histograms).
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from typing import Any, Dict, List

from . import instrument, protocol, streams

# Upper bounds in seconds, as Prometheus' defaults plus finer steps for fast functions.
BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BUCKETS_NS = tuple(int(b * 1e9) for b in BUCKETS)
_SAMPLE_CAP = 200_000  # per function per cycle; past it costs go straight into buckets
DRAIN_EVERY = 0.2  # s: bounds the raw costs held between drains


class _Window:
    """One function's calls in the current cycle."""

    __slots__ = ("costs", "failures", "overflow", "overflow_sum", "overflow_min", "overflow_max")

    def __init__(self) -> None:
        self.costs: List[int] = []
        self.failures = 0
        self.overflow = [0] * (len(BUCKETS) + 1)
        self.overflow_sum = 0
        self.overflow_min = None
        self.overflow_max = 0

    def add(self, signed_costs: List[int]) -> None:
        costs = self.costs
        if signed_costs and min(signed_costs) >= 0 and len(costs) + len(signed_costs) <= _SAMPLE_CAP:
            # The usual batch, no failure and under the cap: C-level, not a Python step per call (at
            # 10k calls/s the loop below cost the agent ~2 ms of CPU a second on 3.9).
            costs.extend(signed_costs)
            return
        for cost in signed_costs:
            if cost < 0:
                self.failures += 1
                cost = ~cost
            if len(costs) < _SAMPLE_CAP:
                costs.append(cost)
            else:
                self.overflow[bisect_left(_BUCKETS_NS, cost)] += 1
                self.overflow_sum += cost
                self.overflow_max = max(self.overflow_max, cost)
                self.overflow_min = cost if self.overflow_min is None else min(self.overflow_min, cost)


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
        self.cycle = streams.float_arg(args, "cycle", protocol.DEFAULT_CYCLE, protocol.MIN_CYCLE) or protocol.DEFAULT_CYCLE
        super().__init__(agent, args, limit=None)
        self.max_cycles = args.get("limit")
        # Host threads only append each call's cost (~cost when it failed) to a function's raw list,
        # a C-level append; this stream's thread drains them into the window every DRAIN_EVERY.
        self.raw: Dict[str, List[int]] = {name: [] for name, _ in self.targets}
        self.windows: Dict[str, _Window] = {name: _Window() for name, _ in self.targets}
        self.totals: Dict[str, _Totals] = {name: _Totals() for name, _ in self.targets}
        self.seen: Dict[str, int] = {name: 0 for name, _ in self.targets}  # calls drained, for a reader to reset
        self.started = time.time()

    light = True

    def light_sink(self, probe: Any) -> Any:
        return self.raw[probe.name].append

    def on_light(self, probe: Any, cost: int, failed: bool) -> None:
        self.raw[probe.name].append(~cost if failed else cost)

    def keep(self, names: Any) -> None:
        """Only these of its functions (export counts each function once)."""
        self.targets = [(name, f) for name, f in self.targets if name in names]
        for table in (self.raw, self.windows, self.totals, self.seen):
            for name in [name for name in table if name not in names]:
                del table[name]

    def seen_calls(self) -> Dict[str, int]:
        """The governor's view: calls counted since its last look (only while each probe was on)."""
        self.drain()
        seen = dict(self.seen)
        for name in self.seen:
            self.seen[name] = 0
        return seen

    def drain(self) -> None:
        for name, raw in self.raw.items():
            if raw:
                batch = raw[:]
                del raw[: len(batch)]  # what host threads appended meanwhile stays for the next drain
                self.windows[name].add(batch)
                self.seen[name] += len(batch)

    def run(self) -> None:
        cycles = 0
        start = time.monotonic()
        deadline = None if self.timeout is None else start + self.timeout
        next_cycle = start + self.cycle
        while not self.cancelled:
            now = time.monotonic()
            wake = next_cycle if deadline is None else min(next_cycle, deadline)
            due = self.govern(now)  # with --overhead-budget: the probes' duty cycles
            if due is not None:
                wake = min(wake, due)
            if self._done.wait(max(0.0, min(DRAIN_EVERY, wake - now))):
                return
            self.drain()
            now = time.monotonic()
            if now >= next_cycle:
                self.emit(self.snapshot())
                next_cycle += self.cycle
                cycles += 1
                if self.max_cycles and cycles >= self.max_cycles:
                    self.finish("limit")
                    return
            if deadline is not None and now >= deadline:
                self.finish("timeout")
                return

    def snapshot(self) -> Dict[str, Any]:
        self.drain()
        now = time.time()
        rows = []
        for name, _ in self.targets:
            window, self.windows[name] = self.windows[name], _Window()
            rows.append(self._row(name, window))
            if self.governor is not None:
                # Duty-cycled: the counts are exact for the time the probe was on; calls while off are
                # only estimated here, never added to them.
                rows[-1]["governor"] = self.governor.row(name)
        return {"time": now, "cycle_s": self.cycle, "functions": rows, "since": self.started}

    def _row(self, name: str, window: _Window) -> Dict[str, Any]:
        costs = sorted(window.costs)
        overflow_count = sum(window.overflow)
        calls = len(costs) + overflow_count
        totals = self.totals[name]
        # Sorted costs: each bucket's count from one bisect per bound, not one per call (cost <= bound).
        below = 0
        for i, bound in enumerate(_BUCKETS_NS):
            upto = bisect_right(costs, bound)
            totals.buckets[i] += upto - below
            below = upto
        totals.buckets[-1] += len(costs) - below
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

