"""Prometheus side: each target's numbers -> metric families, in a collector of a private registry.

Names (all with the labels ``pid`` and ``service`` of the target they describe):

    peeka_function_calls_total{function,outcome}     counter, outcome = ok | error
    peeka_function_duration_seconds{function}        histogram (monitor's cumulative buckets)
    peeka_process_cpu_seconds_total                  counter, user + system, from /proc
    peeka_process_resident_memory_bytes              gauge, from /proc
    peeka_process_threads                            gauge, OS threads, from /proc
    peeka_gc_collections_total{generation}           counter, gc.get_stats() in the target
    peeka_top_function_share{function}               gauge, share of stack samples (top 10 per interval)
    peeka_observations_dropped_total{stage}          counter, stage = agent | queue | export
    peeka_target_up                                  gauge, 1 while the exporter streams from the target
    peeka_exporter_queue_spans                       gauge, spans waiting in this target's export queue
    peeka_exporter_export_failures_total             counter, export calls that failed after the SDK's retries
    peeka_overhead_ratio                             gauge, estimated share of the target's CPU its probes cost
    peeka_sampling_ratio{function}                   gauge, share of the function's calls exported (the governor's)
    peeka_profiles_exported_total                    counter, continuous profiles a backend took (per destination)
    peeka_profiles_dropped_total                     counter, profiles lost: queue full while a backend was down, ...
    peeka_function_calls_estimated_total{function}   counter, calls while the governor had the probe off:
                                                     estimated from the rate while on, never in calls_total

Served as OpenMetrics when the scraper asks for it (``Accept: application/openmetrics-text``), the
duration buckets carry exemplars: the trace and span id of a recent span of that function which the
exporter handed to the backend, so a latency panel links to the trace.

With ``by_service`` (``--by-service``) the series have no ``pid`` label: a service's targets are
summed (``merge_by_service``; ``peeka_target_up`` counts those streaming), and what its forgotten
targets counted stays in the sums, so counters never go back when a pre-fork server replaces workers.

Labels are bounded: function names the user chose to probe (top shares: at most 10 per target),
never arguments, results, messages or trace ids. The default registry is not used: it would mix
the sidecar's own process metrics with the targets'.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar as SampleExemplar


class Exemplar(NamedTuple):
    """One exported span of a function: its ids, its duration and when it ended."""

    trace_id: str
    span_id: str
    seconds: float
    time: float


@dataclass
class TargetSnapshot:
    """What the exporter knows about one target at scrape time (plain data, no live objects)."""

    pid: int
    service: str
    up: bool
    process: Mapping[str, float] | None = None  # cpu_seconds, resident_bytes, threads
    functions: list[Mapping[str, Any]] = field(default_factory=list)  # monitor rows (with "total")
    gc: list[int] = field(default_factory=list)
    top: list[list[Any]] = field(default_factory=list)  # [function, share]
    dropped: Mapping[str, int] = field(default_factory=dict)  # stage -> count
    queue_spans: int = 0
    export_failures: int = 0
    overhead_ratio: float | None = None  # the agent's governor's estimate, when it runs
    exemplars: Mapping[str, list[Exemplar]] = field(default_factory=dict)  # function -> recent exported spans
    profiles_exported: int | None = None  # continuous profiles a backend took (one per destination); None: not profiled
    profiles_dropped: int | None = None  # ... dropped: queue full, backend still down at shutdown, not encodable


def families(targets: Iterable[TargetSnapshot], by_service: bool = False) -> list[Metric]:
    """The metric families for these targets (pure: same input, same exposition). ``by_service``:
    targets already merged per service (``merge_by_service``), labelled without ``pid``."""
    base = ["service"] if by_service else ["pid", "service"]
    calls = CounterMetricFamily("peeka_function_calls", "Calls of probed functions by outcome.",
                                labels=[*base, "function", "outcome"])
    duration = HistogramMetricFamily("peeka_function_duration_seconds", "Duration of probed function calls.",
                                     labels=[*base, "function"], unit="seconds")
    cpu = CounterMetricFamily("peeka_process_cpu_seconds", "Target CPU time, user plus system.",
                              labels=base, unit="seconds")
    rss = GaugeMetricFamily("peeka_process_resident_memory_bytes", "Target resident memory.",
                            labels=base, unit="bytes")
    threads = GaugeMetricFamily("peeka_process_threads", "Target OS threads.", labels=base)
    gcs = CounterMetricFamily("peeka_gc_collections", "Target garbage collections by generation.",
                              labels=[*base, "generation"])
    top = GaugeMetricFamily("peeka_top_function_share",
                            "Share of the target's stack samples in each of its busiest functions (top 10).",
                            labels=[*base, "function"])
    dropped = CounterMetricFamily("peeka_observations_dropped", "Observed calls lost before export, by stage.",
                                  labels=[*base, "stage"])
    up = GaugeMetricFamily("peeka_target_up", "1 while the exporter streams from the target, else 0.", labels=base)
    queue = GaugeMetricFamily("peeka_exporter_queue_spans", "Spans waiting in the export queue.", labels=base)
    failures = CounterMetricFamily("peeka_exporter_export_failures", "Span exports that failed after retries.",
                                   labels=base)
    overhead = GaugeMetricFamily("peeka_overhead_ratio",
                                 "Estimated share of the target's CPU that its probes cost (the overhead governor's).",
                                 labels=base)
    sampling = GaugeMetricFamily("peeka_sampling_ratio", "Share of the function's calls exported as spans.",
                                 labels=[*base, "function"])
    estimated = CounterMetricFamily("peeka_function_calls_estimated",
                                    "Calls while the probe was switched off, estimated from its call rate while on.",
                                    labels=[*base, "function"])
    profiles_out = CounterMetricFamily("peeka_profiles_exported", "Continuous profiles a backend took (per destination).",
                                       labels=base)
    profiles_lost = CounterMetricFamily("peeka_profiles_dropped",
                                        "Continuous profiles lost: queue full while a backend was down, or unsent at exit.",
                                        labels=base)
    for t in targets:
        ids = [t.service] if by_service else [str(t.pid), t.service]
        up.add_metric(ids, float(t.up))
        if t.profiles_exported is not None:
            profiles_out.add_metric(ids, t.profiles_exported)
            profiles_lost.add_metric(ids, t.profiles_dropped or 0)  # merged per service: how many of its targets stream
        queue.add_metric(ids, t.queue_spans)
        failures.add_metric(ids, t.export_failures)
        for stage in ("agent", "queue", "export"):
            dropped.add_metric([*ids, stage], t.dropped.get(stage, 0))
        if t.process is not None:
            cpu.add_metric(ids, t.process["cpu_seconds"])
            rss.add_metric(ids, t.process["resident_bytes"])
            threads.add_metric(ids, t.process["threads"])
        for generation, count in enumerate(t.gc):
            gcs.add_metric([*ids, str(generation)], count)
        for name, share in t.top:
            top.add_metric([*ids, name], share)
        if t.overhead_ratio is not None:
            overhead.add_metric(ids, t.overhead_ratio)
        for row in t.functions:
            governed = row.get("governor")
            if governed:
                sampling.add_metric([*ids, row["function"]], governed["sampling_ratio"])
                estimated.add_metric([*ids, row["function"]], governed["estimated_calls"])
            total = row["total"]
            failed = total["failures"]
            calls.add_metric([*ids, row["function"], "ok"], total["count"] - failed)
            calls.add_metric([*ids, row["function"], "error"], failed)
            buckets = _with_exemplars(total["buckets"], t.exemplars.get(row["function"], ()))
            duration.add_metric([*ids, row["function"]], buckets, total["sum_s"])
    return [calls, duration, cpu, rss, threads, gcs, top, dropped, up, queue, failures, overhead, sampling, estimated,
            profiles_out, profiles_lost]


def merge_by_service(targets: Iterable[TargetSnapshot], retired: Mapping[str, TargetSnapshot]) -> list[TargetSnapshot]:
    """One snapshot per service: counters and histograms summed over its targets and over what its
    forgotten targets had counted (``retired``, so counters never go back), sizes summed, ``up`` the
    number of targets streaming, shares averaged, the overhead the worst of them (pure)."""
    groups: dict[str, list[TargetSnapshot]] = {}
    for t in targets:
        groups.setdefault(t.service, []).append(t)
    for service in retired:
        groups.setdefault(service, [])
    out = []
    for service, members in sorted(groups.items()):
        counted = members + ([retired[service]] if service in retired else [])
        live = [t for t in members if t.process is not None]
        rows: dict[str, dict[str, Any]] = {}
        for t in counted:
            for row in t.functions:
                merged = rows.setdefault(row["function"], {"function": row["function"], "total": {
                    "count": 0, "failures": 0, "sum_s": 0.0, "buckets": {}}, "ratios": [], "estimated": 0})
                total, mine = merged["total"], row["total"]
                total["count"] += mine["count"]
                total["failures"] += mine["failures"]
                total["sum_s"] += mine["sum_s"]
                for bound, count in mine["buckets"]:
                    total["buckets"][bound] = total["buckets"].get(bound, 0) + count
                governed = row.get("governor")
                if governed:
                    merged["estimated"] += governed["estimated_calls"]
                    if t in members and t.up:
                        merged["ratios"].append(governed["sampling_ratio"])
        functions = []
        for merged in rows.values():
            total = merged["total"]
            total["buckets"] = [[bound, count] for bound, count in total["buckets"].items()]
            row = {"function": merged["function"], "total": total}
            if merged["ratios"] or merged["estimated"]:
                ratios = merged["ratios"] or [1.0]
                row["governor"] = {"sampling_ratio": sum(ratios) / len(ratios), "estimated_calls": merged["estimated"]}
            functions.append(row)
        tops: dict[str, list[float]] = {}
        for t in members:
            for name, share in t.top:
                tops.setdefault(name, []).append(share)
        gc = [sum(t.gc[i] for t in counted if i < len(t.gc)) for i in range(max((len(t.gc) for t in counted), default=0))]
        overheads = [t.overhead_ratio for t in members if t.overhead_ratio is not None]
        out.append(TargetSnapshot(
            pid=0, service=service, up=sum(t.up for t in members),  # type: ignore[arg-type]
            process={key: sum(t.process[key] for t in live) for key in ("resident_bytes", "threads")}
            | {"cpu_seconds": sum(t.process["cpu_seconds"] for t in counted if t.process is not None)} if live else None,
            functions=functions, gc=gc,
            top=sorted(([n, sum(v) / len(members)] for n, v in tops.items()), key=lambda x: -x[1])[:10],
            dropped={stage: sum(t.dropped.get(stage, 0) for t in counted) for stage in ("agent", "queue", "export")},
            queue_spans=sum(t.queue_spans for t in members), export_failures=sum(t.export_failures for t in counted),
            overhead_ratio=max(overheads) if overheads else None,
            profiles_exported=_total(t.profiles_exported for t in counted),
            profiles_dropped=_total(t.profiles_dropped for t in counted),
            exemplars={name: [e for t in members for e in t.exemplars.get(name, ())] for name in rows}))
    return out


def _total(counts: Iterable[int | None]) -> int | None:
    """The sum of the counts that exist; None when none does (no target of the service is profiled)."""
    known = [c for c in counts if c is not None]
    return sum(known) if known else None


def retire(previous: TargetSnapshot | None, gone: TargetSnapshot) -> TargetSnapshot:
    """What a forgotten target counted, added to its service's earlier retirees (counters only)."""
    counters = TargetSnapshot(pid=0, service=gone.service, up=False,
                              process={"cpu_seconds": gone.process["cpu_seconds"], "resident_bytes": 0.0, "threads": 0.0}
                              if gone.process is not None else None,
                              functions=[{"function": r["function"], "total": r["total"],
                                          **({"governor": {"sampling_ratio": 1.0,
                                                           "estimated_calls": r["governor"]["estimated_calls"]}}
                                             if r.get("governor") else {})} for r in gone.functions],
                              gc=list(gone.gc), dropped=dict(gone.dropped), export_failures=gone.export_failures,
                              profiles_exported=gone.profiles_exported, profiles_dropped=gone.profiles_dropped)
    return counters if previous is None else merge_by_service([counters], {gone.service: previous})[0]


def _with_exemplars(buckets: list[list[Any]], exemplars: Iterable[Exemplar]) -> list[Any]:
    """Histogram buckets, each with the latest exemplar whose duration falls in it (if any)."""
    out: list[Any] = []
    lower = float("-inf")
    recent = list(exemplars)[::-1]
    for bound, count in buckets:
        upper = float("inf") if bound == "+Inf" else float(bound)
        found = next((e for e in recent if lower < e.seconds <= upper), None)
        if found is None:
            out.append((_le(bound), count))
        else:
            out.append((_le(bound), count, SampleExemplar({"trace_id": found.trace_id, "span_id": found.span_id},
                                                           found.seconds, found.time)))
        lower = upper
    return out


def _le(bound: Any) -> str:
    return "+Inf" if bound == "+Inf" else repr(float(bound))


class PeekaCollector(Collector):
    """Rebuilds the families from the exporter's live state at every scrape."""

    def __init__(self, snapshots: Callable[[], Iterable[TargetSnapshot]], by_service: bool = False) -> None:
        self.snapshots = snapshots
        self.by_service = by_service

    def collect(self) -> Iterator[Metric]:
        yield from families(self.snapshots(), self.by_service)
