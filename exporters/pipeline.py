"""Transport: OTLP exporters (or a local OTLP-JSON lines file) behind a bounded queue of span records.

``SpanQueue`` is the BatchSpanProcessor's shape with the one thing it does not expose: counts.
A full queue drops the newest spans and counts them; an export that fails after the exporter's own
retries (with backoff) counts a failure and the spans it carried. Memory stays flat while a backend
is down, and export resumes by itself when it is back.

The records become OTLP in the exporter, on the queue's thread: by our encoder and HTTP send
(exporters/otlp.py; gRPC through the SDK's exporter), or with ``PEEKA_SPAN_ENCODER=sdk`` the SDK's
whole path (ReadableSpans, its encoder and its exporters), for comparison or as a fallback.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from peeka.envsettings import positive_number
from peeka.errors import UsageError

from .otlp import HttpSpanExporter, StockSpanExporter, grpc_span_exporter, sdk_spans_request, spans_request
from .translate import SpanRecord

DEFAULT_SPANS_FILE = "peeka-spans.jsonl"


class JsonLinesSpanExporter(SpanExporter):
    """OTLP/JSON, one ExportTraceServiceRequest per line (the collector's file exporter format)."""

    def __init__(self, path: str, encode: Callable[[Sequence[SpanRecord]], ExportTraceServiceRequest] = spans_request) -> None:
        self.path = path
        self.encode = encode
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open until shutdown

    def export(self, spans: Sequence[SpanRecord]) -> SpanExportResult:  # type: ignore[override]
        line = otlp_json(self.encode(spans))
        try:
            with self._lock:
                self._file.write(line + "\n")
                self._file.flush()
        except (OSError, ValueError):
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Shared by every target's queue: a queue ending leaves the file open; ``close`` ends it."""

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def otlp_json(request: ExportTraceServiceRequest) -> str:
    """An OTLP request as OTLP/JSON: camelCase fields, integer enums, hex trace and span ids."""
    from google.protobuf.json_format import MessageToDict

    doc = MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in doc.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = _b64_to_hex(span[key])
    return json.dumps(doc, separators=(",", ":"))


def _b64_to_hex(text: str) -> str:
    import base64

    return base64.b64decode(text).hex()


HTTP_DEFAULT_ENDPOINT = "http://localhost:4318"
HTTP_TRACES_PATH = "v1/traces"


def http_traces_endpoint(environ: Mapping[str, str]) -> str:
    """The URL OTLP/HTTP spans go to, by the OpenTelemetry specification's rules: the traces endpoint
    as given, else the base endpoint (or the default) with ``/v1/traces`` appended."""
    traces = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return traces
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or HTTP_DEFAULT_ENDPOINT
    return f"{base[:-1] if base.endswith('/') else base}/{HTTP_TRACES_PATH}"


ENCODERS = ("peeka", "sdk")
_CREDENTIAL_PROVIDERS = ("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
                         "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER")


def span_encoder(environ: Mapping[str, str]) -> str:
    """``PEEKA_SPAN_ENCODER``: ``peeka`` (the default, exporters/otlp.py) or ``sdk`` (the SDK's path)."""
    chosen = (environ.get("PEEKA_SPAN_ENCODER") or "peeka").strip().lower()
    if chosen not in ENCODERS:
        raise UsageError(f"PEEKA_SPAN_ENCODER={chosen!r} is not known",
                         "Use peeka (the default: our OTLP encoder) or sdk (the OpenTelemetry SDK's spans and exporters).")
    return chosen


def exporter_factory(environ: Mapping[str, str], spans_file: str | None) -> tuple[Callable[[], SpanExporter], str]:
    """How to make one target's span exporter, and a description for the console.

    With no OTLP endpoint or protocol configured, spans go to a local OTLP-JSON lines file.
    ``OTEL_EXPORTER_OTLP_PROTOCOL`` is read by the SDK's auto-configuration only, so it is read here:
    ``grpc`` or ``http/protobuf`` (the specification's default). Headers, compression, timeout,
    certificates and insecure come from the OTEL_EXPORTER_OTLP_(TRACES_)* variables: our HTTP send
    reads them from ``environ``, the SDK's exporters from the process's environment. A credential
    provider session (the SDK's entry points) is only loaded by the SDK's HTTP exporter: with one
    configured, HTTP goes the SDK's way.
    """
    stock = span_encoder(environ) == "sdk"
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "").strip().lower()
    if not endpoint and not protocol:
        path = os.path.abspath(spans_file or DEFAULT_SPANS_FILE)
        shared = JsonLinesSpanExporter(path, sdk_spans_request if stock else spans_request)
        return (lambda: shared), f"OTLP-JSON lines to {path}"
    if protocol in ("", "http/protobuf"):
        where = http_traces_endpoint(environ)
        if stock or any(environ.get(name) for name in _CREDENTIAL_PROVIDERS):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

            # Given explicitly, the URL we name is the one the exporter posts to (the SDK would read
            # os.environ, which need not be the environment this exporter was configured with).
            return (lambda: StockSpanExporter(HttpExporter(endpoint=where))), f"OTLP http/protobuf to {where} (SDK)"
        return functools.partial(HttpSpanExporter, where, environ), f"OTLP http/protobuf to {where}"
    if protocol == "grpc":
        where = endpoint or "localhost:4317"
        if stock:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

            return (lambda: StockSpanExporter(GrpcExporter())), f"OTLP grpc to {where} (SDK)"
        return grpc_span_exporter, f"OTLP grpc to {where}"
    raise UsageError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported",
        "Use grpc or http/protobuf (http/json is not offered by the SDK's exporters).",
    )


