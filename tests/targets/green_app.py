"""What both green-thread servers run (gevent_wsgi.py, eventlet_wsgi.py), given their library's
primitives: the WSGI app, greenlets waiting in every usual way, and a call that switches greenlets
mid-call with known work done by another greenlet meanwhile (the ground truth of trace and watch).

- ``app``: /work runs ``handle_work``, 15 ms of computing (longer than the 5 ms switch interval, so
  an in-process sampler can catch it), its CPU measured with time.thread_time into CPU_NS;
- ``client`` requests /work again and again, 5 ms apart;
- ``Fetches.loop`` spawns ``burn`` (BURN_S seconds of CPU in a greenlet of its own, which the hub
  starts as soon as the caller switches out) and then calls ``fetch``, which sleeps FETCH_SLEEP_S
  through the library's cooperative sleep. Each fetch is recorded in ``records`` as (epoch ns at
  its start, its wall ns measured inside it, its wall ns as the caller measured around it, CPU ns
  burn used meanwhile): a probe's cost of the call lies between the two walls.
"""

import collections
import socket
import time

FETCH_SLEEP_S = 0.02
BURN_S = 0.008
CPU_NS = [0]  # handle_work's CPU
REQUESTS = [0]
FETCHES = None  # the Fetches of the running server


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


def sleeper(sleep):
    while True:
        sleep(0.05)


def event_waiter(event):
    event.wait()


def queue_getter(queue):
    queue.get()


def lock_waiter(held):
    held.acquire()


def reader(sock):
    sock.recv(100)


def client(port, sleep, path="/work", pause=0.005):
    """Requests ``path`` again and again over one keep-alive connection, ``pause`` s apart (None: none)."""
    conn = socket.create_connection(("127.0.0.1", port))
    request = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode()
    while True:
        conn.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1]:
            data += conn.recv(4096)
        if pause is not None:
            sleep(pause)


def burn(seconds):
    """Computes until this thread has used ``seconds`` of CPU."""
    end = time.thread_time() + seconds
    n = 0
    while time.thread_time() < end:
        n += 1
    return n


def fetch(sleep, seconds):
    """Switches away mid-call: asleep while the other greenlets run on this thread. Returns its
    own wall ns, from its first line to its last (a probe's interval holds this one)."""
    started = time.perf_counter_ns()
    sleep(seconds)
    return time.perf_counter_ns() - started


class Fetches:
    def __init__(self, sleep, spawn):
        self.sleep = sleep
        self.spawn = spawn
        self.records = collections.deque(maxlen=200)
        self.burnt = [0]

    def _burn(self):
        started = time.thread_time_ns()
        burn(BURN_S)
        self.burnt[0] += time.thread_time_ns() - started

    def loop(self):
        while True:
            self.spawn(self._burn)
            epoch, burnt = time.time_ns(), self.burnt[0]
            started = time.perf_counter_ns()
            inner = fetch(self.sleep, FETCH_SLEEP_S)
            wall = time.perf_counter_ns() - started
            self.records.append((epoch, inner, wall, self.burnt[0] - burnt))
            self.sleep(0.03)


def greenlets(sleep, spawn, event, queue, held, sock, port):
    """(name, function, args) of every greenlet a server spawns, each waiting its own way."""
    global FETCHES
    FETCHES = Fetches(sleep, spawn)
    out = [("sleeper-%d" % n, sleeper, (sleep,)) for n in range(3)]
    out += [("event-waiter", event_waiter, (event,)), ("queue-getter", queue_getter, (queue,)),
            ("lock-waiter", lock_waiter, (held,)), ("reader", reader, (sock,)),
            ("client", client, (port, sleep)), ("fetcher", FETCHES.loop, ())]
    return out
