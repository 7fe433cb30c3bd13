"""Benchmark: peeka export end to end, and what it costs the target, vs the OTel SDK in-process.

    python tests/bench_export.py [--versions 3.14] [--seconds 5] [--rates 100,1000,10000] [--repeat 3]
    python tests/bench_export.py --governor [--versions 3.12,3.14] [--seconds 3] [--rounds 5]

For each Python version, a target (tests/targets/export_bench_target.py) does a fixed amount of
"other work" per loop and makes RATE calls per second of ``handle``. Three runs per rate:
  plain   nothing observes it (the baseline throughput of other work)
  peeka   ``peeka export --watch __main__.handle`` streams one span per call to a real OTLP/HTTP
          receiver (oteltest's sink) through the exporter subprocess
  sdk     the same target instrumented in-process with the OpenTelemetry SDK (one span per call,
          BatchSpanProcessor, OTLP/HTTP to the same receiver); only where the SDK is importable
Each row is the median of --repeat runs (modes alternate); peeka runs with its defaults (the
overhead governor on). Then one run at full speed (RATE 0, the governor off) measures spans/s
through one exporter (target -> agent -> exporter -> receiver) and what was dropped where. Prints numbers; not a test (machine load shows).
Goals (issue 5): >= 20,000 spans/s through one exporter; <= 5% throughput loss at 1k calls/s.

Then the overhead governor's rows (issue 14; ``--governor`` alone skips the rows above): a target at
full speed (tests/targets/governor_target.py: a tiny leaf called millions of times a second, a
31-call handler) beside an untouched twin of it; the export stream watches the leaf or traces the
handler with the default budget (5%) and with the governor off (budget 0). Throughput is units of
work per CPU second of the target, as a ratio to its twin's in the same windows (the machine's load
falls on both), relative to that ratio untouched. Printed: loss, the sampling ratio and duty the
governor settled on, its own estimate of the overhead vs the budget, and spans/s sent. A last row
watches only the cold function: what an export stream costs beside the calls it reports (the floor).
Each row runs --rounds times (rows alternating; an ungoverned hot row once) and shows the median loss
with its range, the main thread's own loss (units per its CPU second) and the agent threads' share of
the process's CPU (/proc schedstat): one window swings by +-5 points here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(HERE / "integration")]
from conftest import TARGETS, find_python  # noqa: E402
from oteltest.sink import HttpSink  # noqa: E402
from oteltest.sink.handler import RequestHandler  # noqa: E402
from peeka_exporters.procfs import process_numbers  # noqa: E402
from test_export import ExportProcess, free_port, wait_for  # noqa: E402
from test_export_governor import Windows  # noqa: E402


class Count(RequestHandler):
    """Counts spans received (no per-span Python work: the receiver must not be the bottleneck)."""

    def __init__(self) -> None:
        self.spans = 0
        self.lock = threading.Lock()

    def handle_trace(self, request: Any, headers: Any) -> None:
        n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with self.lock:
            self.spans += n

    def handle_metrics(self, request: Any, headers: Any) -> None:
        pass

    def handle_logs(self, request: Any, headers: Any) -> None:
        pass


def sdk_python(version: str) -> str | None:
    """An interpreter of this version that can import the OTel SDK (the project's venv for it)."""
    for venv in (ROOT / ".venv", ROOT / f".venv{version.replace('.', '')}"):
        py = venv / "bin" / "python"
        if py.exists():
            out = subprocess.run([str(py), "-c", "import sys, opentelemetry.sdk; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip() == version:
                return str(py)
    return None


def agent_cpu(pid: int) -> float:
    """CPU seconds of the target's threads other than its main one: the agent's (the bench target
    starts none of its own), i.e. building, JSON-encoding and sending the span events."""
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        numbers = process_numbers(int(tid), proc=f"/proc/{pid}/task") if int(tid) != pid else None
        total += numbers["cpu_seconds"] if numbers else 0.0
    return total


class Run:
    def __init__(self, python: str, mode: str, rate: float, seconds: float, env: dict[str, str], tmp: Path) -> None:
        self.go = tmp / f"go-{mode}-{rate}-{time.monotonic_ns()}"
        full = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        full.update(env)
        self.proc = subprocess.Popen([python, "-u", str(TARGETS / "export_bench_target.py"), mode, str(rate),
                                      str(seconds), str(self.go)], stdout=subprocess.PIPE, text=True, env=full,
                                     start_new_session=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("ready"), line
        self.pid = self.proc.pid

    def result(self) -> dict[str, Any]:
        self.go.touch()
        out = json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]
        return out  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()  # type: ignore[union-attr]


def one(python: str, mode: str, rate: float, seconds: float, sink: Count, port: int, tmp: Path,
        sdk: str | None, encoder: str = "peeka") -> dict[str, Any]:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    run = Run(sdk if mode == "sdk" and sdk else python, mode, rate, seconds, env if mode == "sdk" else {}, tmp)
    exporter = None
    try:
        if mode == "peeka":
            # At full speed (rate 0) the pipeline's capacity is measured: the overhead governor off.
            budget = ("--overhead-budget", "0") if rate <= 0 else ()
            exporter = ExportProcess(tmp, "--pid", str(run.pid), "--watch", "__main__.handle", "--no-args", *budget,
                                     env=dict(env, PEEKA_SPAN_ENCODER=encoder))
            exporter.wait_up(run.pid, 60)
        before = sink.spans
        exporter_cpu = process_numbers(exporter.proc.pid)["cpu_seconds"] if exporter else 0.0  # type: ignore[index]
        agent_before = agent_cpu(run.pid)
        went = time.monotonic()
        out = run.result()
        health = None
        if exporter is not None:
            expected = out["calls"]

            def drained() -> Any:
                t = exporter.target(run.pid)  # type: ignore[union-attr]
                if t is None:
                    return None
                lost = sum(t["dropped"].values())
                return t if t["spans_exported"] + lost >= expected and t["queue"] == 0 else None

            try:
                health = wait_for(drained, 60, "the exporter to drain")
            except AssertionError:
                health = exporter.target(run.pid)
                # Not all calls accounted for: say what the exporter saw (a session that ended and
                # started again counts afresh).
                said = [line for line in exporter.output().splitlines() if "targets up" not in line]
                print(f"  not drained in 60 s: {health}; exporter said: {said[-6:]}", flush=True)
            out["delivered_in"] = time.monotonic() - went  # the run, then until the exporter drained
            out["exporter_cpu"] = process_numbers(exporter.proc.pid)["cpu_seconds"] - exporter_cpu  # type: ignore[index]
            out["agent_cpu"] = agent_cpu(run.pid) - agent_before
        elif mode == "sdk":
            time.sleep(1.0)
        out["received"] = sink.spans - before
        out["health"] = health
        return out
    finally:
        if exporter is not None:
            exporter.stop()
        run.stop()


def full_speed(python: str, encoder: str, seconds: float, sink: Count, port: int, tmp: Path,
               sdk: str | None) -> float | None:
    """One full-speed run through the exporter with the given span path; prints its rows and returns
    the exporter's CPU seconds per span it handled (None when it handled none)."""
    out = one(python, "peeka", 0, seconds, sink, port, tmp, sdk, encoder)
    h = out.get("health") or {}
    took = out.get("delivered_in") or out["seconds"]
    label = {"sdk": "SDK path", "peeka": "ours"}[encoder]
    print(f"full speed, peeka ({label}): target made {out['calls'] / out['seconds']:,.0f} calls/s for "
          f"{out['seconds']:.1f} s; receiver got {out['received']:,} spans in {took:.1f} s = "
          f"{out['received'] / took:,.0f} spans/s end to end (dropped {h.get('dropped')}; exporter CPU "
          f"{out.get('exporter_cpu', 0):.1f} s; load {os.getloadavg()[0]:.1f})", flush=True)
    per_span = None
    handled = (h.get("spans_received") or 0) - (h.get("dropped") or {}).get("queue", 0)
    if handled and out.get("exporter_cpu"):
        per_span = out["exporter_cpu"] / handled
        print(f"  exporter CPU per span handled (decoded, translated, encoded, sent): {per_span * 1e6:.1f} us "
              f"= {1 / per_span:,.0f} spans/s per core it has to itself", flush=True)
    if h.get("spans_received") and out.get("agent_cpu") is not None:
        per_sent = out["agent_cpu"] / h["spans_received"]
        print(f"  agent CPU per span sent (event built, JSON-encoded, written to the socket, in the target's "
              f"threads): {per_sent * 1e6:.1f} us = {1 / max(per_sent, 1e-9):,.0f} spans/s per core", flush=True)
    return per_span


GOVERNED = [("watch hot leaf", {"watch": ["__main__.leaf"]}), ("trace hot handler", {"trace": ["__main__.handle"]}),
            # The floor: a stream whose only function is called every 2,000 units (its wakeups, stack samples, stats).
            ("watch cold only", {"watch": ["__main__.cold"]})]


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each of the process's threads so far (/proc/PID/task/TID/schedstat)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0]) / 1e9
        except OSError:
            pass  # the thread ended
    return out


class GovernedRun(NamedTuple):
    """One row's stream in one round: when it was judged, against which untouched phases, and what
    the governor and the agent's own threads did meanwhile."""
    label: str
    budget: float
    judged: tuple[float, float]
    untouched: list[tuple[float, float]]
    spans_per_s: float
    agent_share: float  # the agent threads' CPU as a share of the target process's, while judged
    last: dict[str, Any] | None


def governed_run(client: Any, pid: int, label: str, probes: dict[str, Any], budget: float, seconds: float,
                 before: tuple[float, float]) -> GovernedRun:
    stream = client.stream("export", dict(probes, interval=0.5, overhead_budget=budget))
    next(stream)
    spans, last, settle, start, end = 0, None, time.monotonic() + 2.0, None, None
    cpu0: dict[str, float] = {}
    for message in stream:
        data = message.data
        now = time.monotonic()
        if start is None and now >= settle:
            start, spans, cpu0 = now, 0, thread_cpu(pid)
        if data["kind"] == "spans":
            spans += len(data["spans"])
        else:
            last = data
        if start is not None and now >= start + seconds:
            end = now
            break
    cpu1 = thread_cpu(pid)
    stream.close()
    assert start is not None and end is not None
    main = cpu1.get(str(pid), 0.0) - cpu0.get(str(pid), 0.0)
    agent = sum(v - cpu0.get(tid, 0.0) for tid, v in cpu1.items() if tid != str(pid))
    return GovernedRun(label, budget, (start, end), [before], spans / (end - start), agent / max(agent + main, 1e-9), last)


def untouched_phase(seconds: float) -> tuple[float, float]:
    time.sleep(0.5)  # the last stream's probes are gone, its thread ended
    t0 = time.monotonic()
    time.sleep(seconds)
    return (t0, time.monotonic())


def governor_rows(python: str, seconds: float, rounds: int) -> None:
    """Target throughput at full speed: untouched, and exporting with the governor and without.

    One window of a few seconds swings by +-5 points on this 2-core machine (the twin and the target
    do not lose the same to the rest of the load), so each row runs ``rounds`` times, rows
    alternating, each judged against the untouched phases just before and after it; the median loss
    and the range over rounds are shown. An ungoverned hot row crawls (-98%): it runs in the first
    round only."""
    from peeka.attach import attach, detach

    target = subprocess.Popen([python, "-u", str(TARGETS / "governor_target.py"), "0.25"], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    twin = subprocess.Popen([python, "-u", str(TARGETS / "governor_target.py"), "0.25"], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    runs: list[GovernedRun] = []
    try:
        for proc in (target, twin):
            assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        windows, twin_windows = Windows(target), Windows(twin)
        client, _ = attach(target.pid, timeout=60)
        with client:
            client.request("ping", {})
            before = untouched_phase(2.0)
            for round_ in range(rounds):
                for label, probes in GOVERNED:
                    for budget in (5, 0):
                        if budget == 0 and "cold" not in label and round_:
                            continue
                        run = governed_run(client, target.pid, label, probes, budget, seconds, before)
                        before = untouched_phase(2.0)
                        run.untouched.append(before)
                        runs.append(run)
        detach(target.pid)
    finally:
        for proc in (target, twin):
            proc.kill()
            proc.wait()
    print(f"each row: median over {rounds} rounds (range), loss of units per CPU second of the whole process "
          "(main thread's alone beside it) vs the untouched phases around it, paired with the twin")
    print(f"\n{'full speed':<18} {'governor':>9} {'loss/cpu':>9} {'range':>14} {'main/cpu':>9} {'agent cpu':>9} "
          f"{'sampling':>10} {'duty':>7} {'est. overhead':>14} {'spans/s':>9}")
    for label, _probes in GOVERNED:
        for budget in (5, 0):
            mine = [r for r in runs if r.label == label and r.budget == budget]
            losses, main_losses = [], []
            for r in mine:
                for per, out in (("cpu", losses), ("main_cpu", main_losses)):
                    base = windows.paired(twin_windows, r.untouched, per, least=1)
                    got = windows.paired(twin_windows, [r.judged], per, least=1)
                    out.append((1 - got / base) * 100)
            last = mine[-1].last or {}
            function = "__main__." + ("leaf" if "leaf" in label else "cold" if "cold" in label else "handle")
            row = next((x for x in last.get("functions", []) if x["function"] == function), {})
            governed = row.get("governor") or {}
            overhead = last.get("overhead")
            est = f"{overhead['ratio'] * 100:.1f}% / {overhead['budget'] * 100:g}%" if overhead else "off"
            sampling = f"1/{round(1 / governed['sampling_ratio'])}" if governed.get("sampling_ratio") else "all"
            duty = f"{governed['duty'] * 100:.1f}%" if governed else "100%"
            spread = f"{min(losses):.1f}..{max(losses):.1f}" if len(losses) > 1 else "-"
            agent = statistics.median(r.agent_share for r in mine) * 100
            rate = statistics.median(r.spans_per_s for r in mine)
            print(f"{label:<18} {(str(budget) + '%') if budget else 'off':>9} {statistics.median(losses):8.1f}% "
                  f"{spread:>14} {statistics.median(main_losses):8.1f}% {agent:8.2f}% {sampling:>10} {duty:>7} "
                  f"{est:>14} {rate:>9,.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", default="3.14")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode and rate (medians are shown)")
    parser.add_argument("--governor", action="store_true", help="only the overhead governor's rows")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the governor's rows (medians are shown)")
    parser.add_argument("--spans-only", action="store_true", help="only the full-speed spans/s rows (no rates)")
    parser.add_argument("--spans-repeat", type=int, default=1,
                        help="full-speed runs per span path (SDK's, ours), alternating; medians compared")
    args = parser.parse_args()
    if args.governor:
        for version in args.versions.split(","):
            python = find_python(version)
            if python is None:
                print(f"{version}: no interpreter found, skipped")
                continue
            print(f"\n== Python {version}: the overhead governor (load: {os.getloadavg()[0]:.1f})")
            governor_rows(python, args.seconds, args.rounds)
        return
    logging.disable(logging.CRITICAL)
    from http.server import BaseHTTPRequestHandler

    BaseHTTPRequestHandler.log_message = lambda *a: None  # type: ignore[method-assign]  # the sink logs every POST
    sink = Count()
    port = free_port()
    server = HttpSink(sink, logging.getLogger("bench"), port=port)
    server.start()
    time.sleep(0.3)
    rates = [float(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for version in args.versions.split(","):
            python = find_python(version)
            if python is None:
                print(f"{version}: no interpreter found, skipped")
                continue
            sdk = sdk_python(version)
            print(f"\n== Python {version} target ({python}); SDK comparison: {sdk or 'none (SDK not importable)'}")
            print("loss/cpu: other work per CPU second of the target process vs plain (robust to the machine's load);"
                  "\nloss/wall: other work per wall second vs plain; exporter cpu: the sidecar's CPU per run second")
            print(f"{'rate/s':>8} {'mode':>6} {'calls/s':>9} {'work/cpu-s':>11} {'loss/cpu':>9} {'loss/wall':>9} "
                  f"{'spans rcvd':>10} {'dropped':>8} {'exporter cpu':>12}")
            modes = [m for m in ("plain", "peeka", "sdk") if m != "sdk" or sdk is not None]
            for rate in [] if args.spans_only else rates:
                # Modes alternate within each repeat and the medians are compared, so a burst of load
                # from elsewhere on the machine lands on one run, not on one mode.
                runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
                for _ in range(args.repeat):
                    for mode in modes:
                        runs[mode].append(one(python, mode, rate, args.seconds, sink, port, tmp, sdk))
                base_cpu = statistics.median(r["units"] / r["cpu"] for r in runs["plain"])
                base_wall = statistics.median(r["units"] / r["seconds"] for r in runs["plain"])
                for mode in modes:
                    rs = runs[mode]
                    per_cpu = statistics.median(r["units"] / r["cpu"] for r in rs)
                    per_wall = statistics.median(r["units"] / r["seconds"] for r in rs)
                    loss_cpu = f"{(1 - per_cpu / base_cpu) * 100:8.1f}%" if mode != "plain" else "        -"
                    loss_wall = f"{(1 - per_wall / base_wall) * 100:8.1f}%" if mode != "plain" else "        -"
                    last = rs[-1]
                    dropped = sum(last["health"]["dropped"].values()) if last.get("health") else "-"
                    ecpu = (f"{statistics.median(r['exporter_cpu'] / r['seconds'] for r in rs) * 100:11.1f}%"
                            if "exporter_cpu" in last else "-")
                    print(f"{rate:>8.0f} {mode:>6} {last['calls'] / last['seconds']:>9.0f} {per_cpu:>11.0f} {loss_cpu} "
                          f"{loss_wall} {last['received']:>10} {dropped:>8} {ecpu:>12}", flush=True)
            # Spans/s through one exporter, the SDK's span path (before) and ours (after), alternating.
            per_span: dict[str, list[float]] = {}
            for _ in range(args.spans_repeat):
                for encoder in ("sdk", "peeka"):
                    per_span.setdefault(encoder, []).append(
                        full_speed(python, encoder, args.seconds, sink, port, tmp, sdk))
            measured = {e: [v for v in values if v] for e, values in per_span.items()}
            if all(measured.values()):
                before, after = (statistics.median(measured[e]) for e in ("sdk", "peeka"))
                print(f"exporter CPU per span handled, medians of {args.spans_repeat}: SDK path {before * 1e6:.1f} us, "
                      f"ours {after * 1e6:.1f} us ({after / before:.2f}x; {before / after:.1f} times the spans per "
                      f"core: {1 / before:,.0f} -> {1 / after:,.0f} spans/s per core the exporter has to itself)",
                      flush=True)
            if sdk:
                out = one(python, "sdk", 0, args.seconds, sink, port, tmp, sdk)
                print(f"full speed, sdk:   target made {out['calls'] / out['seconds']:,.0f} calls/s; receiver got "
                      f"{out['received']:,} spans ({out['received'] / out['seconds']:,.0f} spans/s)", flush=True)
    server.stop()


if __name__ == "__main__":
    main()
