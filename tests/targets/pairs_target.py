"""A target whose hot function's bytecode can be compared with a fresh copy's, for the probes
that leave a function as they found it.

    python pairs_target.py

The main thread calls ``handle`` as fast as it can, which calls ``leaf``. For each line ``check`` on stdin it prints one
JSON line: the instructions ``leaf`` runs now, as the interpreter quickened them (``dis`` with
adaptive=True where there is such a form), and those of a fresh copy of its code, both warmed by
the same calls; and whether ``leaf.__code__`` is the code it started with.
"""

import dis
import json
import os
import sys
import threading
import types


def leaf(a):
    b = a + 1
    c = b
    return c


def handle(a):
    for _ in range(10):
        a = leaf(a)
    return a


ORIGINAL = leaf.__code__


def shape(func):
    """The opcodes of ``func`` as it runs now, superinstructions included."""
    for i in range(200):  # warm: specialized forms settle the same way for both
        func(i)
    kw = {"adaptive": True} if sys.version_info >= (3, 11) else {}
    return [i.opname for i in dis.get_instructions(func, **kw)]


def commands():
    for line in sys.stdin:
        if line.strip() == "check":
            fresh = types.FunctionType(leaf.__code__.replace(), globals(), "leaf")
            print(json.dumps({"now": shape(leaf), "fresh": shape(fresh),
                              "same_code": leaf.__code__ is ORIGINAL}), flush=True)


def main():
    threading.Thread(target=commands, daemon=True).start()
    print("ready %d" % os.getpid(), flush=True)
    x = 0
    while True:
        for _ in range(100):
            x = handle(x) & 0xFFFF


main()
