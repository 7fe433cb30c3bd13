"""Benchmark: what ``trace`` costs the target, per Python version, in one run.

    python tests/bench_trace.py [--versions 3.9,3.12,3.14] [--calls 20000] [--agent DIR]

For each interpreter a child process imports the agent from ``agent/`` (or ``--agent DIR``, e.g. an
older checkout's, to compare) as an attached target would, installs the real ``trace`` command
object, and measures against the same code untraced:

* inside a traced call tree: ``tree`` makes 31 calls of trivial functions (every callee timed), and a
  realistic ``handler`` (dict work + json);
* the fixed cost per traced call: a traced leaf ``add(a, b)`` against the plain one; and last, the
  same in a bigger process (``add`` called 25 frames deep, 8 idle threads 25 frames deep);
* a WSGI request loop (no sockets) with its view traced: the host's requests/s;
* the same handler work called from a sync handler and from an async one (``srequest``/``arequest``:
  two awaited children that each suspend once, run to completion by an event loop per call), each
  traced at its handler: what trace costs across awaits against the sync path;
* the issue's reference on the same workloads (tree, handler, request): "sys.setprofile with timing"
  (a profile function appending ``(perf_counter_ns(), event)`` to a list) and, for information,
  cProfile, each installed once around the measured loop (so they time everything the loop runs,
  where trace times the traced function's tree only, and pay no per-call start/stop);
* another thread's speed while traced calls run: thread B runs an untraced copy of the tree (or the
  WSGI requests) while thread A loops over the tree traced, against thread B beside thread A
  untraced (the same GIL sharing both ways).

Times are CPU time of the measuring thread (other load on the machine is not counted), best of 5.
The agent builds each tree in its writer thread; here a writer thread does the same, and
"process" columns add its CPU time (time.process_time) so nothing is hidden off the host's thread.
Not a test: numbers depend on load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from conftest import VERSIONS, agent_library, find_python  # noqa: E402

CHILD = r'''
import io, json, queue, sys, threading, time
from peeka_agent.commands import trace  # the agent under test, importable as in an attached target
N = int(sys.argv[1])

class Agent: state = {}
class Client:
    """Accepts every event; a writer thread builds deferred ones, as the agent's writer does."""
    streams = {}
    def __init__(self):
        self.queue = queue.SimpleQueue()
        threading.Thread(target=self.write, daemon=True).start()
    def send(self, message, droppable=False):
        self.queue.put(message); return True
    def write(self):
        while True:
            message = self.queue.get()
            if isinstance(message, tuple):  # emit_later's (stream, build, args)
                message[1](*message[2])
            elif hasattr(message, "message"):  # an older agent's Deferred
                message.message()
    def drain(self):
        while not self.queue.empty():
            time.sleep(0.001)
        time.sleep(0.002)

# bench_probes' 31-call tree (its source, passed in), compiled twice: thread B runs the second copy
# (other code objects, never traced).
TREE = sys.argv[2]
exec(TREE)
untraced = {}
exec(TREE, untraced)
def add(a, b): return a + b
def handler(a, b):
    order = {"id": a, "items": [{"sku": i, "qty": b} for i in range(5)]}
    order["total"] = sum(item["qty"] * 3 for item in order["items"])
    return json.dumps(order)

# A WSGI request (no sockets) whose view is traced: the host's requests/s.
from wsgiref.util import request_uri, setup_testing_defaults
PRICES = {n: 100 * n for n in range(1, 51)}
def find(item_id): return {"id": item_id, "cents": PRICES[item_id]}
def taxed(cents): return round(cents * 1.2)
def view(environ):
    item = find(int(request_uri(environ).rsplit("/", 1)[1]))
    item["total"] = taxed(item["cents"])
    return [json.dumps(item).encode()]
