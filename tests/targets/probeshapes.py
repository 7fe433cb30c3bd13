"""Functions of every shape the probe engine handles, called in a loop by probe_target.py."""

import threading
import time
import weakref

FACTOR = 3


def plain(a, b):
    return a + b


def rebinds(text):
    text = text.upper()  # the body rebinds its parameter: watch must show what it received
    return text


def rebinds_in_closure(count):
    def bump():
        nonlocal count  # rebinds the parameter from another code object
        count += 1

    bump()
    return count


def with_defaults(a, b=2, *rest, scale=10, **extra):
    return (a + b + sum(rest)) * scale + len(extra)


def make_closure(offset):
    def shifted(x):
        return x + offset  # a closure: its free variable is not a parameter

    return shifted


shifted = make_closure(100)


def fails(n):
    if n % 2:
        raise ValueError("odd %d" % n)
    return n // 2


def outer(n):
    return middle(n) + 1


def middle(n):
    return plain(n, FACTOR)


def nested(n):
    if n == 0:
        time.sleep(0.004)  # calls stay in progress while listeners come and go
        return 0
    return nested(n - 1) + 1


class Payload:
    """An argument whose instances are counted while alive (LIVE)."""


LIVE = weakref.WeakSet()


def abandoned(payload):
    yield 1  # the caller stops here: the generator is closed while suspended outside any try
    yield 2


def take_one():
    payload = Payload()
    LIVE.add(payload)
    for value in abandoned(payload):
        return value


def short_lived(n):
    return n  # on a thread that ends right after (a threaded server's per-request thread)


def spawner(stop):
    i = 0
    while not stop.wait(0.02):
        i += 1
        threading.Thread(target=short_lived, args=(i,), name="short-%d" % i, daemon=True).start()


def worker(stop):
    i = 0
    while not stop.wait(0.005):
        i += 1
        plain(i, 2)
        rebinds("v%d" % i)
        rebinds_in_closure(i)
        with_defaults(i, 1, 5, 6, scale=2, tag="t")
        shifted(i)
        try:
            fails(i)
        except ValueError:
            pass
        outer(i)
        nested(3)
        for _ in range(5):
            take_one()


def start():
    stop = threading.Event()
    thread = threading.Thread(target=worker, args=(stop,), name="probe-worker", daemon=True)
    thread.start()
    threading.Thread(target=spawner, args=(stop,), name="probe-spawner", daemon=True).start()
    return stop
