"""Target for `peeka mcp`'s tests: what each tool is checked against is set up here.

- thread "mcp-spinner" burns CPU in spin() (top's hottest function, thread's busiest);
- thread "mcp-sleeper" waits in rest() on an Event that is never set;
- the main thread calls scaled(n) for n = 0..9 over and over, every 2 ms (watch: result == 2 * n);
- CONFIG is a dict to inspect, Recipe a class to find;
- logging.getLogger("mcp.target") is at WARNING (a level to change) and gets a warning "round done"
  every round of ten calls (logger follow).
"""

import logging
import threading
import time

CONFIG = {"answer": 42, "name": "peeka-mcp"}
LOG = logging.getLogger("mcp.target")
LOG.setLevel(logging.WARNING)
LOG.addHandler(logging.NullHandler())  # no stderr output: the harness's pipe would fill and block the loop
LOG.propagate = False


class Recipe:
    """A class for sc/sm/source to find."""

    def bake(self, minutes):
        return minutes * 60


def scaled(n):
    return n * 2


def spin():
    total = 0
    while True:
        for i in range(10_000):
            total += i * i
        total %= 1_000_003


def rest(event):
    event.wait()


threading.Thread(target=spin, name="mcp-spinner", daemon=True).start()
threading.Thread(target=rest, args=(threading.Event(),), name="mcp-sleeper", daemon=True).start()
print("ready", flush=True)
stop_at = time.monotonic() + 600  # a target a crashed test forgot ends by itself
while time.monotonic() < stop_at:
    for n in range(10):
        scaled(n)
        time.sleep(0.002)
    LOG.warning("round done")  # every ~20 ms: records for logger --follow
