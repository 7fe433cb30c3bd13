"""A target that made itself non-dumpable (prctl PR_SET_DUMPABLE 0), as hardened services do:
only a tracer with CAP_SYS_PTRACE may attach to it. Prints "ready <pid>"."""

import ctypes
import os
import time

PR_SET_DUMPABLE = 4
ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
print("ready", os.getpid(), flush=True)
while True:
    time.sleep(0.1)
