"""Probes: see every call of chosen functions, whatever reference the caller holds.

Replacing a module attribute with a wrapper would miss ``from m import f`` aliases, registries
filled at import time and callbacks stored earlier, so the engine works on the function's code:

* Python 3.12+: ``sys.monitoring`` local events (PY_START, PY_RETURN, PY_YIELD) on the probed code
  objects only, under a free tool id (coverage and debuggers keep theirs); PY_UNWIND, which can only
  be enabled globally, is on while any probe is installed and costs nothing until a frame unwinds.
* Python 3.9-3.11: the function's ``__code__`` is swapped in place for a trampoline with the same
  kind (function, generator, coroutine, async generator) and closure size, which calls a hook that
  times and reports the call around an exact copy of the original function.

Either way a probe reports ``Call`` objects to its listeners (watch, trace, stack, monitor, tt).
For the usual case, plain functions with one listener (a watch or monitor over a function or a
pattern), the callbacks (3.12+) or the hook (below) are generated Python with the listener's gate
or monitor's list append written in, so a call that fails a condition costs two clock readings,
a push and pop on a thread-local stack and the comparison; everything else takes the generic path.
Nothing raised by a listener or by the engine reaches the host's code path, and removing the last
listener restores the function exactly (same code object, no events, no trampoline). On 3.12 a code
object that was instrumented stays slower (``_dequickens``): when its probe is paused or removed,
its superinstructions are put back in place (``requicken.InPlace``), or, where that cannot be
done, the function gets a fresh, equal copy of its code.
"""

from __future__ import annotations

import sys
import threading
import types
from time import perf_counter_ns, time_ns
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from . import compat, requicken
from .streams import on_detach

MONITORING = sys.version_info >= (3, 12)
_get_ident = threading.get_ident
_getframe = sys._getframe
CO_GENERATOR = 0x20
CO_COROUTINE = 0x80
CO_ITERABLE_COROUTINE = 0x100
CO_ASYNC_GENERATOR = 0x200
SUSPENDABLE = CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR
CO_VARARGS = 0x04
CO_VARKEYWORDS = 0x08

def _anchor(tries: int = 9) -> Tuple[int, int]:
    """(wall ns, perf ns) read at the same instant, as near as can be told. Read one after the
    other, another thread may run between the two reads (the agent boots with a short switch
    interval, in a busy host): every span would then start and end that much early, before the
    request that caused it was sent. So each wall read is bracketed by two perf reads, and the
    tightest bracket of a few wins, its middle taken as the wall read's instant."""
    best = None
    for _ in range(tries):
        before = perf_counter_ns()
        wall = time_ns()
        after = perf_counter_ns()
        if best is None or after - before < best[2] - best[1]:
            best = (wall, before, after)
    wall, before, after = best
    return wall, (before + after) // 2


# perf_counter_ns -> epoch ns with one anchor, so spans get real start/end times.
_ANCHOR_WALL, _ANCHOR_PERF = _anchor()


def to_epoch_ns(perf_ns: int) -> int:
    return _ANCHOR_WALL + (perf_ns - _ANCHOR_PERF)


class ProbeError(Exception):
    """A function that cannot be probed; the message says why."""


class Call:
    """One observed call. ``params`` is filled only when a listener needs arguments."""

    __slots__ = ("probe", "start", "end", "params", "result", "exception", "thread", "thread_name", "yields",
                 "frame", "data", "awaiting")

    def __init__(self, probe: "Probe", start: int, end: int = 0, params: Optional[Dict[str, Any]] = None,
                 result: Any = None, exception: Optional[BaseException] = None) -> None:
        self.probe = probe
        self.start = start
        self.end = end
        self.params = params
        self.result = result
        self.exception = exception
        self.thread = ident = _get_ident()
        # Named now, on the calling thread: a short-lived thread (a threaded server's per-request
        # one) is gone when the event is built, and the next thread often has the same ident.
        # The stored attribute, not Thread.name: that property is a Python call, which a trace
        # recording on this thread (setprofile below 3.12) would take for a child of the call.
        name = getattr(threading._active.get(ident), "_name", None)  # type: ignore[attr-defined]
        self.thread_name = name if isinstance(name, str) else str(ident)
        self.yields = 0
        self.awaiting: Any = None  # a generator or coroutine: what it yielded last (an await's future)
        self.frame: Any = None  # the call's frame (monitoring) or the trampoline's frame; set at entry only
        self.data: Any = None  # per-listener scratch (e.g. trace's recorder)



GATE_ARGUMENTS = ("_s", "_e", "_r", "_x")  # what a gate's source may read: start ns, end ns, result, exception


class Gate(NamedTuple):
    """A listener's cheap test of a call's ending, run before any Call is built (``Listener.gate``).

    ``source`` is a Python expression over ``GATE_ARGUMENTS`` and the globals in ``namespace``:
    the generated callbacks and hooks compile it in, which spares a function call on every call
    of the probed function; elsewhere ``test(start, end, result, exception)`` runs it. A gate
    with no source (``Gate.calling``) is only called, and its probes get no generated callbacks.
    """

    source: Optional[str]
    namespace: Dict[str, Any]
    test: Callable[[int, int, Any, Optional[BaseException]], Any]

    @classmethod
    def compile(cls, source: str, namespace: Dict[str, Any]) -> "Gate":
        """``source`` must be checked code (observe.CallExpression.gate builds it)."""
        test = eval("lambda %s: %s" % (", ".join(GATE_ARGUMENTS), source), namespace)  # noqa: S307
        return cls(source, namespace, test)

    @classmethod
    def calling(cls, test: Callable[[int, int, Any, Optional[BaseException]], Any]) -> "Gate":
        return cls(None, {}, test)


