"""Benchmark: what a probe costs the target per call, per Python version, in one run.

    python tests/bench_probes.py [--versions 3.9,3.12,3.14] [--calls 200000]

For each interpreter, a child process loads the agent from agent/ (as a target would), installs the
real command objects (watch, monitor, trace) on a cheap function ``add(a, b)`` and on a realistic
handler (dict work + json), with a stand-in client that accepts every event, and times calls
against the plain function, a ``functools.wraps`` pass-through wrapper, and (where the SDK is
importable) one OpenTelemetry SDK span per call. Events go through the agent's real client outbox to a
socket drained by a thread; what the host pays is its own thread's CPU time (rendering is the writer's). It also times an *unwatched* function while
another is watched. Prints ns per call (best of 5) and ratios. Not a test: numbers depend on load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from conftest import VERSIONS, find_python  # noqa: E402

CHILD = r'''
import functools, importlib, importlib.util, json, sys, time
ROOT = sys.argv[1]; N = int(sys.argv[2])
spec = importlib.util.spec_from_file_location("_peeka_agent", ROOT + "/agent/__init__.py",
                                              submodule_search_locations=[ROOT + "/agent"])
m = importlib.util.module_from_spec(spec); sys.modules["_peeka_agent"] = m; spec.loader.exec_module(m)
cmds = {n: importlib.import_module("_peeka_agent.commands." + n) for n in ("watch", "monitor", "trace")}

class Agent:
    state = {}
    max_outbox = 10_000
# The agent's real client: host threads queue into its bounded outbox, its writer thread renders and
# sends over a socket that a thread here drains (what a fast `peeka watch` reader does).
import socket, threading
runtime = importlib.import_module("_peeka_agent.runtime")
ours, theirs = socket.socketpair()
client = runtime.Client(Agent(), ours, 1)
client.start()
def drain():
    while theirs.recv(1 << 20):
        pass
threading.Thread(target=drain, daemon=True).start()
def Client():
    return client

def add(a, b): return a + b
def other(a, b): return a - b
def handler(a, b):
    order = {"id": a, "items": [{"sku": i, "qty": b} for i in range(5)]}
    order["total"] = sum(item["qty"] * 3 for item in order["items"])
    return json.dumps(order)
@functools.wraps(add)
def wrapped(a, b): return add(a, b)

# A call tree: what tracing costs *inside* the traced call (every callee is timed).
def leaf(x): return x * 2 + 1
def branch(x): return leaf(x) + leaf(x + 1)
def tree(a, b):
    total = 0
    for i in range(10):
        total += branch(i + a)
    return total

# A WSGI app driven in a loop (no sockets): the host's throughput with its view probed.
import io
from wsgiref.util import setup_testing_defaults
def load_item(item_id): return {"id": item_id, "name": "item-%d" % item_id, "cents": 100 * item_id}
def view(environ):
    item = load_item(int(environ["PATH_INFO"].rsplit("/", 1)[1]))
    item["total"] = round(item["cents"] * 1.2)
    return json.dumps(item).encode()
def app(environ, start_response):
    body = view(environ)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
def wsgi_loop(n):
    statuses = []
    start_response = lambda status, headers: statuses.append(status)
    for i in range(n):
        environ = {"PATH_INFO": "/items/%d" % (i % 50 + 1), "wsgi.input": io.BytesIO()}
        setup_testing_defaults(environ)
        b"".join(app(environ, start_response))
    return len(statuses)
def requests_per_s():
    best = 0.0
    for _ in range(5):
        t = time.thread_time()
        wsgi_loop(N // 40)
        best = max(best, (N // 40) / (time.thread_time() - t))
    return best

# CPU time of this thread, not wall time: other load on the machine (2 cores here) is not counted.
def bench(fn):
    n = N if fn is not handler else N // 10
    best = float("inf")
    for _ in range(5):
        t = time.thread_time_ns()
        for i in range(n): fn(i, 2)
        best = min(best, (time.thread_time_ns() - t) / n)
    return best

out = {}
agent = Agent()
def probed(name, cls, args, fn, measure=None):
    stream = cls(agent, dict({"pattern": "__main__." + fn.__name__, "limit": 1 << 60}, **args))
    stream.client = Client(); stream.request_id = 1; stream.setup()
    try:
        out[name] = bench(measure or fn)
    finally:
        stream.cancel("done")
        settle()

def settle():
    # The next measurement starts once the writer has sent what this one queued: thousands of
    # queued observations are live objects the host's garbage collector would scan meanwhile.
    deadline = time.monotonic() + 60
    while client._outbox and time.monotonic() < deadline:
        time.sleep(0.01)

for target in (add, handler):
    key = target.__name__
    out[key + ":plain"] = bench(target)
    probed(key + ":watch condition false", cmds["watch"].Watch, {"condition": "cost > 100000"}, target)
    probed(key + ":watch capture args+result", cmds["watch"].Watch, {}, target)
    probed(key + ":monitor", cmds["monitor"].Monitor, {}, target)
    probed(key + ":trace", cmds["trace"].Trace, {}, target)
# A pattern matching several functions (one watch or monitor over a module's views, say).
several = {"pattern": r"^__main__\.(add|other|leaf|branch)$", "regex": True}
probed("add:watch condition false, 4 functions", cmds["watch"].Watch, dict(several, condition="cost > 100000"), add)
probed("add:monitor, 4 functions", cmds["monitor"].Monitor, several, add)
out["add:after every probe was removed"] = bench(add)  # reset leaves the function as fast as before
out["add:functools.wraps wrapper"] = bench(wrapped)
out["tree:plain"] = bench(tree)
probed("tree:trace (31 calls timed per call)", cmds["trace"].Trace, {}, tree)
wsgi = {"untouched": requests_per_s()}
for mode, cls, args in (("view watched", cmds["watch"].Watch, {}), ("view monitored", cmds["monitor"].Monitor, {}),
                        ("view traced", cmds["trace"].Trace, {})):
    stream = cls(agent, dict(args, pattern="__main__.view", limit=1 << 60))
    stream.client = Client(); stream.request_id = 1; stream.setup()
    try:
        wsgi[mode] = requests_per_s()
    finally:
        stream.cancel("done")
        settle()
out["wsgi"] = wsgi
out["dropped"] = client.dropped
out["other:plain"] = bench(other)
probed("other:unwatched while add is watched", cmds["watch"].Watch, {}, add, measure=other)
if len(sys.argv) > 3:  # a site-packages holding the (pure-Python) OTel SDK, for interpreters without it
    sys.path.append(sys.argv[3])
try:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
except ImportError:
    pass
else:
    class Dropped(SpanExporter):
        def export(self, spans): return SpanExportResult.SUCCESS
    bare = TracerProvider().get_tracer("bench")
    exporting = TracerProvider()
    exporting.add_span_processor(BatchSpanProcessor(Dropped()))
    for label, tracer in (("OTel SDK span", bare), ("OTel SDK span, batch export", exporting.get_tracer("bench"))):
        def spanned(a, b, tracer=tracer):
            with tracer.start_as_current_span("add"):
                return add(a, b)
        out["add:" + label] = bench(spanned)
    exporting.shutdown()
print(json.dumps(out))
'''


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", default=",".join(VERSIONS))
    parser.add_argument("--calls", type=int, default=200_000)
    opts = parser.parse_args()
    for version in opts.versions.split(","):
        python = find_python(version)
        if python is None:
            print(f"{version}: no interpreter found, skipped")
            continue
        # An OTel SDK span per call, for comparison: the SDK is pure Python, so interpreters without it
        # import it from the client venv's site-packages (after everything else is measured).
        argv = [python, "-c", CHILD, str(ROOT), str(opts.calls)]
        venv = {"3.14": ROOT / ".venv314/bin/python"}.get(version, ROOT / ".venv/bin/python")
        if venv.exists():
            argv.append(subprocess.run([str(venv), "-c", "import opentelemetry.sdk, os; "
                                        "print(os.path.dirname(os.path.dirname(opentelemetry.sdk.__path__[0])))"],
                                       capture_output=True, text=True).stdout.strip())
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{version}: failed\n{proc.stderr}")
            continue
        data = json.loads(proc.stdout)
        wsgi = data.pop("wsgi")
        dropped = data.pop("dropped")
        print(f"\nPython {version}  ({python})")
        print(f"  {'function:mode':44} {'ns/call':>9} {'added ns':>9} {'ratio':>7}")
        for key, ns in data.items():
            fn = key.split(":")[0]
            base = data.get(f"{fn}:plain", ns)
            print(f"  {key:44} {ns:9.0f} {ns - base:9.0f} {ns / base:7.2f}")
        base = wsgi["untouched"]
        print(f"  (events the writer could not keep up with, dropped at the outbox: {dropped:,})")
        print("  WSGI loop requests/s: " + ", ".join(f"{k} {v:,.0f} ({v / base:.3f}x)" for k, v in wsgi.items()))
        for label in ("OTel SDK span", "OTel SDK span, batch export"):
            span = data.get(f"add:{label}")
            if span:
                for mode in ("watch capture args+result", "monitor"):
                    cost = data[f"add:{mode}"] - data["add:plain"]
                    print(f"  {label} added cost / peeka {mode} added cost: {(span - data['add:plain']) / cost:.1f}x")


if __name__ == "__main__":
    main()
