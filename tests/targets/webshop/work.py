"""What every handler does: known waits and known compute, sync and async."""

import asyncio
import time

SLEEP_MS = 5.0  # the awaited (or slept) part of a request
SPIN_MS = 2.0  # the computed part


def spin(ms):
    """Burns the CPU for ``ms`` milliseconds of this thread's CPU time."""
    end = time.thread_time() + ms / 1000.0
    n = 0
    while time.thread_time() < end:
        n += 1
    return n


async def fetch_price(item):
    """Awaits SLEEP_MS (a stand-in for a database or HTTP call), then computes SPIN_MS."""
    await asyncio.sleep(SLEEP_MS / 1000.0)
    spin(SPIN_MS)
    return {"id": item, "cents": 100 * item}


async def fetch_stock(item):
    await asyncio.sleep(SLEEP_MS / 1000.0)
    return item % 7


def find(item):
    """The sync version: sleeps SLEEP_MS, then computes SPIN_MS."""
    time.sleep(SLEEP_MS / 1000.0)
    spin(SPIN_MS)
    return {"id": item, "cents": 100 * item}


async def get_item(item):
    """An async handler's body: awaits fetch_price, then gathers two tasks."""
    price = await fetch_price(item)
    stock, again = await asyncio.gather(fetch_stock(item), fetch_stock(item + 1))
    return dict(price, stock=stock + again)


def get_item_sync(item):
    return find(item)
