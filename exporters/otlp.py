"""Our OTLP span path: span records -> ``ExportTraceServiceRequest`` -> a backend (HTTP/protobuf, gRPC).

Why not the SDK's: a ReadableSpan per call (9-15 us) and then the stock encoder building one protobuf
message per span from keyword arguments (30 us and more) were most of the exporter's CPU per span
(README, export). Here the official opentelemetry-proto classes are filled in place. What is the
same for every call of a function on a thread (its name, kind, where the code is, the thread) is
serialized once by those classes and merged into each span; what differs per call (ids, times,
captured values, the exception) is set field by field. The message equals what the stock encoder
makes of the SDK spans of the same records, field for field (tests/unit/test_export_otlp.py).

Sending: gRPC is the SDK's own exporter, given our request (its channel, TLS, headers, compression,
timeout and retries). HTTP/protobuf is ``HttpSpanExporter``: the SDK's exporter posts only what its
own encoder made, so the send is done here the way it does it (same variables, headers, compression,
TLS files, timeout, retries with backoff and Retry-After).
"""

from __future__ import annotations

import gzip
import logging
import random
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, SpanFlags
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from peeka import __version__ as _peeka_version

from .translate import (
    CODE_KEYS,
    SCOPE,
    SpanRecord,
    SpanTranslator,
    code_attributes,
    exception_event,
    span_attributes,
)

_logger = logging.getLogger(__name__)

_INTERNAL = Span.SpanKind.SPAN_KIND_INTERNAL
_SERVER = Span.SpanKind.SPAN_KIND_SERVER
_LOCAL_PARENT = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_REMOTE_PARENT = _LOCAL_PARENT | SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_ERROR = 2  # Status.StatusCode.STATUS_CODE_ERROR
TEMPLATES_KEPT = 4096  # per target: (function, thread) pairs; past it they are made afresh


_none_encodes: bool | None = None


def _stock_encodes_none() -> bool:
    """Whether the installed stock encoder writes a None attribute (as an empty value, since 1.4x)
    or leaves it out (older releases): asked of it once, by encoding one span."""
    global _none_encodes
    if _none_encodes is None:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext

        logger = logging.getLogger("opentelemetry.exporter.otlp.proto.common._internal")
        was, logger.disabled = logger.disabled, True  # the older encoder logs the None it leaves out
        try:
            probe = encode_spans([ReadableSpan(name="probe", context=SpanContext(1, 1, is_remote=False),
                                               attributes={"k": None})])
        finally:
            logger.disabled = was
        _none_encodes = len(probe.resource_spans[0].scope_spans[0].spans[0].attributes) == 1
    return _none_encodes


def fill_value(out: AnyValue, value: Any) -> None:
    """An attribute value as the stock encoder writes it: None as an empty value (or refused, as
    the installed encoder does), bool before int, sequences as arrays, mappings as key-value lists;
    anything else raises."""
    if type(value) is str:
        out.string_value = value
    elif value is None:
        if not _stock_encodes_none():
            raise TypeError("Invalid type <class 'NoneType'> of value None")
        out.SetInParent()
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, bytes):
        out.bytes_value = value
    elif isinstance(value, Sequence):
        array = out.array_value
        array.SetInParent()
        for element in value:
            fill_value(array.values.add(), element)
    elif isinstance(value, Mapping):
        kvlist = out.kvlist_value
        kvlist.SetInParent()
        for key, element in value.items():
            fill_value(kvlist.values.add(key=str(key)).value, element)
    else:
        raise TypeError(f"Invalid type {type(value)} of value {value}")


def add_attribute(out: Any, key: str, value: Any) -> None:
    """Append one KeyValue to a repeated field; a value that cannot be encoded is logged and left out
    (the stock encoder does the same)."""
    if type(value) is str:
        out.add(key=key).value.string_value = value
        return
    pair = out.add(key=key)
    try:
        fill_value(pair.value, value)
    except Exception as error:
        del out[-1]
        _logger.exception("Failed to encode key %s: %s", key, error)


def add_attributes(out: Any, attributes: Mapping[str, Any]) -> None:
    for key, value in attributes.items():
        add_attribute(out, key, value)


