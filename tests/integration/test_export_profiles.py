"""``peeka export --profile`` end to end: real targets, the real CLI, and real receivers built from
opentelemetry-proto's own ProfilesService and TraceService servicers (gRPC) and their messages
(HTTP/protobuf), plus an HTTP receiver of Pyroscope's ingest form whose pprof is read with pprof's
own profile.proto. The ground truth is the target's code: ``handle`` (exported) spends its time in
``crunch`` on the thread ``requests``; ``churn`` burns CPU on ``background``, outside any span.
"""

from __future__ import annotations

import email.parser
import email.policy
import gzip
import subprocess
import threading
import urllib.parse
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, python_for, target_site_env
from profile_readers import PprofView, decode_pprof
from test_export import any_value, exporters, wait_for  # noqa: F401 - exporters: the fixture

grpc = pytest.importorskip("grpc")
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as profiles_service  # noqa: E402
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2_grpc as profiles_grpc  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_service  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150), pytest.mark.parallel]


class Received:
    """What the receivers decoded: spans {span id hex: (name, trace id hex, pid)}, OTLP profile
    requests, and Pyroscope ingests (query, decoded pprof)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: dict[str, tuple[str, str, int]] = {}
        self.profiles: list[Any] = []
        self.ingests: list[tuple[dict[str, str], PprofView]] = []
        self.profile_headers: list[dict[str, str]] = []  # each OTLP profiles request's headers (gRPC metadata)

    def add_spans(self, request: Any) -> None:
        with self.lock:
            for rs in request.resource_spans:
                pid = next(any_value(kv.value) for kv in rs.resource.attributes if kv.key == "process.pid")
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        self.spans[span.span_id.hex()] = (span.name, span.trace_id.hex(), pid)

    def add_profiles(self, request: Any) -> None:
        with self.lock:
            self.profiles.append(request)


class Traces(trace_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the service's name
        self.received.add_spans(request)
        return trace_service.ExportTraceServiceResponse()


class Profiles(profiles_grpc.ProfilesServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.received.profile_headers.append(dict(context.invocation_metadata()))
        self.received.add_profiles(request)
        return profiles_service.ExportProfilesServiceResponse()


def grpc_receiver(received: Received) -> tuple[Any, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_grpc.add_TraceServiceServicer_to_server(Traces(received), server)
    profiles_grpc.add_ProfilesServiceServicer_to_server(Profiles(received), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def http_receiver(received: Received) -> tuple[ThreadingHTTPServer, int]:
    """OTLP/HTTP (traces and profiles, binary protobuf) and Pyroscope's ``/ingest`` on one port."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            url = urllib.parse.urlsplit(self.path)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if url.path == "/v1/traces":
                received.add_spans(trace_service.ExportTraceServiceRequest.FromString(body))
                answer = trace_service.ExportTraceServiceResponse().SerializeToString()
            elif url.path == "/v1development/profiles":
                assert self.headers["Content-Type"] == "application/x-protobuf"
                received.profile_headers.append({k.lower(): v for k, v in self.headers.items()})
                received.add_profiles(profiles_service.ExportProfilesServiceRequest.FromString(body))
                answer = profiles_service.ExportProfilesServiceResponse().SerializeToString()
            elif url.path == "/ingest":
                query = dict(urllib.parse.parse_qsl(url.query))
                message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
                parts = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                         for part in message.iter_parts()}
                with received.lock:
                    received.ingests.append((query, PprofView(decode_pprof(parts["profile"]))))
                answer = b""
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def otlp_samples(received: Received) -> list[dict[str, Any]]:
    """Every OTLP profile sample, its dictionary applied: {pid, service, kind, value, stack, thread, link}."""
    out = []
    for request in received.profiles:
        d = request.dictionary
        s = list(d.string_table)
        assert s[0] == "" and len(d.function_table[0].ListFields()) == 0 and not d.link_table[0].trace_id
        for rp in request.resource_profiles:
            resource = {kv.key: any_value(kv.value) for kv in rp.resource.attributes}
            for sp in rp.scope_profiles:
                assert sp.scope.name == "peeka"
                for profile in sp.profiles:
                    kind = (s[profile.sample_type.type_strindex], s[profile.sample_type.unit_strindex])
                    for sample in profile.samples:
                        stack = []
                        for loc in d.stack_table[sample.stack_index].location_indices:
                            for line in d.location_table[loc].lines:
                                fn = d.function_table[line.function_index]
                                stack.append((s[fn.name_strindex], s[fn.filename_strindex], fn.start_line, line.line))
                        attrs = {s[d.attribute_table[i].key_strindex]: any_value(d.attribute_table[i].value)
                                 for i in sample.attribute_indices}
                        link = d.link_table[sample.link_index] if sample.link_index else None
                        out.append({"pid": resource["process.pid"], "service": resource["service.name"], "kind": kind,
                                    "value": sample.values[0], "stack": stack, "thread": attrs.get("thread.name"),
                                    "link": (link.trace_id.hex(), link.span_id.hex()) if link else None})
    return out


