"""trace: the call tree below a function, each node with its cost.

While a traced call runs, a profile function is set on *that thread only* (``sys.setprofile``),
so other threads and other requests run at full speed; for generators and coroutines it is off
while they are suspended. Repeated children collapse into one node with count/min/max/total;
standard library and site-packages callees are summarized (their own callees not recorded)
unless ``all``; C functions appear as leaves; exceptions are counted where the profiler sees them.

args: pattern, regex, max_match, condition, min_cost (ms), depth (default 32), all,
limit (-n trees, default 100), timeout.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from time import perf_counter_ns
from typing import Any, Dict, List, Optional, Tuple

from .. import instrument, observe
from ..probes import CO_ASYNC_GENERATOR, CO_COROUTINE, CO_GENERATOR, MONITORING, Call

NAME = "trace"
_SUSPENDABLE = CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR


def _library_prefixes() -> Tuple[str, ...]:
    paths = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            paths.add(os.path.realpath(sysconfig.get_paths()[key]))
        except Exception:
            pass
    for p in sys.path:
        if p.endswith(("site-packages", "dist-packages")):
            paths.add(os.path.realpath(p))
    return tuple(sorted(paths, key=len, reverse=True))


class Node:
    __slots__ = ("name", "file", "line", "c", "library", "count", "total", "min", "max", "exceptions", "children")

    def __init__(self, name: str, file: Optional[str], line: Optional[int], c: bool, library: bool) -> None:
        self.name = name
        self.file = file
        self.line = line
        self.c = c
        self.library = library
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0
        self.exceptions = 0
        self.children: Dict[Any, Node] = {}

    def add(self, elapsed: int, resumed: bool) -> None:
        if resumed:  # a generator/coroutine coming back: same call, more time
            self.total += elapsed
            self.max = max(self.max, elapsed)
            return
        if self.count == 0 or elapsed < self.min:
            self.min = elapsed
        if elapsed > self.max:
            self.max = elapsed
        self.count += 1
        self.total += elapsed

    def to_dict(self, min_cost_ns: int) -> Dict[str, Any]:
        kids = sorted(self.children.values(), key=lambda n: -n.total)
        shown = [k.to_dict(min_cost_ns) for k in kids if k.total >= min_cost_ns]
        out: Dict[str, Any] = {
            "function": self.name, "file": self.file, "line": self.line, "count": self.count,
            "total_ms": round(self.total / 1e6, 4), "min_ms": round(self.min / 1e6, 4),
            "max_ms": round(self.max / 1e6, 4), "children": shown,
        }
        if self.c:
            out["c"] = True
        if self.library:
            out["library"] = True
        if self.exceptions:
            out["exceptions"] = self.exceptions
        if len(shown) < len(kids):
            out["hidden"] = len(kids) - len(shown)
        return out


class Recorder:
    """The tree of one traced call, fed by the thread's profile function."""

    def __init__(self, trace: "Trace", call: Call) -> None:
        self.trace = trace
        self.call = call
        self.root = Node(call.probe.name, call.probe.filename, call.probe.lineno, False, False)
        # (node or None when not recorded, start ns, resumed?)
        self.stack: List[Tuple[Optional[Node], int, bool]] = []
        self.root_frame: Any = call.frame if MONITORING else None
        self.inside = MONITORING  # code swap: the copy's own frame starts the tree
        self.previous: Any = None

    def profile(self, frame: Any, event: str, arg: Any) -> None:
        if self.trace.cancelled:
            # The stream ended while this call ran: take the profiler off this thread now.
            sys.setprofile(self.previous)
            return
        try:
            self._event(frame, event, arg)
        except Exception:
            pass

    def _event(self, frame: Any, event: str, arg: Any) -> None:
        now = perf_counter_ns()
        stack = self.stack
        if not self.inside:
            if event == "call" and frame.f_code is self.call.probe.code and self.root_frame is None:
                self.root_frame = frame
                self.inside = True
            return
        if event == "call" or event == "c_call":
            if event == "call" and frame is self.root_frame:
                return
            parent = stack[-1][0] if stack else self.root
            # Below a library function, a depth cut or an unrecorded node: keep the stack balanced only.
            if parent is None or parent.library or len(stack) >= self.trace.max_depth:
                stack.append((None, now, False))
                return
            if event == "call":
                code = frame.f_code
                key: Any = code
                node = parent.children.get(key)
                if node is None:
                    filename = code.co_filename
                    library = not self.trace.all and filename.startswith(self.trace.library)
                    module = frame.f_globals.get("__name__")
                    name = getattr(code, "co_qualname", code.co_name)
                    node = parent.children[key] = Node("%s.%s" % (module, name) if module else name, filename,
                                                       code.co_firstlineno, False, library)
                resumed = bool(code.co_flags & _SUSPENDABLE) and frame.f_lasti > 0
            else:
                # Bound builtin methods are new objects per access: key C functions by name.
                key = getattr(arg, "__qualname__", None) or repr(arg)
                node = parent.children.get(key)
                if node is None:
                    module = getattr(arg, "__module__", None)
                    node = parent.children[key] = Node("%s.%s" % (module, key) if module else key,
                                                       None, None, True, False)
                resumed = False
            stack.append((node, now, resumed))
            return
        if event in ("return", "c_return", "c_exception"):
            if event == "return" and frame is self.root_frame:
                return
            if not stack:
                return
            node, started, resumed = stack.pop()
            if node is not None:
                node.add(now - started, resumed)
                if event == "c_exception":
                    node.exceptions += 1

    def start(self) -> None:
        self.previous = sys.getprofile()
        sys.setprofile(self.profile)

    def pause(self) -> None:
        sys.setprofile(self.previous)

    def stop(self) -> None:
        sys.setprofile(self.previous)