class Listener:
    """What a command registers on probes."""

    needs_args = False
    needs_frame = False  # the call's frame while it runs (stack walks it): the Call is made at entry
    wants_enter = False
    wants_suspend = False  # on_suspend/on_resume around each yield or await of generators and coroutines
    errors = 0  # exceptions this listener raised on probed calls (swallowed; Probe.failed counts them)
    # A light listener wants only each call's cost and outcome (monitor): when every listener of a
    # plain function is light, no Call object, frame or argument is ever made for it.
    light = False
    # A Gate or None: a cheap test run when a call ends, before any Call is built, that lets the
    # listener drop exits it would ignore (watch -s/-e, a condition over cost/result/exception/thread).
    # On True (or if it raises) on_exit decides for real.
    gate: Optional[Gate] = None

    def on_light(self, probe: "Probe", cost_ns: int, failed: bool) -> None:
        pass

    def light_sink(self, probe: "Probe") -> Optional[Callable[[int], Any]]:
        """A light listener's fast lane, when it is a probe's only listener: a C-level callable
        (a list's append) taking each call's cost in ns, or ``~cost`` when the call failed."""
        return None

    def on_enter(self, call: Call) -> None:
        pass

    def on_suspend(self, call: Call) -> None:
        pass

    def on_resume(self, call: Call) -> None:
        pass

    def on_exit(self, call: Call) -> None:
        pass

    def on_removed(self, probe: "Probe") -> None:
        """``reset`` took this probe away."""

    def on_cut(self, calls: List[Call]) -> None:
        """These calls began before their probe was paused and will never end for us (3.12+: a
        paused probe gets no return event); the probe is back on."""


def kind_of(code: types.CodeType) -> str:
    flags = code.co_flags
    if flags & CO_ASYNC_GENERATOR:
        return "asyncgen"
    if flags & CO_COROUTINE:
        return "coroutine"
    if flags & CO_GENERATOR:
        return "generator"
    return "function"


_FIRST_OFFSETS: Dict[int, Tuple[types.CodeType, int]] = {}  # id(code) -> (code kept alive, offset)


def first_offset(code: types.CodeType) -> int:
    """f_lasti at a generator's or coroutine's first start: a profiler's call event past it is a
    resumption of a call already running."""
    known = _FIRST_OFFSETS.get(id(code))
    if known is not None:
        return known[1]
    offset = -1  # 3.9/3.10: a new frame has run nothing yet
    if sys.version_info >= (3, 11):  # the start event comes at the body's first RESUME
        import dis

        offset = next((i.offset for i in dis.get_instructions(code) if i.opname == "RESUME"), 0)
    if len(_FIRST_OFFSETS) > 10000:
        _FIRST_OFFSETS.clear()  # codes of a long-lived process: kept bounded
    _FIRST_OFFSETS[id(code)] = (code, offset)
    return offset


def awaited_tasks(awaited: Any) -> Optional[List[Any]]:
    """The tasks behind what a suspending coroutine yielded to its event loop (``Call.awaiting``):
    a Task, or a gather future's children (asyncio's, or anything shaped like them); else None."""
    if awaited is None or getattr(awaited, "_asyncio_future_blocking", None) is None:
        return None
    if hasattr(awaited, "get_coro"):
        return [awaited]
    children = getattr(awaited, "_children", None)
    if isinstance(children, list):
        return [c for c in children if hasattr(c, "get_coro")] or None
    return None


def task_outcome(task: Any) -> str:
    """done, failed, cancelled or pending (read from any thread: no callback, no await)."""
    try:
        if not task.done():
            return "pending"
        if task.cancelled():
            return "cancelled"
        return "failed" if task.exception() is not None else "done"
    except Exception:
        return "unknown"


def is_agent_code(code: types.CodeType) -> bool:
    """The agent's own code, or the trampoline of a probed function (3.9-3.11): frames that trees of
    calls (trace, export) leave out, giving what they call to their caller."""
    return code.co_filename.startswith("<peeka") or (
        code.co_kwonlyargcount == 1 and code.co_varnames[0] == "_peeka_hook")


def param_names(code: types.CodeType) -> Tuple[str, ...]:
    n = code.co_argcount + code.co_kwonlyargcount
    n += bool(code.co_flags & CO_VARARGS) + bool(code.co_flags & CO_VARKEYWORDS)
    return tuple(code.co_varnames[:n])


ENTRY_TIME, ENTRY_ARGS, ENTRY_CALL = 0, 1, 2


def _rebinds_parameters(code: types.CodeType, params: Tuple[str, ...]) -> bool:
    """Whether the function may rebind or delete one of its parameters (then its frame, when the
    call ends, no longer shows what the call received)."""
    names = set(params)
    if names & set(code.co_cellvars):
        return True  # an inner function may rebind it (nonlocal), out of this code's sight
    import dis

    for ins in dis.get_instructions(code):
        if ins.opname.startswith(("STORE_FAST", "DELETE_FAST", "LOAD_FAST_AND_CLEAR", "STORE_DEREF", "DELETE_DEREF")):
            targets = ins.argval if isinstance(ins.argval, tuple) else (ins.argval,)
            if names.intersection(targets):
                return True
    return False


def _params_reader(names: Tuple[str, ...]) -> Callable[[Any], Dict[str, Any]]:
    """``read(locals) -> {name: value}`` for these parameter names, as one dict display."""
    namespace: Dict[str, Any] = {"names": names}
    items = ", ".join("%r: local[%r]" % (name, name) for name in names)
    exec(
        "def read(local):\n"
        "    try:\n"
        "        return {%s}\n"
        "    except KeyError:\n"
        "        return {name: local[name] for name in names if name in local}\n" % items,
        namespace,
    )
    return namespace["read"]


