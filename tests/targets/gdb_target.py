"""A target for the gdb injection tests and benchmark: ``python gdb_target.py STATE WORKDIR``.

States:
    busy        the main thread spins in pure Python
    sleep       the main thread loops on time.sleep(0.1)
    event       the main thread blocks in threading.Event().wait(); an idle worker waits too
    pause       the main thread blocks in signal.pause(); no other thread
    contention  four threads fight for the GIL in pure Python; the main thread joins them
    gilheld     the main thread blocks in pause(2) through ctypes.PyDLL, which keeps the GIL:
                no thread can run Python code (the injection must give up, harmlessly)

Prints ``ready <pid>`` on stdout once set up. Proves it is alive on request: SIGUSR1 makes its
handler (run by the main thread at its next eval-breaker check) append a line to WORKDIR/pong.
Busy states also touch WORKDIR/heartbeat about every 10 ms. Runs until killed.
"""

import os
import signal
import sys
import threading
import time

state, workdir = sys.argv[1], sys.argv[2]
pongs = 0


def pong(signum, frame):
    global pongs
    pongs += 1
    with open(os.path.join(workdir, "pong"), "a") as f:
        f.write(f"pong {pongs}\n")


def spin(seconds=None):
    heartbeat = os.path.join(workdir, "heartbeat")
    x = 0
    next_beat = 0.0
    end = time.monotonic() + seconds if seconds else None
    while True:
        x += 1
        if x % 2000 == 0:
            now = time.monotonic()
            if now >= next_beat:
                with open(heartbeat, "w") as f:
                    f.write(f"{now} {x}\n")
                next_beat = now + 0.01
            if end is not None and now >= end:
                return


signal.signal(signal.SIGUSR1, pong)

if state == "busy":
    print("ready", os.getpid(), flush=True)
    spin()
elif state == "sleep":
    print("ready", os.getpid(), flush=True)
    while True:
        time.sleep(0.1)
elif state == "event":
    idle = threading.Event()
    threading.Thread(target=idle.wait, name="idle-worker", daemon=True).start()
    print("ready", os.getpid(), flush=True)
    threading.Event().wait()
elif state == "pause":
    print("ready", os.getpid(), flush=True)
    while True:
        signal.pause()
elif state == "contention":
    workers = [threading.Thread(target=spin, name=f"spinner-{i}", daemon=True) for i in range(4)]
    for w in workers:
        w.start()
    print("ready", os.getpid(), flush=True)
    for w in workers:
        w.join()
elif state == "gilheld":
    import ctypes

    libc = ctypes.PyDLL(None)  # PyDLL: the GIL stays held during the call
    print("ready", os.getpid(), flush=True)
    while True:
        libc.pause()
else:
    sys.exit(f"unknown state {state!r}")
