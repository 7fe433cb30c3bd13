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

Where it can (``InPlace``, tried on a dummy first), the pairs are put back in the code object
itself instead: then frames still running (a server's loop) and nested functions get them too, and
no function's ``__code__`` changes.
"""

from __future__ import annotations

import operator
import sys
import threading
import types
import weakref
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Tuple

MAX_CODES = 4096  # kept per stream: more distinct functions in traced trees than this are left as they are
_MAX_WRAPPED = 20
_MAX_DEPTH = 200  # frames per thread whose code is repaired (stacks_repaired)
_FIRST_INSTRUMENTED = 237  # 3.12's MIN_INSTRUMENTED_OPCODE: an opcode at or above it is instrumented


class Pair(NamedTuple):
    """One superinstruction of a freshly quickened copy: its byte offset, its opcode, and the plain
    opcodes of its two halves (what an instrumented-then-cleared code holds there instead)."""
    offset: int
    opcode: int
    first: int
    second: int


class InPlace:
    """Puts 3.12's superinstructions back into a code object's own adaptive bytecode, where a
    freshly quickened copy of it has them and the code holds the two plain halves.

    The copy's bytes come from the interpreter itself (``code.replace()`` quickens), so which pairs
    exist is CPython's decision, not ours. Each code's bytes are first read through ctypes at the
    end of the object and compared with ``code._co_code_adaptive``: a layout that differs writes
    nothing. A code with any instrumented instruction or local events is skipped (a superinstruction
    there could hide a line event). Each write checks both halves just before it, with no call or
    backward jump between (no other thread runs there), so an instruction another thread
    instrumented meanwhile is left alone. Only the first half's opcode byte changes, as in
    CPython's own quickening, so a frame paused at either half runs on correctly."""

    def __init__(self) -> None:
        import ctypes
        import dis

        self.dis = dis
        names = getattr(dis, "_all_opname", None) or []
        self.pairs: Dict[int, Tuple[int, int]] = {}  # superinstruction -> its halves' plain opcodes
        for op, name in enumerate(names):
            halves = name.split("__") if name else []
            if len(halves) == 2 and halves[0] in dis.opmap and halves[1] in dis.opmap:
                self.pairs[op] = (dis.opmap[halves[0]], dis.opmap[halves[1]])
        self.ubyte = ctypes.c_ubyte
        self.header = types.CodeType.__basicsize__  # 3.12: where co_code_adaptive starts
        # id(code) -> (weakref to it, its pairs, a getter of the opcodes at its instructions' starts)
        # No lock: two threads repairing one code write the same bytes, and a lock held across a
        # fork would hang the child's reset.
        self.known: Dict[int, Tuple[Any, List[Pair], Any]] = {}

    def _pairs(self, code: types.CodeType) -> Tuple[List[Pair], Any]:
        found = self.known.get(id(code))
        if found is not None and found[0]() is code:
            return found[1], found[2]
        copy = code.replace()
        fresh = copy._co_code_adaptive  # type: ignore[attr-defined]
        pairs = self.pairs
        out = [Pair(offset, fresh[offset], *pairs[fresh[offset]])
               for offset in range(0, len(fresh) - 2, 2) if fresh[offset] in pairs]
        if len(fresh) != len(code._co_code_adaptive):  # type: ignore[attr-defined]
            out = []
        starts = [ins.offset for ins in self.dis.get_instructions(copy)] if out else []
        opcodes = operator.itemgetter(*starts, 0, 0)  # (two more: always a tuple back)
        if len(self.known) >= MAX_CODES:
            self.known.clear()
        self.known[id(code)] = (weakref.ref(code), out, opcodes)
        return out, opcodes

    def repair(self, code: types.CodeType) -> int:
        """Put back the pairs ``code`` lost; how many (0 when it lost none or cannot be touched)."""
        pairs, opcodes = self._pairs(code)
        if not pairs or instrumented(code):
            return 0
        now = code._co_code_adaptive  # type: ignore[attr-defined]
        if max(opcodes(now)) >= _FIRST_INSTRUMENTED:
            return 0  # instrumented now: CPython keeps such code split (a line event could hide)
        buf = (self.ubyte * len(now)).from_address(id(code) + self.header)
        if bytes(buf) != now:
            return 0  # not the layout this was tried on
        done = 0
        known = self.pairs
        for offset, opcode, first, second in pairs:
            # Both halves as an instrumented-then-cleared code holds them (the second may be
            # a pair's first half again), checked with nothing between check and write that
            # lets another thread run.
            if buf[offset] == first and (buf[offset + 2] == second or known.get(buf[offset + 2], (0,))[0] == second):
                buf[offset] = opcode
                done += 1
        return done


def _try_in_place() -> Optional[InPlace]:
    """An ``InPlace`` that put a dummy's lost pairs back exactly as a fresh copy has them and left
    it computing the same, or None (no ctypes, another layout, nothing lost)."""
    try:
        mon = sys.monitoring  # type: ignore[attr-defined]
        tool = next(t for t in (4, 3, 2, 5, 1, 0) if mon.get_tool(t) is None)
        namespace: Dict[str, Any] = {}
        exec("def _peeka_pairs(a):\n    b = a + 1\n    c = b\n    return c + 2\n", namespace)
        dummy = namespace["_peeka_pairs"]
        code = dummy.__code__
        fresh = bytes(code.replace()._co_code_adaptive)
        mon.use_tool_id(tool, "peeka")
        try:
            mon.set_local_events(tool, code, mon.events.PY_START)
            mon.set_local_events(tool, code, 0)
        finally:
            mon.free_tool_id(tool)
        if bytes(code._co_code_adaptive) == fresh:
            return None  # nothing was lost: nothing to put back
        fixer = InPlace()
        if fixer.repair(code) and bytes(code._co_code_adaptive) == fresh and dummy(1) == 4:
            return fixer
    except Exception:
        pass
    return None


_in_place: List[Optional[InPlace]] = []  # tried once per agent


def in_place() -> Optional[InPlace]:
    """The in-place fixer where this interpreter both loses pairs and lets them be put back."""
    if not _in_place:
        _in_place.append(_try_in_place())
    return _in_place[0]


def in_place_ready(engine: Any) -> bool:
    """Whether code here loses its pairs and they can be put back in place (the code objects stay
    the same: a stream may do it while other traced calls run)."""
    return needed(engine) and in_place() is not None


def stacks_repaired(skip: Optional[int] = None) -> int:
    """Put back the pairs of the code every thread is running now (a traced call's profiler split
    them in frames that never return: a server's loop), except thread ``skip``'s."""
    fixer = in_place()
    if fixer is None:
        return 0
    done = 0
    seen = set()
    for ident, frame in sys._current_frames().items():
        depth = 0
        while frame is not None and ident != skip and depth < _MAX_DEPTH:
            code = frame.f_code
            if id(code) not in seen:
                seen.add(id(code))
                done += fixer.repair(code)
            frame = frame.f_back
            depth += 1
    return done


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
    fixer = in_place()
    for code, namespace in codes:
        try:
            if fixer is not None:  # the code itself: no function changes, a paused probe's included
                done += fixer.repair(code) > 0
                continue
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
    done = refresh(engine, [item for item in taken if item is not None])
    try:
        stacks_repaired(threading.get_ident())
    except Exception:
        pass
    return done
