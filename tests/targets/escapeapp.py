"""The app the escape corpus attacks (tests/integration/test_expression_escapes.py, run by probe_target.py).

Everything an expression might change is recorded at start, so the test can check it is unchanged:
sys.path, the loaded modules, a settings object, a canary environment variable, a defaultdict, a
generator and an iterator of the app (iterating either would consume it). ``handle`` is the probed
call, run every millisecond by a worker; ``heartbeat`` records the host loop's stalls.
"""

import codecs  # noqa: F401 - loaded, as in a real app: the corpus reaches for each of these
import collections
import ctypes  # noqa: F401
import functools  # noqa: F401
import gc  # noqa: F401
import importlib  # noqa: F401
import inspect  # noqa: F401
import io  # noqa: F401
import logging  # noqa: F401
import math  # noqa: F401
import operator  # noqa: F401
import os
import pathlib  # noqa: F401
import pickle  # noqa: F401
import queue  # noqa: F401
import re  # noqa: F401
import shutil  # noqa: F401
import signal  # noqa: F401
import string  # noqa: F401
import subprocess  # noqa: F401
import sys
import threading
import time
import types  # noqa: F401

MARKER_DIR = os.environ.get("ESCAPE_MARKER_DIR", "/nonexistent")


class Settings:
    def __init__(self):
        self.timeout = 30
        self.name = "svc"
        self.flags = {"debug": False}

    def reset(self):  # an app method: calling it needs --unsafe
        self.timeout = 0


settings = Settings()
cache = {"a": 1, "b": 2, "c": 3}
counts = collections.defaultdict(int)
counts["seen"] = 1
pending = (n for n in range(3))
cursor = iter([1, 2, 3])
big = list(range(1_000_000))
text = "x" * 2_000_000
huge_int = 7 ** 40_000  # ~112,000 bits: its decimal form alone is costly
initial_path = list(sys.path)
initial_modules = sorted(name for name in sys.modules if not name.startswith("_peeka"))
calls = [0]


def drop_all():  # what an attacker wants to run: it writes a marker file
    with open(os.path.join(MARKER_DIR, "drop_all"), "w") as f:
        f.write("ran")
    return "dropped"


def handle(user_id, payload):
    calls[0] += 1
    return {"user": user_id, "size": len(payload)}


class Heartbeat:
    """A host loop ticking every 5 ms: gaps over 30 ms are kept with their end time (monotonic).

    A gap counts only the time the process ran meanwhile (its CPU time, all threads): a thread that
    holds the GIL runs, while a process the loaded machine did not schedule does not. So a stall
    here is the host's loop kept waiting by work in the process, not by the machine's load."""

    def __init__(self):
        self.stalls = collections.deque(maxlen=2000)
        self.ticks = 0

    def run(self, stop):
        last, last_cpu = time.monotonic(), time.process_time()
        while not stop.is_set():
            time.sleep(0.005)
            now, cpu = time.monotonic(), time.process_time()
            stall = min(now - last, cpu - last_cpu)
            if stall > 0.03:
                self.stalls.append((now, stall))
            last, last_cpu = now, cpu
            self.ticks += 1


heartbeat = Heartbeat()


def start():
    stop = threading.Event()
    threading.Thread(target=heartbeat.run, args=(stop,), name="heartbeat", daemon=True).start()

    def work():
        i = 0
        while not stop.is_set():
            i += 1
            handle(i % 100, "p" * (i % 7))
            time.sleep(0.001)

    threading.Thread(target=work, name="escape-worker", daemon=True).start()
    return stop


def check_state(since=0.0):
    """What the corpus must not have changed (the test calls this with --unsafe: it is the app's code)."""
    import inspect as _inspect
    import json as _json
    import logging as _logging

    return _json.dumps({
        "canary": os.environ.get("PEEKA_CANARY"),
        "path": sys.path == initial_path,
        "modules": [name for name in initial_modules if name not in sys.modules],
        "settings": (settings.timeout, settings.name, settings.flags),
        "cache": cache,
        "counts": dict(counts),
        "big": len(big),
        "pending": _inspect.getgeneratorstate(pending),
        "cursor": cursor.__length_hint__(),
        "recursionlimit": sys.getrecursionlimit(),
        "switchinterval": sys.getswitchinterval(),
        "cwd": os.getcwd(),
        "gc": (gc.isenabled(), gc.get_threshold()),
        "root_level": _logging.getLogger().level,
        "logging_disabled": _logging.root.manager.disable,
        "trace": (sys.gettrace() is None, sys.getprofile() is None),
        "threads": sorted(t.name for t in threading.enumerate() if t.name in ("heartbeat", "escape-worker")),
        "calls": calls[0],
        "max_stall": max([gap for end, gap in list(heartbeat.stalls) if end >= since] or [0.0]),
    })
