"""Which lock a blocked thread waits for, who holds it, and lock-ordering deadlocks between threads.

A thread blocked in ``lock.acquire()`` or ``with lock:`` shows, as its innermost Python frame, the
line that asked for the lock; the lock itself sits on the interpreter's value stack, out of reach.
So the current line's bytecode up to the instruction being executed is read back: every name it
loaded (``lock_a``, ``self.accounts._lock``) is looked up statically (instance and class dicts, no
properties run) and the locked lock among them is the one waited for. Waits inside ``threading``
(Condition.wait, Event.wait, Semaphore, Barrier, Thread.join, the pure-Python RLock) are named by
that frame's ``self``. An RLock records its owner (the C RLock says so in its repr), so
waiter -> lock -> owner edges form a graph whose cycles are lock-ordering deadlocks. A plain Lock
has no owner: its holder is reported unknown.
"""

from __future__ import annotations

import dis
import re
import sys
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple

from . import compat

_LOCK = type(threading.Lock())
_RLOCKS = tuple({type(threading.RLock()), getattr(threading, "_PyRLock", type(threading.RLock()))})
_THREADING_FILE = getattr(threading, "__file__", None) or ""
_OWNER = re.compile(r"owner=(\d+) count=(\d+)")

_LOCAL_LOADS = {"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_AND_CLEAR", "LOAD_FAST_BORROW",
                "LOAD_FAST_LOAD_FAST", "LOAD_FAST_BORROW_LOAD_FAST_BORROW", "LOAD_DEREF", "LOAD_CLASSDEREF"}
_GLOBAL_LOADS = {"LOAD_GLOBAL", "LOAD_NAME"}
_ATTR_LOADS = {"LOAD_ATTR", "LOAD_METHOD"}
_MISSING = object()


def is_lock(obj: Any) -> bool:
    return type(obj) is _LOCK or isinstance(obj, _RLOCKS)


def lock_facts(lock: Any) -> Dict[str, Any]:
    """``{id, type, locked, owner, count}``: owner (a thread ident) and count only for an RLock."""
    facts: Dict[str, Any] = {"id": id(lock), "type": type(lock).__name__, "locked": None, "owner": None,
                             "count": None}
    if type(lock) is _LOCK:
        facts["type"] = "Lock"
        facts["locked"] = lock.locked()
        return facts
    facts["type"] = "RLock"
    owner = getattr(lock, "_owner", _MISSING)  # threading._PyRLock keeps it as attributes
    if owner is not _MISSING:
        facts["owner"] = owner
        facts["count"] = getattr(lock, "_count", None)
        facts["locked"] = owner is not None
        return facts
    text = repr(lock)  # the C RLock's repr is written in C: "<locked _thread.RLock object owner=N count=N ...>"
    facts["locked"] = text.startswith("<locked")
    match = _OWNER.search(text)
    if match and facts["locked"]:
        facts["owner"], facts["count"] = int(match.group(1)), int(match.group(2))
    return facts


def _static_attr(obj: Any, name: str) -> Any:
    """``obj.name`` from instance or class dicts only: no property, no __getattr__ runs."""
    try:
        namespace = object.__getattribute__(obj, "__dict__")
    except Exception:
        namespace = None
    if isinstance(namespace, dict) and name in namespace:
        return namespace[name]
    for klass in type(obj).__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return _MISSING


def _line_number(ins: Any) -> Optional[int]:
    line = getattr(ins, "line_number", None)  # 3.13+: starts_line became a bool
    if line is not None:
        return line if ins.starts_line else None
    starts = ins.starts_line
    return starts if type(starts) is int and not isinstance(starts, bool) else None


def loaded_names(frame: Any) -> List[Tuple[str, Any]]:
    """``[(name, value)]`` for every name and attribute chain loaded on the frame's current line so far."""
    code, lasti, line = frame.f_code, frame.f_lasti, frame.f_lineno
    try:
        local_values = dict(frame.f_locals)
    except Exception:
        local_values = {}
    builtins = frame.f_globals.get("__builtins__", {})
    builtins = builtins if isinstance(builtins, dict) else getattr(builtins, "__dict__", {})
    found: List[Tuple[str, Any]] = []
    current: Optional[Tuple[str, Any]] = None
    at_line: Optional[int] = None
    for ins in dis.get_instructions(code):
        if ins.offset > lasti:
            break
        number = _line_number(ins)
        if number is not None:
            at_line = number
        if at_line != line:
            current = None
            continue
        op = ins.opname
        if op in _LOCAL_LOADS:
            names = ins.argval if isinstance(ins.argval, tuple) else (ins.argval,)
            for name in names:
                current = (str(name), local_values.get(name, _MISSING))
                found.append(current)
        elif op in _GLOBAL_LOADS:
            name = ins.argval
            value = frame.f_globals.get(name, _MISSING)
            current = (name, builtins.get(name, _MISSING) if value is _MISSING else value)
            found.append(current)
        elif op in _ATTR_LOADS and current is not None and current[1] is not _MISSING:
            current = ("%s.%s" % (current[0], ins.argval), _static_attr(current[1], ins.argval))
            found.append(current)
        else:
            current = None
    return [(name, value) for name, value in found if value is not _MISSING]


def _frames(frame: Any) -> Iterator[Any]:
    while frame is not None:
        yield frame
        frame = frame.f_back


