"""A script that never imports threading, for the main-thread checks (run it with -I -S too).

    python bare_main.py pause      # main thread blocked in signal.pause()
    python bare_main.py sleep      # main thread in a time.sleep(0.05) loop
    python bare_main.py spin       # main thread computing

A second thread, started with _thread (no Thread object), sleeps. Prints "ready <pid> <main
native id> <worker native id>" and runs until killed.
"""

import _thread
import os
import sys
import time

WORKER = []


def worker():
    WORKER.append(_thread.get_native_id())
    while True:
        time.sleep(0.05)


def spin():
    total = 0
    while True:
        for i in range(10000):
            total += i


_thread.start_new_thread(worker, ())
while not WORKER:
    time.sleep(0.01)
assert "threading" not in sys.modules, sorted(sys.modules)
print("ready", os.getpid(), _thread.get_native_id(), WORKER[0], flush=True)
mode = sys.argv[1] if len(sys.argv) > 1 else "pause"
if mode == "pause":
    import signal

    signal.pause()
elif mode == "spin":
    spin()
else:
    while True:
        time.sleep(0.05)
