"""Export live targets to OpenTelemetry (spans) and Prometheus (/metrics): the sidecar.

Quick form: peeka export --pid PID --watch 'shop.views.*' --trace shop.checkout --monitor 'shop.db.*'.
Full form: --config FILE (TOML; see the README). With no OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT or
_PROTOCOL set, spans go to ./peeka-spans.jsonl (OTLP/JSON lines). Runs until SIGTERM or Ctrl-C,
then flushes, takes its probes off and detaches (--keep-agent leaves the agent loaded).
--profile adds a continuous CPU profile of each target (OTLP profiles to the same endpoint, and/or
Pyroscope with --pyroscope-url), its samples linked to the spans exported meanwhile.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from peeka_agent.protocol import DEFAULT_EXPORT_BUDGET, DEFAULT_PROFILE_RATE

from ..options import Shared, with_options

NAME = "export"

Patterns = Optional[list[str]]  # noqa: UP045 - typer evaluates these annotations, also on Python 3.9


@with_options(json=False)
def command(
    pid: Annotated[Optional[list[int]], typer.Option("--pid", min=1, help="Target PID (repeatable).")] = None,  # noqa: UP045
    all_: Annotated[bool, typer.Option("--all", help="Every Python process in this PID namespace.")] = False,
    match: Annotated[Optional[str], typer.Option("--match", help="Processes whose command line matches this regex; a restarted one is re-attached.")] = None,  # noqa: UP045,E501
    watch: Annotated[Patterns, typer.Option("--watch", help="One span per call of these functions (repeatable).")] = None,
    trace: Annotated[Patterns, typer.Option("--trace", help="A span tree per call: the function and the Python calls below it (repeatable).")] = None,  # noqa: E501
    monitor: Annotated[Patterns, typer.Option("--monitor", help="Only metrics (calls, durations) for these functions (repeatable).")] = None,  # noqa: E501
    service: Annotated[Optional[str], typer.Option("--service", help="service.name (default: from the target's command; OTEL_SERVICE_NAME wins).")] = None,  # noqa: UP045,E501
    metrics_address: Annotated[Optional[str], typer.Option("--metrics-address", help="HOST:PORT for /metrics and /healthz (default 127.0.0.1:9464).")] = None,  # noqa: UP045,E501
    config: Annotated[Optional[str], typer.Option("--config", help="TOML configuration file.")] = None,  # noqa: UP045
    interval: Annotated[Optional[float], typer.Option("-i", "--interval", help="Seconds between metric updates and console summaries (default 5).")] = None,  # noqa: UP045,E501
    spans_file: Annotated[Optional[str], typer.Option("--spans-file", help="Where spans go when no OTLP endpoint is set (default ./peeka-spans.jsonl).")] = None,  # noqa: UP045,E501
    redact: Annotated[Patterns, typer.Option("--redact", help="More argument-name fragments to redact (repeatable).")] = None,
    no_args: Annotated[bool, typer.Option("--no-args", help="Do not capture arguments and results.")] = False,
    keep_agent: Annotated[bool, typer.Option("--keep-agent", help="On exit, leave the agent loaded (probes are always removed).")] = False,  # noqa: E501
    overhead_budget: Annotated[Optional[float], typer.Option("--overhead-budget", metavar="PCT", help=f"Percent of each target's CPU its probes may cost: hot functions are sampled or probed part of the time (default {DEFAULT_EXPORT_BUDGET:g}; 0: off).")] = None,  # noqa: UP045,E501
    forget_after: Annotated[Optional[float], typer.Option("--forget-after", metavar="S", min=0.0, help="Seconds a gone target's series stay (up 0) before they leave /metrics and /healthz (default 300).")] = None,  # noqa: UP045,E501
    profile: Annotated[bool, typer.Option("--profile", help="A continuous CPU profile of each target, sent as OTLP profiles (to the OTLP endpoint) and/or to Pyroscope, its samples linked to the exported spans.")] = False,  # noqa: E501
    profile_rate: Annotated[Optional[int], typer.Option("--profile-rate", metavar="HZ", min=1, max=1000, help=f"Stack samples per second for --profile (default {DEFAULT_PROFILE_RATE}).")] = None,  # noqa: UP045,E501
    pyroscope_url: Annotated[Optional[str], typer.Option("--pyroscope-url", metavar="URL", help="Send --profile's profiles to this Pyroscope server's ingest API as pprof (application: the service).")] = None,  # noqa: UP045,E501
    by_service: Annotated[bool, typer.Option("--by-service", help="Metrics per service without the pid label (summed over its processes; bounded for pre-fork servers).")] = False,  # noqa: E501
    *,
    shared: Shared,
) -> None:
    from peeka_exporters import Exporter, TargetRule, load

    pids = list(pid or [])
    quick = None
    if pids or all_ or match or watch or trace or monitor:
        quick = TargetRule(pids=pids, all=all_, match=match, service=service, watch=list(watch or []),
                           trace=list(trace or []), monitor=list(monitor or []), capture_args=not no_args,
                           capture_result=not no_args, redact=list(redact or []), profile=profile,
                           rate_hz=profile_rate)
    settings = load(config, quick, {"metrics_address": metrics_address, "interval": interval,
                                    "spans_file": spans_file, "keep_agent": keep_agent or None,
                                    "method": shared.method, "attach_timeout": shared.attach_timeout,
                                    "overhead_budget": overhead_budget, "forget_after": forget_after,
                                    "by_service": by_service or None, "pyroscope_url": pyroscope_url,
                                    "profile": profile or None, "profile_rate": profile_rate})
    Exporter(settings).run()
