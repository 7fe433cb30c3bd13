"""A gevent app: socket/threading monkeypatched before anything else, greenlets doing work.

    python gevent_target.py     # prints "ready <pid>"; needs gevent importable
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402

import gevent  # noqa: E402

TICKS = {"n": 0}


def tick(n):
    TICKS["n"] += 1
    return n * 2


def worker(name):
    i = 0
    while True:
        tick(i)
        i += 1
        gevent.sleep(0.01)


assert socket.socket is not socket._socketobject if hasattr(socket, "_socketobject") else True
greenlets = [gevent.spawn(worker, "w%d" % i) for i in range(3)]
print("ready", os.getpid(), threading.current_thread().name, flush=True)
gevent.joinall(greenlets)
