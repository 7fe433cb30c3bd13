"""Methods everywhere, for the qualified names Peeka shows (3.9/3.10 code objects have no co_qualname).

    python qualname_target.py

The main thread runs ``Shop.Desk.serve``, which calls ``Shop.Desk.tick`` every 10 ms; ``tick``
calls the static ``Shop.price`` and the property ``Shop.Desk.busy``. A thread "cruncher" burns CPU
in ``Cruncher.crunch``, called from the classmethod ``Cruncher.start``.
"""

import os
import threading
import time


class Cruncher:
    def crunch(self):
        end = time.perf_counter() + 0.05
        n = 0
        while time.perf_counter() < end:
            n += 1
        return n

    @classmethod
    def start(cls):
        me = cls()
        while True:
            me.crunch()
            time.sleep(0.01)


class Shop:
    @staticmethod
    def price(n):
        return n * 1.2

    class Desk:
        def __init__(self):
            self.ticks = 0

        @property
        def busy(self):
            return self.ticks % 2 == 0

        def tick(self):
            self.ticks += 1
            return Shop.price(self.ticks) if self.busy else 0.0

        def serve(self):
            while True:
                self.tick()
                time.sleep(0.01)


if __name__ == "__main__":
    threading.Thread(target=Cruncher.start, name="cruncher", daemon=True).start()
    print("ready %d" % os.getpid(), flush=True)
    Shop.Desk().serve()
