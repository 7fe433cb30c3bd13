"""A gevent WSGI server (gevent.pywsgi, monkey-patched) with greenlets waiting in every usual way.

    python gevent_wsgi.py     # prints "ready <pid> <port>", runs until killed; needs gevent importable

The app and the greenlets are green_app.py's (shared with eventlet_wsgi.py): "sleeper-N"
(gevent.sleep), "event-waiter" (Event.wait), "queue-getter" (Queue.get), "lock-waiter" (a held
Semaphore), "reader" (recv on a socket whose peer never writes), "client" (requests /work again
and again), "fetcher" (fetch() sleeps 20 ms while burn() computes in another greenlet).
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import socket  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.lock  # noqa: E402
import gevent.queue  # noqa: E402
import green_app  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402


def main():
    server = WSGIServer(("127.0.0.1", 0), green_app.app, log=None)
    server.start()
    port = server.server_port
    a, b = socket.socketpair()
    held = gevent.lock.Semaphore()
    held.acquire()
    spawned = []
    for name, target, args in green_app.greenlets(gevent.sleep, gevent.spawn, gevent.event.Event(),
                                                  gevent.queue.Queue(), held, a, port):
        spawned.append(gevent.spawn(target, *args))
        spawned[-1].name = name
    gevent.sleep(0.1)
    print("ready", os.getpid(), port, flush=True)
    # Runs until killed: a read of stdin here would block the hub (stdin is not cooperative).
    gevent.joinall(spawned)
    del b


if __name__ == "__main__":
    main()