class Probe:
    """One probed function: its listeners and how it is instrumented."""

    def __init__(self, engine: "Engine", func: types.FunctionType, name: str) -> None:
        self.engine = engine
        self.func = func
        self.code: types.CodeType = func.__code__
        self.name = name
        self.kind = kind_of(self.code)
        self.params = param_names(self.code)
        self.filename = self.code.co_filename
        self.lineno = self.code.co_firstlineno
        self.listeners: Tuple[Listener, ...] = ()
        self.needs_args = False
        self.wants_enter = False
        self.wants_suspend = False
        self.light = False
        # Plain functions: calls nest per thread, so each thread keeps a stack of its calls in progress.
        # What a stack entry holds is chosen per probe (``entry``): ENTRY_TIME a start time,
        # ENTRY_ARGS (start, params), ENTRY_CALL a Call made at entry (enter listeners, frames).
        self.plain = self.kind == "function"
        self.entry = ENTRY_TIME
        # At entry a frame's locals are exactly its parameters (plus a closure's free variables). On
        # 3.12 ``f_locals`` is a dict snapshot: copying it is cheapest; 3.13+ gives a proxy (PEP 667),
        # read fastest by a dict display made for this function's parameter names.
        self.copy_locals = sys.version_info < (3, 13) and not self.code.co_freevars
        self.read_params = _params_reader(self.params)
        # Arguments read when the call ends, and only for calls that passed the gate, when that gives
        # what the call received: the code swap keeps the call's own args; sys.monitoring reads the
        # frame, right when the function's bytecode never rebinds or deletes a parameter.
        self.args_late = not MONITORING or (self.plain and not _rebinds_parameters(self.code, self.params))
        self.args_at_exit = False
        self.local = threading.local()  # .stack: this thread's calls in progress
        self.errors = 0  # exceptions raised by our own listeners, swallowed
        self.saved: Optional[SwappedCode] = None  # the code swap's: what to restore, what the hook calls
        self.paused = False  # duty-cycled off by the overhead governor: the function runs as if unprobed

    def set_listeners(self, listeners: Tuple[Listener, ...]) -> None:
        self.listeners = listeners
        self.needs_args = any(listener.needs_args for listener in listeners)
        self.wants_enter = any(listener.wants_enter for listener in listeners)
        self.wants_suspend = any(listener.wants_suspend for listener in listeners)
        self.light = self.plain and bool(listeners) and all(listener.light for listener in listeners)
        self.sink = listeners[0].light_sink(self) if len(listeners) == 1 and self.light else None
        if self.light:
            self.entry = ENTRY_TIME
        elif self.wants_enter or any(listener.needs_frame for listener in listeners):
            self.entry = ENTRY_CALL
        else:
            self.entry = ENTRY_ARGS if self.needs_args and not self.args_late else ENTRY_TIME
        self.args_at_exit = self.needs_args and self.entry == ENTRY_TIME

    def capture(self, frame: Any) -> Dict[str, Any]:
        """The parameters of a call that just started, from its frame."""
        local = frame.f_locals
        return local.copy() if self.copy_locals else self.read_params(local)

    def failed(self, listener: "Listener") -> None:
        """A listener raised on a call: counted here, on the listener (streams report theirs in
        their end message) and by the engine (``ping`` reports it), never raised into the host."""
        self.errors += 1
        listener.errors += 1
        self.engine.errors += 1

    # -- called on the host's hot path; must never raise
    def enter(self, call: Call) -> None:
        for listener in self.listeners:
            if listener.wants_enter:
                try:
                    listener.on_enter(call)
                except Exception:
                    self.failed(listener)

    def suspend(self, call: Call) -> None:
        call.yields += 1
        if self.wants_suspend:
            for listener in self.listeners:
                try:
                    listener.on_suspend(call)
                except Exception:
                    self.failed(listener)
        call.awaiting = None  # listeners saw it; the host's object is not kept

    def resume(self, call: Call) -> None:
        if self.wants_suspend:
            for listener in self.listeners:
                try:
                    listener.on_resume(call)
                except Exception:
                    self.failed(listener)

    def exit(self, call: Call) -> None:
        """A call made at entry (generators, coroutines, enter listeners) ended."""
        self.deliver(call.start, call.end, call.params, call.result, call.exception, call)

    def deliver(self, start: int, end: int, params: Optional[Dict[str, Any]], result: Any,
                exception: Optional[BaseException], call: Optional[Call] = None, frame: Any = None) -> None:
        """A call ended: gates first, and a Call only if some listener still wants it (its
        arguments read then from ``frame``, the returning frame, when given)."""
        for listener in self.listeners:
            try:
                if listener.light:
                    listener.on_light(self, end - start, exception is not None)
                    continue
                gate = listener.gate
                if gate is not None:
                    try:
                        if not gate.test(start, end, result, exception):
                            continue
                    except BaseException:
                        pass  # on_exit checks again and reports the error (SystemExit included)
                if call is None:
                    if params is None and frame is not None:
                        params = self.read_params(frame.f_locals)
                    call = Call(self, start, end, params, result, exception)
                listener.on_exit(call)
            except Exception:
                self.failed(listener)


def bind_params(code: types.CodeType, func: Any, args: tuple, kwargs: dict) -> Dict[str, Any]:
    """Parameters by name, as the function body sees them, from a call's args and kwargs."""
    names = code.co_varnames
    npos = code.co_argcount
    out: Dict[str, Any] = {}
    for i in range(min(npos, len(args))):
        out[names[i]] = args[i]
    defaults = func.__defaults__ or ()
    first_default = npos - len(defaults)
    for i in range(len(args), npos):
        name = names[i]
        if name in kwargs:
            out[name] = kwargs[name]
        elif i >= first_default:
            out[name] = defaults[i - first_default]
    idx = npos
    kwonly = names[idx : idx + code.co_kwonlyargcount]
    idx += code.co_kwonlyargcount
    kwdefaults = func.__kwdefaults__ or {}
    for name in kwonly:
        if name in kwargs:
            out[name] = kwargs[name]
        elif name in kwdefaults:
            out[name] = kwdefaults[name]
    if code.co_flags & CO_VARARGS:
        out[names[idx]] = args[npos:]
        idx += 1
    if code.co_flags & CO_VARKEYWORDS:
        taken = set(names[: idx])
        out[names[idx]] = {k: v for k, v in kwargs.items() if k not in taken}
    return out


# --------------------------------------------------------------------------- sys.monitoring (3.12+)
def _dequickens(tool: int) -> bool:
    """Whether taking sys.monitoring's events off a code object leaves it slower than it was.

    3.12 quickens a code object once, when it is made, pairing common instructions into
    superinstructions (LOAD_FAST__LOAD_CONST, STORE_FAST__LOAD_FAST...); instrumenting it splits them
    and removing the events never pairs them again, so a function that was probed once runs a few
    percent slower for good (a probe duty-cycled by the governor, or taken off at detach). 3.13 has
    no such pairs. Tried here on a dummy rather than assumed from the version: its adaptive bytecode
    before and after events go on and off again."""
    try:
        mon = sys.monitoring  # type: ignore[attr-defined]
        namespace: Dict[str, Any] = {}
        exec("def _peeka_pairs(a):\n    b = a + 1\n    return b\n", namespace)
        code = namespace["_peeka_pairs"].__code__
        before = bytes(code._co_code_adaptive)
        mon.set_local_events(tool, code, mon.events.PY_START)
        mon.set_local_events(tool, code, 0)
        return bytes(code._co_code_adaptive) != before
    except Exception:
        return False


