"""Continuous profiles: the agent's ``profile`` events -> OTLP profiles (gRPC, HTTP/protobuf) and
Pyroscope (pprof over its HTTP ingest API), linked to the spans the exporter sent.

Links: the agent says which sampling rounds caught a thread inside a watched or traced function
(it never knows span ids: the translator makes them). ``SpanIndex`` keeps, per thread and function,
the time ranges and ids of recent exported spans; a round is linked to the innermost span on that
thread whose function is on the sampled stack and whose call contains the round. Concurrent calls
of one coroutine function on one thread cannot be told apart by time: such a round is linked to an
enclosing call that is unambiguous, or to none. A profile waits ``grace`` seconds before it is
linked and sent, so a call still running when the agent cut the profile has ended and been sent.

Sending runs in its own thread behind a bounded queue: a backend outage is retried with backoff
(doubling up to ``MAX_BACKOFF``) and never blocks spans or metrics; a full queue drops the oldest
profile, and every profile dropped or given up is counted.
"""

from __future__ import annotations

import bisect
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from peeka.profiles.model import Frame, Profile, Sample, from_top_record
from peeka.profiles.pprof import to_pprof

from .translate import SpanRecord

MAX_QUEUE = 16  # profiles waiting per target (one per interval)
MAX_BACKOFF = 60.0  # s between retries of a backend that is down
SPAN_MEMORY = 120.0  # s an exported span stays in the index
PROFILES_PATH = "v1development/profiles"


class Link(NamedTuple):
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits


class _Known(NamedTuple):
    start: int
    end: int
    link: Link


class SpanIndex:
    """Recent exported spans by (thread id, function): their time ranges and ids."""

    def __init__(self) -> None:
        self._by: dict[tuple[int, str], list[_Known]] = {}
        self._lock = threading.Lock()
        self._longest: dict[tuple[int, str], int] = {}

    def add(self, spans: Sequence[SpanRecord]) -> None:
        with self._lock:
            for span in spans:
                start, end = span.start_ns, span.end_ns
                if not start or not end:
                    continue
                key = (span.thread_id, span.name)
                known = _Known(start, end, Link(f"{span.trace_id:032x}", f"{span.span_id:016x}"))
                bisect.insort(self._by.setdefault(key, []), known)
                self._longest[key] = max(self._longest.get(key, 0), end - start)

    def prune(self, before_ns: int) -> None:
        with self._lock:
            for key in list(self._by):
                kept = [k for k in self._by[key] if k.end >= before_ns]
                if kept:
                    self._by[key] = kept
                else:
                    del self._by[key], self._longest[key]

    def resolve(self, thread: int, functions: Sequence[str], start: int, end: int) -> Link | None:
        """The innermost span on ``thread`` (``functions`` innermost first) whose call held the
        round ``[start, end]``; None when no such span was exported or the choice is ambiguous."""
        with self._lock:
            for name in functions:
                known = self._by.get((thread, name))
                if not known:
                    continue
                at = bisect.bisect_right(known, (end, 1 << 63))  # spans that started by the round's end
                earliest = start - self._longest[(thread, name)]
                holding = []
                for i in range(at - 1, -1, -1):
                    k = known[i]
                    if k.start < earliest:
                        break
                    if k.start <= start and k.end >= end:
                        holding.append(k)
                if not holding:
                    continue
                # Nested (recursion): the innermost, the latest to start. Overlapping without
                # nesting (concurrent coroutines): which one ran is not known, look further out.
                inner = max(holding, key=lambda k: k.start)
                if all(k.start <= inner.start and k.end >= inner.end for k in holding):
                    return inner.link
        return None


