"""Unit tests of the exporter's pure parts: translation (golden OTLP), metrics, config, /proc."""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import subprocess
import textwrap

import pytest
from opentelemetry.sdk.resources import Resource
from peeka_exporters import config
from peeka_exporters.metrics import PeekaCollector, TargetSnapshot, families
from peeka_exporters.otlp import grpc_span_exporter, sdk_spans_request, spans_request
from peeka_exporters.pipeline import exporter_factory, otlp_json
from peeka_exporters.procfs import process_numbers
from peeka_exporters.session import whole_trees
from peeka_exporters.translate import RandomIds, SpanTranslator, default_service_name, resource_attributes
from prometheus_client import CollectorRegistry, generate_latest

from peeka.errors import UsageError

pytestmark = pytest.mark.parallel

HELLO = {"pid": 4242, "python_version": "3.14.0 (main, Oct  7 2025)", "implementation": "CPython",
         "executable": "/usr/bin/python3.14", "argv": ["/srv/shop/app.py", "--port", "8000"]}
BATCH = [
    {"name": "shop.views.checkout", "file": "/srv/shop/views.py", "line": 10, "thread_id": 7, "thread": "worker-1",
     "start_ns": 1_700_000_000_000_000_000, "end_ns": 1_700_000_000_005_000_000,
     "attributes": {"peeka.arg.cart_id": "12", "peeka.arg.token": "[redacted]"},
     "exception": {"type": "ValueError", "message": "empty cart", "stacktrace": "Traceback...\nValueError: empty cart\n",
                   "time_ns": 1_700_000_000_005_000_000},
     "parent": None, "otel": ["0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"]},
    {"name": "shop.repo.load", "file": "/srv/shop/repo.py", "line": 3, "thread_id": 7, "thread": "worker-1",
     "start_ns": 1_700_000_000_001_000_000, "end_ns": 1_700_000_000_002_000_000, "attributes": {},
     "exception": None, "parent": 0, "otel": None},
    {"name": "shop.pricing.total", "file": "/srv/shop/pricing.py", "line": 1, "thread_id": 8, "thread": "worker-2",
     "start_ns": 1_700_000_000_010_000_000, "end_ns": 1_700_000_000_010_500_000,
     "attributes": {"peeka.result": "1200"}, "exception": None, "parent": None, "otel": None},
]

