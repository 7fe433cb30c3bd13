"""peeka export end to end: real targets, the real CLI in a subprocess, real OTLP receivers
(oteltest's HTTP and gRPC sinks), a real Prometheus server, outages and restarts.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, VERSIONS, python_for, target_site_env
from prometheus_client.parser import text_string_to_metric_families

pytest.importorskip("oteltest", reason="oteltest (the OTLP test receivers) is in the test extras: pip install -e '.[test]'")
from oteltest.sink import GrpcSink, HttpSink  # noqa: E402
from oteltest.sink.handler import RequestHandler  # noqa: E402

from peeka.process import TargetProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120), pytest.mark.parallel]
LOG = logging.getLogger("peeka-test-sink")
VENV314 = ROOT / ".venv314" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


def any_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class Spans(RequestHandler):
    """Every span a sink received, flattened: {name, trace, span, parent, state (W3C tracestate), start, end,
    attrs, events, status, resource}."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def handle_trace(self, request: Any, headers: Any) -> None:
        got = []
        for rs in request.resource_spans:
            resource = {kv.key: any_value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append({
                        "name": s.name, "trace": s.trace_id.hex(), "span": s.span_id.hex(),
                        "parent": s.parent_span_id.hex(), "state": s.trace_state, "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano, "kind": s.kind, "status": s.status.code,
                        "attrs": {kv.key: any_value(kv.value) for kv in s.attributes},
                        "events": [{"name": e.name, "time": e.time_unix_nano,
                                    "attrs": {kv.key: any_value(kv.value) for kv in e.attributes}} for e in s.events],
                        "resource": resource,
                    })
        with self.lock:
            self.items.extend(got)

    def handle_metrics(self, request: Any, headers: Any) -> None:
        pass

    def handle_logs(self, request: Any, headers: Any) -> None:
        pass

    def named(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [s for s in self.items if s["name"] == name]


class Sink:
    """A real OTLP receiver on a free loopback port: oteltest's HTTP or gRPC sink."""

    def __init__(self, protocol: str, port: int | None = None) -> None:
        self.protocol = protocol
        self.port = port or free_port()
        self.spans = Spans()
        if protocol == "grpc":
            self.server: Any = GrpcSink(self.spans, LOG, port=self.port)
        else:
            self.server = HttpSink(self.spans, LOG, port=self.port)
        self.server.start()
        wait_for(lambda: _accepts(self.port), what=f"the {protocol} sink on {self.port}")

    def env(self) -> dict[str, str]:
        if self.protocol == "grpc":
            return {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.port}", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                    "OTEL_EXPORTER_OTLP_INSECURE": "true"}
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.port}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}

    def stop(self) -> None:
        self.server.stop()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:  # 3.14 warns about an HTTPError left open
            return exc.code, exc.read()