def linked_profile(event: Mapping[str, Any], index: SpanIndex | None) -> tuple[Profile, int]:
    """The profile of one ``profile`` event, its samples split by the span each sampling round was
    in (labels ``trace_id``/``span_id``); ``(profile, samples linked)``."""
    base = from_top_record(event)
    comment = (f"peeka export --profile: {event['ticks']} sampling rounds in {float(event['duration_s']):g} s "
               f"(asked {event['rate_hz']} Hz), weighting {event.get('weighting')}")
    profile = base._replace(comments=(comment,))
    links = event.get("links") or {}
    if index is None or not links.get("stacks"):
        return profile, 0
    rounds = links["ticks"]
    # (thread, functions innermost first) -> {link or None: rounds}
    shares: dict[tuple[str, tuple[str, ...]], dict[Link | None, int]] = {}
    linked = 0
    for entry in links["stacks"]:
        functions = tuple(entry["functions"])
        found = shares.setdefault((entry["thread"], functions), {})
        for tick in entry["ticks"]:
            start, end = rounds[tick]
            link = index.resolve(int(entry["thread_id"]), functions, start, end)
            found[link] = found.get(link, 0) + 1
    samples: list[Sample] = []
    for sample in profile.samples:
        split = shares.get((sample.thread, tuple(f.function for f in sample.frames)))
        if not split or set(split) == {None}:
            samples.append(sample)
            continue
        total = sum(split.values())
        parts = sorted(split.items(), key=lambda kv: (kv[0] is None, kv[0] or Link("", "")))
        # Shares by rounding the running total: never below zero, and they add up exactly (rounding
        # each share alone gave 8 shares of 13 samples 2 each, and the last -1).
        rounds_so_far = count_given = cpu_given = 0
        for link, rounds_in in parts:
            rounds_so_far += rounds_in
            count = round(sample.count * rounds_so_far / total) - count_given
            cpu = round(sample.cpu_ns * rounds_so_far / total) - cpu_given
            count_given += count
            cpu_given += cpu
            labels = dict(sample.labels)
            if link is not None:
                labels.update(trace_id=link.trace_id, span_id=link.span_id)
                linked += count
            samples.append(sample._replace(count=count, cpu_ns=cpu, labels=labels))
    return profile._replace(samples=samples), linked


# -- OTLP profiles ---------------------------------------------------------------------------

def otlp_request(resource: Mapping[str, Any], profile: Profile, scope_version: str) -> Any:
    """An ``ExportProfilesServiceRequest``: one Profile per measure (CPU nanoseconds when measured,
    wall-clock sample counts when counted), sharing one dictionary, with the thread name as a sample
    attribute and the span each sample was in in the link table."""
    from opentelemetry.exporter.otlp.proto.common._internal import _encode_attributes
    from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
        ExportProfilesServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope
    from opentelemetry.proto.profiles.v1development import profiles_pb2 as pb
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    request = ExportProfilesServiceRequest()
    table = request.dictionary
    # Every table starts with its zero value: index 0 means "not set".
    table.mapping_table.add()
    table.location_table.add()
    table.function_table.add()
    table.link_table.add()
    table.attribute_table.add()
    table.stack_table.add()
    strings: dict[str, int] = {"": 0}
    table.string_table.append("")

    def string(text: str) -> int:
        found = strings.get(text)
        if found is None:
            found = strings[text] = len(table.string_table)
            table.string_table.append(text)
        return found

    table.mapping_table.add(filename_strindex=string("python"))
    functions: dict[tuple[str, str, int], int] = {}
    locations: dict[Frame, int] = {}
    stacks: dict[tuple[int, ...], int] = {}
    links: dict[tuple[str, str], int] = {}
    attributes: dict[tuple[str, str], int] = {}

    def attribute(key: str, value: str) -> int:
        found = attributes.get((key, value))
        if found is None:
            found = attributes[(key, value)] = len(table.attribute_table)
            table.attribute_table.add(key_strindex=string(key), value=AnyValue(string_value=value))
        return found

    def stack_of(frames: Sequence[Frame]) -> int:
        ids = []
        for frame in frames:  # innermost first: the first location is the leaf
            location = locations.get(frame)
            if location is None:
                key = (frame.function, frame.file, frame.start_line)
                function = functions.get(key)
                if function is None:
                    function = functions[key] = len(table.function_table)
                    name = string(frame.function)
                    table.function_table.add(name_strindex=name, system_name_strindex=name,
                                             filename_strindex=string(frame.file), start_line=frame.start_line)
                location = locations[frame] = len(table.location_table)
                table.location_table.add(mapping_index=1).lines.add(function_index=function, line=frame.line)
            ids.append(location)
        key = tuple(ids)
        found = stacks.get(key)
        if found is None:
            found = stacks[key] = len(table.stack_table)
            table.stack_table.add(location_indices=ids)
        return found

    resource_profiles = request.resource_profiles.add()
    resource_profiles.resource.CopyFrom(Resource(attributes=_encode_attributes(dict(resource))))
    scope = resource_profiles.scope_profiles.add()
    scope.scope.CopyFrom(InstrumentationScope(name="peeka", version=scope_version))
    measures = []
    if profile.cpu:
        measures.append(("cpu", "nanoseconds", lambda s: s.cpu_ns))
    if profile.counted:
        measures.append(("samples", "count", lambda s: s.count))
    profile_id = uuid.uuid4().bytes
    for kind, unit, value in measures:
        message = scope.profiles.add(time_unix_nano=profile.start_ns, duration_nano=profile.duration_ns,
                                     period=profile.period_ns, profile_id=profile_id)
        message.sample_type.CopyFrom(pb.ValueType(type_strindex=string(kind), unit_strindex=string(unit)))
        message.period_type.CopyFrom(pb.ValueType(type_strindex=string("cpu" if profile.cpu else "wall"),
                                                  unit_strindex=string("nanoseconds")))
        for sample in profile.samples:
            amount = value(sample)
            if not amount:
                continue
            link = 0
            if "trace_id" in sample.labels:
                ids = (sample.labels["trace_id"], sample.labels["span_id"])
                link = links.get(ids, 0)
                if not link:
                    link = links[ids] = len(table.link_table)
                    table.link_table.add(trace_id=bytes.fromhex(ids[0]), span_id=bytes.fromhex(ids[1]))
            message.samples.add(stack_index=stack_of(sample.frames), link_index=link, values=[int(amount)],
                                attribute_indices=[attribute("thread.name", sample.thread)])
    return request