class Trace(instrument.ProbeStream):
    needs_args = False
    wants_enter = True
    wants_suspend = True

    def __init__(self, agent: Any, args: Dict[str, Any]) -> None:
        self.condition = observe.CallExpression(args.get("condition"), "condition")
        self.min_cost_ns = int((instrument.float_arg(args, "min_cost", 0.0, 0.0) or 0.0) * 1e6)
        self.max_depth = instrument.int_arg(args, "depth", 32, 1, 1000)
        self.all = bool(args.get("all"))
        self.library = _library_prefixes()
        super().__init__(agent, args)
        self.needs_args = self.condition.needs_args
        self.active: Dict[int, Recorder] = {}  # thread id -> the traced call running there

    def on_enter(self, call: Call) -> None:
        if self.cancelled or call.thread in self.active:
            return  # recursion: the inner call is part of the outer tree
        recorder = Recorder(self, call)
        call.data = recorder
        self.active[call.thread] = recorder
        recorder.start()

    def on_suspend(self, call: Call) -> None:
        recorder = call.data
        if isinstance(recorder, Recorder) and self.active.get(call.thread) is recorder:
            recorder.pause()
            del self.active[call.thread]

    def on_resume(self, call: Call) -> None:
        recorder = call.data
        if isinstance(recorder, Recorder) and not self.cancelled:
            if self.active.get(call.thread) is None:
                self.active[call.thread] = recorder
                recorder.stack.clear()
                recorder.start()

    def on_exit(self, call: Call) -> None:
        recorder = call.data
        if not isinstance(recorder, Recorder):
            return
        if self.active.get(call.thread) is recorder:
            recorder.stop()
            del self.active[call.thread]
        call.data = None
        cost = call.end - call.start
        if self.cancelled or cost < self.min_cost_ns:
            return
        if self.condition.source is not None:
            try:
                if not self.condition.evaluate(call):
                    return
            except Exception as exc:
                self.emit(dict(instrument.call_facts(call), error="condition failed: %s: %s" % (type(exc).__name__, exc)))
                return
        root = recorder.root
        root.count, root.total, root.min, root.max = 1, cost, cost, cost
        if call.exception is not None:
            root.exceptions = 1
        self.emit_later(self._event, call, root)  # the tree is built into JSON off the host's thread

    def _event(self, call: Call, root: Node) -> Dict[str, Any]:
        event = instrument.call_facts(call)
        event["tree"] = root.to_dict(self.min_cost_ns)
        if call.exception is not None:
            event["exception"] = "%s: %s" % (type(call.exception).__name__, call.exception)
        return event



def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Trace:
    return Trace(agent, args)