class _TargetEncoding:
    """What is encoded once per target: its resource and scope, and the span templates."""

    def __init__(self, translator: SpanTranslator) -> None:
        resource = translator.resource
        head = ResourceSpans(schema_url=resource.schema_url or "")
        head.resource.SetInParent()
        add_attributes(head.resource.attributes, resource.attributes)
        self.resource_spans = head.SerializeToString()
        scope = ScopeSpans()
        scope.scope.CopyFrom(InstrumentationScope(name=SCOPE.name, version=SCOPE.version or ""))
        add_attributes(scope.scope.attributes, SCOPE.attributes or {})
        if SCOPE.schema_url:
            scope.schema_url = SCOPE.schema_url
        self.scope_spans = scope.SerializeToString()
        self.limits = translator.limits
        # With a value length limit every span goes the general way (the SDK's BoundedAttributes).
        self.most = None if self.limits.max_span_attribute_length is not None else (self.limits.max_span_attributes or 128)
        self.templates: dict[tuple[Any, ...], bytes] = {}

    def template(self, key: tuple[Any, ...], item: Mapping[str, Any]) -> bytes:
        span = Span(name=item["name"], kind=_SERVER if item.get("kind") == "server" else _INTERNAL)
        add_attributes(span.attributes, code_attributes(item))
        span.status.SetInParent()  # the stock encoder always writes a status (UNSET: empty)
        made = span.SerializeToString()
        if len(self.templates) >= TEMPLATES_KEPT:
            self.templates.clear()
        self.templates[key] = made
        return made

    def fill(self, spans: Any, records: Sequence[SpanRecord]) -> None:
        add = spans.add
        templates, most = self.templates, self.most
        for record in records:
            item = record.item
            span = add(trace_id=record.trace_id.to_bytes(16, "big"), span_id=record.span_id.to_bytes(8, "big"),
                       start_time_unix_nano=int(item["start_ns"]), end_time_unix_nano=int(item["end_ns"]),
                       flags=_REMOTE_PARENT if record.remote else _LOCAL_PARENT)
            if record.parent_id is not None:
                span.parent_span_id = record.parent_id.to_bytes(8, "big")
            if record.trace_state:
                span.trace_state = ",".join(f"{key}={value}" for key, value in record.trace_state.items())
            extra = item.get("attributes")
            if most is not None and (not extra or (len(extra) + 5 <= most and CODE_KEYS.isdisjoint(extra))):
                key = (item["name"], item.get("file"), item.get("line"), item["thread_id"], item.get("thread"),
                       item.get("kind"))
                span.MergeFromString(templates.get(key) or self.template(key, item))
                if extra:
                    out = span.attributes
                    for name, value in extra.items():
                        if type(value) is str:
                            out.add(key=name).value.string_value = value
                        else:
                            add_attribute(out, name, value)
            else:  # limits apply, or a captured attribute has a code attribute's name: as the SDK does
                span.name = item["name"]
                span.kind = _SERVER if item.get("kind") == "server" else _INTERNAL
                attributes = span_attributes(item, self.limits)
                add_attributes(span.attributes, attributes)
                if isinstance(attributes, BoundedAttributes) and attributes.dropped:
                    span.dropped_attributes_count = attributes.dropped
                span.status.SetInParent()
            exc = item.get("exception")
            if exc:
                attributes, status = exception_event(exc)
                event = span.events.add(name="exception", time_unix_nano=int(exc["time_ns"]))
                add_attributes(event.attributes, attributes)
                span.status.code = _ERROR
                span.status.message = status.description or ""


_encodings: weakref.WeakKeyDictionary[SpanTranslator, _TargetEncoding] = weakref.WeakKeyDictionary()
_encodings_lock = threading.Lock()  # each target's queue worker encodes on its own thread


def _encoding(source: SpanTranslator) -> _TargetEncoding:
    encoding = _encodings.get(source)
    if encoding is None:
        with _encodings_lock:
            encoding = _encodings.get(source)
            if encoding is None:
                encoding = _encodings[source] = _TargetEncoding(source)
    return encoding