def request(a, b):
    environ = {"PATH_INFO": "/items/%d" % (a % 50 + 1), "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    return b"".join(view(environ))

# The same work as a sync handler and as an async one whose awaited children each suspend once
# (an event loop step per await, as a real service's I/O would): trace on each.
import asyncio
def sprice(a): return handler(a, 2)
def shandler(a, b): return sprice(a) + sprice(b)
async def aprice(a):
    await asyncio.sleep(0)
    return handler(a, 2)
async def ahandler(a, b): return await aprice(a) + await aprice(b)
loop = asyncio.new_event_loop()
def arequest(a, b): return loop.run_until_complete(ahandler(a, b))
def srequest(a, b): return shandler(a, b)

def bench(fn, n, client=None, profiler=None):
    """(thread CPU ns per call, process CPU ns per call incl. the writer's tree building), best of 5.

    ``profiler``: a reference profiler's (start, stop), run once around each measured loop."""
    best_thread = best_process = float("inf")
    for _ in range(5):
        if profiler is not None:
            profiler[0]()
        p = time.process_time_ns(); t = time.thread_time_ns()
        for i in range(n): fn(i, 2)
        t = time.thread_time_ns() - t
        if profiler is not None:
            profiler[1]()
        if client is not None:
            client.drain()
        p = time.process_time_ns() - p
        best_thread = min(best_thread, t / n); best_process = min(best_process, p / n)
    return best_thread, best_process

# The issue's reference ("sys.setprofile with timing"): a profile function that only appends
# (clock, event) for every event of the thread, installed once around the loop, not per call.
timing_log = []
def timing_profile(frame, event, arg, append=timing_log.append, pc=time.perf_counter_ns):
    append((pc(), event))
def timing_stop():
    sys.setprofile(None)
    timing_log.clear()  # between loops, not timed: the list is not left to grow across them
SETPROFILE = (lambda: sys.setprofile(timing_profile), timing_stop)
# cProfile, for information: the stdlib's C profiler (on 3.12+ it profiles every thread).
import cProfile
profile = cProfile.Profile()
CPROFILE = (profile.enable, lambda: (profile.disable(), profile.clear()))

agent = Agent()
def traced(fn, **args):
    client = Client()
    stream = trace.Trace(agent, dict(args, pattern="__main__." + fn.__name__, limit=1 << 60))
    stream.start(client, 1)  # as the agent does: setup, then the stream's own thread runs
    time.sleep(0.05)
    return stream, client

out = {}
ROOTS = {request: view, arequest: ahandler, srequest: shandler}
for fn, n in ((tree, N), (handler, N), (add, N), (request, N // 4), (srequest, N // 4), (arequest, N // 4)):
    k = fn.__name__
    out[k + ":plain"] = bench(fn, n)
    stream, client = traced(ROOTS.get(fn, fn))
    try:
        out[k + ":traced"] = bench(fn, n, client)
    finally:
        stream.cancel("done")
    time.sleep(0.05)
    out[k + ":after"] = bench(fn, n)
    if fn not in (add, srequest, arequest):  # the same workloads under the reference profilers (what they cost, not trees)
        out[k + ":setprofile+timing"] = bench(fn, n, profiler=SETPROFILE)
        out[k + ":cProfile"] = bench(fn, n, profiler=CPROFILE)

def beside(traced_a, b_fn):
    """Thread B's speed (b_fn, untraced) while thread A loops over the tree, traced or not."""
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

for name, b_fn in (("tree", untraced["tree"]), ("request", request)):
    out["other thread %s:beside untraced" % name] = beside(False, b_fn)
    out["other thread %s:beside traced" % name] = beside(True, b_fn)

# Last (its threads stay): the fixed cost in a bigger process. On 3.12+ switching the profiler
# re-instruments the code of every frame on every thread, so a server's stacks make it grow:
# ``add`` traced, called 25 frames deep, with 8 idle threads 25 frames deep (all distinct code).
def chain(prefix, bottom, n=25):
    """A function that calls ``bottom(a, b)`` n frames down, through n distinct functions."""
    space = {prefix + "0": bottom}
    exec("".join("def %s%d(a, b):\n    frame = [a, b, %d]\n    return %s%d(a, b) if frame else None\n"
                 % (prefix, i, i, prefix, i - 1) for i in range(1, n + 1)), space)
    return space[prefix + str(n)]
deep_add = chain("deep", add)
out["add 25 frames deep:plain"] = bench(deep_add, N)
idle = threading.Event()
for k in range(8):
    threading.Thread(target=chain("idle%d_" % k, lambda a, b: idle.wait()), args=(0, 0), daemon=True).start()
time.sleep(0.1)
out["add 25 frames deep:8 idle threads, plain"] = bench(deep_add, N)
stream, client = traced(add)
try:
    out["add 25 frames deep:8 idle threads, traced"] = bench(deep_add, N, client)
finally:
    stream.cancel("done")
    idle.set()
print(json.dumps(out))
'''


def probes_tree() -> str:
    """The call tree bench_probes times, so both benchmarks measure the same code."""
    import bench_probes

    start = bench_probes.CHILD.index("def leaf(x)")
    return bench_probes.CHILD[start : bench_probes.CHILD.index("\n\n", start)] + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", default=",".join(VERSIONS))
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--agent", default=str(ROOT / "agent"), help="agent package directory to measure")
    opts = parser.parse_args()
    print(f"agent: {opts.agent}")
    with tempfile.TemporaryDirectory() as tmp:
        lib = agent_library(Path(tmp))
        (lib / "peeka_agent").unlink()
        (lib / "peeka_agent").symlink_to(Path(opts.agent).resolve())
        for version in opts.versions.split(","):
            run(version, opts.calls, lib)


def run(version: str, calls: int, lib: Path) -> None:
    python = find_python(version)
    if python is None:
        print(f"{version}: no interpreter found, skipped")
        return
    env = dict(os.environ, PYTHONPATH=str(lib), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([python, "-c", CHILD, str(calls), probes_tree()], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"{version}: failed\n{proc.stderr}")
        return
    data = json.loads(proc.stdout)
    print(f"\nPython {version}  ({python})")
    print(f"  {'function:mode':38} {'thread ns':>10} {'ratio':>7} {'process ns':>11} {'ratio':>7}")
    for key, (ns, pns) in data.items():
        group = key.split(":")[0]
        base, pbase = data.get(f"{group}:plain", data.get(f"{group}:beside untraced", (ns, pns)))
        if group == "add 25 frames deep" and key.endswith("traced"):
            base, pbase = data[f"{group}:8 idle threads, plain"]
        print(f"  {key:38} {ns:10.0f} {ns / base:7.2f} {pns:11.0f} {pns / pbase:7.2f}")

    def ratio(group: str, mode: str, base: str) -> float:
        return float(data[f"{group}:{mode}"][0] / data[f"{group}:{base}"][0])

    fixed = [(data["add:traced"][i] - data["add:plain"][i]) / 1000 for i in (0, 1)]
    rps = {mode: 1e9 / data[f"request:{mode}"][0] for mode in ("plain", "traced")}
    print(f"  fixed cost per traced call: {fixed[0]:.1f} us on the thread, {fixed[1]:.1f} us with tree building")
    bigger = data["add 25 frames deep:8 idle threads, traced"][0] - data["add 25 frames deep:8 idle threads, plain"][0]
    print(f"  the same in a bigger process (called 25 frames deep, 8 idle threads 25 frames deep): {bigger / 1000:.1f} us")
    for group, label in (("tree", "the 31-call tree"), ("handler", "handler"), ("request", "a WSGI request (view traced)")):
        print(f"  {label}: trace x{ratio(group, 'traced', 'plain'):.2f}; reference: sys.setprofile with timing "
              f"x{ratio(group, 'setprofile+timing', 'plain'):.2f}, cProfile x{ratio(group, 'cProfile', 'plain'):.2f}")
    print(f"  a handler traced, sync x{ratio('srequest', 'traced', 'plain'):.2f}, async (its two awaited children "
          f"suspending once each, run by an event loop) x{ratio('arequest', 'traced', 'plain'):.2f}; "
          f"per call: sync +{(data['srequest:traced'][0] - data['srequest:plain'][0]) / 1000:.1f} us, "
          f"async +{(data['arequest:traced'][0] - data['arequest:plain'][0]) / 1000:.1f} us")
    print(f"  WSGI requests/s untouched {rps['plain']:,.0f}, view traced {rps['traced']:,.0f} "
          f"(x{rps['traced'] / rps['plain']:.3f}); another thread while traced calls run: tree "
          f"x{ratio('other thread tree', 'beside traced', 'beside untraced'):.2f}, WSGI requests "
          f"x{ratio('other thread request', 'beside traced', 'beside untraced'):.2f}")


if __name__ == "__main__":
    main()
