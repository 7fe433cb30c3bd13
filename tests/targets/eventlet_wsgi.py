"""An eventlet WSGI server (eventlet.wsgi, monkey-patched) with greenthreads waiting in every usual way.

    python eventlet_wsgi.py     # prints "ready <pid> <port>", runs until killed; needs eventlet importable

The app and the greenthreads are green_app.py's (shared with gevent_wsgi.py): "sleeper-N"
(eventlet.sleep), "event-waiter" (Event.wait), "queue-getter" (Queue.get), "lock-waiter" (a held
Semaphore), "reader" (recv on a socket whose peer never writes), "client" (requests /work again
and again), "fetcher" (fetch() sleeps 20 ms while burn() computes in another greenthread); and
the server's accept loop and connection handlers.
"""

import eventlet

eventlet.monkey_patch()

import os  # noqa: E402
import socket  # noqa: E402

import eventlet.event  # noqa: E402
import eventlet.queue  # noqa: E402
import eventlet.semaphore  # noqa: E402
import eventlet.wsgi  # noqa: E402
import green_app  # noqa: E402


def main():
    listener = eventlet.listen(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    spawned = [eventlet.spawn(eventlet.wsgi.server, listener, green_app.app, log_output=False)]
    a, b = socket.socketpair()
    held = eventlet.semaphore.Semaphore(1)
    held.acquire()
    for name, target, args in green_app.greenlets(eventlet.sleep, eventlet.spawn, eventlet.event.Event(),
                                                  eventlet.queue.Queue(), held, a, port):
        spawned.append(eventlet.spawn(target, *args))
        spawned[-1].name = name
    eventlet.sleep(0.1)
    print("ready", os.getpid(), port, flush=True)
    for g in spawned:  # runs until killed
        g.wait()
    del b


if __name__ == "__main__":
    main()
