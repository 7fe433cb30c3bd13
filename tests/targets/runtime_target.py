"""Target for logger, tasks and source: logs periodically, runs asyncio loops, imports runtime_lib.

    python runtime_target.py LIBDIR LOGFILE [EXTRA_TASKS]

LIBDIR holds runtime_lib.py (a copy the tests may edit). Prints "ready" once every task waits;
exits when stdin closes.

Logging: logger "app.orders" logs INFO "order N" and DEBUG "debug order N" every 20 ms into LOGFILE
(through a FileHandler on "app"); "app.audit" has a SocketHandler (never used), root a NullHandler.
asyncio, in thread "loop-main": a server (asyncio.start_server) with two connected clients, each side
waiting on a read; tasks sleeping, waiting on a Queue, an Event, a Lock held by another task, and on
another task; EXTRA_TASKS more sleeping tasks. A second loop in thread "loop-side" runs one task; a
third, in "loop-busy", a task that never yields (always caught running). runtime_lib's lines are
put in linecache at start, as a traceback through it would.
"""

import asyncio
import linecache
import logging
import logging.handlers
import os
import sys
import threading
import time

sys.path.insert(0, sys.argv[1])
import runtime_lib  # noqa: E402

LOG = logging.getLogger("app.orders")
stop = threading.Event()
ready = threading.Barrier(4)
BASKET = runtime_lib.Basket()


def setup_logging(path):
    app = logging.getLogger("app")
    app.setLevel(logging.INFO)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    app.addHandler(handler)
    logging.getLogger("app.audit").addHandler(logging.handlers.SocketHandler("127.0.0.1", 9))
    logging.getLogger("app.audit").propagate = False
    logging.getLogger().addHandler(logging.NullHandler())


def log_forever():
    number = 0
    while not stop.wait(0.02):
        number += 1
        LOG.info("order %d", number)
        LOG.debug("debug order %d", number)


# ---------------------------------------------------------------- asyncio
async def handle_client(reader, writer):
    await reader.readline()  # clients never send a line: the handler waits on its read
    writer.close()


async def client(port, number):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello %d" % number)
    await reader.read(100)  # the server never answers


async def sleeper(seconds):
    await asyncio.sleep(seconds)


async def consumer(queue):
    while True:
        await queue.get()


async def event_waiter(event):
    await event.wait()


async def lock_holder(lock):
    async with lock:
        await asyncio.sleep(3600)


async def lock_waiter(lock):
    async with lock:
        pass


async def parent(child):
    await child


async def main(extra):
    server = await asyncio.start_server(handle_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lock = asyncio.Lock()
    tasks = [
        asyncio.ensure_future(sleeper(3600)),
        asyncio.ensure_future(consumer(asyncio.Queue())),
        asyncio.ensure_future(event_waiter(asyncio.Event())),
        asyncio.ensure_future(lock_holder(lock)),
    ]
    await asyncio.sleep(0)
    tasks.append(asyncio.ensure_future(lock_waiter(lock)))
    child = asyncio.ensure_future(sleeper(7200))
    tasks += [child, asyncio.ensure_future(parent(child))]
    tasks += [asyncio.ensure_future(client(port, n)) for n in range(2)]
    tasks += [asyncio.ensure_future(sleeper(3600 + n)) for n in range(extra)]
    names = ["sleeper", "consumer", "event-waiter", "lock-holder", "lock-waiter", "child", "parent",
             "client-0", "client-1"]
    for task, name in zip(tasks, names):
        task.set_name(name)
    await asyncio.sleep(0.2)
    ready.wait()
    while not stop.is_set():
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    server.close()


async def side():
    task = asyncio.ensure_future(sleeper(3600))
    task.set_name("side-sleeper")
    await asyncio.sleep(0.1)
    ready.wait()
    while not stop.is_set():
        await asyncio.sleep(0.05)
    task.cancel()


async def busy():
    # Runs without ever yielding to its loop (a blocking call in a coroutine): a task caught running.
    task = asyncio.current_task()
    task.set_name("busy")
    ready.wait()
    while not stop.is_set():
        time.sleep(0.01)


def run_loop(coro):
    asyncio.run(coro)


if __name__ == "__main__":
    setup_logging(sys.argv[2])
    extra = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    threading.Thread(target=log_forever, name="logger-thread", daemon=True).start()
    threading.Thread(target=run_loop, args=(main(extra),), name="loop-main", daemon=True).start()
    threading.Thread(target=run_loop, args=(side(),), name="loop-side", daemon=True).start()
    threading.Thread(target=run_loop, args=(busy(),), name="loop-busy", daemon=True).start()
    ready.wait()
    BASKET.add("apple", 2)
    linecache.getlines(runtime_lib.__file__)  # as a traceback through runtime_lib would have
    print("ready", os.getpid(), flush=True)
    sys.stdin.read()
    stop.set()
