"""Benchmark: what the runtime views cost a busy target, and how fast one answer comes, per Python.

    python tests/bench_runtime.py [--versions 3.9,3.12,3.14] [--seconds 3] [--rounds 3] [--sampler-only]
                                  [--baseline OTHER_CHECKOUT/agent] [--profile-only]

For each interpreter a real target (tests/targets/runtime_bench.py: one thread doing pure-Python
work units, eight idle threads, the agent started in-process) reports its units per second while
(a) nothing watches it, (b) a thread of its own merely wakes at 100 Hz (the floor for any sampler
inside the process: each wakeup takes the GIL from the busy thread), (c) ``top`` samples at 100 Hz,
(d) ``thread -n 5 -i 200`` runs back to back. Then top's sampler alone in processes of 10 and 500
threads: CPU-weighted, ``--idle`` (wall clock, no CPU clocks read) and, with ``--baseline DIR``,
another checkout's agent (before/after in one run), each also as one sample's median wall time
in-process (tests/targets/sampler_cost.py). And ``peeka export``'s continuous profile in the
same processes (``--profile-only``: just these rows): the export stream with a monitor on a function
never called (its 10 Hz top-shares sampling and stats), with ``profile`` at its default rate, and with
``profile`` plus a watch on the worker's outer function, so every sample of the worker is inside a
watched call (the links' bookkeeping at every round).
Phases alternate over several rounds in one run and the medians are compared with untouched, two
ways: throughput (wall clock: honest but swings with the machine's other load) and the process's
CPU time per unit of work (what the views add in CPU, steadier on a shared machine).
Then the latency of one ``thread`` answer (all threads with stacks, no interval) and one ``memory``
answer (process numbers, GC, type census) through the real socket, median of 7.
Not a test: numbers depend on the machine's load.
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
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from conftest import VERSIONS, find_python  # noqa: E402

from peeka.client import AgentClient  # noqa: E402
from peeka.process import TargetProcess  # noqa: E402


class Bench:
    def __init__(self, python: str, tmp: Path, idle_threads: int = 8, agent: Path = ROOT / "agent",
                 heap: int = 0) -> None:
        lib = tmp / "lib"
        lib.mkdir()
        (lib / "peeka_agent").symlink_to(agent)
        env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=str(lib), PYTHONDONTWRITEBYTECODE="1")
        self.proc = subprocess.Popen([python, "-u", str(HERE / "targets" / "runtime_bench.py"), str(idle_threads), str(heap)],
                                     env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().startswith("ready")  # type: ignore[union-attr]

    def measure(self, seconds: float, how: str = "") -> tuple[float, float]:
        """``(units per second, process CPU microseconds per unit)`` over ``seconds``."""
        self.proc.stdin.write(f"measure {seconds} {how}\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        rate, cpu = self.proc.stdout.readline().split()  # type: ignore[union-attr]
        return float(rate), float(cpu)

    def client(self) -> AgentClient:
        return AgentClient(TargetProcess(self.proc.pid), timeout=60).open()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


SAMPLER_BUSY: list[float] = []  # the sampler's own report: % of wall time it held the GIL


def while_top(bench: Bench, seconds: float, idle: bool = False, record: bool = False) -> tuple[float, float]:
    def sample() -> None:  # the agent ends the stream itself after its timeout (or recording)
        with bench.client() as client:
            args = {"rate": 100, "interval": 1.0, "idle": idle}
            args["record" if record else "timeout"] = seconds + 0.6
            for message in client.stream("top", args):
                data = getattr(message, "data", None)
                if isinstance(data, dict) and data.get("type") in ("summary", "profile"):
                    SAMPLER_BUSY.append(data["sampler"]["busy_percent"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(0.3)  # sampling has started
    rate = bench.measure(seconds)
    sampler.join(30)
    return rate


AGENT_SHARE: list[float] = []  # CPU of every thread but the busy worker, as a share of one core, per export phase


def thread_cpu_ns(pid: int) -> dict[str, int]:
    """CPU nanoseconds of each thread of ``pid``, from schedstat (ns, not 10 ms ticks)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[task.name] = int((task / "schedstat").read_text().split()[0])
        except OSError:
            pass
    return out


