"""Target for the CLI-per-Python checks: calls scaled(n) for n = 0..9 over and over, every 2 ms."""

import sys
import time


def scaled(n):
    return n * 2


print("ready", flush=True)
i = 0
while True:
    scaled(i % 10)
    i += 1
    time.sleep(0.002)
    if i > 10_000_000:
        sys.exit(0)
