"""Pure translation: the agent's observations -> OpenTelemetry span data and resource.

No I/O and no clock here: ids come from an injected generator, so the same input always gives the
same spans (the unit tests compare them with golden data). Transport lives in pipeline.py.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping
from typing import Any

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


class SpanTranslator:
    """One target's batches of observed calls -> ReadableSpans (one per call, trees nested)."""

    def __init__(self, resource: Resource, ids: RandomIds, limits: SpanLimits | None = None) -> None:
        self.resource = _HashedResource(resource)
        self.ids = ids
        self.limits = limits or SpanLimits()

    def spans(self, batch: Iterable[Mapping[str, Any]]) -> list[ReadableSpan]:
        out: list[ReadableSpan] = []
        contexts: list[SpanContext] = []  # by index in the batch: a child names its parent's index
        for item in batch:
            parent: SpanContext | None = None
            if item.get("parent") is not None:
                parent = contexts[item["parent"]]
            elif item.get("otel"):
                trace_hex, span_hex = item["otel"]
                parent = SpanContext(int(trace_hex, 16), int(span_hex, 16), is_remote=True, trace_flags=_SAMPLED)
            elif item.get("remote"):
                remote = item["remote"]  # the request's W3C traceparent / tracestate
                state = TraceState.from_header([remote["tracestate"]]) if remote.get("tracestate") else None
                parent = SpanContext(int(remote["trace_id"], 16), int(remote["span_id"], 16), is_remote=True,
                                     trace_flags=TraceFlags(remote.get("flags", 1) & 0xFF), trace_state=state)
            trace_id = parent.trace_id if parent is not None else self.ids.trace_id()
            context = SpanContext(trace_id, self.ids.span_id(), is_remote=False, trace_flags=_SAMPLED)
            contexts.append(context)
            out.append(self._span(item, context, parent))
        return out

    def _span(self, item: Mapping[str, Any], context: SpanContext, parent: SpanContext | None) -> ReadableSpan:
        attributes: dict[str, Any] = {
            "code.function.name": item["name"],
            "code.file.path": item.get("file") or "",
            "code.line.number": int(item.get("line") or 0),
            "thread.id": int(item["thread_id"]),
            "thread.name": str(item.get("thread", "")),
        }
        attributes.update(item.get("attributes") or {})
        events: list[Event] = []
        status = Status(StatusCode.UNSET)
        exc = item.get("exception")
        if exc:
            events.append(Event("exception", {
                "exception.type": exc["type"],
                "exception.message": exc["message"],
                "exception.stacktrace": exc["stacktrace"],
            }, timestamp=int(exc["time_ns"])))
            status = Status(StatusCode.ERROR, f"{exc['type']}: {exc['message']}")
        limits = self.limits
        if limits.max_span_attribute_length is not None or len(attributes) > (limits.max_span_attributes or 128):
            # Limits from OTEL_*_LIMIT apply as the SDK applies them; without any, the values are already
            # plain strings and ints, and the SDK's per-value checks would double the translation's cost.
            attributes = BoundedAttributes(limits.max_span_attributes, attributes, immutable=True,  # type: ignore[assignment]
                                           max_value_len=limits.max_span_attribute_length)
        return ReadableSpan(
            name=item["name"], context=context, parent=parent, resource=self.resource,
            attributes=attributes, events=events, kind=SpanKind.SERVER if item.get("kind") == "server" else SpanKind.INTERNAL,
            status=status,
            start_time=int(item["start_ns"]), end_time=int(item["end_ns"]), instrumentation_scope=SCOPE,
        )
