"""A target whose hot function's bytecode can be compared with a fresh copy's, for the probes
that leave a function as they found it.

    python pairs_target.py

The main thread calls ``handle`` as fast as it can, which calls ``leaf`` and a nested function
``bump``. For each line ``check`` on stdin it prints one JSON line: the instructions ``leaf`` runs
now, as the interpreter quickened them (``dis`` with adaptive=True where there is such a form), and
those of a fresh copy of its code, both warmed by the same calls; the same for ``bump`` (under
"nested"); where the superinstructions are in the code of ``main``, whose frame never returns, and
where a fresh copy of it has them (under "loop"); and whether ``leaf.__code__`` is the code it
started with.
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


def make_bump(step):
    def bump(a):
        b = a + step
        c = b
        return c
    return bump


bump = make_bump(1)


def handle(a):
    for _ in range(10):
        a = leaf(a)
    return bump(a)


ORIGINAL = leaf.__code__


def shape(func):
    """The opcodes of ``func`` as it runs now, superinstructions included."""
    for i in range(200):  # warm: specialized forms settle the same way for both
        func(i)
    kw = {"adaptive": True} if sys.version_info >= (3, 11) else {}
    return [i.opname for i in dis.get_instructions(func, **kw)]


def pairs(code):
    """Where ``code``'s superinstructions are now (3.12 has them; other versions: none)."""
    kw = {"adaptive": True} if sys.version_info >= (3, 11) else {}
    return [(i.offset, i.opname) for i in dis.get_instructions(code, **kw) if "__" in i.opname]


def commands():
    for line in sys.stdin:
        if line.strip() == "check":
            fresh = types.FunctionType(leaf.__code__.replace(), globals(), "leaf")
            fresh_bump = types.FunctionType(bump.__code__.replace(), globals(), "bump", None, bump.__closure__)
            print(json.dumps({"now": shape(leaf), "fresh": shape(fresh),
                              "nested": {"now": shape(bump), "fresh": shape(fresh_bump)},
                              "loop": {"now": pairs(main.__code__), "fresh": pairs(main.__code__.replace())},
                              "same_code": leaf.__code__ is ORIGINAL}), flush=True)


def main():
    threading.Thread(target=commands, daemon=True).start()
    print("ready %d" % os.getpid(), flush=True)
    x = 0
    while True:
        for _ in range(100):
            x = handle(x + 1) & 0xFFFF  # (x + 1: a pair of instructions in a frame that never returns)


main()
