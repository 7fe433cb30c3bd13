"""The target of tests/bench_export.py: other work plus RATE observed calls per second.

    python export_bench_target.py MODE RATE SECONDS GOFILE   # MODE: plain | sdk; RATE 0 = as fast as possible

Prints "ready PID", waits (in Python, so an attach can run) until GOFILE exists, runs SECONDS, prints
{"calls", "units", "seconds", "cpu"}: ``units`` counts the other work done, the throughput an observer costs.
With MODE sdk, ``handle`` makes one OpenTelemetry SDK span per call (BatchSpanProcessor + OTLP
exporter from the OTEL_* environment), the in-process alternative to Peeka's export.
"""

import json
import os
import sys
import time

MODE, RATE, SECONDS, GOFILE = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]


def handle(order_id, qty):
    order = {"id": order_id, "items": [qty, qty + 1, qty + 2]}
    return sum(order["items"])


if MODE == "sdk":
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    tracer = provider.get_tracer("bench")
    _plain = handle

    def handle(order_id, qty):  # noqa: F811 - the instrumented twin of the plain handle
        with tracer.start_as_current_span("handle"):
            return _plain(order_id, qty)


def work():
    x = 0
    for i in range(50):
        x += i
    return x


print(f"ready {os.getpid()}", flush=True)
while not os.path.exists(GOFILE):
    time.sleep(0.01)
calls = units = 0
cpu_start = time.process_time()
start = time.perf_counter()
end = start + SECONDS
while True:
    now = time.perf_counter()
    if now >= end:
        break
    if RATE <= 0:
        for _ in range(100):
            handle(calls, 2)
            calls += 1
        continue
    due = int((now - start) * RATE)
    while calls < due:
        handle(calls, 2)
        calls += 1
    work()
    units += 1
# process_time covers every thread of the target (an agent's, the SDK's exporter): work per CPU
# second is the throughput cost that the machine's other load does not blur.
cpu = time.process_time() - cpu_start
print(json.dumps({"calls": calls, "units": units, "seconds": time.perf_counter() - start, "cpu": cpu}), flush=True)
if MODE == "sdk":
    provider.shutdown()
while True:
    time.sleep(1)
