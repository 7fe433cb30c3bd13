"""Many parked threads beside a few computing ones: the shape that made `thread` wait on the GIL.

    python many_threads.py PARKED BUSY

PARKED threads wait on an Event; BUSY threads ("busy-N") compute without end, so the GIL is always
wanted. Prints "ready <pid>" once every thread has started, then runs until killed.
"""

import os
import sys
import threading
import time

PARKED, BUSY = int(sys.argv[1]), int(sys.argv[2])
never = threading.Event()


def spin():
    x = 0
    while True:
        x += 1


for i in range(PARKED):
    threading.Thread(target=never.wait, daemon=True, name="parked-%d" % i).start()
for i in range(BUSY):
    threading.Thread(target=spin, daemon=True, name="busy-%d" % i).start()
print("ready %d" % os.getpid(), flush=True)
while True:
    time.sleep(1)
