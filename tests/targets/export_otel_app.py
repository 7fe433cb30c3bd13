"""A target that runs OpenTelemetry itself: each request handled inside its own current span.

    python export_otel_app.py PORTFILE    # prints "ready"; needs opentelemetry-sdk importable

GET /work?n=N calls ``work(n)`` inside the span "handle" and answers "TRACE_ID SPAN_ID" (hex) of
that span, so a test can check that Peeka's span for ``work`` joined this very trace.
"""

import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("export-otel-app")


def work(n):
    return sum(i * i for i in range(n))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        n = int(parse_qs(urlparse(self.path).query).get("n", ["100"])[0])
        with tracer.start_as_current_span("handle") as span:
            work(n)
            ctx = span.get_span_context()
        body = f"{ctx.trace_id:032x} {ctx.span_id:016x}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_port))
print(f"ready {os.getpid()}", flush=True)
server.serve_forever()