def while_export(bench: Bench, seconds: float, profile: bool, watch: str | None = None) -> tuple[float, float]:
    """The target's rate while an ``export`` stream runs (started before measuring, ended after),
    and (in AGENT_SHARE) the CPU every other thread used meanwhile (the agent's: the rest idle), as a
    share of one core (the busy worker's whole CPU on a quiet machine: a load-independent cost)."""
    started, stop = threading.Event(), threading.Event()

    def stream() -> None:
        try:
            with bench.client() as client:
                args: dict = {"monitor": ["__main__.wake"], "profile": profile}  # the default interval (5 s) and rate
                if watch:
                    args["watch"] = [watch]
                messages = client.stream("export", args)
                next(messages)  # calibrated and probing
                started.set()
                for _message in messages:
                    if stop.is_set():
                        break
        finally:
            started.set()

    pid = bench.proc.pid
    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    started.wait(60)
    time.sleep(0.3)
    before = thread_cpu_ns(pid)
    rate = bench.measure(seconds)
    after = thread_cpu_ns(pid)
    used = {tid: after[tid] - before.get(tid, 0) for tid in after}
    worker = max(used, key=used.__getitem__)  # the busy thread; the others are the agent's (the rest idle)
    AGENT_SHARE.append(sum(v for tid, v in used.items() if tid != worker) / (seconds * 1e9))
    stop.set()
    streamer.join(30)
    return rate


def profile_rows(version: str, python: str, seconds: float, rounds: int) -> None:
    """What ``peeka export --profile`` at its default rate costs, in processes of 10 and 500 threads."""
    for threads in (10, 500):
        tmp = Path(tempfile.mkdtemp(prefix="pkb-"))
        bench = Bench(python, tmp, threads - 2)
        try:
            bench.measure(1.0)
            phases = {"untouched": bench.measure, "export (no profile)": partial(while_export, bench, profile=False),
                      "export --profile": partial(while_export, bench, profile=True),
                      "export --profile, linked": partial(while_export, bench, profile=True, watch="__main__.worker")}
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in phases}
            shares: dict[str, list[float]] = {name: [] for name in phases}
            for _ in range(rounds):
                for name, phase in phases.items():
                    results[name].append(phase(seconds))
                    shares[name].extend(AGENT_SHARE)
                    AGENT_SHARE.clear()
            base_cpu = statistics.median(c for _, c in results["untouched"])
            base_rate = statistics.median(r for r, _ in results["untouched"])
            for name in list(phases)[1:]:
                cpu = statistics.median(c for _, c in results[name]) / base_cpu
                rate = statistics.median(r for r, _ in results[name]) / base_rate
                print(f"Python {version}, {threads} threads: {name:<26} agent CPU "
                      f"{100 * statistics.median(shares[name]):.2f}% of a core; CPU per unit ratio {cpu:.3f}, "
                      f"throughput ratio {rate:.3f}")
        finally:
            bench.stop()
            shutil.rmtree(tmp, ignore_errors=True)


def while_thread_n(bench: Bench, seconds: float) -> tuple[float, float]:
    done = threading.Event()

    def ask() -> None:
        with bench.client() as client:
            while not done.is_set():
                client.request("thread", {"interval_ms": 200, "top": 5})

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    time.sleep(0.1)
    rate = bench.measure(seconds)
    done.set()
    asker.join(10)
    return rate