class _MonitoringBackend:
    PREFERRED_TOOL_IDS = (4, 3, 2, 5, 1, 0)  # 0 debugger, 1 coverage, 2 profiler, 5 optimizer

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self.tool: Optional[int] = None
        self.active: Dict[int, Call] = {}  # generators and coroutines: id(frame) -> call in progress
        self.point: Callable[[], None] = lambda: None  # tells the callbacks the probes changed
        self.requicken: Optional[bool] = None  # whether a probe taken off leaves its code slower (3.12)

    def _acquire(self) -> None:
        mon = sys.monitoring  # type: ignore[attr-defined]
        for tool in self.PREFERRED_TOOL_IDS:
            if mon.get_tool(tool) is None:
                mon.use_tool_id(tool, "peeka")
                break
        else:
            users = ", ".join("%d=%s" % (i, mon.get_tool(i)) for i in range(6))
            raise ProbeError("every sys.monitoring tool id is taken (%s); detach another tool and retry" % users)
        self.tool = tool
        ev = mon.events
        events = (ev.PY_START, ev.PY_RETURN, ev.PY_YIELD, ev.PY_RESUME, ev.PY_UNWIND)
        for event, callback in zip(events, self._callbacks()):
            mon.register_callback(tool, event, callback)
        mon.set_events(tool, ev.PY_UNWIND)
        if self.requicken is None:
            self.requicken = _dequickens(tool)

    def install(self, probe: Probe) -> None:
        if self.tool is None:
            self._acquire()
        ev = sys.monitoring.events  # type: ignore[attr-defined]
        events = ev.PY_START | ev.PY_RETURN
        if probe.kind != "function":
            events |= ev.PY_YIELD | ev.PY_RESUME
        sys.monitoring.set_local_events(self.tool, probe.code, events)  # type: ignore[attr-defined]

    def uninstall(self, probe: Probe) -> Optional[types.CodeType]:
        """Take the probe's events off its code. Returns the code the function runs from now on when
        that is a fresh copy (see ``_dequickens``), else None."""
        if self.tool is None:
            return None
        mon = sys.monitoring  # type: ignore[attr-defined]
        code = probe.code
        if not mon.get_local_events(self.tool, code):
            return None  # paused: nothing to take off
        mon.set_local_events(self.tool, code, 0)
        if not self.requicken:
            return None
        fixer = requicken.in_place()
        if fixer is not None:  # the pairs back in the code itself: nested functions too, no copy
            try:
                fixer.repair(code)
            except Exception:
                pass
            return None
        if probe.func.__code__ is not code or "<locals>" in probe.func.__qualname__:
            # A nested function's code is shared by every function its definition made: a copy in
            # one of them would leave the others out of the probe when it is back on.
            return None
        if requicken.instrumented(code):
            return None  # another tool's events would not follow the copy
        try:
            fresh = code.replace()
            probe.func.__code__ = fresh  # (audited: a hook may refuse it)
        except Exception:
            return None
        return fresh

    def release(self) -> None:
        """No probe left: give the tool id back so the interpreter runs as before."""
        tool = self.tool
        if tool is None:
            return
        mon = sys.monitoring  # type: ignore[attr-defined]
        mon.set_events(tool, 0)
        for event in (mon.events.PY_START, mon.events.PY_RETURN, mon.events.PY_YIELD, mon.events.PY_RESUME,
                      mon.events.PY_UNWIND):
            mon.register_callback(tool, event, None)
        mon.free_tool_id(tool)
        self.tool = None
        self.active.clear()

    # The callbacks run on the host's threads: cheap, and never raising. Every attribute lookup
    # and Python-level call here is paid on each probed call, hence the flat code, the closures
    # over locals, and probes found by ``id(code)``: hashing a code object hashes its bytecode and
    # constants (nested code included) every time, ~0.5 µs for a realistic handler. Plain functions
    # sharing one listener get PY_START/PY_RETURN callbacks generated for them (_fast_callbacks).
    def _callbacks(self) -> Tuple[Callable[..., Any], ...]:
        lookup = self.engine.by_code.get
        active = self.active
        # The only probe, when there is one (the common case): one identity test instead of a lookup.
        only: Optional[Probe] = None
        getframe = _getframe
        now = perf_counter_ns
        finish = _finish_plain
        sweep_at = [_SWEEP_FROM]

        def on_start(code: Any, offset: int, depth: int = 1) -> Any:
            # depth: where the probed frame is (2 when a generated callback passes the event on)
            try:
                probe = only
                if probe is None or probe.code is not code:
                    probe = lookup(id(code))
                    if probe is None:
                        return None
                if probe.plain:
                    try:
                        stack = probe.local.stack
                    except AttributeError:
                        stack = probe.local.stack = []
                    entry = probe.entry
                    if entry == ENTRY_TIME:
                        stack.append(now())
                    elif entry == ENTRY_ARGS:  # a function that rebinds a parameter
                        params = probe.capture(getframe(depth))
                        stack.append((now(), params))
                    else:
                        stack.append(_start_call(probe, getframe(depth)))
                    return None
                active[id(getframe(depth))] = _start_call(probe, getframe(depth))
                if len(active) > sweep_at[0]:
                    sweep_at[0] = _sweep(active)
            except Exception:
                pass
            return None

        def on_return(code: Any, offset: int, retval: Any, depth: int = 1,
                      exception: Optional[BaseException] = None) -> Any:
            # depth: as on_start's (2 too when on_unwind passes an exception on)
            try:
                end = now()
                probe = only
                if probe is None or probe.code is not code:
                    probe = lookup(id(code))
                    if probe is None:
                        return None
                if probe.plain:
                    try:
                        item = probe.local.stack.pop()
                    except Exception:
                        return None  # the call began before the probe was installed
                    finish(probe, item, end, retval, exception, getframe(depth) if probe.args_at_exit else None)
                    return None
                call = active.pop(id(getframe(depth)), None)
                if call is not None and call.probe is probe:
                    _end_call(call, end, retval, exception)
            except Exception:
                pass
            return None

        def on_unwind(code: Any, offset: int, exception: BaseException) -> Any:
            try:
                return on_return(code, offset, None, 2, exception)
            except Exception:
                # An exception unwinding at the recursion limit: calling on_return itself raises
                # RecursionError, which must not reach the host's code.
                return None

        def on_yield(code: Any, offset: int, value: Any) -> Any:
            try:
                call = active.get(id(getframe(1)))
                if call is not None:
                    call.awaiting = value
                    call.probe.suspend(call)
            except Exception:
                pass
            return None

        def on_resume(code: Any, offset: int) -> Any:
            try:
                call = active.get(id(getframe(1)))
                if call is not None:
                    call.probe.resume(call)
            except Exception:
                pass
            return None

        def point() -> None:
            nonlocal only
            probes = list(self.engine.by_code.values())
            only = probes[0] if len(probes) == 1 else None
            if self.tool is None:
                return
            fast = _fast_callbacks(probes, on_start, on_return)
            mon = sys.monitoring  # type: ignore[attr-defined]
            start, end = fast or (on_start, on_return)
            mon.register_callback(self.tool, mon.events.PY_START, start)
            mon.register_callback(self.tool, mon.events.PY_RETURN, end)

        self.point = point
        return on_start, on_return, on_yield, on_resume, on_unwind


