"""Functions with the shapes ``trace`` must get right (driven by trace_target.py)."""

import asyncio
import json
import threading
import time


def tiny(x):
    return x + 1


def step(i):
    return tiny(i) + len(str(i))


def failing_parse():
    try:
        divmod(1, 0)  # a C function that raises: marked on its node
    except ZeroDivisionError:
        return -1
    return 0


def work(n=200):
    total = 0
    for i in range(n):
        total += step(i)
    return total + failing_parse()


def fact(n):
    return 1 if n <= 1 else n * fact(n - 1)


def recursive():
    return fact(6)


def numbers(n):
    for i in range(n):
        yield tiny(i)


def consume():
    return sum(numbers(5))


async def pause():
    await asyncio.sleep(0.01)


async def fetch():
    await pause()
    tiny(1)
    await pause()
    return "ok"


def fetch_sync():
    return asyncio.run(fetch())


def level(n):
    return tiny(n) if n == 0 else level(n - 1)


def deep():
    return level(5)


def uses_library():
    return json.dumps({"a": [1, 2, 3]})


def many(n):
    for i in range(n):
        tiny(i)
    return n


def alpha():
    time.sleep(0.05)
    return tiny(1)


def beta():
    time.sleep(0.05)
    return step(2)


SPIN_STOP = threading.Event()
SPINNING = threading.Event()


def spin():
    """Runs until told to stop; calls something all the while."""
    SPINNING.set()
    while not SPIN_STOP.wait(0.001):
        tiny(0)
    return "stopped"
