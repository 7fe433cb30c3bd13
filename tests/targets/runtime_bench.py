"""Target for tests/bench_runtime.py: one thread does fixed units of pure-Python work and counts
them; eight threads (or argv[1]) idle (as a server's pool would); the agent starts in-process.

argv[2] (default 0): that many small objects the GC tracks are kept alive (a heap for the type census).

Prints "ready"; then for every stdin line "measure S" prints the units done per second over S
seconds and the process's CPU microseconds per unit ("measure S wake": while a thread of its own wakes at 100 Hz and does nothing else, the
floor any in-process sampler pays for taking the GIL 100 times a second). Exits when stdin closes.
"""

import os
import sys
import tempfile
import threading
import time

DONE = [0]


def unit():
    total = 0
    for i in range(2000):
        total += i * i % 7
    return total


def worker():
    while True:
        unit()
        DONE[0] += 1


def wake(stop):
    while not stop.wait(0.01):
        pass


def idle(stop):
    stop.wait()


class Item:
    pass


def main():
    heap = [Item() for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 0)]  # noqa: F841 - kept alive
    stop = threading.Event()
    threading.Thread(target=worker, name="worker", daemon=True).start()
    idle_threads = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    for n in range(idle_threads):
        threading.Thread(target=idle, args=(stop,), name=f"idle-{n}", daemon=True).start()
    from peeka_agent import runtime

    socket_path = os.path.join(tempfile.gettempdir(), f"peeka_{os.getpid()}.sock")
    runtime.start({"module": "peeka_agent", "socket_path": socket_path, "files_dir": None, "method": "in-process"})
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        seconds = float(words[1])
        waking = threading.Event()
        if "wake" in words:
            threading.Thread(target=wake, args=(waking,), daemon=True).start()
        start_units, start, start_cpu = DONE[0], time.perf_counter(), time.process_time()
        time.sleep(seconds)
        waking.set()
        units = DONE[0] - start_units
        cpu = time.process_time() - start_cpu  # the whole process: worker, agent, everything
        print(f"{units / (time.perf_counter() - start):.1f} {cpu / max(units, 1) * 1e6:.3f}", flush=True)
    stop.set()


if __name__ == "__main__":
    main()
