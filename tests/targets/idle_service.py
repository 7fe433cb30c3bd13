"""A mostly idle service for the overhead governor: about 20 requests a second, each a few ms of
waiting and a little computing, the process using a few percent of one core.

    python idle_service.py

``handle(n)`` gets each request's sequence number (the ground truth of which calls were exported):
it calls ``lookup`` (a 2 ms "database" wait) and ``price``.
"""

import os
import time


def lookup(n):
    time.sleep(0.002)
    return {"id": n, "price": 1.5 * n}


def price(item):
    return round(sum(item["price"] for _ in range(200)) / 200 * 1.2, 2)


def handle(n):
    return price(lookup(n))


def main():
    print("ready %d" % os.getpid(), flush=True)
    n = 0
    while True:
        n += 1
        handle(n)
        time.sleep(0.05)


if __name__ == "__main__":
    main()