GOLDEN = {'resourceSpans': [{'resource': {'attributes': [{'key': 'service.name', 'value': {'stringValue': 'app'}},
                                                {'key': 'process.pid', 'value': {'intValue': '4242'}},
                                                {'key': 'process.executable.path',
                                                 'value': {'stringValue': '/usr/bin/python3.14'}},
                                                {'key': 'process.command_args',
                                                 'value': {'arrayValue': {'values': [{'stringValue': 'python3.14'},
                                                                                     {'stringValue': '/srv/shop/app.py'},
                                                                                     {'stringValue': '--port'},
                                                                                     {'stringValue': '8000'}]}}},
                                                {'key': 'process.runtime.name',
                                                 'value': {'stringValue': 'cpython'}},
                                                {'key': 'process.runtime.version',
                                                 'value': {'stringValue': '3.14.0'}},
                                                {'key': 'host.name', 'value': {'stringValue': 'host-a'}},
                                                {'key': 'telemetry.sdk.name',
                                                 'value': {'stringValue': 'opentelemetry'}},
                                                {'key': 'telemetry.sdk.language',
                                                 'value': {'stringValue': 'python'}},
                                                {'key': 'telemetry.auto.version',
                                                 'value': {'stringValue': '0.1.0'}},
                                                {'key': 'deployment.environment',
                                                 'value': {'stringValue': 'prod'}},
                                                {'key': 'k8s.pod.name',
                                                 'value': {'stringValue': 'shop-7f,x'}}]},
                    'scopeSpans': [{'scope': {'name': 'peeka', 'version': '0.1.0'},
                                    'spans': [{'attributes': [{'key': 'code.function.name',
                                                               'value': {'stringValue': 'shop.views.checkout'}},
                                                              {'key': 'code.file.path',
                                                               'value': {'stringValue': '/srv/shop/views.py'}},
                                                              {'key': 'code.line.number',
                                                               'value': {'intValue': '10'}},
                                                              {'key': 'thread.id',
                                                               'value': {'intValue': '7'}},
                                                              {'key': 'thread.name',
                                                               'value': {'stringValue': 'worker-1'}},
                                                              {'key': 'peeka.arg.cart_id',
                                                               'value': {'stringValue': '12'}},
                                                              {'key': 'peeka.arg.token',
                                                               'value': {'stringValue': '[redacted]'}}],
                                               'endTimeUnixNano': '1700000000005000000',
                                               'events': [{'attributes': [{'key': 'exception.type',
                                                                           'value': {'stringValue': 'ValueError'}},
                                                                          {'key': 'exception.message',
                                                                           'value': {'stringValue': 'empty '
                                                                                                    'cart'}},
                                                                          {'key': 'exception.stacktrace',
                                                                           'value': {'stringValue': 'Traceback...\n'
                                                                                                    'ValueError: '
                                                                                                    'empty '
                                                                                                    'cart\n'}}],
                                                           'name': 'exception',
                                                           'timeUnixNano': '1700000000005000000'}],
                                               'flags': 768,
                                               'kind': 1,
                                               'name': 'shop.views.checkout',
                                               'parentSpanId': 'b7ad6b7169203331',
                                               'spanId': 'f2a74de452e6b438',
                                               'startTimeUnixNano': '1700000000000000000',
                                               'status': {'code': 2, 'message': 'ValueError: empty cart'},
                                               'traceId': '0af7651916cd43dd8448eb211c80319c'},
                                              {'attributes': [{'key': 'code.function.name',
                                                               'value': {'stringValue': 'shop.repo.load'}},
                                                              {'key': 'code.file.path',
                                                               'value': {'stringValue': '/srv/shop/repo.py'}},
                                                              {'key': 'code.line.number',
                                                               'value': {'intValue': '3'}},
                                                              {'key': 'thread.id',
                                                               'value': {'intValue': '7'}},
                                                              {'key': 'thread.name',
                                                               'value': {'stringValue': 'worker-1'}}],
                                               'endTimeUnixNano': '1700000000002000000',
                                               'flags': 256,
                                               'kind': 1,
                                               'name': 'shop.repo.load',
                                               'parentSpanId': 'f2a74de452e6b438',
                                               'spanId': '6513270e269e0d37',
                                               'startTimeUnixNano': '1700000000001000000',
                                               'status': {},
                                               'traceId': '0af7651916cd43dd8448eb211c80319c'},
                                              {'attributes': [{'key': 'code.function.name',
                                                               'value': {'stringValue': 'shop.pricing.total'}},
                                                              {'key': 'code.file.path',
                                                               'value': {'stringValue': '/srv/shop/pricing.py'}},
                                                              {'key': 'code.line.number',
                                                               'value': {'intValue': '1'}},
                                                              {'key': 'thread.id',
                                                               'value': {'intValue': '8'}},
                                                              {'key': 'thread.name',
                                                               'value': {'stringValue': 'worker-2'}},
                                                              {'key': 'peeka.result',
                                                               'value': {'stringValue': '1200'}}],
                                               'endTimeUnixNano': '1700000000010500000',
                                               'flags': 256,
                                               'kind': 1,
                                               'name': 'shop.pricing.total',
                                               'spanId': '1818e811892f902b',
                                               'startTimeUnixNano': '1700000000010000000',
                                               'status': {},
                                               'traceId': 'd23f0824128b2f330c5c7fd0a6a3a450'}]}]}]}


