"""A target in one of several states; prints "ready <pid>" once it is in it.

    app.py busy | sleep | blocked | pause | contention
"""

import os
import signal
import sys
import threading
import time

STATE = sys.argv[1] if len(sys.argv) > 1 else "busy"
CONFIG = {"timeout": 30, "name": "demo"}
CACHE = {i: str(i) * 3 for i in range(100)}


def compute(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def worker(stop):
    while not stop.is_set():
        compute(5000)


def idle_worker(stop):
    stop.wait()


def woken(signum, frame):
    pass  # the main thread ran Python: what it had pending (a sys.remote_exec request) runs too


def main():
    signal.signal(signal.SIGUSR1, woken)
    stop = threading.Event()
    if STATE == "busy":
        print("ready", os.getpid(), flush=True)
        while True:
            compute(1000)
    elif STATE == "sleep":
        print("ready", os.getpid(), flush=True)
        while True:
            time.sleep(0.1)
    elif STATE == "blocked":
        threading.Thread(target=idle_worker, args=(stop,), name="idle-worker", daemon=True).start()
        print("ready", os.getpid(), flush=True)
        threading.Event().wait()
    elif STATE == "pause":
        print("ready", os.getpid(), flush=True)
        while True:
            signal.pause()
    elif STATE == "contention":
        for i in range(4):
            threading.Thread(target=worker, args=(stop,), name="burner-%d" % i, daemon=True).start()
        print("ready", os.getpid(), flush=True)
        while True:
            compute(1000)
    else:
        raise SystemExit("unknown state %r" % STATE)


if __name__ == "__main__":
    main()
