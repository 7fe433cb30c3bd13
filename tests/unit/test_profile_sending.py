"""exporters/profiles.py without a target: links from sampling rounds to exported spans, the split
of a stack's samples among them, the OTLP profiles request as opentelemetry-proto decodes it, and
the send queue against a real HTTP server that is down, then back."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)
from peeka_exporters.profiles import (
    MAX_QUEUE,
    Link,
    ProfileQueue,
    Pyroscope,
    SpanIndex,
    linked_profile,
    otlp_request,
)
from peeka_exporters.translate import SpanRecord

pytestmark = pytest.mark.parallel

TRACE = 0xABC


def span(name: str, thread: int, start: int, end: int, span_id: int) -> SpanRecord:
    item = {"name": name, "thread_id": thread, "start_ns": start, "end_ns": end}
    return SpanRecord(item, TRACE, span_id, None, False, None, None)  # type: ignore[arg-type]


def link(span_id: int) -> Link:
    return Link(f"{TRACE:032x}", f"{span_id:016x}")


def index() -> SpanIndex:
    out = SpanIndex()
    out.add([span("a.handle", 1, 100, 1000, 1), span("a.crunch", 1, 200, 300, 2),
             span("a.rec", 1, 400, 900, 3), span("a.rec", 1, 500, 600, 4),
             span("a.co", 1, 100, 500, 5), span("a.co", 1, 300, 800, 6)])
    return out


def test_a_round_links_to_the_innermost_span_that_held_it() -> None:
    spans = index()
    assert spans.resolve(1, ("a.crunch", "a.handle"), 250, 260) == link(2)
    assert spans.resolve(1, ("a.work", "a.handle"), 350, 360) == link(1)  # a function with no span: its caller's
    assert spans.resolve(1, ("a.rec", "a.rec", "a.handle"), 550, 560) == link(4)  # recursion: the inner call
    assert spans.resolve(1, ("a.rec", "a.rec", "a.handle"), 590, 610) == link(3)  # straddles the inner call's end
    # Two calls of one coroutine function overlap without nesting: which one ran is unknown.
    assert spans.resolve(1, ("a.co", "a.handle"), 350, 360) == link(1)
    assert spans.resolve(1, ("a.co",), 350, 360) is None
    assert spans.resolve(2, ("a.crunch", "a.handle"), 250, 260) is None  # another thread
    assert spans.resolve(1, ("a.handle",), 1100, 1200) is None  # after the call
    spans.prune(950)
    assert spans.resolve(1, ("a.crunch", "a.handle"), 250, 260) == link(1)  # crunch's span forgotten, handle's kept


def event(links: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "profile", "time": 1000.0, "duration_s": 1.0, "ticks": 19, "rate_hz": 19, "weighting": "cpu",
            "frames": [["a.crunch", "/a.py", 10, 12], ["a.handle", "/a.py", 20, 22], ["a.churn", "/a.py", 30, 31]],
            "stacks": [{"thread": "requests", "frames": [0, 1], "samples": 10, "cpu_ns": 1000},
                       {"thread": "background", "frames": [2], "samples": 4, "cpu_ns": 400}],
            "stacks_left_out": 0, "links": links}


def test_a_stacks_samples_are_split_by_the_spans_their_rounds_were_in() -> None:
    links = {"ticks": [[250, 260], [270, 280], [1100, 1200]],
             "stacks": [{"thread": "requests", "thread_id": 1, "functions": ["a.crunch", "a.handle"], "ticks": [0, 1, 2]}]}
    profile, linked = linked_profile(event(links), index())
    parts = [(s.thread, s.count, s.cpu_ns, dict(s.labels)) for s in profile.samples]
    assert parts == [("requests", 7, 667, {"trace_id": f"{TRACE:032x}", "span_id": f"{2:016x}"}),
                     ("requests", 3, 333, {}), ("background", 4, 400, {})]
    assert linked == 7 and profile.cpu and profile.start_ns == 1000 * 10**9 and profile.duration_ns == 10**9
    unlinked, none = linked_profile(event(links), None)
    assert none == 0 and [(s.count, s.cpu_ns) for s in unlinked.samples] == [(10, 1000), (4, 400)]


def test_a_split_among_many_spans_never_goes_below_zero() -> None:
    # 13 samples of one stack whose 8 linked rounds fell in 8 calls: each share rounds 1.625 up to 2,
    # and what is left for the last must not go negative (the counts still add up to 13).
    spans = SpanIndex()
    spans.add([span("a.handle", 1, 1000 * (i + 1), 1000 * (i + 1) + 500, 10 + i) for i in range(8)])
    links = {"ticks": [[1000 * (i + 1) + 100, 1000 * (i + 1) + 110] for i in range(8)],
             "stacks": [{"thread": "requests", "thread_id": 1, "functions": ["a.crunch", "a.handle"],
                         "ticks": list(range(8))}]}
    data = event(links)
    data["stacks"][0].update(samples=13, cpu_ns=1300)
    profile, linked = linked_profile(data, spans)
    mine = [s for s in profile.samples if s.thread == "requests"]
    assert all(s.count >= 0 and s.cpu_ns >= 0 for s in mine), [(s.count, s.cpu_ns) for s in mine]
    assert sum(s.count for s in mine) == 13 and sum(s.cpu_ns for s in mine) == 1300 and linked == 13


def test_the_otlp_request_decodes_with_its_dictionary() -> None:
    links = {"ticks": [[250, 260]], "stacks": [{"thread": "requests", "thread_id": 1,
                                                 "functions": ["a.crunch", "a.handle"], "ticks": [0]}]}
    profile, _ = linked_profile(event(links), index())
    request = ExportProfilesServiceRequest.FromString(
        otlp_request({"service.name": "shop", "process.pid": 42}, profile, "1.0").SerializeToString())
    d = request.dictionary
    strings = list(d.string_table)
    for table in (d.mapping_table, d.location_table, d.function_table, d.link_table, d.attribute_table, d.stack_table):
        assert not table[0].ListFields()  # the zero value first: index 0 means "not set"
    assert strings[0] == ""
    [resource_profiles] = request.resource_profiles
    assert {kv.key for kv in resource_profiles.resource.attributes} == {"service.name", "process.pid"}
    profiles = resource_profiles.scope_profiles[0].profiles
    kinds = [(strings[p.sample_type.type_strindex], strings[p.sample_type.unit_strindex]) for p in profiles]
    assert kinds == [("cpu", "nanoseconds"), ("samples", "count")]
    assert profiles[0].profile_id == profiles[1].profile_id and len(profiles[0].profile_id) == 16
    cpu = profiles[0]
    seen = []
    for sample in cpu.samples:
        stack = [strings[d.function_table[line.function_index].name_strindex]
                 for loc in d.stack_table[sample.stack_index].location_indices for line in d.location_table[loc].lines]
        thread = d.attribute_table[sample.attribute_indices[0]]
        link_ids = d.link_table[sample.link_index]
        seen.append((stack, sample.values[0], thread.value.string_value,
                     link_ids.span_id.hex() if sample.link_index else None))
    assert seen == [(["a.crunch", "a.handle"], 1000, "requests", f"{2:016x}"),
                    (["a.churn"], 400, "background", None)]
    assert d.link_table[1].trace_id.hex() == f"{TRACE:032x}"


class Flaky:
    """A real HTTP server on loopback that answers 503 until told otherwise."""

    def __init__(self) -> None:
        self.up = False
        self.posts = 0
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                flaky.posts += 1
                self.send_response(200 if flaky.up else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.timing  # the puts' time bounded (0.5 s)
def test_an_outage_is_retried_with_backoff_bounded_and_never_blocks() -> None:
    backend = Flaky()
    queue = ProfileQueue([Pyroscope(backend.url, {})], {"process.pid": 7}, "shop", None, grace=0.0)
    queue.first_backoff = 0.05
    try:
        started = time.perf_counter()
        for _ in range(MAX_QUEUE + 4):
            queue.put(event({}))
        assert time.perf_counter() - started < 0.5  # the stream's thread never waits for the backend
        deadline = time.monotonic() + 10
        while queue.failures < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert backend.posts >= 3 and queue.failures >= 3 and queue.exported == 0 and queue.backoff > 0.05  # retried, backing off
        assert queue.dropped >= 4 and len(queue) <= MAX_QUEUE  # bounded: the oldest went
        backend.up = True
        deadline = time.monotonic() + 10
        # Until every profile is accounted for: the last one leaves the queue before its send ends.
        while (len(queue) or queue.exported + queue.dropped < MAX_QUEUE + 4) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(queue) == 0 and queue.exported == MAX_QUEUE + 4 - queue.dropped and queue.backoff == 0.0
    finally:
        queue.shutdown(timeout=2.0)
        backend.close()