def translator(environ=None, rng_seed=7):
    attrs = resource_attributes(HELLO, ["python3.14", "/srv/shop/app.py", "--port", "8000"], "host-a", None,
                                environ if environ is not None else
                                {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,k8s.pod.name=shop-7f%2Cx"})
    return SpanTranslator(Resource(attrs), RandomIds(random.Random(rng_seed)))


def translate(environ=None, rng_seed=7):
    return translator(environ, rng_seed).spans(BATCH)


def test_observations_become_otlp_exactly_as_the_golden_document():
    import json

    # our encoder and the SDK's path (ReadableSpans, the stock encoder) give the same document
    assert json.loads(otlp_json(spans_request(translator().records(BATCH)))) == GOLDEN
    assert json.loads(otlp_json(sdk_spans_request(translator().records(BATCH)))) == GOLDEN


def test_span_links_and_status():
    checkout, load, total = translate()
    # joins the target's own trace as a child of its current span
    assert checkout.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert checkout.parent.span_id == 0xB7AD6B7169203331 and checkout.parent.is_remote
    # a trace tree child: same trace, parent = the root's span
    assert load.parent.span_id == checkout.context.span_id and load.context.trace_id == checkout.context.trace_id
    assert total.parent is None and total.context.trace_id != checkout.context.trace_id
    assert checkout.status.status_code.name == "ERROR" and checkout.events[0].timestamp == BATCH[0]["exception"]["time_ns"]


def test_service_name_precedence():
    assert default_service_name(["/srv/shop/app.py"]) == "app"
    assert default_service_name(["/srv/shop/__main__.py"]) == "shop"
    assert default_service_name(["-c"]) == "python"
    env = {"OTEL_SERVICE_NAME": "from-env", "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs"}
    assert resource_attributes(HELLO, [], "h", "configured", env)["service.name"] == "from-env"
    assert resource_attributes(HELLO, [], "h", "configured", {})["service.name"] == "configured"
    assert resource_attributes(HELLO, [], "h", None, {})["service.name"] == "app"


def test_attribute_length_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "4")
    from opentelemetry.sdk.trace import SpanLimits

    attrs = resource_attributes(HELLO, [], "h", None, {})
    span = SpanTranslator(Resource(attrs), RandomIds(random.Random(1)), SpanLimits()).spans(BATCH[2:])[0]
    assert span.attributes["code.function.name"] == "shop"


SNAPSHOTS = [
    TargetSnapshot(pid=11, service="shop", up=True,
                   process={"cpu_seconds": 1.5, "resident_bytes": 1048576.0, "threads": 4.0},
                   functions=[{"function": "shop.views.checkout",
                               "total": {"count": 5, "failures": 2, "sum_s": 0.25,
                                         "buckets": [[0.1, 3], [1.0, 5], ["+Inf", 5]]},
                               "governor": {"sampling_ratio": 0.025, "every": 40, "duty": 1.0,
                                            "estimated_calls": 120, "note": "sampling 1/40 calls of shop.views.checkout"}}],
                   gc=[10, 2, 0], top=[["shop.views.checkout", 0.5]],
                   dropped={"agent": 1, "queue": 2, "export": 3}, queue_spans=7, export_failures=1,
                   profiles_exported=4, profiles_dropped=1,
                   overhead_ratio=0.04),
    TargetSnapshot(pid=12, service="shop", up=False),
]

EXPOSITION = textwrap.dedent("""\
    peeka_function_calls_total{function="shop.views.checkout",outcome="ok",pid="11",service="shop"} 3.0
    peeka_function_calls_total{function="shop.views.checkout",outcome="error",pid="11",service="shop"} 2.0
    peeka_function_duration_seconds_bucket{function="shop.views.checkout",le="0.1",pid="11",service="shop"} 3.0
    peeka_function_duration_seconds_bucket{function="shop.views.checkout",le="1.0",pid="11",service="shop"} 5.0
    peeka_function_duration_seconds_bucket{function="shop.views.checkout",le="+Inf",pid="11",service="shop"} 5.0
    peeka_function_duration_seconds_count{function="shop.views.checkout",pid="11",service="shop"} 5.0
    peeka_function_duration_seconds_sum{function="shop.views.checkout",pid="11",service="shop"} 0.25
    peeka_process_cpu_seconds_total{pid="11",service="shop"} 1.5
    peeka_process_resident_memory_bytes{pid="11",service="shop"} 1.048576e+06
    peeka_process_threads{pid="11",service="shop"} 4.0
    peeka_gc_collections_total{generation="0",pid="11",service="shop"} 10.0
    peeka_gc_collections_total{generation="1",pid="11",service="shop"} 2.0
    peeka_gc_collections_total{generation="2",pid="11",service="shop"} 0.0
    peeka_top_function_share{function="shop.views.checkout",pid="11",service="shop"} 0.5
    peeka_observations_dropped_total{pid="11",service="shop",stage="agent"} 1.0
    peeka_observations_dropped_total{pid="11",service="shop",stage="queue"} 2.0
    peeka_observations_dropped_total{pid="11",service="shop",stage="export"} 3.0
    peeka_observations_dropped_total{pid="12",service="shop",stage="agent"} 0.0
    peeka_observations_dropped_total{pid="12",service="shop",stage="queue"} 0.0
    peeka_observations_dropped_total{pid="12",service="shop",stage="export"} 0.0
    peeka_target_up{pid="11",service="shop"} 1.0
    peeka_target_up{pid="12",service="shop"} 0.0
    peeka_exporter_queue_spans{pid="11",service="shop"} 7.0
    peeka_exporter_queue_spans{pid="12",service="shop"} 0.0
    peeka_exporter_export_failures_total{pid="11",service="shop"} 1.0
    peeka_exporter_export_failures_total{pid="12",service="shop"} 0.0
    peeka_overhead_ratio{pid="11",service="shop"} 0.04
    peeka_sampling_ratio{function="shop.views.checkout",pid="11",service="shop"} 0.025
    peeka_function_calls_estimated_total{function="shop.views.checkout",pid="11",service="shop"} 120.0
    peeka_profiles_exported_total{pid="11",service="shop"} 4.0
    peeka_profiles_dropped_total{pid="11",service="shop"} 1.0
""")


def _registry(snapshots: list, by_service: bool = False) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PeekaCollector(lambda: snapshots, by_service))
    return registry