class ExportProcess:
    """``peeka export`` as a real subprocess, with its /healthz and /metrics."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None,
                 python: str = sys.executable) -> None:
        self.port = port or free_port()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        full_env.update({"OTEL_BSP_SCHEDULE_DELAY": "100"})
        full_env.update(env or {})
        self.log = tmp_path / f"export-{self.port}-{time.monotonic_ns()}.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [python, "-m", "peeka", "export", *args, "--metrics-address", f"127.0.0.1:{self.port}",
                 "--interval", "0.5"], cwd=tmp_path, env=full_env, stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True)

    def health(self) -> dict[str, Any] | None:
        try:
            status, body = http_get(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
        except OSError:
            return None
        return json.loads(body) if status == 200 else None

    def target(self, pid: int) -> dict[str, Any] | None:
        health = self.health()
        for t in (health or {}).get("targets", []):
            if t["pid"] == pid:
                return t  # type: ignore[no-any-return]
        return None

    def wait_up(self, pid: int, timeout: float = 30.0) -> dict[str, Any]:
        def up() -> Any:
            assert self.proc.poll() is None, self.output()
            t = self.target(pid)
            return t if t and t["up"] else None

        try:
            return wait_for(up, timeout, f"the exporter to stream from {pid}")  # type: ignore[no-any-return]
        except AssertionError as exc:
            raise AssertionError(f"{exc}; exporter said:\n{self.output()}") from None

    def metrics(self) -> str:
        return http_get(f"http://127.0.0.1:{self.port}/metrics")[1].decode()

    def sample(self, name: str, **labels: str) -> float | None:
        for family in text_string_to_metric_families(self.metrics()):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return None

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError("the exporter did not stop within 30 s: " + self.output()) from None
        return self.proc.returncode


@pytest.fixture
def exporters(tmp_path: Path) -> Any:
    started: list[ExportProcess] = []

    def start(*args: str, **kw: Any) -> ExportProcess:
        e = ExportProcess(tmp_path, *args, **kw)
        started.append(e)
        return e

    yield start
    for e in started:
        if e.proc.poll() is None:
            e.proc.kill()
            e.proc.wait(5)


class Shop:
    """The Flask shop target (tests/targets/flask_target.py) and requests to it."""

    def __init__(self, spawn: Any, version: str, portfile: Path) -> None:
        self.target = spawn(python_for(version), "flask_target.py", str(portfile), env=target_site_env())
        self.pid = self.target.pid
        self.port = int(portfile.read_text())

    def get(self, path: str) -> tuple[int, int, int]:
        """(status, epoch ns before sending, epoch ns after the answer)."""
        before = time.time_ns()
        status, _ = http_get(f"http://127.0.0.1:{self.port}{path}")
        return status, before, time.time_ns()


def agent_loaded(pid: int) -> bool:
    return TargetProcess(pid).agent_socket_exists()


# Every Python for the HTTP receiver; gRPC on the newest (same exporter path, other transport).
CASES = [(v, "http/protobuf") for v in VERSIONS] + [("3.14", "grpc")]


@pytest.mark.timing  # each span inside the client's wall-clock window: 1-5 ms early on all 7 cases beside another test
@pytest.mark.parametrize("version, protocol", CASES)
def test_flask_calls_become_spans_in_a_real_receiver(spawn, exporters, tmp_path, version, protocol) -> None:
    shop = Shop(spawn, version, tmp_path / "port")
    sink = Sink("grpc" if protocol == "grpc" else "http")
    exp = exporters("--pid", str(shop.pid), "--trace", "flaskshop.views.get_item",
                    "--watch", "flaskshop.pricing.discount", "--redact", "code",
                    env={**sink.env(), "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"})
    try:
        assert exp.wait_up(shop.pid)["agent"] == "attached"
        calls = {i: shop.get(f"/items/{i}?code=HALF") for i in (3, 4, 5)}
        missing = shop.get("/items/999")
        assert missing[0] == 404 and all(c[0] == 200 for c in calls.values())
        wait_for(lambda: len(sink.spans.named("flaskshop.views.get_item")) >= 4, what="4 get_item spans")
        assert exp.stop() == 0, exp.output()
    finally:
        sink.stop()
    roots = {int(s["attrs"]["peeka.arg.item_id"]): s for s in sink.spans.named("flaskshop.views.get_item")}
    assert sorted(roots) == [3, 4, 5, 999]
    by_parent: dict[str, list[dict[str, Any]]] = {}
    for s in sink.spans.items:
        by_parent.setdefault(s["parent"], []).append(s)
    for item_id, root in roots.items():
        status, before, after = calls.get(item_id, missing)
        assert root["parent"] == ""  # a trace of its own: the request carried no traceparent
        assert root["kind"] == 2  # SERVER: the view Flask dispatched the request to
        assert root["attrs"]["http.request.method"] == "GET" and root["attrs"]["url.path"] == f"/items/{item_id}"
        assert root["attrs"]["http.route"] == "/items/<int:item_id>"
        assert root["attrs"].get("http.response.status_code") == (200 if status == 200 else None)
        assert before <= root["start"] < root["end"] <= after  # the real call, inside the real request
        assert root["attrs"]["code.function.name"] == "flaskshop.views.get_item"
        assert root["attrs"]["code.file.path"].endswith("flaskshop/views.py") and root["attrs"]["code.line.number"] > 0
        assert root["attrs"]["thread.name"] and root["attrs"]["thread.id"] > 0
        kids = {k["name"]: k for k in by_parent.get(root["span"], [])}
        assert "flaskshop.repo.find" in kids, sorted(kids)
        for kid in kids.values():
            assert kid["trace"] == root["trace"] and root["start"] <= kid["start"] <= kid["end"] <= root["end"]
        assert kids["flaskshop.repo.find"]["end"] - kids["flaskshop.repo.find"]["start"] >= 3_000_000  # sleeps 3 ms
        if status == 200:
            assert {"flaskshop.pricing.discount", "flaskshop.pricing.with_tax"} <= set(kids)
            assert root["status"] == 0 and root["attrs"]["peeka.result"].startswith("<Response")
    failed = roots[999]
    assert failed["status"] == 2 and [e["name"] for e in failed["events"]] == ["exception"]
    event = failed["events"][0]["attrs"]
    assert event["exception.type"] == "werkzeug.exceptions.NotFound" and "Traceback" in event["exception.stacktrace"]
    assert failed["events"][0]["time"] == failed["end"]
    discounts = [s for s in sink.spans.named("flaskshop.pricing.discount") if s["parent"] == ""]  # the watch spans
    assert len(discounts) == 3 and all(s["attrs"]["peeka.arg.code"] == "[redacted]" for s in discounts)
    assert sorted(s["attrs"]["peeka.arg.cents"] for s in discounts) == ["300", "400", "500"]
    resource = roots[3]["resource"]
    assert resource["service.name"] == "flask_target" and resource["process.pid"] == shop.pid
    assert resource["deployment.environment"] == "test" and resource["process.runtime.version"].startswith(version)
    assert "flask_target.py" in " ".join(resource["process.command_args"])
    assert not agent_loaded(shop.pid)  # SIGTERM detached it
    assert shop.get("/items/2")[0] == 200 and shop.target.alive()


def test_joins_the_targets_own_opentelemetry_trace_and_writes_the_local_file(spawn, exporters, tmp_path) -> None:
    if not VENV314.exists():
        pytest.skip(".venv314 is missing: scripts/setup.sh creates it (the target needs opentelemetry-sdk)")
    target = spawn(str(VENV314), "export_otel_app.py", str(tmp_path / "port"))
    port = int((tmp_path / "port").read_text())
    exp = exporters("--pid", str(target.pid), "--watch", "__main__.work")
    exp.wait_up(target.pid)
    answers = [http_get(f"http://127.0.0.1:{port}/work?n={n}")[1].decode().split() for n in (10, 20)]
    spans_file = tmp_path / "peeka-spans.jsonl"

    def exported() -> list[dict[str, Any]]:
        if not spans_file.exists():
            return []
        lines = [json.loads(line) for line in spans_file.read_text().splitlines()]
        return [s for doc in lines for rs in doc["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]

    spans = wait_for(lambda: len(exported()) >= 2 and exported(), what="2 spans in the local file")
    assert exp.stop() == 0
    joined = {(s["traceId"], s["parentSpanId"]) for s in spans if s["name"] == "__main__.work"}
    assert joined == {tuple(a) for a in answers}  # each a child of the target's own current span
    assert "spans to OTLP-JSON lines to " + str(spans_file) in exp.output()


def _prometheus(tmp_path: Path, scrape: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: peeka\n"
                      f"    static_configs:\n      - targets: ['{scrape}']\n")
    proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--enable-feature=exemplar-storage"],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    return proc, port


def http_get_openmetrics(port: int) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        return str(resp.read().decode())


def _query(port: int, promql: str) -> float | None:
    from urllib.parse import quote

    try:
        status, body = http_get(f"http://127.0.0.1:{port}/api/v1/query?query={quote(promql)}", timeout=2)
    except OSError:
        return None
    result = json.loads(body)["data"]["result"] if status == 200 else []
    return float(result[0]["value"][1]) if result else None


def _exemplar_trace_ids(port: int, promql: str) -> set[str]:
    """Trace ids of the exemplars Prometheus stored for these series (its exemplar query API)."""
    from urllib.parse import quote

    now = time.time()
    try:
        status, body = http_get(f"http://127.0.0.1:{port}/api/v1/query_exemplars?query={quote(promql)}"
                                f"&start={now - 600}&end={now + 60}", timeout=2)
    except OSError:
        return set()
    data = json.loads(body).get("data") or [] if status == 200 else []
    return {e["labels"]["trace_id"] for series in data for e in series.get("exemplars", [])}


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus missing: scripts/setup.sh installs it")
def test_prometheus_counts_the_requests_and_a_restarted_target_is_reattached(spawn, exporters, tmp_path) -> None:
    portfile = tmp_path / "port"
    shop = Shop(spawn, "3.14", portfile)
    exp = exporters("--match", f"flask_target.py {portfile}$", "--watch", "flaskshop.views.get_item",
                    "--monitor", "flaskshop.repo.*")
    prometheus, prom_port = _prometheus(tmp_path, f"127.0.0.1:{exp.port}")
    try:
        exp.wait_up(shop.pid)
        statuses = [shop.get(f"/items/{i}")[0] for i in (1, 2, 3, 4, 5, 6, 999)]
        assert statuses.count(200) == 6
        pid = str(shop.pid)
        ok = f'peeka_function_calls_total{{function="flaskshop.views.get_item",outcome="ok",pid="{pid}"}}'
        wait_for(lambda: _query(prom_port, ok) == 6, 40, "Prometheus to see 6 successful calls")
        failed = f'peeka_function_calls_total{{function="flaskshop.views.get_item",outcome="error",pid="{pid}"}}'
        assert _query(prom_port, failed) == 1
        # Exemplars: Prometheus scrapes OpenMetrics and stores the trace ids the duration buckets carry.
        view_buckets = f'peeka_function_duration_seconds_bucket{{function="flaskshop.views.get_item",pid="{pid}"}}'
        exemplar_ids = wait_for(lambda: _exemplar_trace_ids(prom_port, view_buckets), 40, "Prometheus to store exemplars")
        assert "# {" in http_get_openmetrics(exp.port) and "# {" not in exp.metrics()
        assert _query(prom_port, f'peeka_function_duration_seconds_count{{function="flaskshop.repo.find",pid="{pid}"}}') == 7
        assert _query(prom_port, f'peeka_target_up{{pid="{pid}"}}') == 1
        lint = subprocess.run(["promtool", "check", "metrics"], input=exp.metrics(), capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        # Top shares are of the CPU caught in the last interval: an idle shop's interval may hold none
        # (its server waits in select, which weighs nothing), so the shop is kept busy until one does.
        extra: list[int] = []  # requests made meanwhile (their spans are counted below)

        def tops() -> list[Any]:
            extra.append(shop.get("/items/1")[0])
            families = {f.name: f for f in text_string_to_metric_families(exp.metrics())}
            return [s for s in families["peeka_top_function_share"].samples if s.labels["pid"] == pid]

        shares = wait_for(tops, 20, "top function shares of a busy interval")
        assert 1 <= len(shares) <= 10 and all(0 < s.value <= 1 for s in shares)
        # Those requests' calls reached the exporter (their spans too, in the same batches) before the kill.
        wait_for(lambda: exp.sample("peeka_function_calls_total", function="flaskshop.views.get_item", outcome="ok",
                                    pid=pid) == 6 + len(extra), 20, "the exporter to count the extra requests")
        assert exp.sample("peeka_gc_collections_total", pid=pid, generation="0") is not None
        assert exp.sample("peeka_process_threads", pid=pid) >= 2  # main + werkzeug's server thread at least
        assert exp.sample("peeka_process_resident_memory_bytes", pid=pid) > 10 << 20

        # The target dies: its series go up=0. It comes back (same command line, new PID): re-attached.
        os.killpg(shop.target.proc.pid, signal.SIGKILL)
        shop.target.proc.wait(5)
        wait_for(lambda: exp.sample("peeka_target_up", pid=pid) == 0, 20, "up=0 for the dead target")
        again = Shop(spawn, "3.14", portfile)
        exp.wait_up(again.pid)
        assert [again.get(f"/items/{i}")[0] for i in (7, 8)] == [200, 200]
        new_ok = ok.replace(f'pid="{pid}"', f'pid="{again.pid}"')
        wait_for(lambda: _query(prom_port, new_ok) == 2, 40, "Prometheus to count the restarted target's calls")
        assert exp.sample("peeka_target_up", pid=pid) == 0 and exp.sample("peeka_target_up", pid=str(again.pid)) == 1
        # SIGTERM right after the last requests: their spans are flushed to the file before exit.
        assert [again.get(f"/items/{i}")[0] for i in (9, 10, 11)] == [200, 200, 200]
        assert exp.stop() == 0
        spans = [(rs, s) for line in (tmp_path / "peeka-spans.jsonl").read_text().splitlines()
                 for rs in json.loads(line)["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
        pids = [next(a["value"]["intValue"] for a in rs["resource"]["attributes"] if a["key"] == "process.pid")
                for rs, _ in spans]
        assert extra.count(200) == len(extra)
        assert pids.count(str(again.pid)) == 5 and pids.count(pid) == 7 + len(extra)
        exported = {s["traceId"] for rs, s in spans if s["name"] == "flaskshop.views.get_item"}
        assert exemplar_ids and exemplar_ids <= exported  # each links to a span that was exported
    finally:
        prometheus.terminate()
        prometheus.wait(10)


def test_backend_outage_then_exporter_restart(spawn, exporters, tmp_path) -> None:
    shop = Shop(spawn, "3.14", tmp_path / "port")
    port = free_port()  # nothing listens there yet: the backend is down
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
           "OTEL_BSP_MAX_QUEUE_SIZE": "20", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10"}
    # The governor off: this test counts every span of a burst of 60 calls (with the default budget,
    # an idle Flask target's estimate reached 0.92 and the governor sampled the burst: 45 of 60).
    args = ("--pid", str(shop.pid), "--watch", "flaskshop.views.get_item", "--overhead-budget", "0", "--keep-agent")
    exp = exporters(*args, env=env)
    exp.wait_up(shop.pid)
    for i in range(60):
        shop.get(f"/items/{1 + i % 40}")

    def settled() -> Any:
        t = exp.target(shop.pid)
        return t if t and t["spans_received"] == 60 and t["queue"] <= 20 and t["export_failures"] >= 1 else None

    t = wait_for(settled, 30, "the exporter to receive 60 spans and fail exporting")
    # The queue holds 20 at most and one batch of 10 may be in flight: all else is dropped and counted.
    lost = t["dropped"]["queue"] + t["dropped"]["export"]
    assert lost >= 60 - 20 - 10 and 0 <= 60 - lost - t["queue"] <= 10 and t["dropped"]["export"] >= 1
    assert exp.sample("peeka_exporter_export_failures_total", pid=str(shop.pid)) >= 1
    # The backend comes up: export resumes on its own.
    sink = Sink("http", port)
    try:
        for i in range(5):
            shop.get(f"/items/{i + 1}?code=after")
        wait_for(lambda: len(sink.spans.named("flaskshop.views.get_item")) >= 5, 30, "export to resume")
        # Killed without warning, then restarted: the agent is reused and no probe is doubled.
        exp.stop(signal.SIGKILL)
        assert agent_loaded(shop.pid)
        again = exporters(*args[:-1], env=env)
        assert again.wait_up(shop.pid)["agent"] == "reused"
        before = len(sink.spans.named("flaskshop.views.get_item"))
        for i in range(4):
            shop.get(f"/items/{i + 1}")
        wait_for(lambda: len(sink.spans.named("flaskshop.views.get_item")) >= before + 4, 20, "4 more spans")
        time.sleep(1.0)
        assert len(sink.spans.named("flaskshop.views.get_item")) == before + 4  # one span per call, not two
        assert again.stop() == 0
        assert not agent_loaded(shop.pid)
    finally:
        sink.stop()


def test_bad_input_is_refused_with_what_to_do(spawn, exporters, tmp_path) -> None:
    from conftest import peeka_cli

    out = peeka_cli("export", "--watch", "a.b")
    assert out.returncode == 2 and "selects no process" in out.stderr and "--pid" in out.stderr
    out = peeka_cli("export", "--pid", "1", "--watch", "a.b", "--metrics-address", "nowhere")
    assert out.returncode == 2 and "HOST:PORT" in out.stderr
    # A pattern that matches nothing in the target: the exporter runs on, says why in /healthz and on
    # the console, and keeps retrying (the module may be imported later).
    shop = Shop(spawn, "3.14", tmp_path / "port")
    # Someone attached first, read-only with an audit file: the exporter must leave that agent be.
    audit = tmp_path / "audit.jsonl"
    out = peeka_cli("attach", str(shop.pid), "--read-only", "--audit-file", str(audit))
    assert out.returncode == 0, out.stderr
    exp = exporters("--pid", str(shop.pid), "--watch", "flaskshop.nothing_here")
    t = wait_for(lambda: (exp.target(shop.pid) or {}).get("error"), 30, "the refusal in /healthz")
    assert "no loaded function matches 'flaskshop.nothing_here'" in t and "peeka sm" in t
    assert exp.sample("peeka_target_up", pid=str(shop.pid)) == 0
    wait_for(lambda: "no loaded function matches" in exp.output(), 10, "the refusal on the console")
    assert exp.stop() == 0
    assert agent_loaded(shop.pid) and f"left the agent in {shop.pid} running (attached by cli" in exp.output()
    # ... still in the mode it was attached in, and still auditing.
    out = peeka_cli("attach", str(shop.pid), "--read-only", "--audit-file", str(audit))
    assert out.returncode == 0, out.stderr
    assert peeka_cli("detach", str(shop.pid)).returncode == 0
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert any(e["frontend"] == "export" and e["command"] == "export" for e in entries)
    assert entries[-1]["command"] == "detach"  # the trail was written until our own detach


def _rotel_binary() -> Path | None:
    try:
        import rotel
    except ImportError:
        return None
    binary = Path(rotel.__file__).parent / "rotel-agent"
    return binary if binary.exists() else None


@pytest.mark.skipif(_rotel_binary() is None, reason="rotel is not installed (pip install rotel; see pyproject test extras)")
def test_through_rotel_a_real_collector(spawn, exporters, tmp_path) -> None:
    """peeka export -> rotel (OTLP/HTTP in, gzip) -> rotel's OTLP/gRPC exporter -> a gRPC sink."""
    import sysconfig

    sink = Sink("grpc")
    http_port, grpc_port = free_port(), free_port()
    rotel = subprocess.Popen(
        [str(_rotel_binary()), "start", "--otlp-http-endpoint", f"127.0.0.1:{http_port}",
         "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}", "--exporter", "otlp",
         "--otlp-exporter-endpoint", f"http://127.0.0.1:{sink.port}", "--otlp-exporter-protocol", "grpc",
         "--batch-timeout", "100ms", "--pid-file", str(tmp_path / "rotel.pid")],
        env={**os.environ, "LD_LIBRARY_PATH": sysconfig.get_config_var("LIBDIR") or ""},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: _accepts(http_port), what="rotel's OTLP/HTTP receiver")
        shop = Shop(spawn, "3.14", tmp_path / "port")
        exp = exporters("--pid", str(shop.pid), "--trace", "flaskshop.views.get_item",
                        env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{http_port}",
                             "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
                             "OTEL_SERVICE_NAME": "shop-via-rotel"})
        exp.wait_up(shop.pid)
        windows = [shop.get(f"/items/{i}") for i in (11, 12)]
        wait_for(lambda: len(sink.spans.named("flaskshop.views.get_item")) >= 2, 30, "2 spans through rotel")
        assert exp.stop() == 0
    finally:
        rotel.terminate()
        rotel.wait(10)
        sink.stop()
    roots = sorted(sink.spans.named("flaskshop.views.get_item"), key=lambda s: s["start"])
    for root, (status, before, after) in zip(roots, windows):
        assert status == 200 and before <= root["start"] < root["end"] <= after
        assert root["resource"]["service.name"] == "shop-via-rotel" and root["resource"]["process.pid"] == shop.pid
        kids = [s for s in sink.spans.items if s["parent"] == root["span"]]
        assert "flaskshop.repo.find" in {k["name"] for k in kids} and all(k["trace"] == root["trace"] for k in kids)


