"""Benchmark: what ``trace`` costs the target, per Python version, in one run.

    python tests/bench_trace.py [--versions 3.9,3.12,3.14] [--calls 20000] [--agent DIR]

For each interpreter a child process loads the agent from ``agent/`` (or ``--agent DIR``, e.g. an
older checkout's, to compare), installs the real ``trace`` command object, and measures against the
same code untraced:

* inside a traced call tree: ``tree`` makes 31 calls of trivial functions (every callee timed), and a
  realistic ``handler`` (dict work + json);
* the fixed cost per traced call: a traced leaf ``add(a, b)`` against the plain one;
* a WSGI request loop (no sockets) with its view traced: the host's requests/s;
* another thread's speed while traced calls run: thread B runs the untraced tree while thread A runs
  the tree traced, against thread B beside an untraced thread A (same GIL sharing both ways).

Times are CPU time of the measuring thread (other load on the machine is not counted), best of 5.
The agent builds each tree in its writer thread; here a writer thread does the same, and
"process" columns add its CPU time (time.process_time) so nothing is hidden off the host's thread.
Not a test: numbers depend on load.
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
import importlib, importlib.util, io, json, queue, sys, threading, time
AGENT = sys.argv[1]; N = int(sys.argv[2])
spec = importlib.util.spec_from_file_location("_peeka_agent", AGENT + "/__init__.py",
                                              submodule_search_locations=[AGENT])
m = importlib.util.module_from_spec(spec); sys.modules["_peeka_agent"] = m; spec.loader.exec_module(m)
trace = importlib.import_module("_peeka_agent.commands.trace")
commands = importlib.import_module("_peeka_agent.commands")

class Agent: state = {}
class Client:
    """Accepts every event; a writer thread builds deferred ones, as the agent's writer does."""
    streams = {}
    def __init__(self):
        self.queue = queue.SimpleQueue(); self.built = 0
        threading.Thread(target=self.write, daemon=True).start()
    def send(self, message, droppable=False):
        self.queue.put(message); return True
    def write(self):
        while True:
            message = self.queue.get()
            if isinstance(message, tuple):
                stream, build, args = message
                build(*args)
            elif hasattr(message, "message"):
                message.message()
            self.built += 1
    def drain(self):
        while not self.queue.empty():
            time.sleep(0.001)
        time.sleep(0.002)

def add(a, b): return a + b
def leaf(x): return x * 2 + 1
def branch(x): return leaf(x) + leaf(x + 1)
def tree(a, b):
    total = 0
    for i in range(10):
        total += branch(i + a)
    return total
def handler(a, b):
    order = {"id": a, "items": [{"sku": i, "qty": b} for i in range(5)]}
    order["total"] = sum(item["qty"] * 3 for item in order["items"])
    return json.dumps(order)

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
def wsgi_loop(a, b):
    start_response = lambda status, headers: None
    environ = {"PATH_INFO": "/items/%d" % (a % 50 + 1), "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    return b"".join(app(environ, start_response))

def bench(fn, n, client=None):
    """(thread CPU ns per call, process CPU ns per call incl. the writer's tree building), best of 5."""
    best_thread = best_process = float("inf")
    for _ in range(5):
        p = time.process_time_ns(); t = time.thread_time_ns()
        for i in range(n): fn(i, 2)
        t = time.thread_time_ns() - t
        if client is not None:
            client.drain()
        p = time.process_time_ns() - p
        best_thread = min(best_thread, t / n); best_process = min(best_process, p / n)
    return best_thread, best_process

agent = Agent()
def traced(fn, **args):
    client = Client()
    stream = trace.Trace(agent, dict(args, pattern="__main__." + fn.__name__, limit=1 << 60))
    stream.start(client, 1)  # as the agent does: setup, then the stream's own thread runs
    time.sleep(0.05)
    return stream, client

out = {}
for fn, n in ((tree, N), (handler, N), (add, N), (wsgi_loop, N // 4)):
    k = fn.__name__
    out[k + ":plain"] = bench(fn, n)
    target = view if fn is wsgi_loop else fn
    stream, client = traced(target)
    try:
        out[k + ":traced"] = bench(fn, n, client)
    finally:
        stream.cancel("done")
    time.sleep(0.05)  # the stream's thread lets go of its profiler
    out[k + ":after"] = bench(fn, n)

# Thread B's speed (untraced code) while thread A loops over the tree, traced or not.
def beside(traced_a, b_fn):
    stop = threading.Event()
    stream = client = None
    if traced_a:
        stream, client = traced(tree)
    def a_loop():
        while not stop.is_set():
            for i in range(100): tree(i, 2)
    other = threading.Thread(target=a_loop); other.start()
    try:
        return bench(b_fn, N // 4)
    finally:
        stop.set(); other.join()
        if stream is not None: stream.cancel("done")
        time.sleep(0.05)

# Thread B's code must not be the traced function itself: same shapes, other code objects.
def _leaf(x): return x * 2 + 1
def _branch(x): return _leaf(x) + _leaf(x + 1)
def _untraced_tree(a, b):
    total = 0
    for i in range(10):
        total += _branch(i + a)
    return total
def _untraced_wsgi(a, b):
    start_response = lambda status, headers: None
    environ = {"PATH_INFO": "/items/%d" % (a % 50 + 1), "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    return b"".join(app(environ, start_response))
out["other thread tree:beside untraced"] = beside(False, _untraced_tree)
out["other thread tree:beside traced"] = beside(True, _untraced_tree)
out["other thread wsgi:beside untraced"] = beside(False, _untraced_wsgi)
out["other thread wsgi:beside traced"] = beside(True, _untraced_wsgi)
print(json.dumps(out))
'''


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", default=",".join(VERSIONS))
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--agent", default=str(ROOT / "agent"), help="agent package directory to measure")
    opts = parser.parse_args()
    print(f"agent: {opts.agent}")
    for version in opts.versions.split(","):
        python = find_python(version)
        if python is None:
            print(f"{version}: no interpreter found, skipped")
            continue
        proc = subprocess.run([python, "-c", CHILD, opts.agent, str(opts.calls)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{version}: failed\n{proc.stderr}")
            continue
        data = json.loads(proc.stdout)
        print(f"\nPython {version}  ({python})")
        print(f"  {'function:mode':34} {'thread ns':>10} {'ratio':>7} {'process ns':>11} {'ratio':>7}")
        for key, (ns, pns) in data.items():
            group = key.split(":")[0]
            base, pbase = data.get(f"{group}:plain", data.get(f"{group}:beside untraced", (ns, pns)))
            print(f"  {key:34} {ns:10.0f} {ns / base:7.2f} {pns:11.0f} {pns / pbase:7.2f}")
        fixed = data["add:traced"][0] - data["add:plain"][0]
        fixed_p = data["add:traced"][1] - data["add:plain"][1]
        rps = {k: 1e9 / data[f"wsgi_loop:{k}"][0] for k in ("plain", "traced")}
        print(f"  fixed cost per traced call: {fixed / 1000:.1f} us on the thread, {fixed_p / 1000:.1f} us with tree building")
        print(f"  inside the 31-call tree: x{data['tree:traced'][0] / data['tree:plain'][0]:.2f}; "
              f"WSGI requests/s untouched {rps['plain']:,.0f}, view traced {rps['traced']:,.0f} "
              f"(x{rps['traced'] / rps['plain']:.3f}); another thread while traced calls run: "
              + ", ".join(f"{b} x{data[f'other thread {b}:beside traced'][0] / data[f'other thread {b}:beside untraced'][0]:.2f}"
                          for b in ("tree", "wsgi")))


if __name__ == "__main__":
    main()
