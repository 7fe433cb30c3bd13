"""Benchmark: latency of logger, tasks (1,000 tasks) and source answers, and what `logger --follow`
costs a target that logs as fast as it can, per Python version, in one run.

    python tests/bench_runtime_logs.py [--versions 3.12,3.14] [--rounds 20] [--window 0.5]

Latency: a real target (tests/targets/runtime_target.py with 1,000 extra sleeping tasks) attached
the real way; the median and worst of ``--rounds`` request/response round trips through the
client library (what the CLI adds on top is its own start-up).

Throughput: a second target logs "order N" through a FileHandler in a tight loop and prints its
records per second for every ``--window``; the windows are read while it is untouched, while the
agent is attached but idle, and while a client follows the logger (reading every event as fast as it
comes) with the default cap of 2,000 records/s and with no cap. Idle and follow phases alternate.
Ratios are against untouched and against attached-but-idle. Not a test: numbers depend on the machine's load.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from conftest import TARGETS, Target, find_python  # noqa: E402

from peeka.attach import attach  # noqa: E402

LOGGING_TARGET = r'''
import logging, os, sys, threading, time
window = float(sys.argv[1])
log = logging.getLogger("bench.orders")
handler = logging.FileHandler(os.devnull)
handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False

def run():
    while True:
        start = time.perf_counter()
        n = 0
        while time.perf_counter() - start < window:
            log.info("order %d", n)
            n += 1
        print("rate %.1f" % (n / (time.perf_counter() - start)), flush=True)

threading.Thread(target=run, daemon=True, name="logging").start()
print("ready", flush=True)
sys.stdin.read()
'''


def latencies(python: str, rounds: int) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory(prefix="pk-bench-") as tmp:
        lib = Path(tmp) / "lib"
        lib.mkdir()
        (lib / "runtime_lib.py").write_text((TARGETS / "runtime_lib.py").read_text())
        target = Target(python, "runtime_target.py", str(lib), str(Path(tmp) / "app.log"), "1000")
        try:
            client, _ = attach(target.proc.pid)
            with client:
                asks = {"logger": ("logger", {}), "tasks (1,000)": ("tasks", {}),
                        "source": ("source", {"pattern": "runtime_lib.Basket.total"})}
                out = {}
                for label, (command, args) in asks.items():
                    result = client.request(command, args)  # warm: the first call imports what it needs
                    if command == "tasks":
                        assert result["count"] >= 1000, result["count"]
                    times = []
                    for _ in range(rounds):
                        started = time.perf_counter()
                        client.request(command, args)
                        times.append((time.perf_counter() - started) * 1000)
                    out[label] = (statistics.median(times), max(times))
                client.request("detach", {})
        finally:
            target.stop()
    return out


class Rates:
    """The target's "rate N" lines, read in the background."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.values: list[float] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("rate "):
                with self.lock:
                    self.values.append(float(line.split()[1]))

    def collect(self, windows: int, window: float) -> float:
        """Median rate over the next ``windows`` whole windows (the one in progress is skipped)."""
        with self.lock:
            start = len(self.values) + 1
        deadline = time.monotonic() + (windows + 3) * window + 10
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.values) >= start + windows:
                    return statistics.median(self.values[start:start + windows])
            time.sleep(window / 4)
        raise RuntimeError("the target stopped reporting its logging rate")


def follow_cost(python: str, window: float, windows: int) -> dict[str, float]:
    """Records/s per phase. Phases alternate (idle, follow, idle, ...) so that a change in the
    machine's load shows in both; each phase's number is the median of its windows."""
    with tempfile.TemporaryDirectory(prefix="pk-bench-") as tmp:
        script = Path(tmp) / "log_target.py"
        script.write_text(LOGGING_TARGET)
        proc = subprocess.Popen([python, "-u", str(script), str(window)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        samples: dict[str, list[float]] = {}
        counts = {"events": 0, "dropped": 0}
        try:
            assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
            rates = Rates(proc)

            def measure(label: str) -> None:
                samples.setdefault(label, []).append(rates.collect(windows, window))

            measure("untouched")
            client, _ = attach(proc.pid)
            with client:
                for cap, label in ((2000, "--follow (2,000/s cap)"), (1_000_000, "--follow, no cap"),
                                   (2000, "--follow (2,000/s cap)")):
                    measure("attached, idle")
                    with attach(proc.pid)[0] as follower:
                        _follow_in_background(follower, cap, counts)
                        time.sleep(window)
                        measure(label)
                measure("attached, idle")
                client.request("detach", {})
            measure("after detach")
        finally:
            proc.kill()
            proc.wait()
    out: dict[str, float] = {label: statistics.median(values) for label, values in samples.items()}
    out.update(counts)
    return out


def _follow_in_background(client: Any, max_rate: int, counts: dict[str, int]) -> None:
    def consume() -> None:
        dropped = 0  # each event carries the stream's drop count so far
        try:
            for message in client.stream("logger", {"follow": True, "name": "bench.orders", "max_rate": max_rate}):
                counts["events"] += 1
                dropped = max(dropped, message.dropped)
        except Exception:
            pass  # the client closes under it when the measurement is done
        counts["dropped"] += dropped

    threading.Thread(target=consume, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", default="3.12,3.14")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--window", type=float, default=0.5)
    parser.add_argument("--windows", type=int, default=6)
    opts = parser.parse_args()
    for version in opts.versions.split(","):
        python = find_python(version)
        if python is None:
            print(f"Python {version}: not found on this machine, skipped")
            continue
        print(f"Python {version}")
        for label, (median, worst) in latencies(python, opts.rounds).items():
            print(f"  {label:<16} answer  median {median:7.2f} ms  max {worst:7.2f} ms")
        cost = follow_cost(python, opts.window, opts.windows)
        base, idle = cost["untouched"], cost["attached, idle"]
        for label in ("untouched", "attached, idle", "--follow (2,000/s cap)", "--follow, no cap", "after detach"):
            print(f"  logging {label:<24} {cost[label]:>10,.0f} records/s  x{cost[label] / base:.3f} vs untouched"
                  f"  x{cost[label] / idle:.3f} vs attached idle")
        print(f"  --follow streams: {cost['events']:,.0f} events received; the host dropped (counted, never waited)"
              f" {cost['dropped']:,.0f} over the cap or a full outbox")


if __name__ == "__main__":
    main()