def exposition() -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PeekaCollector(lambda: SNAPSHOTS))
    return generate_latest(registry).decode()


def test_metric_families_golden():
    samples = [line for line in exposition().splitlines() if not line.startswith("#")]
    assert "\n".join(samples) + "\n" == EXPOSITION
    assert len(families(SNAPSHOTS)) == 16


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing: scripts/setup.sh installs prometheus")
def test_promtool_accepts_the_exposition():
    result = subprocess.run(["promtool", "check", "metrics"], input=exposition(), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_process_numbers_from_proc(tmp_path):
    mine = process_numbers(os.getpid())
    assert mine is not None and mine["threads"] >= 1 and mine["resident_bytes"] > 1 << 20
    # a command name with spaces and parentheses, as /proc writes it
    (tmp_path / "5").mkdir()
    fields = ["S"] + ["0"] * 10 + ["250", "50"] + ["0"] * 4 + ["3"] + ["0"] * 3 + ["10"] + ["0"] * 20
    (tmp_path / "5" / "stat").write_text("5 (my (odd) app) " + " ".join(fields))
    numbers = process_numbers(5, proc=str(tmp_path))
    assert numbers == {"cpu_seconds": 300 / os.sysconf("SC_CLK_TCK"), "threads": 3.0,
                       "resident_bytes": 10.0 * os.sysconf("SC_PAGE_SIZE")}
    assert process_numbers(6, proc=str(tmp_path)) is None


def test_config_file_and_flags(tmp_path):
    path = tmp_path / "peeka.toml"
    path.write_text(textwrap.dedent("""\
        interval = 2
        metrics_address = "0.0.0.0:9999"
        [[targets]]
        match = "shop"
        watch = ["shop.views.*", {pattern = "shop.pay", condition = "cost > 5", sample = 0.5}]
        redact = ["ssn"]
    """))
    quick = config.TargetRule(pids=[42], monitor=["x.y"])
    cfg = config.load(str(path), quick, {"interval": None, "metrics_address": "127.0.0.1:0"})
    assert (cfg.metrics_host, cfg.metrics_port, cfg.interval) == ("127.0.0.1", 0, 2.0)
    assert [r.match for r in cfg.rules] == ["shop", None] and cfg.rules[1].pids == [42]
    args = cfg.rules[0].agent_args(cfg.interval)
    assert args["watch"][1] == {"pattern": "shop.pay", "condition": "cost > 5", "sample": 0.5}
    assert args["redact"] == ["ssn"]
    assert cfg.rules[0].selects(1, "python shop.py") and not cfg.rules[0].selects(1, "python other.py")


def test_overhead_budget_from_file_flag_and_rule(tmp_path):
    path = tmp_path / "peeka.toml"
    path.write_text("overhead_budget = 2\n[[targets]]\npid = 3\nwatch = ['a']\n"
                    "[[targets]]\npid = 4\nwatch = ['b']\noverhead_budget = 0\n")
    cfg = config.load(str(path), None, {})
    assert [r.agent_args(5.0)["overhead_budget"] for r in cfg.rules] == [2, 0]
    cfg = config.load(str(path), None, {"overhead_budget": 7.5})
    assert [r.agent_args(5.0)["overhead_budget"] for r in cfg.rules] == [7.5, 0]
    assert "overhead_budget" not in config.TargetRule(pids=[1], watch=["a"]).agent_args(5.0)  # the agent's default


def test_a_full_queue_takes_whole_trees_only():
    batch = [{"parent": None}, {"parent": 0}, {"parent": 0}, {"parent": None}, {"parent": 3}, {"parent": None}]
    assert [whole_trees(batch, room) for room in range(8)] == [0, 0, 0, 3, 3, 5, 6, 6]


@pytest.mark.parametrize("text, message", [
    ("[[targets]]\nwatch = ['a.b']\n", "selects no process"),
    ("overhead_budget = 101\n[[targets]]\npid = 3\nwatch = ['a']\n", "overhead_budget must be a percentage"),
    ("[[targets]]\npid = 3\n", "installs nothing"),
    ("[[targets]]\npid = 3\nwatch = ['a']\ncolour = 1\n", "unknown key(s) colour"),
    ("[[targets]]\nmatch = '('\nwatch = ['a']\n", "not a regular expression"),
    ("interval = 0\n[[targets]]\npid = 3\nwatch = ['a']\n", "interval must be"),
    ("targets = 3 3\n", "not valid TOML"),
])
def test_config_errors_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        config.load(str(path), None, {})
    assert message in info.value.message


def test_bad_metrics_address_and_protocol():
    with pytest.raises(UsageError, match="HOST:PORT"):
        config.parse_address("9464")
    with pytest.raises(UsageError, match="not supported"):
        exporter_factory({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, None)
    with pytest.raises(UsageError, match="PEEKA_SPAN_ENCODER='fast' is not known") as info:
        exporter_factory({"PEEKA_SPAN_ENCODER": "fast"}, None)
    assert "peeka" in info.value.help and "sdk" in info.value.help


def test_exporter_choice_follows_the_protocol_variables(tmp_path):
    make, where = exporter_factory({}, str(tmp_path / "s.jsonl"))
    make().close()
    assert where == f"OTLP-JSON lines to {tmp_path / 's.jsonl'}"
    make, where = exporter_factory({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
                                    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, None)
    assert where == "OTLP grpc to http://127.0.0.1:1" and make is grpc_span_exporter


@pytest.mark.parametrize("variables, path", [
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:{port}"}, "/v1/traces"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:{port}/base/"}, "/base/v1/traces"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":
      "http://127.0.0.1:{port}/custom"}, "/custom"),
])
def test_http_exporter_posts_where_the_console_says(variables, path, monkeypatch):
    """The destination printed is where the exporter really posts spans (a real HTTP receiver
    decodes them with the official protobufs), configured by the environment given to the exporter,
    not by the process's own (which here points elsewhere)."""
    import http.server
    import threading

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[tuple[str, list[str]]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = ExportTraceServiceRequest.FromString(body)
            names = [s.name for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]
            received.append((self.path, names))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1/elsewhere")
        environ = {k: v.format(port=port) for k, v in variables.items()}
        environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"
        for encoder in ("peeka", "sdk"):  # our send, and the SDK's exporter
            make, where = exporter_factory(dict(environ, PEEKA_SPAN_ENCODER=encoder), None)
            exporter = make()
            exporter.export(translator().records(BATCH[:1]))
            exporter.shutdown()
            assert received.pop() == (path, ["shop.views.checkout"])
            assert where.startswith(f"OTLP http/protobuf to http://127.0.0.1:{port}{path}")
    finally:
        server.shutdown()
        server.server_close()


def test_openmetrics_buckets_carry_exemplars_of_exported_spans():
    from peeka_exporters.metrics import Exemplar
    from prometheus_client import CollectorRegistry
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

    fast = Exemplar("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", 0.05, 1700000000.5)
    slow = Exemplar("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 0.5, 1700000001.0)
    newer_fast = Exemplar("11111111111111111111111111111111", "2222222222222222", 0.07, 1700000002.0)
    snapshot = dataclasses.replace(SNAPSHOTS[0], exemplars={"shop.views.checkout": [fast, slow, newer_fast]})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PeekaCollector(lambda: [snapshot]))
    text = openmetrics(registry).decode()
    buckets = {s.labels["le"]: s for f in parse_openmetrics(text) if f.name == "peeka_function_duration_seconds"
               for s in f.samples if s.name.endswith("_bucket")}
    assert buckets["0.1"].exemplar.labels == {"trace_id": newer_fast.trace_id, "span_id": newer_fast.span_id}
    assert buckets["0.1"].exemplar.value == 0.07 and float(buckets["0.1"].exemplar.timestamp) == 1700000002.0
    assert buckets["1.0"].exemplar.labels["trace_id"] == slow.trace_id  # its own bucket: 0.1 < 0.5 <= 1.0
    assert buckets["+Inf"].exemplar is None
    # the classic text format (what a scraper gets unless it asks for OpenMetrics) has no exemplars
    assert "trace_id" not in exposition()


def test_by_service_sums_targets_and_keeps_what_forgotten_ones_counted():
    from peeka_exporters.metrics import merge_by_service, retire

    def row(count: int, failures: int) -> dict:
        return {"function": "shop.views.checkout",
                "total": {"count": count, "failures": failures, "sum_s": count / 10,
                          "buckets": [[0.1, count - 1], [1.0, count], ["+Inf", count]]}}

    a = TargetSnapshot(pid=1, service="shop", up=True, process={"cpu_seconds": 2.0, "resident_bytes": 10.0, "threads": 3.0},
                       functions=[row(5, 1)], gc=[1, 0, 0], dropped={"agent": 1})
    b = TargetSnapshot(pid=2, service="shop", up=True, process={"cpu_seconds": 1.0, "resident_bytes": 20.0, "threads": 2.0},
                       functions=[row(3, 0)], gc=[2, 1, 0])
    gone = TargetSnapshot(pid=3, service="shop", up=False, functions=[row(4, 2)], gc=[5, 0, 0])
    retired = {"shop": retire(None, gone)}
    [shop] = merge_by_service([a, b], retired)
    assert shop.up == 2 and shop.process == {"cpu_seconds": 3.0, "resident_bytes": 30.0, "threads": 5.0}
    total = shop.functions[0]["total"]
    assert (total["count"], total["failures"], total["buckets"]) == (12, 3, [[0.1, 9], [1.0, 12], ["+Inf", 12]])
    assert shop.gc == [8, 1, 0] and shop.dropped == {"agent": 1, "queue": 0, "export": 0}
    text = generate_latest(_registry([shop], by_service=True)).decode()
    assert 'peeka_function_calls_total{function="shop.views.checkout",outcome="ok",service="shop"} 9.0' in text
    assert "pid=" not in text and 'peeka_target_up{service="shop"} 2.0' in text
    # another worker is forgotten: its counts join the retired ones, the sums do not go back
    retired["shop"] = retire(retired["shop"], dataclasses.replace(b, up=False, process=None))
    [shop] = merge_by_service([a], retired)
    assert shop.functions[0]["total"]["count"] == 12 and shop.up == 1
