"""A target at full speed for the overhead governor: a hot leaf, a 31-call handler, a cold function.

    python governor_target.py WINDOW_S

The main thread loops as fast as it can: each unit of work calls ``leaf`` 100 times directly and
``handle`` once (``handle`` calls ``leaf`` 30 times: 31 calls). Every 2,000 units it calls ``cold``.
It measures its own throughput: every WINDOW_S it prints one JSON line
{"t": monotonic s, "units", "wall", "cpu", "main_cpu", "cold"}: units of work done in the window, its wall
and process CPU seconds (every thread of the process: an agent's too), the main thread's own CPU
seconds, and how many times ``cold`` was called so far. ``cold`` gets its call's sequence number: the ground truth for which calls were exported.
"""

import json
import os
import sys
import time

WINDOW = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5


def leaf(x):
    return x + 1


def handle(n):
    total = n
    for _ in range(30):
        total = leaf(total)
    return total


def cold(n):
    return n * 2


def main():
    print("ready %d" % os.getpid(), flush=True)
    units = 0
    colds = 0
    window_start = time.perf_counter()
    cpu_start = time.process_time()
    main_start = time.thread_time()
    next_report = window_start + WINDOW
    while True:
        for _ in range(50):
            x = 0
            for _ in range(100):
                x = leaf(x)
            handle(x)
            units += 1
            if units % 2000 == 0:
                colds += 1
                cold(colds)  # its sequence number: exported spans show which calls they were
        now = time.perf_counter()
        if now >= next_report:
            cpu = time.process_time()
            main_cpu = time.thread_time()
            print(json.dumps({"t": time.monotonic(), "units": units, "wall": now - window_start,
                              "cpu": cpu - cpu_start,
                              "main_cpu": main_cpu - main_start, "cold": colds}), flush=True)
            units = 0
            window_start, cpu_start, main_start = now, cpu, main_cpu
            next_report = now + WINDOW


main()
