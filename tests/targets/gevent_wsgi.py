"""A gevent WSGI server (gevent.pywsgi, monkey-patched) with greenlets waiting in every usual way.

    python gevent_wsgi.py     # prints "ready <pid> <port>", runs until killed; needs gevent importable

Greenlets: "sleeper-N" (gevent.sleep), "event-waiter" (Event.wait), "queue-getter" (Queue.get),
"lock-waiter" (a held Semaphore), "reader" (recv on a socket whose peer never writes), the server's
accept loop, "fetcher" (calls fetch(), which sleeps 20 ms inside: a call across greenlet switches),
and "client", which requests /work (handle_work computes 15 ms, longer than the 5 ms switch
interval so an in-process sampler can catch it; measured with
time.thread_time into CPU_NS) and sleeps 5 ms, again and again.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.lock  # noqa: E402
import gevent.queue  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

CPU_NS = [0]
REQUESTS = [0]
EVENT = gevent.event.Event()
QUEUE = gevent.queue.Queue()
HELD = gevent.lock.Semaphore()
HELD.acquire()


def handle_work():
    started = time.thread_time_ns()
    end = time.perf_counter() + 0.015
    n = 0
    while time.perf_counter() < end:
        n += 1
    CPU_NS[0] += time.thread_time_ns() - started
    return n


def app(environ, start_response):
    body = b"%d" % handle_work() if environ["PATH_INFO"] == "/work" else b"ok"
    REQUESTS[0] += 1
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def fetch():
    """Switches away mid-call: 20 ms asleep while the other greenlets run on this thread."""
    gevent.sleep(0.02)
    return len(str(REQUESTS[0]))


def fetcher():
    while True:
        fetch()
        gevent.sleep(0.03)


def sleeper():
    while True:
        gevent.sleep(0.05)


def event_waiter():
    EVENT.wait()


def queue_getter():
    QUEUE.get()


def lock_waiter():
    HELD.acquire()


def reader(sock):
    sock.recv(100)


def client(port):
    conn = socket.create_connection(("127.0.0.1", port))
    request = b"GET /work HTTP/1.1\r\nHost: x\r\n\r\n"
    while True:
        conn.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1]:
            data += conn.recv(4096)
        gevent.sleep(0.005)


def main():
    server = WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    port = server.server_port
    a, b = socket.socketpair()
    spawned = [gevent.spawn(sleeper) for _ in range(3)]
    for n, g in enumerate(spawned):
        g.name = "sleeper-%d" % n
    for name, target, args in (("event-waiter", event_waiter, ()), ("queue-getter", queue_getter, ()),
                               ("lock-waiter", lock_waiter, ()), ("reader", reader, (a,)),
                               ("client", client, (port,)), ("fetcher", fetcher, ())):
        g = gevent.spawn(target, *args)
        g.name = name
        spawned.append(g)
    gevent.sleep(0.1)
    print("ready", os.getpid(), port, flush=True)
    # Runs until killed: a read of stdin here would block the hub (stdin is not cooperative).
    gevent.joinall(spawned)
    del b


if __name__ == "__main__":
    main()
