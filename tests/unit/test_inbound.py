"""Reading a request's W3C trace context and HTTP facts from what a call received (pure)."""

from __future__ import annotations

import pytest
from peeka_agent.inbound import inbound, parse_traceparent

pytestmark = pytest.mark.parallel

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_traceparent_as_the_w3c_spec_reads_it() -> None:
    assert parse_traceparent(TP, "congo=t61rcWkgMzE") == {
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", "flags": 1,
        "tracestate": "congo=t61rcWkgMzE"}
    assert parse_traceparent(TP.encode())["flags"] == 1
    assert parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-later")["flags"] == 0
    for bad in ("", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", "ff" + TP[2:],
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "00-xyz-00f067aa0ba902b7-01", None, 7):
        assert parse_traceparent(bad) is None, bad


def test_a_wsgi_entry_point_and_an_asgi_scope() -> None:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/pay", "HTTP_TRACEPARENT": TP, "HTTP_TRACESTATE": "a=1"}
    found = inbound({"environ": environ, "start_response": print}, None, None, None)
    assert found.server and found.parent["span_id"] == "00f067aa0ba902b7" and found.parent["tracestate"] == "a=1"
    assert found.attributes == {"http.request.method": "POST", "url.path": "/pay"}
    scope = {"type": "http", "method": "GET", "path": "/items/3", "headers": [(b"traceparent", TP.encode())]}
    found = inbound({"scope": scope, "receive": None, "send": None}, None, None, None)
    assert found.parent["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736" and found.attributes["url.path"] == "/items/3"


def test_no_request_no_header() -> None:
    assert inbound({"x": 1, "y": "GET"}, None, None, None) is None
    found = inbound({"environ": {"REQUEST_METHOD": "GET", "PATH_INFO": "/"}}, None, None, None)
    assert found.parent is None and found.server


def test_request_objects_and_a_response_status() -> None:
    class Django:
        META = {"REQUEST_METHOD": "GET", "PATH_INFO": "/a/1", "HTTP_TRACEPARENT": TP}

        class resolver_match:  # noqa: N801 - as Django names it
            route = "a/<int:pk>"

    class Response:
        status_code = 201

    found = inbound({"request": Django()}, None, Response(), None)
    assert found.attributes == {"http.request.method": "GET", "url.path": "/a/1", "http.route": "a/<int:pk>",
                                "http.response.status_code": 201}
    assert inbound({"request": Django()}, None, ("body", 404), None).attributes["http.response.status_code"] == 404