class _Held:
    __slots__ = ("frame",)


def _refs_when_alone() -> int:
    """What ``getrefcount(call.frame)`` says of a frame that nothing but the Call holds."""
    held = _Held()
    held.frame = object()
    return sys.getrefcount(held.frame)


_ALONE = _refs_when_alone()
_SWEEP_FROM = 64  # calls in progress (generators, coroutines) before the first sweep


def _sweep(active: Dict[int, Call]) -> int:
    """Forget calls whose frame only their entry still holds: 3.13 closes a generator suspended
    outside any try block (dropped after its first values, say) without a PY_UNWIND event, so
    such a call never ends, and its entry would keep the frame and the captured arguments for as
    long as the probe stays (a running or suspended frame is also held by its generator or
    thread). Returns the size past which to sweep again (amortized: twice what is left)."""
    getrefcount = sys.getrefcount
    for key, call in list(active.items()):
        if getrefcount(call.frame) <= _ALONE:
            active.pop(key, None)
    return max(_SWEEP_FROM, 2 * len(active))


def _finish_plain(probe: Probe, item: Any, end: int, result: Any, exception: Optional[BaseException],
                  frame: Any) -> None:
    """A call of a plain function ended; ``item`` is what its start put on the thread's stack.
    ``frame``: the returning frame, when arguments are read at exit."""
    try:
        cls = item.__class__
        if cls is int:
            start, params = item, None
        elif cls is tuple:
            start, params = item
        else:
            _end_call(item, end, result, exception)
            return
        sink = probe.sink  # monitor alone: each call's cost into its list
        if sink is not None and exception is None:
            sink(end - start)
            return
        probe.deliver(start, end, params, result, exception, frame=frame)
    except Exception:
        pass


# PY_START/PY_RETURN callbacks generated for the usual case: plain functions whose calls start with
# a time (ENTRY_TIME), all with the same single listener (one watch or monitor over one function or a
# pattern). Such a probe is found by identity tests (by id(code) beyond CHAIN_UP_TO probes), its
# stack reached without a detour, and monitor's sink or the listener's gate written into the return
# callback (a gate is a Python expression, see observe.CallExpression.gate); any other probe, or an
# entry left by another configuration, goes to the generic callbacks, whose stack entries are the
# same: a switch between the two while calls are in progress loses nothing.
_FAST_START = """
def on_start(code, offset):
{find}
        try:
            return _pk_generic_start(code, offset, 2)
        except _pk_Exception:
            return None
    try:
        {local}.stack.append(_pk_now())
    except _pk_AttributeError:
        {local}.stack = [_pk_now()]
    except _pk_Exception:
        pass
    return None
"""
_FAST_RETURN = """
def on_return(code, offset, _r):
    _e = _pk_now()
{find}
        try:
            return _pk_generic_return(code, offset, _r, 2)
        except _pk_Exception:
            return None
    try:
        _s = {local}.stack.pop()
    except _pk_Exception:
        return None  # the call began before the probe was installed
    if _s.__class__ is _pk_int:
{tail}
    try:  # a call into Python here can meet the recursion limit: it must not reach the host
        return _pk_finish(_pk_p, _s, _e, _r, None, _pk_getframe(1) if _pk_p.args_at_exit else None)
    except _pk_Exception:
        return None
"""
_FAST_SINK = """try:
    _pk_p.sink(_e - _s)
except _pk_Exception:
    pass
return {done}
"""
_FAST_GATE = """_x = None
try:
    if not ({gate}):
        return {done}
except _pk_BaseException:
    pass  # on_exit checks again and reports the error (SystemExit from an expression included)
"""
_FAST_EXIT = """try:
    _pk_on_exit(_pk_Call(_pk_p, _s, _e, {params}, _r, None))
except _pk_Exception:
    _pk_p.failed(_pk_listener)
return {done}
"""
CHAIN_UP_TO = 8  # probes found by identity tests up to this many, by id(code) beyond


def _fast_callbacks(probes: List[Probe], generic_start: Callable[..., Any],
                    generic_return: Callable[..., Any]) -> Optional[Tuple[Callable[..., Any], Callable[..., Any]]]:
    """Callbacks for the probes that share the first eligible probe's listener, or None."""
    fast = [p for p in probes if p.plain and p.entry == ENTRY_TIME and len(p.listeners) == 1]
    if not fast:
        return None
    listener = fast[0].listeners[0]
    fast = [p for p in fast if p.listeners[0] is listener]
    if listener.light and any(p.sink is None for p in fast):
        return None
    if all(p.args_at_exit for p in fast):
        params = "_pk_p.read_params(_pk_getframe(1).f_locals)"
    elif not any(p.args_at_exit for p in fast):
        params = "None"
    else:
        params = "_pk_p.read_params(_pk_getframe(1).f_locals) if _pk_p.args_at_exit else None"
    made = _fast_tail(listener, params, "None", "        ")
    if made is None:
        return None
    tail, namespace = made
    if len(probes) == 1:
        find, local = "    _pk_p = _pk_p0\n    if code is not _pk_c0:", "_pk_l0"
        namespace.update(_pk_p0=fast[0], _pk_c0=fast[0].code, _pk_l0=fast[0].local)
    elif len(fast) <= CHAIN_UP_TO:
        tests = ["    if code is _pk_c%d:\n        _pk_p = _pk_p%d" % (i, i) for i in range(len(fast))]
        find, local = "\n".join(tests).replace("\n    if", "\n    elif") + "\n    else:", "_pk_p.local"
        for i, probe in enumerate(fast):
            namespace.update({"_pk_p%d" % i: probe, "_pk_c%d" % i: probe.code})
    else:
        find, local = "    _pk_p = _pk_lookup(_pk_id(code))\n    if _pk_p is None:", "_pk_p.local"
        namespace.update(_pk_lookup={id(p.code): p for p in fast}.get)
    namespace.update(_pk_int=int, _pk_id=id, _pk_finish=_finish_plain, _pk_getframe=_getframe,
                     _pk_AttributeError=AttributeError, _pk_generic_start=generic_start,
                     _pk_generic_return=generic_return)
    source = (_FAST_START.format(find=find, local=local)
              + _FAST_RETURN.format(find=find, local=local, tail=tail))
    made_functions = _compiled(source, namespace, ("on_start", "on_return"))
    return None if made_functions is None else (made_functions[0], made_functions[1])


