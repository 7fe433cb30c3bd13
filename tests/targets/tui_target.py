"""Target for `peeka tui` and peeka.session: known threads doing known work.

    thread "burner"   spends its CPU in crunch() (the hot function)
    thread "orders"   calls place_order(order_id, sku) every 20 ms, order_id counting up from 1
    thread "napper"   sleeps in a loop (daemon)
    main thread       sleeps in 50 ms steps (it runs Python often: a 3.14 remote_exec attach runs soon)
    BASKETS           exactly 20000 Basket instances, kept (the memory view's ground truth)
    CRUMBS            grows by one Crumb every 10th order (every ~0.2 s): what grows since a mark
    thread "loop"     an asyncio event loop: tasks "waiter-0".."waiter-2" await one Event (GATE),
                      "consumer" awaits JOBS.get(), "ticker" sleeps 50 ms in a loop
    logger "shop.orders"  level INFO; place_order logs "order N" at DEBUG and every 10th at INFO
    thread "holder"   holds HELD (an RLock) for ever; thread "stuck" waits for it (blocked, not a cycle)
    threads "deadlock-a"/"deadlock-b"  each holds one RLock and waits for the other's (a cycle)

With the argument "saturate": threads "hasher-0" and "hasher-1" hash 16 MiB buffers in a loop
(hashlib releases the GIL while it hashes), so with burner the process keeps both cores busy.

Prints "ready" once all run; runs until killed.
"""

import asyncio
import hashlib
import logging
import os
import sys
import threading
import time

import tui_scene

log = logging.getLogger("shop.orders")


def crunch(units):
    total = 0
    for i in range(units * 1000):
        total += i * i % 7
    return total


class Basket:
    def __init__(self, n):
        self.n = n


class Crumb:
    pass


BASKETS = [Basket(n) for n in range(20000)]
CRUMBS = []


def burner():
    while True:
        crunch(5)


def place_order(order_id, sku):
    log.debug("order %d", order_id)
    if order_id % 10 == 0:
        log.info("order %d", order_id)
        CRUMBS.append(Crumb())
    return {"order": order_id, "sku": sku, "total": order_id * 3}


def orders():
    n = 0
    while True:
        n += 1
        place_order(n, "sku-%d" % (n % 5))
        time.sleep(0.02)


def napper():
    while True:
        time.sleep(0.1)


def hasher():
    block = os.urandom(16 << 20)  # ~10 ms or more per digest outside the GIL, a few ms waiting for it
    while True:
        hashlib.sha256(block).digest()


async def _tick():
    while True:
        await asyncio.sleep(0.05)


HELD = threading.RLock()
LOCK_A = threading.RLock()
LOCK_B = threading.RLock()


def main():
    logging.basicConfig(level=logging.WARNING, stream=open(os.devnull, "w"))
    log.setLevel(logging.INFO)
    tui_scene.start_lock_threads(HELD, LOCK_A, LOCK_B)
    tui_scene.start_loop([("ticker", _tick)])
    threading.Thread(target=burner, name="burner", daemon=True).start()
    threading.Thread(target=orders, name="orders", daemon=False).start()
    threading.Thread(target=napper, name="napper", daemon=True).start()
    if "saturate" in sys.argv[1:]:
        for n in range(2):
            threading.Thread(target=hasher, name="hasher-%d" % n, daemon=True).start()
    print("ready", os.getpid(), flush=True)
    while True:
        time.sleep(0.05)


if __name__ == "__main__":
    main()