def spans_request(records: Sequence[SpanRecord]) -> ExportTraceServiceRequest:
    """One request for a batch: a ResourceSpans per target (in the order they first appear), each with
    the one ``peeka`` scope and the target's spans in batch order."""
    request = ExportTraceServiceRequest()
    groups: dict[SpanTranslator, list[SpanRecord]] = {}
    first = records[0].source if records else None
    if all(record.source is first for record in records):
        groups = {first: list(records)} if first is not None else {}
    else:
        for record in records:
            groups.setdefault(record.source, []).append(record)
    for source, group in groups.items():
        encoding = _encoding(source)
        resource_spans = request.resource_spans.add()
        resource_spans.MergeFromString(encoding.resource_spans)
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.MergeFromString(encoding.scope_spans)
        encoding.fill(scope_spans.spans, group)
    return request


def sdk_spans_request(records: Sequence[SpanRecord]) -> ExportTraceServiceRequest:
    """The same batch the SDK's way: ReadableSpans, then the stock encoder (the reference, and the
    ``PEEKA_SPAN_ENCODER=sdk`` path)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return encode_spans([record.source.readable(record) for record in records])


# -- sending -------------------------------------------------------------------------------------

MAX_RETRIES = 6  # attempts per batch, as the SDK's exporters make
RETRYABLE = frozenset((429, 502, 503, 504))
DEFAULT_TIMEOUT = 10.0  # s per batch (retries included), as the SDK's exporters read OTEL_*_TIMEOUT: seconds
MAX_REQUEST_BYTES = 64 << 20  # a larger serialized request is refused before it is sent (the SDK's limit)


def _setting(environ: Mapping[str, str], name: str) -> str | None:
    """``OTEL_EXPORTER_OTLP_TRACES_<name>``, else ``OTEL_EXPORTER_OTLP_<name>`` (empty counts as unset)."""
    return environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or environ.get(f"OTEL_EXPORTER_OTLP_{name}") or None


def http_headers(environ: Mapping[str, str]) -> dict[str, str]:
    """What every POST carries: the SDK's content type and user agent (lower-cased names, as it
    sends them), then the configured headers (which may override them), then Content-Encoding."""
    from opentelemetry.exporter.otlp.proto.http.version import __version__ as stock_version
    from opentelemetry.util.re import parse_env_headers

    headers = {"content-type": "application/x-protobuf",
               "user-agent": f"OTel-OTLP-Exporter-Python/{stock_version} peeka/{_peeka_version}"}
    headers.update(parse_env_headers(_setting(environ, "HEADERS") or "", liberal=True))
    compression = http_compression(environ)
    if compression != "none" and not any(key.lower() == "content-encoding" for key in headers):
        headers["Content-Encoding"] = compression
    return headers


def http_compression(environ: Mapping[str, str]) -> str:
    value = (_setting(environ, "COMPRESSION") or "none").strip().lower()
    if value not in ("none", "gzip", "deflate"):
        _logger.warning("Unsupported compression type: %s", value)
        return "none"
    return value


def http_timeout(environ: Mapping[str, str]) -> float:
    raw = _setting(environ, "TIMEOUT")
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        _logger.warning("Invalid timeout value %r, using default of %s seconds", raw, DEFAULT_TIMEOUT)
        return DEFAULT_TIMEOUT


def _retry_after(response: Any) -> float | None:
    """A ``Retry-After`` header's wait (seconds or an HTTP date), if the backend sent one."""
    value = (response.headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


class HttpSpanExporter(SpanExporter):
    """OTLP over HTTP/protobuf, sent as the SDK's OTLPSpanExporter sends: one POST per batch on a
    kept-alive session, the configured headers, gzip or deflate, TLS files, a per-batch timeout, and
    up to 6 attempts on 429/502/503/504 or a connection error, backing off 1, 2, 4 ... s (+-20%) or as
    Retry-After says, within the timeout; a lost kept-alive connection is retried at once."""

    def __init__(self, endpoint: str, environ: Mapping[str, str],
                 encode: Callable[[Sequence[SpanRecord]], ExportTraceServiceRequest] = spans_request) -> None:
        import requests

        self.endpoint = endpoint
        self.encode = encode
        self.headers = http_headers(environ)
        self.compression = http_compression(environ)
        self.timeout = http_timeout(environ)
        self.verify: bool | str = _setting(environ, "CERTIFICATE") or True
        key, cert = _setting(environ, "CLIENT_KEY"), _setting(environ, "CLIENT_CERTIFICATE")
        self.cert: Any = (cert, key) if cert and key else cert
        self._session = requests.Session()
        self._connection_errors = (requests.ConnectionError,)
        self._stopping = threading.Event()

    def export(self, spans: Sequence[SpanRecord]) -> SpanExportResult:  # type: ignore[override]
        if self._stopping.is_set():
            _logger.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        try:
            body = self.encode(spans).SerializePartialToString()
        except Exception as error:
            _logger.error("Failed to encode span batch: %s", error)
            return SpanExportResult.FAILURE
        if len(body) > MAX_REQUEST_BYTES:
            _logger.warning("Dropping span batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                            len(body), MAX_REQUEST_BYTES)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if self.send(body) else SpanExportResult.FAILURE

    def _compress(self, body: bytes) -> bytes:
        if self.compression == "gzip":
            return gzip.compress(body, mtime=0)
        if self.compression == "deflate":
            return zlib.compress(body)
        return body

    def _post(self, data: bytes, timeout: float) -> Any:
        """One POST; a connection error (often a kept-alive connection the backend closed) is tried
        once more at once if time is left. Returns the response or the exception."""
        deadline = time.time() + timeout
        for attempt in (1, 2):
            try:
                return self._session.post(self.endpoint, data=data, headers=self.headers, timeout=max(timeout, 0.0),
                                          verify=self.verify, cert=self.cert)
            except Exception as error:
                timeout = deadline - time.time()
                if attempt == 2 or not isinstance(error, self._connection_errors) or timeout <= 0:
                    return error
        raise AssertionError("unreachable")

    def send(self, body: bytes) -> bool:
        data = self._compress(body)
        deadline = time.time() + self.timeout
        for attempt in range(MAX_RETRIES):
            backoff = 2 ** attempt * random.uniform(0.8, 1.2)
            result = self._post(data, deadline - time.time())
            if isinstance(result, Exception):
                status, reason = None, str(result)
                retryable = isinstance(result, self._connection_errors)
            else:
                status, reason = result.status_code, result.reason
                if 200 <= status < 400:
                    return True
                retryable = status in RETRYABLE
                waited = _retry_after(result) if retryable else None
                if waited is not None:
                    backoff = waited
            if not retryable:
                _logger.error("Failed to export spans batch code: %s, reason: %s", status, reason)
                return False
            if attempt + 1 == MAX_RETRIES or backoff > deadline - time.time() or self._stopping.is_set():
                _logger.error("Failed to export spans batch due to timeout, max retries or shutdown.")
                return False
            _logger.warning("Transient error %s encountered while exporting spans batch, retrying in %.2fs.",
                            reason, backoff)
            if self._stopping.wait(backoff):
                _logger.warning("Shutdown in progress, aborting retry.")
                return False
        return False

    def shutdown(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._session.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def grpc_span_exporter(encode: Callable[[Sequence[SpanRecord]], ExportTraceServiceRequest] = spans_request) -> SpanExporter:
    """OTLP over gRPC: the SDK's own span exporter (it reads the OTEL_EXPORTER_OTLP_* variables: endpoint,
    insecure, certificates, headers, compression, timeout), given our request for a batch."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    class GrpcSpanExporter(OTLPSpanExporter):  # type: ignore[misc]
        def _translate_data(self, data: Sequence[SpanRecord]) -> ExportTraceServiceRequest:  # type: ignore[override]
            return encode(data)

        def _count_data(self, data: Sequence[SpanRecord]) -> int:  # type: ignore[override]
            return len(data)

    return GrpcSpanExporter()


class StockSpanExporter(SpanExporter):
    """The SDK's whole path for a batch of records (``PEEKA_SPAN_ENCODER=sdk``): ReadableSpans, then
    the SDK's OTLP exporter with its own encoder and send. For comparison, and a fallback."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter

    def export(self, spans: Sequence[SpanRecord]) -> SpanExportResult:  # type: ignore[override]
        return self.exporter.export([record.source.readable(record) for record in spans])

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