def where(frame: Any) -> Dict[str, Any]:
    code = frame.f_code
    return {"file": code.co_filename, "line": frame.f_lineno, "function": compat.qualname(code, frame.f_globals)}


def waiting_on(ident: int, frame: Any) -> Optional[Dict[str, Any]]:
    """What the thread ``ident`` (innermost frame ``frame``) waits for, or None when nothing is known.

    ``{kind, at, name?, lock?, target?}``: kind is lock, condition, event, semaphore, barrier or
    join; ``at`` is the frame that asked (the caller, when the wait is inside threading).
    """
    threading_frames = []
    user = None
    for f in _frames(frame):
        if f.f_code.co_filename == _THREADING_FILE:
            threading_frames.append(f)
            continue
        user = f
        break
    if threading_frames:
        found = _threading_wait(threading_frames[::-1])  # outermost first: Event.wait before Condition.wait
        if found is not None:
            found["at"] = where(user if user is not None else threading_frames[-1])
            return found
        return None
    if user is None:
        return None
    for name, value in reversed(loaded_names(user)):
        if is_lock(value):
            facts = lock_facts(value)
            if facts["locked"] and facts["owner"] != ident:
                return {"kind": "lock", "name": name, "lock": facts, "at": where(user), "object": value}
    return None


def _threading_wait(frames: List[Any]) -> Optional[Dict[str, Any]]:
    for f in frames:
        owner = f.f_locals.get("self")
        func = f.f_code.co_name
        if isinstance(owner, threading.Event):
            return {"kind": "event", "name": _describe(owner)}
        if isinstance(owner, threading.Condition):
            if func in ("wait", "wait_for"):
                return {"kind": "condition", "name": _describe(owner), "lock": lock_facts(owner._lock)}
            return {"kind": "lock", "name": _describe(owner) + "._lock", "lock": lock_facts(owner._lock),
                    "object": owner._lock}
        if isinstance(owner, threading.Semaphore):
            return {"kind": "semaphore", "name": _describe(owner)}
        if isinstance(owner, threading.Barrier):
            return {"kind": "barrier", "name": _describe(owner)}
        if isinstance(owner, threading.Thread):
            return {"kind": "join", "name": owner.name, "target": owner.ident}
        if isinstance(owner, _RLOCKS):
            return {"kind": "lock", "name": _describe(owner), "lock": lock_facts(owner), "object": owner}
    return None


def _describe(obj: Any) -> str:
    return "%s at 0x%x" % (type(obj).__name__, id(obj))


def global_names(objects: List[Any]) -> Dict[int, str]:
    """``{id: "module.NAME"}`` for those of ``objects`` a module holds at its top level."""
    wanted = {id(o) for o in objects}
    names: Dict[int, str] = {}
    for module_name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for key, value in list(namespace.items()):
            if id(value) in wanted and id(value) not in names:
                names[id(value)] = "%s.%s" % (module_name, key)
        if len(names) == len(wanted):
            break
    return names


def holding_frame(frame: Any, lock: Any) -> Optional[Dict[str, Any]]:
    """The outermost frame of a holder's stack that refers to ``lock`` (a local or a global it names,
    or an attribute of one, such as ``self.lock``): where it most likely took it."""
    found = None
    for f in _frames(frame):
        if _reference(f, lock):
            found = f
    return where(found) if found is not None else None


def infer_holder(frames: Dict[int, Any], lock: Any, waiters: Any) -> Optional[int]:
    """The thread most likely holding a lock that records no owner, or None when it is not clear.

    Among the threads not waiting for it: the only one with the lock in a frame's locals (or an
    attribute of a local: ``self.lock``); failing any, the only one whose code names it as a global.
    """
    strength = {i: max([_reference(f, lock) for f in _frames(top)] or [0])
                for i, top in frames.items() if i not in waiters}
    for level in (2, 1):
        found = [i for i, s in strength.items() if s == level]
        if found:
            return found[0] if len(found) == 1 else None
    return None


def _reference(frame: Any, lock: Any) -> int:
    """2: a local (or an attribute of one) is ``lock``; 1: a global the code names is (or holds) it."""
    if frame.f_code.co_name != "<module>":  # a module's top level: its locals are all its globals
        try:
            local_values = list(frame.f_locals.values())
        except Exception:
            local_values = []
        if _holds(local_values, lock):
            return 2
    names = frame.f_code.co_names
    if _holds([frame.f_globals[n] for n in names if n in frame.f_globals], lock):
        return 1
    return 0


def _holds(values: List[Any], lock: Any) -> bool:
    for value in values:
        if value is lock:
            return True
        try:
            namespace = object.__getattribute__(value, "__dict__")
        except Exception:
            continue
        if isinstance(namespace, dict) and any(v is lock for v in list(namespace.values())):
            return True
    return False


def cycles(edges: Dict[int, int]) -> List[List[int]]:
    """Cycles in a waiter -> holder graph (each thread waits for at most one lock), each listed once."""
    out: List[List[int]] = []
    seen_cycles = set()
    for start in edges:
        path: List[int] = []
        on_path: Dict[int, int] = {}
        node: Optional[int] = start
        while node is not None and node not in on_path:
            on_path[node] = len(path)
            path.append(node)
            node = edges.get(node)
        if node is None:
            continue
        cycle = path[on_path[node]:]
        key = frozenset(cycle)
        if key not in seen_cycles:
            seen_cycles.add(key)
            low = cycle.index(min(cycle))
            out.append(cycle[low:] + cycle[:low])
    return out
