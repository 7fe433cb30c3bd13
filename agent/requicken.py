"""Fresh code for the functions a traced call ran, where this interpreter leaves code slower after
its instrumentation is taken off (3.12: ``probes._dequickens``).

On 3.12 ``sys.setprofile`` is built on sys.monitoring: while a traced call's profiler is on, every
code object that runs, on any thread, is instrumented, and switching it off never pairs the code's
superinstructions again. Trace and export's traced spans record the code objects they saw; after
each traced tree (export, at the next flush: its spans are per call) and when the stream ends, each
one's function (found by its module and qualified name, without running any of the host's code)
gets an equal, fresh copy. Frames still running keep their code (a server's loop that never
returns stays as it is), and so do nested functions, whose code every function their definition
made shares, and functions a probe or another sys.monitoring tool holds by their code.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Dict, Iterable, Optional, Tuple

MAX_CODES = 4096  # kept per stream: more distinct functions in traced trees than this are left as they are
_MAX_WRAPPED = 20


def needed(engine: Any) -> bool:
    """Whether code taken off instrumentation stays slower here (the engine's backend tried it)."""
    return bool(getattr(engine.backend, "requicken", False))


def function_of(code: types.CodeType, namespace: Dict[str, Any]) -> Optional[types.FunctionType]:
    """The function running ``code``, found from its module's namespace by qualified name through
    dictionaries only (no getattr: that could run the host's descriptors), or None."""
    qualname = getattr(code, "co_qualname", code.co_name)
    if "<" in qualname:  # <locals>, <lambda>, <genexpr>: shared by many functions, or no function
        return None
    parts = qualname.split(".")
    obj = namespace.get(parts[0])
    for part in parts[1:]:
        if not isinstance(obj, type):
            return None
        obj = obj.__dict__.get(part)
    candidates = [obj]
    if isinstance(obj, (staticmethod, classmethod)):
        candidates = [obj.__func__]
    elif isinstance(obj, property):
        candidates = [obj.fget, obj.fset, obj.fdel]
    for func in candidates:
        for _ in range(_MAX_WRAPPED):
            if not isinstance(func, types.FunctionType):
                break
            if func.__code__ is code:
                return func
            func = func.__dict__.get("__wrapped__")  # functools.wraps: the original below
    return None


def instrumented(code: types.CodeType) -> bool:
    """Whether some sys.monitoring tool has local events on ``code`` (they would not follow a copy)."""
    mon = sys.monitoring  # type: ignore[attr-defined]
    return any(mon.get_tool(tool) is not None and mon.get_local_events(tool, code) for tool in range(6))


def refresh(engine: Any, codes: Iterable[Tuple[types.CodeType, Dict[str, Any]]]) -> int:
    """Give each code's function a fresh copy of it, except functions the engine probes (their probe
    holds the code: a paused one would be resumed on code nobody runs) or another tool instruments.
    Returns how many functions got one."""
    done = 0
    probed = engine.by_code
    for code, namespace in codes:
        try:
            if id(code) in probed or instrumented(code):
                continue
            func = function_of(code, namespace)
            if func is not None:
                func.__code__ = code.replace()  # (audited: a hook may refuse it)
                done += 1
        except Exception:
            pass
    return done


def refresh_pending(engine: Any, ran: Dict[int, Tuple[types.CodeType, Dict[str, Any]]]) -> int:
    """``refresh`` what a stream's traced trees added to ``ran`` since the last time, taking it out
    (host threads add to it meanwhile; the stream's end may run this from another thread)."""
    if not needed(engine):
        return 0
    taken = [ran.pop(key, None) for key in list(ran)]
    return refresh(engine, [item for item in taken if item is not None])