def _fast_tail(listener: Listener, params: str, done: str, indent: str) -> Optional[Tuple[str, Dict[str, Any]]]:
    """What generated code does once a call returned (``_s``, ``_e``, ``_r``; probe ``_pk_p``):
    monitor's sink, or the listener's gate then its on_exit; with the globals it needs. None when
    the listener's gate cannot be compiled in."""
    namespace: Dict[str, Any] = {"__builtins__": {}}
    if listener.light:
        tail = _FAST_SINK.format(done=done)
    else:
        tail = ""
        gate = listener.gate
        if gate is not None:
            if gate.source is None:
                return None
            namespace.update(gate.namespace)
            tail = _FAST_GATE.format(gate=gate.source, done=done)
        tail += _FAST_EXIT.format(params=params, done=done)
        namespace.update(_pk_on_exit=listener.on_exit, _pk_listener=listener)
    namespace.update(_pk_now=perf_counter_ns, _pk_Call=Call, _pk_Exception=Exception, _pk_BaseException=BaseException)
    return "".join(indent + line if line else line for line in tail.splitlines(True)), namespace


def _compiled(source: str, namespace: Dict[str, Any], names: Tuple[str, ...]) -> Optional[List[Any]]:
    try:
        exec(compile(source, "<peeka probes>", "exec"), namespace)  # noqa: S102 - our template
    except Exception:
        return None  # the generic code does the same, slower
    made = [namespace[name] for name in names]
    made[0].source = source  # for whoever reads them (tests, a debugging session)
    return made


# The code swap's hook for a plain function with one listener (see _fast_callbacks): the same tail.
_FAST_HOOK = """
def hook(args, kwargs):
    _s = _pk_now()
    try:
        _r = _pk_copy(*args, **kwargs)
    except _pk_BaseException as exc:
        _pk_p.deliver(_s, _pk_now(), {params}, None, exc)
        raise
    _e = _pk_now()
{tail}"""


def _fast_hook(probe: Probe, generic: Any) -> Optional[Callable[..., Any]]:
    if probe.kind != "function" or probe.entry != ENTRY_TIME or len(probe.listeners) != 1:
        return None
    listener = probe.listeners[0]
    if listener.light and probe.sink is None:
        return None
    params = "_pk_bind(args, kwargs)" if probe.needs_args else "None"
    made = _fast_tail(listener, params, "_r", "    ")
    if made is None:
        return None
    tail, namespace = made
    namespace.update(_pk_p=probe, _pk_copy=probe.saved.copy, _pk_bind=generic.bind, _pk_BaseException=BaseException)
    made_functions = _compiled(_FAST_HOOK.format(params=params, tail=tail), namespace, ("hook",))
    return None if made_functions is None else made_functions[0]


def _start_call(probe: Probe, frame: Any, args: Optional[tuple] = None, kwargs: Optional[dict] = None) -> Call:
    """A Call made at entry (generators, coroutines, enter listeners, frames wanted), its
    arguments read from ``args``/``kwargs`` when given (the code swap), else from ``frame``."""
    call = Call(probe, perf_counter_ns())
    call.frame = frame
    if probe.needs_args:
        if args is None:
            call.params = probe.capture(frame)
        else:
            call.params = bind_params(probe.code, probe.saved.copy, args, kwargs or {})  # type: ignore[union-attr]
    if probe.wants_enter:
        probe.enter(call)
    return call


def _end_call(call: Call, end: int, result: Any, exception: Optional[BaseException]) -> None:
    call.end = end
    call.result = result
    call.exception = exception
    call.probe.exit(call)
    call.frame = None


# --------------------------------------------------------------------------- code swap (3.9-3.11)
_TRAMPOLINES = {
    "function": "    def {name}(*args, _peeka_hook=None, **kwargs):\n{refs}        return _peeka_hook(args, kwargs)\n",
    "generator": "    def {name}(*args, _peeka_hook=None, **kwargs):\n{refs}        return (yield from _peeka_hook(args, kwargs))\n",
    "coroutine": "    async def {name}(*args, _peeka_hook=None, **kwargs):\n{refs}        return await _peeka_hook(args, kwargs)\n",
    "asyncgen": (
        "    async def {name}(*args, _peeka_hook=None, **kwargs):\n{refs}"
        "        it = _peeka_hook(args, kwargs)\n"
        "        try:\n"
        "            value = await it.__anext__()\n"
        "        except StopAsyncIteration:\n"
        "            return\n"
        "        while True:\n"
        "            try:\n"
        "                sent = yield value\n"
        "            except GeneratorExit:\n"
        "                await it.aclose()\n"
        "                raise\n"
        "            except BaseException as exc:\n"
        "                try:\n"
        "                    value = await it.athrow(exc)\n"
        "                except StopAsyncIteration:\n"
        "                    return\n"
        "            else:\n"
        "                try:\n"
        "                    value = await it.asend(sent)\n"
        "                except StopAsyncIteration:\n"
        "                    return\n"
    ),
}


def _trampoline_code(original: types.CodeType, kind: str) -> types.CodeType:
    """A code object of the same kind and closure size whose body calls ``_peeka_hook``."""
    nfree = len(original.co_freevars)
    names = ["_peeka_fv%d" % i for i in range(nfree)]
    refs = ("        if 0:\n            %s\n" % ", ".join(names + [""])) if nfree else ""
    src = "def _peeka_outer():\n"
    if nfree:
        src += "    %s = None\n" % " = ".join(names)
    src += _TRAMPOLINES[kind].format(name="_peeka_trampoline", refs=refs)
    src += "    return _peeka_trampoline\n"
    namespace: Dict[str, Any] = {}
    exec(compile(src, "<peeka trampoline>", "exec"), namespace)
    code = namespace["_peeka_outer"]().__code__
    changes: Dict[str, Any] = {"co_name": original.co_name, "co_filename": original.co_filename,
                               "co_firstlineno": original.co_firstlineno}
    if sys.version_info >= (3, 11):
        changes["co_qualname"] = original.co_qualname
    return code.replace(**changes)


