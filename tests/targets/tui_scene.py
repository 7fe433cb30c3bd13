"""What the TUI's two targets (tui_target.py, tui_steady_target.py) both run: threads blocked on
locks (one waiting, two in a deadlock cycle) and an asyncio loop whose tasks wait on an Event and a
Queue. The locks are the caller's (its module globals: their names are what the TUI shows)."""

import asyncio
import threading


def _holder(lock, ready):
    with lock:
        ready.set()
        threading.Event().wait()


def _stuck(lock):
    with lock:
        pass


def _deadlock(first, second, both):
    with first:
        both.wait()
        with second:
            pass


def start_lock_threads(held, lock_a, lock_b):
    """"holder" holds ``held`` for ever and "stuck" waits for it (blocked, not a cycle);
    "deadlock-a"/"deadlock-b" each hold one of ``lock_a``/``lock_b`` and wait for the other's."""
    ready = threading.Event()
    threading.Thread(target=_holder, args=(held, ready), name="holder", daemon=True).start()
    ready.wait()
    threading.Thread(target=_stuck, args=(held,), name="stuck", daemon=True).start()
    both = threading.Barrier(2)
    threading.Thread(target=_deadlock, args=(lock_a, lock_b, both), name="deadlock-a", daemon=True).start()
    threading.Thread(target=_deadlock, args=(lock_b, lock_a, both), name="deadlock-b", daemon=True).start()


async def _wait_gate(gate):
    await gate.wait()


async def _consume(jobs):
    while True:
        await jobs.get()


async def _serve(more):
    gate = asyncio.Event()
    jobs = asyncio.Queue()
    tasks = [asyncio.ensure_future(_wait_gate(gate)) for _ in range(3)]
    for i, task in enumerate(tasks):
        task.set_name("waiter-%d" % i)
    tasks.append(asyncio.ensure_future(_consume(jobs)))
    tasks[-1].set_name("consumer")
    for name, coroutine in more:
        tasks.append(asyncio.ensure_future(coroutine()))
        tasks[-1].set_name(name)
    await asyncio.gather(*tasks)


def start_loop(more=()):
    """Thread "loop": tasks "waiter-0".."waiter-2" await one Event, "consumer" awaits a Queue's get,
    and each (name, coroutine function) of ``more`` runs as a task of that name; all gathered."""
    threading.Thread(target=lambda: asyncio.run(_serve(more)), name="loop", daemon=True).start()
