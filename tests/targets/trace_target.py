"""Target for the trace tests: trace_work's functions on demand, the agent started in-process.

Prints "ready <socket>"; then each stdin line ``NAME`` runs ``trace_work.NAME()`` (``run_NAME``
helpers below for the shapes that need threads) and prints ``done NAME <json result>``;
``probed NAME`` answers whether that function is probed now.
"""

import json
import os
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import trace_work  # noqa: E402
from peeka_agent import runtime  # noqa: E402


def run_pair():
    """alpha and beta at the same time on two threads."""
    results = {}
    threads = [threading.Thread(target=lambda f=f: results.setdefault(f.__name__, f())) for f in
               (trace_work.alpha, trace_work.beta)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def probed(name):
    """Is trace_work.NAME probed now? (The agent answers a stream's start before it installs probes.)"""
    func = getattr(trace_work, name)
    if hasattr(sys, "monitoring"):
        mon = sys.monitoring
        return any(mon.get_tool(t) and mon.get_local_events(t, func.__code__) for t in range(6))
    return "_peeka_hook" in (func.__kwdefaults__ or {})


def run_many():
    return trace_work.many(4000)


def run_many_big():
    return trace_work.many(40000)


def run_spin():
    """spin() on a thread; returns whether a profiler was still set on it once spin() was told to stop."""
    seen = {}

    def body():
        seen["result"] = trace_work.spin()
        seen["profiler"] = repr(sys.getprofile())

    thread = threading.Thread(target=body)
    thread.start()
    trace_work.SPINNING.wait(10)
    print("spinning", flush=True)
    sys.stdin.readline()  # the test cancels the trace, then asks to stop
    trace_work.SPIN_STOP.set()
    thread.join()
    return seen


def main():
    socket_path = os.path.join(tempfile.gettempdir(), f"peeka_{os.getpid()}.sock")
    runtime.start({"module": "peeka_agent", "socket_path": socket_path, "files_dir": None, "method": "in-process"})
    print("ready", socket_path, flush=True)
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        name = line.strip()
        if not name:
            continue
        if name.startswith("probed "):
            name, arg = name.split()
            result = probed(arg)
        else:
            func = globals().get("run_" + name) or getattr(trace_work, name)
            result = func()
        print("done", name, json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