class SwappedCode(NamedTuple):
    """What the code swap changed on a probed function (to put back) and what its hook runs."""

    code: types.CodeType  # the function's own code, swapped for a trampoline's
    kwdefaults: Optional[Dict[str, Any]]  # its own __kwdefaults__ (the hook travels in them)
    had_signature: bool  # whether it had a __signature__ of its own (else one is set meanwhile)
    copy: types.FunctionType  # a function running the original code, with the original defaults
    hook: Callable[..., Any]  # the generic hook (_HOOKS); a lone listener's is generated instead


class _CodeSwapBackend:
    def __init__(self, engine: "Engine") -> None:
        self.engine = engine

    def install(self, probe: Probe) -> None:
        func = probe.func
        original = probe.code
        copy = types.FunctionType(original, func.__globals__, func.__name__, func.__defaults__, func.__closure__)
        copy.__kwdefaults__ = func.__kwdefaults__
        copy.__qualname__ = func.__qualname__
        hook = _HOOKS[probe.kind](probe, copy)
        trampoline = _trampoline_code(original, probe.kind)
        had_signature = "__signature__" in func.__dict__
        probe.saved = SwappedCode(original, func.__kwdefaults__, had_signature, copy, hook)
        if not had_signature:
            try:
                import inspect

                func.__signature__ = inspect.signature(func)  # type: ignore[attr-defined]
            except (TypeError, ValueError):
                pass
        func.__kwdefaults__ = {"_peeka_hook": hook}
        func.__code__ = trampoline

    def uninstall(self, probe: Probe) -> None:
        if probe.saved is None:
            return
        saved = probe.saved
        func = probe.func
        func.__code__ = saved.code
        func.__kwdefaults__ = saved.kwdefaults
        if not saved.had_signature:
            func.__dict__.pop("__signature__", None)
        probe.saved = None

    def release(self) -> None:
        pass

    def point(self) -> None:
        """Each plain function's hook, generated for its listener when it has one (_fast_hook)."""
        for probe in list(self.engine.by_func.values()):
            saved = probe.saved
            if saved is not None and probe.kind == "function":
                hook = _fast_hook(probe, saved.hook) or saved.hook
                probe.func.__kwdefaults__ = {"_peeka_hook": hook}


# The code swap's hooks start and end their Calls here: never raising into the host's call.
def _begin(probe: Probe, args: tuple, kwargs: dict) -> Optional[Call]:
    try:
        # The trampoline's frame: the same place in the stack as the real one.
        return _start_call(probe, sys._getframe(2), args, kwargs)
    except Exception:
        return None


def _end(call: Optional[Call], result: Any, exception: Optional[BaseException]) -> None:
    if call is not None:
        try:
            _end_call(call, perf_counter_ns(), result, exception)
        except Exception:
            pass


def _function_hook(probe: Probe, copy: Callable[..., Any]) -> Callable[..., Any]:
    now = perf_counter_ns
    code = probe.code
    names = code.co_varnames[: code.co_argcount]
    simple = not (code.co_kwonlyargcount or code.co_flags & (CO_VARARGS | CO_VARKEYWORDS))
    positional = code.co_argcount if simple else -1

    def hook(args: tuple, kwargs: dict) -> Any:
        entry = probe.entry
        if entry == ENTRY_CALL:
            call = _begin(probe, args, kwargs)
            try:
                result = copy(*args, **kwargs)
            except BaseException as exc:
                _end(call, None, exc)
                raise
            _end(call, result, None)
            return result
        start = now()
        try:
            result = copy(*args, **kwargs)
        except BaseException as exc:
            probe.deliver(start, now(), bind(args, kwargs) if probe.needs_args else None, None, exc)
            raise
        # A lone listener gets a generated hook (_fast_hook); here deliver runs each one's gate.
        probe.deliver(start, now(), bind(args, kwargs) if probe.needs_args else None, result, None)
        return result

    def bind(args: tuple, kwargs: dict) -> Optional[Dict[str, Any]]:
        # The call's own args tuple and kwargs dict: the body cannot rebind what they hold.
        if not kwargs and len(args) == positional:
            return dict(zip(names, args))  # the usual call: every parameter given by position
        try:
            return bind_params(code, copy, args, kwargs)
        except Exception:
            return None

    hook.bind = bind  # type: ignore[attr-defined]  # for _fast_hook
    return hook


def _generator_hook(probe: Probe, copy: Callable[..., Any]) -> Callable[..., Any]:
    def hook(args: tuple, kwargs: dict) -> Any:
        call = _begin(probe, args, kwargs)
        try:
            it = copy(*args, **kwargs)
            value = next(it)
            while True:
                if call is not None:
                    call.awaiting = value
                    probe.suspend(call)
                try:
                    sent = yield value
                except GeneratorExit:
                    it.close()
                    raise
                except BaseException as exc:
                    if call is not None:
                        probe.resume(call)
                    value = it.throw(exc)
                else:
                    if call is not None:
                        probe.resume(call)
                    value = it.send(sent)
        except StopIteration as stop:
            _end(call, stop.value, None)
            return stop.value
        except BaseException as exc:
            _end(call, None, exc)
            raise

    return hook


def _coroutine_hook(probe: Probe, copy: Callable[..., Any]) -> Callable[..., Any]:
    # Drives the coroutine by hand (send/throw) so each await that suspends is seen.
    @types.coroutine
    def hook(args: tuple, kwargs: dict) -> Any:
        call = _begin(probe, args, kwargs)
        coro = copy(*args, **kwargs)
        send, value, exc_in = coro.send, None, None
        try:
            while True:
                if exc_in is not None:
                    pending, exc_in = exc_in, None
                    yielded = coro.throw(pending)
                else:
                    yielded = send(value)
                if call is not None:
                    call.awaiting = yielded
                    probe.suspend(call)
                try:
                    value = yield yielded
                except GeneratorExit:
                    coro.close()
                    raise
                except BaseException as exc:
                    exc_in = exc
                if call is not None:
                    probe.resume(call)
        except StopIteration as stop:
            _end(call, stop.value, None)
            return stop.value
        except BaseException as exc:
            _end(call, None, exc)
            raise

    return hook