class SpanQueue:
    """A bounded queue and one worker thread feeding one span exporter in batches."""

    def __init__(self, exporter: SpanExporter, environ: Mapping[str, str], name: str = "peeka-export",
                 on_exported: Callable[[Sequence[SpanRecord]], None] | None = None) -> None:
        self.exporter = exporter
        self.on_exported = on_exported  # told of each batch the exporter took (exemplars link to those only)
        self.max_queue = positive_number(environ, "OTEL_BSP_MAX_QUEUE_SIZE", 20_000)
        self.batch = min(positive_number(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 2048), self.max_queue)
        self.delay = positive_number(environ, "OTEL_BSP_SCHEDULE_DELAY", 500) / 1000
        self._items: deque[SpanRecord] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._exporting = 0
        self.dropped = 0  # queue full
        self.failed_spans = 0  # carried by failed exports
        self.failures = 0
        self.exported = 0
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def __len__(self) -> int:
        return len(self._items)

    def room(self) -> int:
        """Spans the queue takes now: callers translate no more than that (the rest is dropped anyway)."""
        return max(0, self.max_queue - len(self._items))

    def drop(self, count: int) -> None:
        with self._cond:
            self.dropped += count

    def put(self, spans: Sequence[SpanRecord]) -> None:
        with self._cond:
            if self._stopping:
                self.dropped += len(spans)
                return
            room = self.max_queue - len(self._items)
            if room < len(spans):
                self.dropped += len(spans) - max(room, 0)
                spans = spans[: max(room, 0)]
            self._items.extend(spans)
            if len(self._items) >= self.batch:
                self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                if not self._stopping and len(self._items) < self.batch:
                    self._cond.wait(self.delay)
                if not self._items:
                    if self._stopping:
                        return
                    continue
                take = min(self.batch, len(self._items))
                batch = [self._items.popleft() for _ in range(take)]
                self._exporting = take
            try:
                result = self.exporter.export(batch)  # type: ignore[arg-type]
            except Exception:  # an exporter should not raise; if it does, count it as a failure
                result = SpanExportResult.FAILURE
            with self._cond:
                self._exporting = 0
                if result is SpanExportResult.SUCCESS:
                    self.exported += len(batch)
                else:
                    self.failures += 1
                    self.failed_spans += len(batch)
                self._cond.notify_all()
            if result is SpanExportResult.SUCCESS and self.on_exported is not None:
                try:
                    self.on_exported(batch)
                except Exception:
                    pass

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued was handed to the exporter (or the timeout passes)."""
        import time

        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify()
            while self._items or self._exporting:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
                self._cond.notify()
        return True

    def shutdown(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