def check_links(samples: list[dict[str, Any]], received: Received, pid: int, linked_of: Any) -> None:
    """The ground truth of links: CPU in crunch under handle (thread requests) is mostly linked, and
    every link names a handle span of the same process that the trace receiver got; churn's never."""
    crunch = [x for x in samples if x["pid"] == pid and x["stack"] and x["stack"][0][0] == "__main__.crunch"]
    churn = [x for x in samples if x["pid"] == pid and x["stack"] and x["stack"][0][0] == "__main__.churn"]
    assert crunch and churn, f"no crunch/churn samples for {pid}"
    assert all(x["thread"] == "requests" for x in crunch) and all(x["thread"] == "background" for x in churn)
    assert not any(linked_of(x) for x in churn)  # never inside an exported call
    linked = sum(x["value"] for x in crunch if linked_of(x))
    total = sum(x["value"] for x in crunch)
    assert linked >= 0.5 * total, f"{linked} of {total} linked"
    for x in crunch:
        link = linked_of(x)
        if link:
            name, trace, span_pid = received.spans[link[1]]
            assert (name, trace, span_pid) == ("__main__.handle", link[0], pid)


def start(spawn: Any, exporters: Any, received: Received, versions: tuple[str, ...], env: dict[str, str],  # noqa: F811
          *extra: str) -> Any:
    targets = [spawn(python_for(v), "profile_target.py", env=target_site_env()) for v in versions]
    args = [a for t in targets for a in ("--pid", str(t.pid))]
    exp = exporters(*args, "--watch", "__main__.handle", "--profile", "--profile-rate", "49", *extra, env=env)
    for t in targets:
        exp.wait_up(t.pid)
    return targets, exp


def test_grpc_profiles_and_pyroscope_linked_to_spans(spawn, exporters, tmp_path: Path) -> None:  # noqa: F811
    received = Received()
    server, port = grpc_receiver(received)
    web, web_port = http_receiver(received)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
           "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=shop-team"}
    try:
        targets, exp = start(spawn, exporters, received, ("3.9", "3.14"), env,
                             "--pyroscope-url", f"http://127.0.0.1:{web_port}", "--service", "shop")
        pids = {t.pid for t in targets}

        def both_hot_functions() -> bool:
            caught = {(x["pid"], x["stack"][0][0]) for x in otlp_samples(received)  # in the CPU profile, read below
                      if x["stack"] and x["kind"] == ("cpu", "nanoseconds")}
            with received.lock:
                caught_too = {(int(q["name"].split("=")[1].rstrip("}")), stack[0][0])
                              for q, view in received.ingests for stack, _values, _labels in view.samples if stack}
            wanted = {(pid, f) for pid in pids for f in ("__main__.crunch", "__main__.churn")}
            return wanted <= caught and wanted <= caught_too

        wait_for(both_hot_functions, timeout=40, what="profiles of both targets holding crunch and churn")
        assert exp.sample("peeka_profiles_exported_total", pid=str(targets[0].pid), service="shop") >= 1
        assert exp.sample("peeka_profiles_dropped_total", pid=str(targets[0].pid), service="shop") == 0
        assert exp.stop() == 0, exp.output()
    finally:
        server.stop(0)
        web.shutdown()
        web.server_close()
    samples = otlp_samples(received)
    assert all(h.get("x-tenant") == "shop-team" for h in received.profile_headers)  # the spans' OTLP headers
    assert {x["service"] for x in samples} == {"shop"}
    assert {x["kind"] for x in samples} == {("cpu", "nanoseconds"), ("samples", "count")}
    for t in targets:
        cpu = [x for x in samples if x["pid"] == t.pid and x["kind"] == ("cpu", "nanoseconds")]
        hot = max({x["stack"][0][0] for x in cpu}, key=lambda f: sum(x["value"] for x in cpu if x["stack"][0][0] == f))
        assert hot in ("__main__.crunch", "__main__.churn")
        top = next(x for x in cpu if x["stack"][0][0] == "__main__.crunch")
        assert top["stack"][0][1].endswith("profile_target.py") and top["stack"][0][2] == 17  # def crunch
        assert [f[0] for f in top["stack"][:2]] == ["__main__.crunch", "__main__.handle"]
        check_links(cpu, received, t.pid, lambda x: x["link"])
    # Pyroscope: the ingest form, the application named after the service, pprof read by pprof's schema.
    for query, view in received.ingests:
        # The rate achieved in the window (asked 49): windows are ~1 s, ~49 rounds whose gaps are
        # random in [0.5, 1.5] periods (sampling.jittered), and a round late by less than a period
        # is caught up: under load one window has read 57.
        assert query["format"] == "pprof" and query["spyName"] == "peeka" and 1 <= int(query["sampleRate"]) <= 64
        assert query["name"].startswith("shop{pid=") and int(query["from"]) <= int(query["until"])
        assert ("cpu", "nanoseconds") in view.sample_types and view.default_type == "cpu"
    for t in targets:
        mine = [(stack, values, labels) for query, view in received.ingests if query["name"] == f"shop{{pid={t.pid}}}"
                for stack, values, labels in view.samples]
        flat = [{"pid": t.pid, "stack": stack, "thread": labels["thread_name"], "value": values["cpu"],
                 "link": (labels["trace_id"], labels["span_id"]) if "trace_id" in labels else None}
                for stack, values, labels in mine]
        check_links(flat, received, t.pid, lambda x: x["link"])


