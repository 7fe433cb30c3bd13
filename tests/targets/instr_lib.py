"""Functions the instrumentation tests probe (imported by instr_app.py). Stdlib only, Python 3.9+."""

import asyncio
import functools
import time


def load(user_id):
    time.sleep(0.002)  # a "database" round trip
    return {"id": user_id, "name": "user-%d" % user_id}


def price(x):
    return round(x * 1.2, 2)


def handle(user_id):
    user = load(user_id)
    return {"user": user, "price": price(user_id * 10)}


def countdown(n):
    while n > 0:
        yield n
        n -= 1


def fact(n):
    return 1 if n <= 1 else n * fact(n - 1)


def logged(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


@logged
def decorated(x):
    return x * 2


def parse(text):
    if text == "bad":
        raise ValueError("bad input: %r" % text)
    return int(text)


async def fetch(n):
    await asyncio.sleep(0.005)
    return n + 1


async def ticks(n):
    for i in range(n):
        await asyncio.sleep(0.002)
        yield i


async def collect_ticks(n):
    return [i async for i in ticks(n)]


class Account:
    def __init__(self, owner):
        self.owner = owner

    def balance(self, cents):
        return {"owner": self.owner, "balance": cents / 100}


def give_up(code):
    raise SystemExit(code)  # the app catches it (a handler that asks the worker to stop, say)
