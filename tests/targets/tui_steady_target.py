"""Target for the TUI's snapshot tests: the same picture every run (names, stacks, counts).

Every thread but one is parked where it stays, so its stack is the same at any instant:
    thread "burner"   spends its CPU in crunch() (the hot function; the only thread using CPU)
    thread "clerk"    blocks reading stdin; for each line N it calls quote(7, "sku-2") N times
                      (the watched calls, with fixed arguments and result), then blocks again
    thread "idler"    waits on an Event nobody sets (daemon)
    thread "holder"   holds HELD (an RLock) for ever; thread "stuck" waits for it
    threads "deadlock-a"/"deadlock-b"  each holds one RLock and waits for the other's (a cycle)
    thread "loop"     an asyncio loop: tasks "waiter-0".."waiter-2" await GATE, "consumer" awaits JOBS.get()
    BASKETS           exactly 20000 Basket instances; SHELVES exactly 3 Shelf instances; CRATES
                      exactly 200000 Crate instances (too many to count in the census's budget)
    logger "shop.quotes"  level INFO, "shop" WARNING
    main thread       sleeps in 50 ms steps until the agent is loaded (a 3.14 remote_exec attach
                      runs at the main thread's next bytecode), then parks on an Event: it uses no
                      CPU the sampler could catch

Prints "ready" once all run; runs until killed.
"""

import logging
import os
import sys
import threading
import time

import tui_scene

log = logging.getLogger("shop.quotes")


class Basket:
    def __init__(self, n):
        self.n = n


class Shelf:
    pass


class Crate:
    pass


BASKETS = [Basket(n) for n in range(20000)]
SHELVES = [Shelf() for _ in range(3)]
CRATES = [Crate() for _ in range(200000)]  # a heap the memory view's 1 s census has to sample


def crunch(units):
    total = 0
    for i in range(units * 1000):
        total += i * i % 7
    return total


def burner():
    while True:
        crunch(5)


def quote(item, sku):
    log.debug("quote %d", item)
    return {"item": item, "sku": sku, "price": item * 3}


def clerk():
    for line in sys.stdin:
        for _ in range(int(line)):
            quote(7, "sku-2")


def idler(never):
    never.wait()


HELD = threading.RLock()
LOCK_A = threading.RLock()
LOCK_B = threading.RLock()


def main():
    logging.basicConfig(level=logging.WARNING, stream=open(os.devnull, "w"))
    logging.getLogger("shop").setLevel(logging.WARNING)
    log.setLevel(logging.INFO)
    tui_scene.start_lock_threads(HELD, LOCK_A, LOCK_B)
    tui_scene.start_loop()
    threading.Thread(target=burner, name="burner", daemon=True).start()
    threading.Thread(target=clerk, name="clerk", daemon=True).start()
    threading.Thread(target=idler, args=(threading.Event(),), name="idler", daemon=True).start()
    print("ready", os.getpid(), flush=True)
    while "_peeka_agent" not in sys.modules:
        time.sleep(0.05)
    threading.Event().wait()


if __name__ == "__main__":
    main()