def test_probes_taken_away_by_reset_are_reinstalled(spawn, exporters, tmp_path) -> None:
    from conftest import peeka_cli

    shop = Shop(spawn, "3.14", tmp_path / "port")
    exp = exporters("--pid", str(shop.pid), "--watch", "flaskshop.views.get_item", "--monitor", "flaskshop.repo.*")
    exp.wait_up(shop.pid)
    out = peeka_cli("reset", str(shop.pid))
    assert out.returncode == 0, out.stderr
    wait_for(lambda: "the agent ended the export: reset" in exp.output(), 10, "the exporter to notice the reset")
    exp.wait_up(shop.pid, 20)  # a new stream, probes installed again
    assert shop.get("/items/1")[0] == 200
    wait_for(lambda: exp.sample("peeka_function_calls_total", pid=str(shop.pid), outcome="ok",
                                function="flaskshop.views.get_item") == 1, 10, "the call counted after the reset")
    assert exp.stop() == 0


def test_forget_after_bounds_the_series_of_gone_targets_and_by_service_drops_the_pid(spawn, exporters, tmp_path) -> None:
    python = python_for("3.12")
    go = str(tmp_path / "never")  # the bench target waits for this file: idle, but alive and attachable
    dying, staying = (spawn(python, "export_bench_target.py", "plain", "0", "1", go) for _ in range(2))
    pids = [str(dying.pid), str(staying.pid)]
    args = ("--pid", pids[0], "--pid", pids[1], "--watch", "__main__.handle", "--forget-after", "3")
    per_pid, per_service = exporters(*args), exporters(*args, "--by-service")
    for pid in pids:
        per_pid.wait_up(int(pid), 60)
        per_service.wait_up(int(pid), 60)
    wait_for(lambda: per_service.sample("peeka_target_up", service="export_bench_target") == 2, 20, "2 targets up")
    assert "pid=" not in per_service.metrics()
    assert per_pid.sample("peeka_target_up", pid=pids[0]) == 1

    os.killpg(dying.proc.pid, signal.SIGKILL)
    dying.proc.wait(5)
    wait_for(lambda: per_pid.sample("peeka_target_up", pid=pids[0]) == 0, 20, "up 0 for the dead target")
    gone_at = time.monotonic()
    wait_for(lambda: f'pid="{pids[0]}"' not in per_pid.metrics(), 20, "the dead target's series to leave /metrics")
    assert time.monotonic() - gone_at >= 1.5  # not before the delay (3 s from the session's end)
    assert [t["pid"] for t in per_pid.health()["targets"]] == [staying.pid]
    assert per_pid.sample("peeka_target_up", pid=pids[1]) == 1  # the live one stays
    assert per_pid.sample("peeka_function_calls_total", pid=pids[1], function="__main__.handle", outcome="ok") == 0
    wait_for(lambda: per_service.sample("peeka_target_up", service="export_bench_target") == 1, 20, "1 target up")
    assert per_pid.stop() == 0 and per_service.stop() == 0