class GrpcProfiles:
    """OTLP profiles over gRPC with the SDK's own channel set-up, headers, TLS, compression,
    timeout and retries (its exporter mixin, given the profiles service's stub)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        from opentelemetry.exporter.otlp.proto.grpc.exporter import OTLPExporterMixin
        from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2_grpc import (
            ProfilesServiceStub,
        )
        from opentelemetry.sdk.trace.export import SpanExportResult

        class _Mixin(OTLPExporterMixin):  # type: ignore[type-arg,misc]
            _exporting = "profiles"

            def _translate_data(self, data: Any) -> Any:
                return data

            def _count_data(self, data: Any) -> int:
                return sum(len(s.profiles) for r in data.resource_profiles for s in r.scope_profiles)

        endpoint = environ.get("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        self._exporter = _Mixin(ProfilesServiceStub, SpanExportResult, endpoint=endpoint,
                                headers=environ.get("OTEL_EXPORTER_OTLP_PROFILES_HEADERS") or None)
        self._success = SpanExportResult.SUCCESS
        self.description = f"OTLP profiles grpc to {endpoint or 'localhost:4317'}"

    def send(self, resource: Mapping[str, Any], profile: Profile, service: str) -> bool:
        from peeka import __version__

        return self._exporter._export(otlp_request(resource, profile, __version__)) is self._success

    def close(self) -> None:
        self._exporter.shutdown()


def http_profiles_endpoint(environ: Mapping[str, str]) -> str:
    """The URL OTLP/HTTP profiles go to: the profiles endpoint as given, else the base endpoint with
    ``/v1development/profiles`` appended (the OpenTelemetry Collector's OTLP receiver's path)."""
    given = environ.get("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT")
    if given:
        return given
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318"
    return f"{base.rstrip('/')}/{PROFILES_PATH}"


class HttpProfiles:
    """OTLP profiles over HTTP/protobuf through our span sender (otlp.HttpSpanExporter) pointed at
    the profiles URL: the same headers, TLS files, compression, timeout and retries as spans.
    ``OTEL_EXPORTER_OTLP_PROFILES_HEADERS``, when set, takes the place of the span headers."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        from .otlp import HttpSpanExporter

        self.endpoint = http_profiles_endpoint(environ)
        settings = dict(environ)
        headers = environ.get("OTEL_EXPORTER_OTLP_PROFILES_HEADERS")
        if headers:
            settings["OTEL_EXPORTER_OTLP_TRACES_HEADERS"] = headers
        self._sender = HttpSpanExporter(self.endpoint, settings)
        self.description = f"OTLP profiles http/protobuf to {self.endpoint}"

    def send(self, resource: Mapping[str, Any], profile: Profile, service: str) -> bool:
        from peeka import __version__

        body = otlp_request(resource, profile, __version__).SerializeToString()
        return self._sender.send(body)

    def close(self) -> None:
        self._sender.shutdown()


