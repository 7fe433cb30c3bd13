"""A green-thread WSGI server under load, for tests/bench_green.py: gevent's or eventlet's.

    python green_bench.py gevent|eventlet    # prints "ready <pid> <port>", runs until killed

Four client greenlets in the same process keep requesting /light over keep-alive connections; the
view (``light_view``) makes 40 small calls with a switch to the hub (``sleep(0)``) in the middle,
so a traced or watched call spans a greenlet switch. REQUESTS counts the answers.
"""

import sys

LIB = sys.argv[1]
if LIB == "gevent":
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from gevent.pywsgi import WSGIServer

    sleep, spawn = gevent.sleep, gevent.spawn
else:
    import eventlet

    eventlet.monkey_patch()
    import eventlet.wsgi

    sleep, spawn = eventlet.sleep, eventlet.spawn

import os  # noqa: E402
import socket  # noqa: E402

import green_app  # noqa: E402  (its client greenlet)

REQUESTS = [0]


def price(n):
    return n * 3 + 1


def work():
    return sum(price(n) for n in range(20))


def light_view():
    total = work()
    sleep(0)  # the hub runs the other greenlets: the call spans a switch
    return total + work()


def app(environ, start_response):
    body = b"%d" % light_view()
    REQUESTS[0] += 1
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def main():
    # Accepted sockets inherit TCP_NODELAY: without it the server's header and body writes wait
    # for the client's delayed ACK (~100 requests/s in all).
    listener = socket.socket()
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    if LIB == "gevent":
        WSGIServer(listener, app, log=None).start()
        workers = []
    else:
        workers = [spawn(eventlet.wsgi.server, listener, app, log_output=False)]
    workers += [spawn(green_app.client, port, sleep, "/light", None) for _ in range(4)]
    sleep(0.1)
    print("ready", os.getpid(), port, flush=True)
    for w in workers:
        w.join() if LIB == "gevent" else w.wait()


if __name__ == "__main__":
    main()
