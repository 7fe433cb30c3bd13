"""Forks a child on request (a line "fork" on stdin); prints "child <pid>".

The child calls ``work`` in a loop, like a prefork server's worker runs its handlers, and first
prints "state <json>": what it inherited of an agent attached to its parent (probes, the
sys.monitoring tool, the agent's modules, the switch interval).
"""

import json
import os
import sys
import time


def say(line):
    # One write(2) per line: parent and child share the pipe, and print() writes its pieces one by
    # one under -u, so their lines could interleave.
    os.write(1, (line + "\n").encode())


def work(n):
    return n + 1


ORIGINAL_CODE = work.__code__
SWITCH_INTERVAL = sys.getswitchinterval()


def inherited():
    tools = []
    if hasattr(sys, "monitoring"):
        tools = [sys.monitoring.get_tool(i) for i in range(6)]
    return {"pid": os.getpid(), "code_swapped": work.__code__ is not ORIGINAL_CODE,
            "code_equal": work.__code__ == ORIGINAL_CODE,
            "kwdefaults": repr(work.__kwdefaults__), "tools": [t for t in tools if t is not None],
            "agent_modules": sorted(m for m in sys.modules if m.startswith("_peeka")),
            "switch_interval_changed": sys.getswitchinterval() != SWITCH_INTERVAL}


print("ready", os.getpid(), flush=True)
children = []
for line in sys.stdin:
    if line.strip() == "fork":
        pid = os.fork()
        if pid == 0:
            say("state " + json.dumps(inherited()))
            while True:
                for i in range(100):
                    work(i)
                time.sleep(0.1)
        children.append(pid)
        say("child %d" % pid)
