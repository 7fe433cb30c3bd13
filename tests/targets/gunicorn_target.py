"""gunicorn, pre-fork: this process is the master, one worker of the given class serves a WSGI app.

    python gunicorn_target.py PORTFILE PIDFILE sync|gthread
        # prints "ready <pid> <port>" when a worker is up; each worker the master forks (the first,
        # and any it starts again) appends its pid to PIDFILE
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gunicorn.app.base import BaseApplication  # noqa: E402
from webshop.wsgiapp import application  # noqa: E402

PORTFILE, PIDFILE, WORKER = sys.argv[1:4]


def when_ready(server):
    port = server.LISTENERS[0].sock.getsockname()[1]
    with open(PORTFILE, "w") as f:
        f.write(str(port))


def post_fork(server, worker):
    with open(PIDFILE, "a") as f:
        f.write("%d\n" % os.getpid())


def post_worker_init(worker):
    print("ready %d %s" % (os.getppid(), open(PORTFILE).read()), flush=True)


class App(BaseApplication):
    def load_config(self):
        for key, value in {"bind": "127.0.0.1:0", "workers": 1, "worker_class": WORKER, "threads": 2,
                           "when_ready": when_ready, "post_fork": post_fork, "post_worker_init": post_worker_init,
                           "loglevel": "warning", "graceful_timeout": 2, "timeout": 60}.items():
            self.cfg.set(key, value)

    def load(self):
        return application


App().run()