def _asyncgen_hook(probe: Probe, copy: Callable[..., Any]) -> Callable[..., Any]:
    async def hook(args: tuple, kwargs: dict) -> Any:
        call = _begin(probe, args, kwargs)
        it = copy(*args, **kwargs)
        try:
            value = await it.__anext__()
            while True:
                if call is not None:
                    call.yields += 1  # suspensions inside the async generator's awaits are not seen here
                try:
                    sent = yield value
                except GeneratorExit:
                    await it.aclose()
                    raise
                except BaseException as exc:
                    value = await it.athrow(exc)
                else:
                    value = await it.asend(sent)
        except StopAsyncIteration:
            _end(call, None, None)
        except BaseException as exc:
            _end(call, None, exc)
            raise

    return hook


_HOOKS = {
    "function": _function_hook,
    "generator": _generator_hook,
    "coroutine": _coroutine_hook,
    "asyncgen": _asyncgen_hook,
}


# --------------------------------------------------------------------------- the engine
def unwrap(func: Any) -> types.FunctionType:
    """The Python function behind a name: through methods, properties and ``functools.wraps``."""
    seen = 0
    while True:
        if isinstance(func, (classmethod, staticmethod)):
            func = func.__func__
        elif isinstance(func, property):
            func = func.fget
        elif isinstance(func, types.MethodType):
            func = func.__func__
        elif isinstance(func, types.FunctionType) and "__wrapped__" in func.__dict__ and seen < 20:
            func = func.__dict__["__wrapped__"]
            seen += 1
            continue
        else:
            break
    if not isinstance(func, types.FunctionType):
        kind = type(func).__name__
        raise ProbeError(
            "%s is a %s, not a Python function: builtins and C functions have no Python code to observe; "
            "watch the Python function that calls it instead" % (getattr(func, "__qualname__", repr(func)), kind)
        )
    return func


class Engine:
    """All probes of one agent. Install/remove are serialized; the hot path takes no lock."""

    def __init__(self) -> None:
        self.by_code: Dict[int, Probe] = {}  # id(code) -> probe (the probe keeps its code alive)
        self.by_func: Dict[int, Probe] = {}
        self.errors = 0  # listener exceptions on any probe since the agent started (ping reports them)
        self._lock = compat.rlock()  # on_removed may end a stream, which removes itself
        self.backend: Any = _MonitoringBackend(self) if MONITORING else _CodeSwapBackend(self)

    @property
    def technique(self) -> str:
        return "sys.monitoring" if MONITORING else "code swap"

    def add(self, func: Any, name: str, listener: Listener) -> Probe:
        target = unwrap(func)
        with self._lock:
            probe = self.by_func.get(id(target))
            if probe is None:
                probe = Probe(self, target, name)
                probe.set_listeners((listener,))
                self.backend.install(probe)
                self.by_func[id(target)] = probe
                self.by_code[id(probe.code)] = probe
                self.backend.point()
            elif listener not in probe.listeners:
                probe.set_listeners(probe.listeners + (listener,))
                self.backend.point()  # the callbacks may be made for the listeners
            return probe

    def remove(self, listener: Listener) -> int:
        """Take a listener off every probe; uninstall probes nobody listens to. Returns probes removed."""
        removed = 0
        with self._lock:
            for probe in list(self.by_func.values()):
                if listener in probe.listeners:
                    rest = tuple(x for x in probe.listeners if x is not listener)
                    probe.set_listeners(rest)
                    if not rest:
                        self._uninstall(probe)
                        removed += 1
                    else:
                        self.backend.point()
            if not self.by_func:
                self.backend.release()
        return removed

    def remove_matching(self, predicate: Callable[[Probe], bool]) -> List[str]:
        """Uninstall probes by name (reset PATTERN); their listeners stop seeing them."""
        with self._lock:
            names = []
            for probe in list(self.by_func.values()):
                if predicate(probe):
                    self._uninstall(probe)
                    names.append(probe.name)
            if not self.by_func:
                self.backend.release()
            return names

    def _uninstall(self, probe: Probe) -> None:
        listeners = probe.listeners
        fresh = None
        try:
            fresh = self.backend.uninstall(probe)
        finally:
            self.by_func.pop(id(probe.func), None)
            self.by_code.pop(id(probe.code), None)
            if fresh is not None:
                probe.code = fresh  # what the function runs now
            self.backend.point()
            probe.set_listeners(())
        for listener in listeners:
            try:
                listener.on_removed(probe)
            except Exception:
                pass

    def pause(self, probe: Probe) -> None:
        """Take the probe's instrumentation off (no events on 3.12+, the original code below), so
        its calls cost nothing, keeping its listeners for ``resume``. Calls in progress keep going:
        below 3.12 through the hook they entered; on 3.12+ they end unseen, and ``resume`` forgets
        what they left on the per-thread stacks."""
        with self._lock:
            if probe.paused or self.by_func.get(id(probe.func)) is not probe:
                return
            probe.paused = True
            fresh = self.backend.uninstall(probe)
            if fresh is not None:
                self.by_code.pop(id(probe.code), None)
                probe.code = fresh
                self.by_code[id(fresh)] = probe

    def resume(self, probe: Probe) -> None:
        with self._lock:
            if not probe.paused or self.by_func.get(id(probe.func)) is not probe:
                return
            # Entries of calls that began before the pause would be popped by later returns.
            probe.local = threading.local()
            cut = []
            if MONITORING:
                for key, call in list(self.backend.active.items()):
                    if call.probe is probe:
                        self.backend.active.pop(key, None)
                        cut.append(call)
            self.backend.install(probe)
            probe.paused = False
            self.backend.point()  # the generated callbacks hold the probe's stacks
        if cut:
            for listener in list(probe.listeners):
                try:
                    listener.on_cut(cut)
                except Exception:
                    pass

    def shutdown(self) -> List[str]:
        return self.remove_matching(lambda probe: True)


@on_detach
def cleanup(agent: Any) -> None:
    """Detach: every probe off, every function as it was (whichever command installed them)."""
    engine = agent.state.get("probes")
    if engine is not None:
        engine.shutdown()


def engine_of(agent: Any) -> Engine:
    engine = agent.state.get("probes")
    if engine is None:
        engine = agent.state["probes"] = Engine()
    return engine
