"""Ground truth for `top`'s CPU weighting: threads that wait in every usual way, threads that
compute, a burst worker, and event loops idle and busy; each computing function measures its own
thread CPU time (time.thread_time), which the test reads with `inspect` (CPU_NS).

    python cpu_truth.py     # prints "ready"; runs until stdin closes

spinner   spin_work() computes without a pause
part      part_work() computes 10 ms, then sleeps 20 ms (bursts longer than the GIL switch interval)
cruncher  crunch() computes 1 ms, then the caller sleeps 20 ms (bursts the sampler cannot catch)
sleeper, waiter (Event.wait), selector (select), poller (selectors/epoll), getter (queue.get),
locker (Lock.acquire), acceptor (accept), receiver (recv): wait only
loop-idle an asyncio loop with tasks asleep; loop-busy an asyncio loop whose callback handle()
          computes 8 ms every 16 ms
"""

import asyncio
import queue
import select
import selectors
import socket
import sys
import threading
import time

CPU_NS = {"spin_work": 0, "part_work": 0, "crunch": 0, "handle": 0}
STOP = threading.Event()


def compute(seconds):
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def measured(name, seconds):
    started = time.thread_time_ns()
    compute(seconds)
    CPU_NS[name] += time.thread_time_ns() - started


def spin_work():
    while not STOP.is_set():
        measured("spin_work", 0.005)


def part_work():
    measured("part_work", 0.010)


def part():
    while not STOP.is_set():
        part_work()
        time.sleep(0.02)


def crunch():
    measured("crunch", 0.001)


def cruncher():
    while not STOP.is_set():
        crunch()
        time.sleep(0.02)


def sleeper():
    while not STOP.is_set():
        time.sleep(0.01)


def selector_wait(a):
    while not STOP.is_set():
        select.select([a], [], [], 0.05)


def poller_wait(a):
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ)
    while not STOP.is_set():
        sel.select(0.05)


def getter(q):
    while not STOP.is_set():
        try:
            q.get(timeout=0.05)
        except queue.Empty:
            pass


def locker(lock):
    while not STOP.is_set():
        lock.acquire(timeout=0.05)


def acceptor(listener):
    listener.settimeout(0.05)
    while not STOP.is_set():
        try:
            listener.accept()
        except socket.timeout:
            pass


def receiver(b):
    b.settimeout(0.05)
    while not STOP.is_set():
        try:
            b.recv(10)
        except socket.timeout:
            pass


async def idle_loop():
    async def nap():
        while True:
            await asyncio.sleep(0.05)

    tasks = [asyncio.ensure_future(nap()) for _ in range(3)]
    while not STOP.is_set():
        await asyncio.sleep(0.05)
    for t in tasks:
        t.cancel()


def handle():
    measured("handle", 0.008)


async def busy_loop():
    loop = asyncio.get_event_loop()
    while not STOP.is_set():
        loop.call_soon(handle)
        await asyncio.sleep(0.016)


def run_loop(coro):
    asyncio.run(coro())


def start(target, name, *args):
    threading.Thread(target=target, name=name, args=args, daemon=True).start()


def main():
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    held = threading.Lock()
    held.acquire()
    start(spin_work, "spinner")
    start(part, "part")
    start(cruncher, "cruncher")
    start(sleeper, "sleeper")
    start(STOP.wait, "waiter")
    start(selector_wait, "selector", a)
    start(poller_wait, "poller", c)
    start(getter, "getter", queue.Queue())
    start(locker, "locker", held)
    start(acceptor, "acceptor", listener)
    start(receiver, "receiver", d)
    start(run_loop, "loop-idle", idle_loop)
    start(run_loop, "loop-busy", busy_loop)
    if "inprocess" in sys.argv:
        import inprocess_agent

        inprocess_agent.start()
    print("ready", flush=True)
    sys.stdin.read()
    STOP.set()


if __name__ == "__main__":
    main()
