"""monitor: per function, every cycle: calls, successes, failures, failure rate, cost statistics
(avg/min/max/p50/p99) and cumulative duration histogram buckets (for Prometheus histograms).

args: pattern, regex, max_match, cycle (s, default 5), limit (cycles, default none), timeout (s).
The stream itself is ``costs.Monitor`` (export reuses it for its metrics).
"""

from __future__ import annotations

from typing import Any, Dict

from ..costs import Monitor


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Monitor:
    return Monitor(agent, args)
