"""A target for request-latency benchmarks and tests: ``python latency_target.py rest|saturated``.

    saturated   N = os.cpu_count() threads spin in pure Python (they fight over the GIL), the
                main thread one of them (so a sys.remote_exec request runs)
    rest        the main thread ticks every millisecond (time.sleep), nothing else runs

Every host thread stamps ``time.perf_counter()`` into a shared slot as it goes, and keeps the
longest gap seen between two stamps of any host thread: how long the host felt stopped (gdb
holding it, or an agent thread holding the GIL). A reader thread answers on stdin:

    reset   -> "ok"           starts a new window
    gap     -> "gap <s> <n>"  the longest gap in the window (seconds), and how many stamps

Prints ``ready <pid>`` once its threads run; exits when stdin closes.
"""

import os
import sys
import threading
import time

STATE = sys.argv[1] if len(sys.argv) > 1 else "saturated"
clock = time.perf_counter
last = [clock()]
longest = [0.0]
stamps = [0]


def stamp():
    now = clock()
    gap = now - last[0]
    last[0] = now
    if gap > longest[0]:
        longest[0] = gap
    stamps[0] += 1


def spin():
    x = 0
    while True:
        for _ in range(200):  # ~10-20 us of bytecode between stamps
            x += 1
        stamp()


def tick():
    while True:
        time.sleep(0.001)
        stamp()


def answer():
    for line in sys.stdin:
        command = line.strip()
        if command == "reset":
            last[0] = clock()
            longest[0] = 0.0
            stamps[0] = 0
            print("ok", flush=True)
        elif command == "gap":
            print("gap %.6f %d" % (longest[0], stamps[0]), flush=True)
    os._exit(0)


def main():
    if STATE not in ("saturated", "rest"):
        raise SystemExit("unknown state %r" % STATE)
    threading.Thread(target=answer, name="stdin-reader", daemon=True).start()
    if STATE == "saturated":
        for i in range((os.cpu_count() or 2) - 1):
            threading.Thread(target=spin, name="spinner-%d" % (i + 1), daemon=True).start()
    print("ready", os.getpid(), flush=True)
    if STATE == "saturated":
        spin()
    tick()


if __name__ == "__main__":
    main()
