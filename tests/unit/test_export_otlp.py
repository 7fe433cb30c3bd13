"""Our OTLP span path (exporters/otlp.py) against the SDK's: the same agent events encoded both ways
give the same ExportTraceServiceRequest (compared field by field, and byte for byte), and both sends
deliver the same request with the same headers to real receivers (an HTTP server and oteltest's
gRPC sink, decoding with the official protobufs), compressed, retried and given up the same way."""

from __future__ import annotations

import gzip
import logging
import random
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.sdk.trace.export import SpanExportResult
from peeka_exporters.otlp import (
    HttpSpanExporter,
    StockSpanExporter,
    grpc_span_exporter,
    sdk_spans_request,
    spans_request,
)
from peeka_exporters.pipeline import exporter_factory
from peeka_exporters.translate import RandomIds, SpanTranslator, resource_attributes

pytestmark = pytest.mark.parallel

HELLO = {"pid": 77, "python_version": "3.12.1 (main)", "implementation": "CPython", "executable": "/usr/bin/python3",
         "argv": ["/srv/shop/app.py"]}
T0 = 1_700_000_000_000_000_000


def event(name: str, start: int, **fields: Any) -> dict[str, Any]:
    out = {"name": name, "file": f"/srv/{name.split('.')[0]}.py", "line": 10, "thread_id": 140_000_000_001,
           "thread": "MainThread", "start_ns": T0 + start, "end_ns": T0 + start + 500, "attributes": {},
           "exception": None, "parent": None, "otel": None}
    out.update(fields)
    return out


