"""Forks a child on request (a line "fork" on stdin); prints "child <pid>"."""

import os
import sys
import time

print("ready", os.getpid(), flush=True)
children = []
for line in sys.stdin:
    if line.strip() == "fork":
        pid = os.fork()
        if pid == 0:
            # The child keeps running Python code, like a prefork server's worker.
            while True:
                time.sleep(0.1)
        children.append(pid)
        print("child", pid, flush=True)
