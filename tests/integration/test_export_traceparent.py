"""A target running no OpenTelemetry joins its callers' traces: requests carrying a W3C
``traceparent`` to a real Flask app and a real Starlette app (uvicorn); the spans a real OTLP
receiver decodes (official protobufs) are in the caller's trace, children of the caller's span,
and the view's span is the request's SERVER span with its HTTP attributes.
"""

from __future__ import annotations

import random
import urllib.request

import pytest
from conftest import python_for, target_site_env, target_web_env
from test_export import Sink, exporters, wait_for  # noqa: F401  (exporters: a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150), pytest.mark.parallel]

CASES = [("flask", "3.12", "flask_target.py", "flaskshop.views.get_item", "/items/{}", "/items/<int:item_id>"),
         ("flask", "3.9", "flask_target.py", "flaskshop.views.get_item", "/items/{}", "/items/<int:item_id>"),
         ("starlette", "3.13", "asgi_target.py", "__main__.item_view", "/items/{}", "/items/{item:int}")]


def get(port: int, path: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as resp:
        resp.read()
        return int(resp.status)


@pytest.mark.parametrize("framework, version, script, view, path, route", CASES)
def test_spans_join_the_callers_trace(spawn, exporters, tmp_path, framework, version, script, view, path,  # noqa: F811
                                      route) -> None:
    env = target_site_env() if framework == "flask" else target_web_env()
    target = spawn(python_for(version), script, str(tmp_path / "port"), env=env, ready_timeout=60.0)
    port = int((tmp_path / "port").read_text())
    sink = Sink("http")
    exp = exporters("--pid", str(target.pid), "--watch", view, env=sink.env())
    callers = {}
    try:
        exp.wait_up(target.pid, 60)
        for item in (1, 2, 3):
            trace_id, span_id = f"{random.getrandbits(128):032x}", f"{random.getrandbits(64):016x}"
            callers[item] = (trace_id, span_id)
            headers = {"traceparent": f"00-{trace_id}-{span_id}-01", "tracestate": f"peeka=t{item}"}
            assert get(port, path.format(item), headers) == 200
        assert get(port, path.format(4), {}) == 200  # no header: a trace of its own
        wait_for(lambda: len(sink.spans.named(view)) >= 4, 30, "4 view spans")
        assert exp.stop() == 0, exp.output()
    finally:
        sink.stop()
    spans = {s["attrs"]["url.path"]: s for s in sink.spans.named(view)}
    for item, (trace_id, span_id) in callers.items():
        span = spans[path.format(item)]
        assert span["trace"] == trace_id and span["parent"] == span_id, span
        assert span["state"] == f"peeka=t{item}"  # the caller's tracestate goes on with its trace
        assert span["kind"] == 2  # SERVER
        assert span["attrs"]["http.request.method"] == "GET" and span["attrs"]["http.route"] == route
        assert span["attrs"]["http.response.status_code"] == 200
    alone = spans[path.format(4)]
    assert alone["parent"] == "" and alone["trace"] not in {t for t, _ in callers.values()} and alone["kind"] == 2
