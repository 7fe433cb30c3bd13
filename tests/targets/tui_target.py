"""Target for `peeka tui` and peeka.session: known threads doing known work.

    thread "burner"   spends its CPU in crunch() (the hot function)
    thread "orders"   calls place_order(order_id, sku) every 20 ms, order_id counting up from 1
    thread "napper"   sleeps in a loop (daemon)
    main thread       sleeps in 50 ms steps (it runs Python often: a 3.14 remote_exec attach runs soon)
    BASKETS           exactly 20000 Basket instances, kept (the memory view's ground truth)

Prints "ready" once all run; runs until killed.
"""

import os
import threading
import time


def crunch(units):
    total = 0
    for i in range(units * 1000):
        total += i * i % 7
    return total


class Basket:
    def __init__(self, n):
        self.n = n


BASKETS = [Basket(n) for n in range(20000)]


def burner():
    while True:
        crunch(5)


def place_order(order_id, sku):
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


def main():
    threading.Thread(target=burner, name="burner", daemon=True).start()
    threading.Thread(target=orders, name="orders", daemon=False).start()
    threading.Thread(target=napper, name="napper", daemon=True).start()
    print("ready", os.getpid(), flush=True)
    while True:
        time.sleep(0.05)


if __name__ == "__main__":
    main()
