"""A host loop that keeps a heartbeat while clients abuse its agent.

    heartbeat_target.py GAP_FILE

Every 5 ms the main thread wakes and calls ``hot`` 100 times (about 20k calls/s, for a stream that
produces more than a slow reader takes); twice a second it writes the longest gap between two
wake-ups so far (in ms) to GAP_FILE.
"""

import os
import sys
import time


def hot(i):
    return i * 2


def main():
    gap_file = sys.argv[1]
    print("ready", os.getpid(), flush=True)
    last = time.monotonic()
    longest = 0.0
    written = last
    while True:
        time.sleep(0.005)
        now = time.monotonic()
        longest = max(longest, now - last)
        last = now
        for i in range(100):
            hot(i)
        if now - written > 0.5:
            with open(gap_file + ".tmp", "w") as f:
                f.write("%.1f" % (longest * 1000))
            os.replace(gap_file + ".tmp", gap_file)
            written = now


main()
