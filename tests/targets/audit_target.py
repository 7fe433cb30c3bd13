"""Target for the read-only and audit tests (tests/integration/test_audit.py).

- logging writes to the file named by argv[1] at INFO (the --audit-log check reads peeka.audit there);
- logger "audit.target" is at WARNING and logs "tick N" at DEBUG every 50 ms: DEBUG lines appear in the
  log file only while its level is changed (the ground truth of a change made or refused);
- the main thread calls scaled(n) for n = 0..9 every 5 ms and counts its calls in CALLS (tt records them).
"""

import logging
import sys
import time

logging.basicConfig(filename=sys.argv[1], level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
LOG = logging.getLogger("audit.target")
LOG.setLevel(logging.WARNING)
CALLS = [0]


def scaled(n):
    CALLS[0] += 1
    return n * 2


print("ready", flush=True)
stop_at = time.monotonic() + 600  # a target a crashed test forgot ends by itself
tick = 0
while time.monotonic() < stop_at:
    tick += 1
    LOG.debug("tick %d", tick)
    for n in range(10):
        scaled(n)
        time.sleep(0.005)
