"""Pure translation: the agent's observations -> span records (ids and parents decided), their
OpenTelemetry resource, and for the stock export path the SDK's span data.

No I/O and no clock here: ids come from an injected generator, so the same input always gives the
same spans (the unit tests compare them with golden data). Transport lives in pipeline.py.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from peeka import __version__ as _peeka_version

SCOPE = InstrumentationScope("peeka", _peeka_version)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class RandomIds:
    """Trace and span ids as the SDK's RandomIdGenerator makes them (random, never zero)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._bits = (rng or random.Random()).getrandbits

    def trace_id(self) -> int:
        return self._bits(128) or 1

    def span_id(self) -> int:
        return self._bits(64) or 1


def parse_resource_attributes(text: str) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES``: ``k=v,k2=v2`` with percent-encoded values."""
    from urllib.parse import unquote

    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            out[key.strip()] = unquote(value.strip())
    return out


def default_service_name(argv: list[str]) -> str:
    """The target's ``sys.argv`` as a person would name it: ``/srv/shop.py`` -> shop,
    ``python -m shop`` (argv[0] ``.../shop/__main__.py``) -> shop, ``python -c ...`` -> python."""
    first = argv[0] if argv else ""
    if first in ("", "-c", "-m"):
        return "python"
    base = os.path.basename(first)
    if base == "__main__.py":
        base = os.path.basename(os.path.dirname(first)) or base
    return base[:-3] if base.endswith(".py") else base


def resource_attributes(hello: Mapping[str, Any], command_args: list[str], host: str, service: str | None,
                        environ: Mapping[str, str]) -> dict[str, Any]:
    """The **target's** resource: the SDK's detectors would describe the sidecar instead.

    Precedence, lowest first: what the target says about itself, the configured service name,
    ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SERVICE_NAME``.
    """
    version = str(hello.get("python_version", ""))
    attrs: dict[str, Any] = {
        "service.name": service or default_service_name(list(hello.get("argv") or [])),
        "process.pid": int(hello["pid"]),
        "process.executable.path": hello.get("executable", ""),
        "process.command_args": list(command_args),
        "process.runtime.name": str(hello.get("implementation", "cpython")).lower(),
        "process.runtime.version": version.split()[0] if version else "",
        "host.name": host,
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.language": "python",
        "telemetry.auto.version": _peeka_version,
    }
    attrs.update(parse_resource_attributes(environ.get("OTEL_RESOURCE_ATTRIBUTES", "")))
    if environ.get("OTEL_SERVICE_NAME"):
        attrs["service.name"] = environ["OTEL_SERVICE_NAME"]
    return attrs


class _HashedResource(Resource):
    """A Resource whose hash is computed once: the stock OTLP encoder groups spans by resource in a
    dict, and ``Resource.__hash__`` serializes all attributes to JSON on every call (once per span,
    about a tenth of the encoder's time). Equality and everything else stay the SDK's."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


class SpanRecord(NamedTuple):
    """One observed call with its place in a trace decided: what the export queue holds. The OTLP
    span is built from it when its batch is sent (exporters/otlp.py), or the SDK's ReadableSpan
    when the stock path is chosen (``SpanTranslator.readable``)."""

    item: Mapping[str, Any]  # the agent's span event, as decoded
    trace_id: int
    span_id: int
    parent_id: int | None  # the parent span's id: a node's root, the target's own span, the caller's
    remote: bool  # the parent is another process's span (the target's OTel span or the request's caller)
    trace_state: TraceState | None  # the W3C tracestate of the caller, carried by every span of its trace
    source: SpanTranslator  # whose resource and limits apply

    @property
    def name(self) -> str:
        return str(self.item["name"])

    @property
    def start_ns(self) -> int:
        return int(self.item["start_ns"])

    @property
    def end_ns(self) -> int:
        return int(self.item["end_ns"])

    @property
    def thread_id(self) -> int:
        return int(self.item["thread_id"])


CODE_KEYS = frozenset(("code.function.name", "code.file.path", "code.line.number", "thread.id", "thread.name"))


def code_attributes(item: Mapping[str, Any]) -> dict[str, Any]:
    """Where the code is and which thread ran it: the same for every call of a function on a thread."""
    return {
        "code.function.name": item["name"],
        "code.file.path": item.get("file") or "",
        "code.line.number": int(item.get("line") or 0),
        "thread.id": int(item["thread_id"]),
        "thread.name": str(item.get("thread", "")),
    }


def span_attributes(item: Mapping[str, Any], limits: SpanLimits) -> dict[str, Any]:
    """A span's attributes, in the order they are exported: where the code is, its thread, then
    what the agent captured (arguments, result, HTTP facts, sampling probability)."""
    attributes = code_attributes(item)
    attributes.update(item.get("attributes") or {})
    if limited(limits, len(attributes)):
        # Limits from OTEL_*_LIMIT apply as the SDK applies them; without any, the values are already
        # plain strings and ints, and the SDK's per-value checks would double the translation's cost.
        attributes = BoundedAttributes(limits.max_span_attributes, attributes, immutable=True,  # type: ignore[assignment]
                                       max_value_len=limits.max_span_attribute_length)
    return attributes


def limited(limits: SpanLimits, count: int) -> bool:
    """Whether the SDK's attribute limits change a span of ``count`` attributes."""
    return limits.max_span_attribute_length is not None or count > (limits.max_span_attributes or 128)


def exception_event(exc: Mapping[str, Any]) -> tuple[dict[str, Any], Status]:
    """The ``exception`` event's attributes of a call that raised, and its span's status."""
    return ({"exception.type": exc["type"], "exception.message": exc["message"],
             "exception.stacktrace": exc["stacktrace"]},
            Status(StatusCode.ERROR, f"{exc['type']}: {exc['message']}"))


class SpanTranslator:
    """One target's batches of observed calls -> SpanRecords (one per call, trees nested), and the
    SDK's ReadableSpan of a record for the stock export path."""

    def __init__(self, resource: Resource, ids: RandomIds, limits: SpanLimits | None = None) -> None:
        self.resource = _HashedResource(resource)
        self.ids = ids
        self.limits = limits or SpanLimits()

    def records(self, batch: Iterable[Mapping[str, Any]]) -> list[SpanRecord]:
        """Ids and parents for a batch; a child names its parent by index in the same batch."""
        out: list[SpanRecord] = []
        new_span = self.ids.span_id
        for item in batch:
            parent = item.get("parent")
            if parent is not None:
                above = out[parent]
                out.append(SpanRecord(item, above.trace_id, new_span(), above.span_id, False, above.trace_state, self))
            elif item.get("otel"):
                trace_hex, span_hex = item["otel"]
                out.append(SpanRecord(item, int(trace_hex, 16), new_span(), int(span_hex, 16), True, None, self))
            elif item.get("remote"):
                remote = item["remote"]  # the request's W3C traceparent / tracestate
                state = TraceState.from_header([remote["tracestate"]]) if remote.get("tracestate") else None
                out.append(SpanRecord(item, int(remote["trace_id"], 16), new_span(), int(remote["span_id"], 16), True,
                                      state, self))
            else:
                trace_id = self.ids.trace_id()
                out.append(SpanRecord(item, trace_id, new_span(), None, False, None, self))
        return out

    def spans(self, batch: Iterable[Mapping[str, Any]]) -> list[ReadableSpan]:
        return [self.readable(record) for record in self.records(batch)]

    def readable(self, record: SpanRecord) -> ReadableSpan:
        item = record.item
        parent: SpanContext | None = None
        if record.parent_id is not None:
            remote = item.get("remote") if record.remote else None
            flags = TraceFlags(remote.get("flags", 1) & 0xFF) if remote else _SAMPLED
            parent = SpanContext(record.trace_id, record.parent_id, is_remote=record.remote, trace_flags=flags,
                                 trace_state=record.trace_state)
        context = SpanContext(record.trace_id, record.span_id, is_remote=False, trace_flags=_SAMPLED,
                              trace_state=record.trace_state)
        events: list[Event] = []
        status = Status(StatusCode.UNSET)
        exc = item.get("exception")
        if exc:
            attributes, status = exception_event(exc)
            events.append(Event("exception", attributes, timestamp=int(exc["time_ns"])))
        return ReadableSpan(
            name=item["name"], context=context, parent=parent, resource=self.resource,
            attributes=span_attributes(item, self.limits), events=events,
            kind=SpanKind.SERVER if item.get("kind") == "server" else SpanKind.INTERNAL, status=status,
            start_time=int(item["start_ns"]), end_time=int(item["end_ns"]), instrumentation_scope=SCOPE,
        )