class Pyroscope:
    """Pyroscope's HTTP ingest API: ``POST /ingest?name=APP{labels}&from&until&format=pprof`` with
    the gzip-compressed pprof as the multipart field ``profile``. The application is the service;
    the target's pid is a label. ``PYROSCOPE_BASIC_AUTH`` (user:password) and ``PYROSCOPE_TENANT_ID``
    (``X-Scope-OrgID``) are sent when set."""

    def __init__(self, url: str, environ: Mapping[str, str], timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers: dict[str, str] = {}
        tenant = environ.get("PYROSCOPE_TENANT_ID")
        if tenant:
            self.headers["X-Scope-OrgID"] = tenant
        auth = environ.get("PYROSCOPE_BASIC_AUTH")
        if auth:
            import base64

            self.headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
        self.description = f"Pyroscope at {self.url}"

    def send(self, resource: Mapping[str, Any], profile: Profile, service: str) -> bool:
        labels = f"pid={resource.get('process.pid', '')}"
        start = profile.start_ns // 1_000_000_000
        until = max(start + 1, (profile.start_ns + profile.duration_ns + 999_999_999) // 1_000_000_000)
        query = urlencode({
            "name": f"{_app_name(service)}{{{labels}}}", "from": start, "until": until, "format": "pprof",
            "sampleRate": round(1e9 / profile.period_ns) if profile.period_ns else 0, "spyName": "peeka",
        })
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + to_pprof(profile) + f"\r\n--{boundary}--\r\n".encode()
        request = Request(f"{self.url}/ingest?{query}", data=body, method="POST",
                                         headers={**self.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            with urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - the user's URL
                response.read()
                return 200 <= response.status < 300
        except OSError:
            return False

    def close(self) -> None:
        pass


def _app_name(service: str) -> str:
    """Pyroscope application names allow letters, digits, ``._-``: anything else becomes ``_``."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in service) or "python"


def otlp_schema_problem() -> str | None:
    """Why the installed opentelemetry-proto cannot send the OTLP profiles our receivers decode, or
    None. The profiles schema is still in development and its field numbers move between releases
    (opentelemetry-proto 1.41 numbers Sample.values 2, 1.45 numbers it 4): bytes from the older one
    decode in a newer collector as wrong stacks and values, silently. So an exporter whose library
    speaks another revision than ours (our tests and deploy's collector) refuses rather than mislead."""
    from importlib.metadata import version

    from opentelemetry.proto.profiles.v1development import profiles_pb2

    fields = {f.name: f.number for f in profiles_pb2.Sample.DESCRIPTOR.fields}
    if fields.get("values") == PROFILE_SCHEMA_SAMPLE_VALUES:
        return None
    return (f"the installed opentelemetry-proto {version('opentelemetry-proto')} speaks an older revision of the "
            "OTLP profiles schema than current collectors decode")


PROFILE_SCHEMA_SAMPLE_VALUES = 4  # Sample.values' field number in the revision we speak (opentelemetry-proto 1.45)


def destinations(environ: Mapping[str, str], otlp: bool, pyroscope_url: str | None) -> list[Any]:
    """Where profiles go: OTLP (the protocol the spans use) when an OTLP endpoint is configured,
    and Pyroscope when a URL is given."""
    out: list[Any] = []
    if otlp:
        protocol = (environ.get("OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                    or "http/protobuf").strip().lower()
        out.append(GrpcProfiles(environ) if protocol == "grpc" else HttpProfiles(environ))
    if pyroscope_url:
        out.append(Pyroscope(pyroscope_url, environ))
    return out


class _Pending(NamedTuple):
    ready: float  # monotonic time it may be linked and sent
    event: Mapping[str, Any]


class ProfileQueue:
    """One target's profiles on their way: a bounded queue and one thread that links, encodes and
    sends each to every destination, retrying a failed one with backoff."""

    def __init__(self, destinations: Sequence[Any], resource: Mapping[str, Any], service: str,
                 index: SpanIndex | None, grace: float, name: str = "peeka-profiles") -> None:
        self.destinations = list(destinations)
        self.resource = dict(resource)
        self.service = service
        self.index = index
        self.grace = grace
        self._items: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._flushing = False
        self._sending: _Pending | None = None  # the profile the worker is linking and sending
        self.exported = 0  # profiles a destination took
        self.dropped = 0  # queue full, given up at shutdown, or not encodable
        self.failures = 0  # send attempts that failed (each retried)
        self.linked_samples = 0
        self.backoff = 0.0
        self.first_backoff = 1.0  # s after a failed send; doubles per failure in a row up to MAX_BACKOFF
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, event: Mapping[str, Any]) -> None:
        with self._cond:
            if self._stopping:
                self.dropped += len(self.destinations)
                return
            if len(self._items) >= MAX_QUEUE:
                # The oldest waiting goes (the newest says most about now); not the one being sent.
                if self._items[0] is self._sending:
                    del self._items[1]
                else:
                    self._items.popleft()
                self.dropped += len(self.destinations)
            self._items.append(_Pending(time.monotonic() + self.grace, event))
            self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._stopping:
                    self._cond.wait()
                if not self._items:
                    return
                head = self._items[0]
                wait = head.ready - time.monotonic()
                if wait > 0 and not (self._stopping or self._flushing):
                    self._cond.wait(wait)
                    continue
                self._sending = head
            try:
                profile, linked = linked_profile(head.event, self.index)
            except Exception:
                with self._cond:
                    if self._items and self._items[0] is head:
                        self._items.popleft()
                    self._sending = None
                    self.dropped += len(self.destinations)
                continue
            pending = list(self.destinations)
            while pending:
                failed = []
                for destination in pending:
                    try:
                        ok = destination.send(self.resource, profile, self.service)
                    except Exception:
                        ok = False
                    if ok:
                        self.exported += 1
                    else:
                        failed.append(destination)
                        self.failures += 1
                pending = failed
                if not pending:
                    self.backoff = 0.0
                    break
                # The backend is down: wait and retry this profile (others queue up, the oldest dropped).
                self.backoff = min(MAX_BACKOFF, max(self.first_backoff, self.backoff * 2)) * random.uniform(0.8, 1.2)
                with self._cond:
                    if self._stopping:
                        self.dropped += len(pending)
                        break
                    self._cond.wait(self.backoff)
                    if self._stopping:
                        self.dropped += len(pending)
                        break
            self.linked_samples += linked
            with self._cond:
                if self._items and self._items[0] is head:
                    self._items.popleft()
                self._sending = None
            if self.index is not None:
                self.index.prune(time.time_ns() - int(SPAN_MEMORY * 1e9))

    def shutdown(self, timeout: float = 5.0) -> None:
        """Send what waits (without the grace: the target's spans are in by now), then stop."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flushing = True
            self._cond.notify_all()
        while time.monotonic() < deadline:
            with self._cond:
                if not self._items:
                    break
            time.sleep(0.05)
        with self._cond:
            self._stopping = True
            in_flight = 1 if self._items and self._items[0] is self._sending else 0  # its sender counts it
            self.dropped += (len(self._items) - in_flight) * len(self.destinations)
            self._items.clear()
            self._cond.notify_all()
        self._thread.join(max(0.1, deadline - time.monotonic()))