def test_http_protobuf_profiles(spawn, exporters, tmp_path: Path) -> None:  # noqa: F811
    received = Received()
    web, web_port = http_receiver(received)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{web_port}", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
           "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=shop-team", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}
    try:
        targets, exp = start(spawn, exporters, received, ("3.12",), env)
        # Waited for in the CPU profile itself, which the checks below read (the count profile can hold
        # a stack first: a sample whose thread's CPU arrives with the next round).
        wait_for(lambda: {x["stack"][0][0] for x in otlp_samples(received)
                          if x["stack"] and x["kind"] == ("cpu", "nanoseconds")}
                 >= {"__main__.crunch", "__main__.churn"}, timeout=40, what="an OTLP/HTTP CPU profile holding crunch and churn")
        health = exp.target(targets[0].pid)
        assert health["profiles"]["to"] == [f"OTLP profiles http/protobuf to http://127.0.0.1:{web_port}/v1development/profiles"]
        assert exp.stop() == 0, exp.output()
    finally:
        web.shutdown()
        web.server_close()
    samples = [x for x in otlp_samples(received) if x["kind"] == ("cpu", "nanoseconds")]
    assert {x["pid"] for x in samples} == {targets[0].pid}
    assert received.profile_headers and all(h.get("x-tenant") == "shop-team" and h.get("content-encoding") == "gzip"
                                            for h in received.profile_headers)  # the spans' headers and compression
    check_links(samples, received, targets[0].pid, lambda x: x["link"])


def test_profile_needs_a_destination_and_a_sane_rate(spawn, exporters, tmp_path: Path) -> None:  # noqa: F811
    from conftest import peeka_cli

    out = peeka_cli("export", "--pid", "1", "--watch", "a.b", "--profile", "--spans-file", str(tmp_path / "s.jsonl"),
                    env={"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_EXPORTER_OTLP_PROTOCOL": ""})
    assert out.returncode != 0 and "--pyroscope-url" in out.stderr, out.stderr
    out = peeka_cli("export", "--pid", "1", "--watch", "a.b", "--pyroscope-url", "pyroscope:4040", "--profile")
    assert out.returncode != 0 and "http(s) URL" in out.stderr, out.stderr
    # An exporter whose opentelemetry-proto numbers the profiles schema otherwise (3.9's newest is 1.41)
    # refuses OTLP profiles rather than send bytes a current collector decodes as wrong stacks.
    # (Clients whose library speaks our revision are the ones the tests above send through.)
    for client in sorted(ROOT.glob(".venv3*/bin/python")):
        probe = subprocess.run([str(client), "-c", SCHEMA_PROBE], capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0 and probe.stdout.strip() in ("2", "4"), (client, probe.stdout, probe.stderr)
        if probe.stdout.strip() == "4":
            continue
        out = peeka_cli("export", "--pid", "999999", "--watch", "a.b", "--profile", python=str(client), timeout=30,
                        env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
        assert out.returncode == 5 and "older revision of the OTLP profiles schema" in out.stderr, (client, out.stderr)
        assert "--pyroscope-url" in out.stderr and "3.10" in out.stderr


SCHEMA_PROBE = ("from opentelemetry.proto.profiles.v1development import profiles_pb2 as p; "
                "print(p.Sample.DESCRIPTOR.fields_by_name['values'].number)")