def latency(bench: Bench, command: str, args: dict) -> float:
    with bench.client() as client:
        times = []
        for _ in range(7):
            started = time.perf_counter()
            client.request(command, args)
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def run(version: str, python: str, seconds: float, rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pkb-"))
    bench = Bench(python, tmp)
    try:
        bench.measure(1.0)  # warm up
        phases = {"untouched": bench.measure, "bare 100 Hz wakeups": lambda s: bench.measure(s, "wake"),
                  "top 100 Hz": lambda s: while_top(bench, s),
                  "thread -n 5 -i 200": lambda s: while_thread_n(bench, s)}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in phases}
        for _ in range(rounds):
            for name, phase in phases.items():
                results[name].append(phase(seconds))
        base_rate = statistics.median(r for r, _ in results["untouched"])
        base_cpu = statistics.median(c for _, c in results["untouched"])
        print(f"Python {version}: untouched {base_rate:,.0f} units/s, {base_cpu:.1f} us of process CPU per unit "
              f"(rounds: {', '.join(f'{r:,.0f}' for r, _ in results['untouched'])} units/s)")
        for name in list(phases)[1:]:
            rate = statistics.median(r for r, _ in results[name])
            cpu = statistics.median(c for _, c in results[name])
            print(f"  {name:<20} throughput ratio {rate / base_rate:.3f} (slowdown {100 * (1 - rate / base_rate):+.1f}%)"
                  f"   CPU per unit ratio {cpu / base_cpu:.3f} (extra CPU {100 * (cpu / base_cpu - 1):+.1f}%)")
        print(f"  top's sampler held the GIL {statistics.median(SAMPLER_BUSY):.3f}% of the time (median of "
              f"{len(SAMPLER_BUSY)} one-second reports; the rest of its cost is the GIL handoffs)")
        SAMPLER_BUSY.clear()
        thread_ms = latency(bench, "thread", {})
        memory_ms = latency(bench, "memory", {})
        with bench.client() as client:
            objects = client.request("memory", {})["census"]["objects"]
        print(f"  latency: thread {thread_ms:.1f} ms (10 threads with stacks), memory {memory_ms:.1f} ms "
              f"(census of {objects:,} objects)")
    finally:
        bench.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def sampler_rows(version: str, python: str, seconds: float, rounds: int, baseline: Path | None) -> None:
    """top's sampler at 100 Hz in a process of 10 and of 500 threads: CPU-weighted (the default),
    wall-clock (``--idle``: no CPU clocks read), recording (``--record``: also every sample counted
    with its frames' lines, for pprof and speedscope), and with ``baseline``'s agent (another checkout)."""
    for threads in (10, 500):
        agents = {"": ROOT / "agent"}
        if baseline is not None:
            agents[" (baseline)"] = baseline
        rows: dict[str, tuple[float, float, float]] = {}
        for suffix, agent in agents.items():
            tmp = Path(tempfile.mkdtemp(prefix="pkb-"))
            bench = Bench(python, tmp, threads - 2, agent)  # + the worker and the main thread
            try:
                bench.measure(1.0)
                phases = {"untouched": bench.measure, "top 100 Hz" + suffix: partial(while_top, bench),
                          "top 100 Hz --idle" + suffix: partial(while_top, bench, idle=True),
                          "top 100 Hz --record" + suffix: partial(while_top, bench, record=True)}
                if suffix:  # an older agent may not record: before/after is about plain top
                    del phases["top 100 Hz --record" + suffix]
                results: dict[str, list[tuple[float, float]]] = {name: [] for name in phases}
                busy: dict[str, list[float]] = {name: [] for name in phases}
                for _ in range(rounds):
                    for name, phase in phases.items():
                        results[name].append(phase(seconds))
                        busy[name].extend(SAMPLER_BUSY)
                        SAMPLER_BUSY.clear()
                base_cpu = statistics.median(c for _, c in results["untouched"])
                for name in list(phases)[1:]:
                    cpu = statistics.median(c for _, c in results[name])
                    rate = statistics.median(r for r, _ in results[name]) / statistics.median(r for r, _ in results["untouched"])
                    rows[name] = (statistics.median(busy[name]) if busy[name] else float("nan"), cpu / base_cpu, rate)
            finally:
                bench.stop()
                shutil.rmtree(tmp, ignore_errors=True)
        for name, (held, cpu_ratio, rate) in rows.items():
            print(f"Python {version}, {threads} threads: {name:<28} sampler held the GIL {held:.3f}% of the time; "
                  f"CPU per unit ratio {cpu_ratio:.3f}, throughput ratio {rate:.3f}")
        # The same samplers in-process (tests/targets/sampler_cost.py): the median wall time of one
        # sample, which the machine's other load moves far less than the share above.
        command = [python, str(HERE / "targets" / "sampler_cost.py"), str(threads), str(ROOT / "agent")]
        if baseline is not None:
            command.append(str(baseline))
        medians = {}
        for line in subprocess.run(command, capture_output=True, text=True, timeout=600).stdout.splitlines():
            name, value = line.split()
            medians[name] = float(value)
        against = medians.get("baseline")
        print(f"Python {version}, {threads} threads: one sample (median, in-process): "
              + ", ".join(f"{name} {us:.1f} us" + (f" ({us / against:.2f}x baseline)" if against and name != "baseline" else "")
                          for name, us in medians.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", default=",".join(VERSIONS))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sampler-only", action="store_true", help="only top's sampler rows at 10 and 500 threads")
    parser.add_argument("--baseline", type=Path, help="another checkout's agent/ directory, for before/after rows")
    parser.add_argument("--profile-only", action="store_true", help="only export --profile's rows at 10 and 500 threads")
    opts = parser.parse_args()
    for version in opts.versions.split(","):
        python = find_python(version)
        if python is None:
            print(f"Python {version}: not found on this machine, skipped")
            continue
        if opts.profile_only:
            profile_rows(version, python, opts.seconds, opts.rounds)
            continue
        if not opts.sampler_only:
            run(version, python, opts.seconds, opts.rounds)
        sampler_rows(version, python, opts.seconds, opts.rounds, opts.baseline)
        profile_rows(version, python, opts.seconds, opts.rounds)


if __name__ == "__main__":
    main()
