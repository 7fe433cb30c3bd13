"""Benchmark: what the TUI's Memory view costs a busy target, refreshing its type census every second.

    python tests/bench_tui_census.py [--versions 3.12,3.14] [--heaps 50000,1000000] [--seconds 4] [--rounds 3]

For each interpreter and heap size a real target (tests/targets/runtime_bench.py: one thread doing
pure-Python work units, eight idle threads, N small objects kept alive, the agent in-process)
reports its units per second and the process's CPU per unit while the view's requests run against
it, as the view makes them (peeka/tui/views/memory.py), one request a second:
  untouched   nothing asks
  before      the view before its census was sampled: the census (max 0.5 s) every third second, the
              process facts and GC the others
  whole 1 s   a whole census every second (max 0.5 s): what a 1 s refresh would cost unsampled
  sampled 1 s the view now: every second a census given CENSUS_BUDGET_S, sampled beyond it
Phases alternate over the rounds; medians compared with untouched (throughput ratio, and CPU per
unit ratio, steadier on a shared machine). Each census phase also prints the census's own median
seconds, the longest GIL hold it reported (gc.get_objects included) and its stride (1: every object).
Not a test: numbers depend on the machine's load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_runtime import Bench  # noqa: E402
from conftest import find_python  # noqa: E402

from peeka.tui.views.memory import CENSUS_BUDGET_S, TYPES  # noqa: E402

PHASES = ("untouched", "before", "whole 1 s", "sampled 1 s")


def while_polling(bench: Bench, phase: str, seconds: float, facts: list[dict]) -> tuple[float, float]:
    """The target's (units/s, CPU µs per unit) while ``phase``'s requests run once a second."""
    stop = threading.Event()

    def poll() -> None:
        with bench.client() as client:
            n = 0
            while not stop.is_set():
                if phase == "before":
                    census = n % 3 == 0
                    args = {"types": TYPES if census else 0, "sort": "count", "max_seconds": 0.5}
                elif phase == "whole 1 s":
                    census, args = True, {"types": TYPES, "sort": "count", "max_seconds": 0.5}
                else:
                    census, args = True, {"types": TYPES, "sort": "count", "max_seconds": CENSUS_BUDGET_S, "sample": True}
                result = client.request("memory", args)
                if census:
                    facts.append(result["census"])
                n += 1
                stop.wait(1.0)

    poller = threading.Thread(target=poll, daemon=True)
    if phase != "untouched":
        poller.start()
        time.sleep(0.2)
    try:
        return bench.measure(seconds)
    finally:
        stop.set()
        if poller.is_alive():
            poller.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--versions", default="3.12,3.14")
    parser.add_argument("--heaps", default="50000,1000000")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    for version in options.versions.split(","):
        python = find_python(version)
        if python is None:
            print(f"{version}: no interpreter found, skipped")
            continue
        for heap in (int(h) for h in options.heaps.split(",")):
            with tempfile.TemporaryDirectory(prefix="pk-") as tmp:
                bench = Bench(python, Path(tmp), heap=heap)
                try:
                    rates: dict[str, list[tuple[float, float]]] = {p: [] for p in PHASES}
                    facts: dict[str, list[dict]] = {p: [] for p in PHASES}
                    for _round in range(options.rounds):
                        for phase in PHASES:
                            rates[phase].append(while_polling(bench, phase, options.seconds, facts[phase]))
                finally:
                    bench.stop()
            base_rate = statistics.median(r for r, _ in rates["untouched"])
            base_cpu = statistics.median(c for _, c in rates["untouched"])
            print(f"{version}, {heap:,} objects kept: {base_rate:.0f} units/s untouched, {base_cpu:.1f} µs CPU per unit")
            for phase in PHASES[1:]:
                rate = statistics.median(r for r, _ in rates[phase])
                cpu = statistics.median(c for _, c in rates[phase])
                census = facts[phase]
                seconds = statistics.median(f["seconds"] for f in census) if census else 0.0
                hold = max((f.get("gil_hold_max_seconds") or 0.0 for f in census), default=0.0)
                stride = statistics.median(f.get("sampled_every") or 1 for f in census) if census else 1
                print(f"  {phase:<12} throughput x{rate / base_rate:.3f}  CPU/unit x{cpu / base_cpu:.3f}"
                      f"  census {seconds * 1000:.1f} ms (median of {len(census)}), longest GIL hold {hold * 1000:.1f} ms,"
                      f" stride {stride:g}")


if __name__ == "__main__":
    main()