# Everything the agent sends: a trace tree under the target's own OTel span, with an exception; a
# request's SERVER span joined to its caller's trace (tracestate kept), HTTP attributes and the
# sampling probability; values of every kind the encoder knows; one it cannot encode (too large an
# int: left out, as the SDK does); a captured value named like a code attribute; missing fields.
EVENTS = [
    event("shop.views.checkout", 0, attributes={"peeka.arg.cart_id": "12", "peeka.result": "None"},
          exception={"type": "shop.errors.Empty", "message": "empty cart", "stacktrace": "Traceback...\n",
                     "time_ns": T0 + 400},
          otel=["0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"]),
    event("shop.repo.load", 10, parent=0),
    event("shop.repo.query", 20, parent=1, thread="worker-1", thread_id=7),
    event("shop.repo.load", 30, parent=0),
    event("shop.views.item", 100, kind="server",
          remote={"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", "flags": 1,
                  "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"},
          attributes={"http.request.method": "GET", "http.route": "/items/<int:id>", "url.path": "/items/3",
                      "http.response.status_code": 200, "peeka.sampling.probability": 0.025}),
    event("shop.views.item", 110, parent=4),
    event("shop.views.item", 200, remote={"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                                         "span_id": "00f067aa0ba902b8", "flags": 0}),
    event("shop.kinds", 300, attributes={"none": None, "yes": True, "n": -3, "x": 1.5, "names": ["a", "b"],
                                         "ints": [1, 2], "empty": [], "nested": {"k": "v", "n": [1]},
                                         "blob": b"\x00\x01", "huge": 2 ** 70, "after": "kept"}),
    event("shop.odd", 400, attributes={"thread.name": "renamed", "peeka.result": "1"}),
    event("shop.bare", 500, file=None, line=None, attributes=None),
    event("shop.bare", 600, thread="worker-2", thread_id=9),
]


def translator(seed: int = 3, limits: SpanLimits | None = None, pid: int = 77) -> SpanTranslator:
    attrs = resource_attributes(dict(HELLO, pid=pid), ["python3", "/srv/shop/app.py"], "host-a", None,
                                {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod"})
    return SpanTranslator(Resource(attrs), RandomIds(random.Random(seed)), limits)


def same(ours: ExportTraceServiceRequest, stock: ExportTraceServiceRequest) -> None:
    assert MessageToDict(ours) == MessageToDict(stock)  # a readable difference first
    assert ours == stock  # field by field
    assert ours.SerializeToString(deterministic=True) == stock.SerializeToString(deterministic=True)


def test_every_kind_of_event_encodes_as_the_sdk_encodes_it():
    records = translator().records(EVENTS)
    ours, stock = spans_request(records), sdk_spans_request(records)
    same(ours, stock)
    spans = ours.resource_spans[0].scope_spans[0].spans
    assert len(spans) == len(EVENTS) and ours.resource_spans[0].scope_spans[0].scope.name == "peeka"
    # what the checks above would pass with both sides wrong: the facts themselves
    checkout, load, query = spans[0], spans[1], spans[2]
    assert checkout.parent_span_id.hex() == "b7ad6b7169203331" and checkout.flags == 768
    assert load.parent_span_id == checkout.span_id and query.parent_span_id == load.span_id and load.flags == 256
    assert {s.trace_id.hex() for s in spans[:4]} == {"0af7651916cd43dd8448eb211c80319c"}
    assert checkout.status.code == 2 and checkout.events[0].time_unix_nano == T0 + 400
    item, child = spans[4], spans[5]
    assert item.kind == 2 and item.trace_state == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    assert child.trace_state == item.trace_state and child.trace_id == item.trace_id  # the caller's tracestate goes on
    attrs = {kv.key: kv.value for kv in item.attributes}
    assert attrs["http.response.status_code"].int_value == 200
    assert attrs["peeka.sampling.probability"].double_value == 0.025
    kinds = [kv.key for kv in spans[7].attributes]
    assert "huge" not in kinds and kinds[-1] == "after"
    odd = {kv.key: kv.value.string_value for kv in spans[8].attributes}
    assert odd["thread.name"] == "renamed" and len(spans[8].attributes) == 6


def test_the_golden_batch_and_batches_that_repeat_templates():
    tr = translator(seed=11)
    for _ in range(3):  # templates are made once, then reused: still the same
        records = tr.records(EVENTS * 2)
        same(spans_request(records), sdk_spans_request(records))


def test_attribute_limits_apply_as_the_sdk_applies_them():
    for limits in (SpanLimits(max_span_attribute_length=4), SpanLimits(max_span_attributes=6),
                   SpanLimits(max_span_attributes=3, max_span_attribute_length=2)):
        records = translator(limits=limits).records(EVENTS)
        ours = spans_request(records)
        same(ours, sdk_spans_request(records))
    assert any(s.dropped_attributes_count for s in ours.resource_spans[0].scope_spans[0].spans)


def test_two_targets_in_one_batch_keep_their_resources():
    a, b = translator(seed=1, pid=1), translator(seed=2, pid=2)
    records = a.records(EVENTS[:3]) + b.records([EVENTS[4], dict(EVENTS[5], parent=0)]) + a.records(EVENTS[9:])
    ours = spans_request(records)
    same(ours, sdk_spans_request(records))
    assert [len(rs.scope_spans[0].spans) for rs in ours.resource_spans] == [5, 2]


def test_empty_batch():
    same(spans_request([]), sdk_spans_request([]))


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 63 - 1) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
_events = st.lists(st.fixed_dictionaries({
    "name": st.sampled_from(["a.f", "a.g", "b.h"]), "line": st.integers(0, 2000), "thread_id": st.integers(1, 3),
    "start": st.integers(0, 10 ** 9), "tree": st.booleans(), "server": st.booleans(),
    "attributes": st.dictionaries(st.sampled_from(["peeka.arg.x", "peeka.result", "http.route", "thread.id", "k"]),
                                  _values, max_size=4),
    "raised": st.booleans(), "joined": st.sampled_from([None, "otel", "remote"]),
}), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_events)
def test_any_batch_encodes_as_the_sdk_encodes_it(drawn):
    logging.getLogger("peeka_exporters.otlp").disabled = True  # values it cannot encode are logged
    logging.getLogger("opentelemetry.exporter.otlp.proto.common._internal").disabled = True
    batch: list[dict[str, Any]] = []
    for d in drawn:
        fields: dict[str, Any] = {"line": d["line"], "thread_id": d["thread_id"], "attributes": d["attributes"]}
        if d["tree"] and batch:
            fields["parent"] = len(batch) - 1
        elif d["joined"] == "otel":
            fields["otel"] = ["0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"]
        elif d["joined"] == "remote":
            fields["remote"] = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
                                "flags": 1, "tracestate": "k=v"}
        if d["server"]:
            fields["kind"] = "server"
        if d["raised"]:
            fields["exception"] = {"type": "E", "message": "m", "stacktrace": "s", "time_ns": T0}
        batch.append(event(d["name"], d["start"], **fields))
    records = translator(seed=5).records(batch)
    same(spans_request(records), sdk_spans_request(records))


# -- the sends, against real receivers --------------------------------------------------------------

class Receiver:
    """An OTLP/HTTP receiver: decompresses as Content-Encoding says, decodes with the official classes,
    answers with the next of ``replies`` (status, headers) then 200."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, str], ExportTraceServiceRequest]] = []
        self.replies: list[tuple[int, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                encoding = self.headers.get("Content-Encoding")
                body = gzip.decompress(body) if encoding == "gzip" else zlib.decompress(body) if encoding == "deflate" else body
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.got.append((self.path, headers, ExportTraceServiceRequest.FromString(body)))
                status, extra = receiver.replies.pop(0) if receiver.replies else (200, {})
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


NOT_COMPARED = {"user-agent", "content-length", "accept-encoding", "accept", "connection", "host"}


@pytest.mark.parametrize("compression", ["gzip", "deflate", "none"])
def test_http_send_delivers_what_the_sdk_delivers(receiver, monkeypatch, compression):
    logging.getLogger("peeka_exporters.otlp").disabled = True
    settings = {"OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=shop,authorization=Bearer%20abc",
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-tenant=traces-team",
                "OTEL_EXPORTER_OTLP_COMPRESSION": compression, "OTEL_EXPORTER_OTLP_TIMEOUT": "5"}
    for key, value in settings.items():  # the SDK's exporter reads the process's environment
        monkeypatch.setenv(key, value)
    environ = dict(settings, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.url, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf")
    records = translator().records(EVENTS)
    for choice in ("peeka", "sdk"):
        make, where = exporter_factory(dict(environ, PEEKA_SPAN_ENCODER=choice), None)
        exporter = make()
        assert isinstance(exporter, HttpSpanExporter if choice == "peeka" else StockSpanExporter), where
        assert exporter.export(records) is SpanExportResult.SUCCESS
        exporter.shutdown()
    (path, ours_headers, ours), (stock_path, stock_headers, stock) = receiver.got
    assert path == stock_path == "/v1/traces"
    same(ours, stock)
    assert {k: v for k, v in ours_headers.items() if k not in NOT_COMPARED} == \
           {k: v for k, v in stock_headers.items() if k not in NOT_COMPARED}
    # the traces variable replaces the general one (not merged), as in the SDK
    assert ours_headers["x-tenant"] == "traces-team" and "authorization" not in ours_headers
    assert ours_headers.get("content-encoding") == (None if compression == "none" else compression)
    assert ours_headers["user-agent"].startswith(stock_headers["user-agent"] + " peeka/")


@pytest.mark.timing  # backoff and give-up times (2.4-5.5 s, < 3 s, < 5 s)
def test_http_send_retries_as_the_sdk_does(receiver):
    logging.getLogger("peeka_exporters.otlp").disabled = True
    environ = {"OTEL_EXPORTER_OTLP_TIMEOUT": "5"}
    records = translator().records(EVENTS[:2])
    exporter = HttpSpanExporter(receiver.url, environ)
    # 503 then 429 with Retry-After 0: retried, then delivered
    receiver.replies = [(503, {"Retry-After": "0"}), (429, {"Retry-After": "0"})]
    assert exporter.export(records) is SpanExportResult.SUCCESS and len(receiver.got) == 3
    # 400: not retried
    receiver.replies = [(400, {})]
    assert exporter.export(records) is SpanExportResult.FAILURE and len(receiver.got) == 4
    # always 503 (no Retry-After): backs off 1, 2 s (+-20%) and gives up within the 5 s timeout
    receiver.replies = [(503, {})] * 10
    began = time.monotonic()
    assert exporter.export(records) is SpanExportResult.FAILURE
    assert len(receiver.got) == 7 and 2.4 <= time.monotonic() - began < 5.5
    exporter.shutdown()
    # a backend that is not there: connection refused, retried with backoff, given up by the timeout
    gone = HttpSpanExporter("http://127.0.0.1:1/v1/traces", {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "1.5"})
    began = time.monotonic()
    assert gone.export(records) is SpanExportResult.FAILURE and time.monotonic() - began < 3.0
    # shutdown during a backoff ends the wait
    receiver.replies = [(503, {"Retry-After": "30"})] * 2
    slow = HttpSpanExporter(receiver.url, {"OTEL_EXPORTER_OTLP_TIMEOUT": "60"})
    threading.Timer(0.3, slow.shutdown).start()
    began = time.monotonic()
    assert slow.export(records) is SpanExportResult.FAILURE and time.monotonic() - began < 5.0


def test_grpc_send_delivers_what_the_sdk_delivers(monkeypatch):
    grpc_sink = pytest.importorskip("oteltest.sink", reason="oteltest (OTLP test receivers) is in the test extras")
    from oteltest.sink.handler import RequestHandler

    class Requests(RequestHandler):
        def __init__(self) -> None:
            self.got: list[tuple[dict[str, str], ExportTraceServiceRequest]] = []

        def handle_trace(self, request: Any, headers: Any) -> None:
            self.got.append((dict(headers), request))

        def handle_metrics(self, request: Any, headers: Any) -> None:
            pass

        def handle_logs(self, request: Any, headers: Any) -> None:
            pass

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = Requests()
    sink = grpc_sink.GrpcSink(handler, logging.getLogger("test-grpc-sink"), port=port)
    sink.start()
    try:
        environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                   "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=shop",
                   "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}
        for key, value in environ.items():
            monkeypatch.setenv(key, value)
        records = translator().records(EVENTS)
        for choice in ("peeka", "sdk"):
            make, where = exporter_factory(dict(environ, PEEKA_SPAN_ENCODER=choice), None)
            assert (make is grpc_span_exporter) == (choice == "peeka"), where
            exporter = make()
            assert exporter.export(records) is SpanExportResult.SUCCESS
            exporter.shutdown()
    finally:
        sink.stop()
    (ours_headers, ours), (stock_headers, stock) = handler.got
    same(ours, stock)
    assert ours_headers["x-tenant"] == stock_headers["x-tenant"] == "shop"
    assert ours_headers.get("grpc-accept-encoding") == stock_headers.get("grpc-accept-encoding")


def test_exemplars_keep_each_functions_latest_exported_spans():
    """The queue worker looks at a batch's newest spans only: what it keeps equals appending every
    span of every batch, in order, to a bounded deque per function."""
    from collections import deque

    from peeka_exporters.config import ExportConfig, TargetRule
    from peeka_exporters.session import EXEMPLARS_KEPT, TargetSession

    rule = TargetRule(pids=[1], watch=["a.f", "a.g"])
    session = TargetSession(1, rule, ExportConfig(rules=[rule]), lambda: None, {})  # type: ignore[arg-type,return-value]
    session.exemplars = {name: deque(maxlen=EXEMPLARS_KEPT) for name in ("a.f", "a.g")}
    reference = {name: deque(maxlen=EXEMPLARS_KEPT) for name in ("a.f", "a.g")}
    rng = random.Random(4)
    tr = translator()
    for size in (5, 300, 1, 2048, 70):
        batch = [event(rng.choice(["a.f", "a.g", "a.callee"]), i * 1000 + rng.randrange(900)) for i in range(size)]
        records = tr.records(batch)
        session._exported(records)
        for r in records:
            if r.item["name"] in reference:
                item = r.item
                reference[item["name"]].append((f"{r.trace_id:032x}", f"{r.span_id:016x}",
                                                (item["end_ns"] - item["start_ns"]) / 1e9, item["end_ns"] / 1e9))
        for name, kept in session.exemplars.items():
            assert list(kept) == list(reference[name])
    assert len(session.exemplars["a.f"]) == len(session.exemplars["a.g"]) == EXEMPLARS_KEPT
