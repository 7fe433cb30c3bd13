"""trace: the call tree below a function, each node with its cost.

While a traced call runs, a profile function is set on *that thread only* (``sys.setprofile``);
for generators and coroutines it is off while they are suspended (the event loop's other work is
not profiled). It only logs each event (a
clock reading and the code or C function); the tree is folded from the log in the writer thread,
so the host's thread pays for the events and nothing else. Repeated children collapse into one
node with count/min/max/total; standard library and site-packages callees are summarized (what
they call is logged but left out of the tree) unless ``all``; C functions appear as leaves;
exceptions are counted where the profiler sees them (C functions that raise, and the root).

Generators, coroutines and async generators (the root or anywhere below it): a call is one node
from its first start to its final return, awaits and yields included, so its total is what watch
reports for it; ``resumes`` counts its resumptions. While the traced coroutine is suspended nothing
runs below it: the time a parent spends awaiting a child is in the child's total (and, at the
bottom of the await chain, in the node that awaited something untraced: a future, a socket). Per
node, ``self`` is the time its own code ran (not its callees', not suspended: CPU or the GIL wait
of its own bytecode), ``awaited`` the time it sat in an await of its own while the event loop ran
something else, ``suspended`` a generator's time between a yield and its next resumption (its
consumer's time, so also in a sibling's or the parent's); total = self + awaited + suspended + the
children's (total - suspended). Tasks the traced call awaits (a Task, a gather's children) run as
the event loop's own steps, not below the call: they are listed on the node that awaited them
(coroutine, count, outcome, how long it waited), not traced inside. Frames of the agent's own
code (another command's probe, below 3.12) are left out, their callees given to the caller.

Costs (figures: README's Trace paragraph and tests/bench_trace.py's output): each event in the
tree is a Python call of the profile function, so a tree of trivial calls runs many times slower
while traced, a realistic one a few times; the writer thread then spends about as much again
folding the log. Each traced call also pays a fixed cost to switch the thread's profiler on and
off. On 3.12+ sys.setprofile is built on sys.monitoring: switching the interpreter's only
profiler on or off re-instruments the code of every frame on every thread's stack and then each
code object that runs next, so that cost grows with the threads and stacks of the process. Hence
the profiler starts inside the root's own start callback and switches itself off at the root's
return, before the agent's code that ends the call runs; on the code swap a first profile
function (``arm``) ignores the agent's frames until the original code runs.

Green threads (gevent, eventlet): the profiler belongs to the OS thread, which runs every greenlet,
so a traced call's greenlet is watched (switches.py): when it is switched out the profiler goes
off, as for an awaiting coroutine, and back on when it runs again. Other greenlets' calls are not
in its tree; the time it was switched out is ``awaited`` time of the innermost node open then
(the call that switched: ``gevent.sleep``, a green socket's read) and in the total of every node
open, so totals stay wall time (what watch reports) and ``self`` is only the greenlet's own running
time; ``switches`` counts the switches out at that node. Each switch in pays the profiler's switch
again (the fixed cost per traced call below). While any traced
call runs, every thread pays CPython's check for profiled threads on each call.

Measured and not done (README has the figures): holding a profiler between traced calls (the
switch gets cheap, but other threads run slower all the while); sys.monitoring local events on
the code objects a tree runs instead of a profiler (no switch, but trees lose calls no CALL
instruction makes: operators, properties, callbacks from C functions; and every thread running a
code object learnt that way runs it slower); starting the profiler from a second tool id's
callback, below the engine's frames (a small part of the switch on 3.12, noise on 3.13+).
Neither the stdlib's C profiler (_lsprof, all threads from 3.12) nor sys.monitoring callbacks (a
Python call on every thread) confine the cost better.

args: pattern, regex, max_match, condition, min_cost (ms), depth (default 32), all,
limit (-n trees, default 100), timeout.
"""

from __future__ import annotations

import sys
from time import perf_counter_ns
from types import CodeType, FunctionType
from typing import Any, Dict, List, Optional, Tuple

from .. import compat, instrument, observe, origins, requicken, streams, switches
from ..probes import (
    MONITORING,
    SUSPENDABLE,
    Call,
    awaited_tasks,
    engine_of,
    first_offset,
    is_agent_code,
    task_outcome,
)


class Node:
    __slots__ = ("name", "file", "line", "c", "library", "code", "count", "total", "min", "max", "exceptions",
                 "children", "resumes", "awaited", "yielded", "tasks", "switches")

    def __init__(self, name: str, file: Optional[str], line: Optional[int], c: bool, library: bool,
                 code: Optional[CodeType] = None) -> None:
        self.name = name
        self.file = file
        self.line = line
        self.c = c
        self.library = library
        self.code = code  # a Python node's code: alive while the node is, so its id() stays its key
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0
        self.exceptions = 0
        self.children: Dict[Any, Node] = {}
        # Generators and coroutines (ns, over all their calls): resumptions; time suspended while the
        # traced call itself was suspended (an await: the event loop ran something else); time
        # suspended while its caller ran on (a yield to the consumer).
        self.resumes = 0
        self.awaited = 0
        self.yielded = 0
        self.tasks: Optional[Dict[str, Dict[str, Any]]] = None  # awaited tasks by coroutine name
        self.switches = 0  # greenlet switches out while this was the innermost node open

    def to_dict(self, min_cost_ns: int) -> Dict[str, Any]:
        """The node as the protocol sends it. ``total_ms`` is wall time from each call's first start
        to its final return (what watch reports), awaits and yields included. It adds up as
        ``total = self + awaited + suspended + sum(child total - child suspended)``: ``self_ms`` is
        time running the node's own code; ``awaited_ms`` time suspended on an await of its own (on
        something that is not a traced Python call: a future, a socket; what a child awaits is the
        child's); ``suspended_ms`` a generator's time between a yield and its next resumption, which
        its consumer spent (so it is in a sibling's or the parent's time too)."""
        kids = sorted((n for n in self.children.values() if n is not AGENT), key=lambda n: -n.total)
        shown = [k.to_dict(min_cost_ns) for k in kids if k.total >= min_cost_ns]
        awaited = self.awaited - sum(k.awaited for k in kids)
        below = sum(k.total - k.yielded - k.awaited for k in kids)
        out: Dict[str, Any] = {
            "function": self.name, "file": self.file, "line": self.line, "count": self.count,
            "total_ms": round(self.total / 1e6, 4), "min_ms": round(self.min / 1e6, 4),
            "max_ms": round(self.max / 1e6, 4),
            "self_ms": round(max(self.total - self.awaited - self.yielded - below, 0) / 1e6, 4), "children": shown,
        }
        if self.resumes:
            out["resumes"] = self.resumes
        if self.switches:
            out["switches"] = self.switches
        if awaited > 0:
            out["awaited_ms"] = round(awaited / 1e6, 4)
        if self.yielded:
            out["suspended_ms"] = round(self.yielded / 1e6, 4)
        if self.tasks:
            out["tasks"] = [dict(t, awaited_ms=round(t["awaited_ms"] / 1e6, 4)) for t in self.tasks.values()]
        if self.c:
            out["c"] = True
        if self.library:
            out["library"] = True
        if self.exceptions:
            out["exceptions"] = self.exceptions
        if len(shown) < len(kids):
            out["hidden"] = len(kids) - len(shown)
        return out


# The profile function logs one entry per event and nothing else; the tree is built from the log
# later (in the writer thread, or here every FOLD_AT entries so memory stays bounded). Entries:
# ``(t, code, f_lasti)`` a Python call, ``(t, callable)`` a C call, ``t`` any return (a yield
# too), ``-t`` a C function raising, ``Resumed(t)`` the traced generator or coroutine coming back
# (logged by on_resume, not by the profile function). Holding neither frames nor return values,
# the log keeps nothing of the host's alive but the C callables until it is folded.
FOLD_AT = 1 << 14  # ~1.6 MB of log at most; a fold here takes a few ms


# Frames of the agent's own code (another command's probe around a function in the tree, below
# 3.12) and what they call: not in the tree; what they call of the host's code is, below the caller.
AGENT = Node("<peeka agent>", None, None, False, True)
# On the fold's stack of starts, in place of a start time: such a frame's call; a generator's or
# coroutine's call (its Instance by depth in ``instances``).
HIDDEN = -2
INSTANCE = -1


class Resumed(int):
    """The log's mark for the traced call resuming, at this perf_counter_ns time."""


class SwitchedOut(int):
    """The log's mark for the traced call's greenlet switched out (other greenlets run), at this time."""


class SwitchedIn(int):
    """The log's mark for the traced call's greenlet running again, at this time."""


class Awaiting:
    """The log's mark for the traced call suspending on tasks (a Task, or a gather of them): tasks
    it started run in the event loop, outside its tree, and are shown as what they are."""

    __slots__ = ("tasks",)

    def __init__(self, tasks: List[Any]) -> None:
        self.tasks = tasks


def _profile(frame: Any, event: str, arg: Any, append: Any = None, log: Any = None, limit: Any = None,
             recorder: Any = None, root: Any = None, pc: Any = perf_counter_ns) -> None:
    """A traced call's profile function: each Recorder gets a copy with its own log bound as defaults.

    Defaults, not a closure: cheaper to make per traced call, and locals are the fastest names
    here, where every call and return in the tree comes through. It switches itself off when the
    root's frame returns (or yields): the agent's own code that ends the call runs unprofiled.
    """
    if event == "call":
        append((pc(), frame.f_code, frame.f_lasti))
        if len(log) > limit[0]:
            recorder.fold_now()
    elif event == "c_call":
        append((pc(), arg))
        if len(log) > limit[0]:
            recorder.fold_now()
    elif event == "c_exception":
        append(-pc())
    else:
        append(pc())
        if frame is root and event == "return":
            try:
                recorder.stop()
            except Exception:
                pass  # (an audit hook refusing sys.setprofile) never into the host's code


class Recorder:
    """The tree of one traced call: the thread's profile function and the fold of its log."""

    __slots__ = ("trace", "call", "log", "previous", "profile", "on", "root", "nodes", "starts", "depth", "inside",
                 "suspended", "root_return", "root_gaps", "root_resumes", "gap_tasks", "gap_node", "hidden", "instances",
                 "greenlet", "switched", "switched_at", "switch_gaps")

    def __init__(self, trace: "Trace", call: Call) -> None:
        # Made on the host's thread at each traced call: only what the profile function needs.
        self.trace = trace
        self.call = call
        self.log: List[Any] = []
        self.previous: Any = None
        self.on = False  # our profile function is the thread's now
        self.root: Optional[Node] = None  # the fold's state, made by the first fold
        # sys.monitoring gives the root's own frame at its start, where the profiler starts; the
        # code swap starts it in the trampoline, and ``arm`` finds the frame at the original code's call.
        self.profile: Any = self.profiler(call.frame) if MONITORING else None
        self.greenlet: Any = None  # the greenlet the call runs in, when switches.py watches it
        self.switched = False  # its greenlet was switched out with our profiler on

    def profiler(self, root: Any) -> Any:
        log = self.log
        return FunctionType(_profile.__code__, _profile.__globals__, "profile",
                            (log.append, log, self.trace.fold_at, self, root, perf_counter_ns))

    def arm(self, frame: Any, event: str, arg: Any) -> None:
        """The code swap's first profile function: ignores the agent's frames until the root's call."""
        if event == "call" and frame.f_code is self.call.probe.code:
            try:
                self.log.append((perf_counter_ns(), frame.f_code, frame.f_lasti))
                if self.profile is None:
                    self.profile = self.profiler(frame)
                sys.setprofile(self.profile)
            except Exception:
                pass  # a profile function must never raise into the host's code

    def _fold_state(self) -> Node:
        probe = self.call.probe
        self.root = Node(probe.name, probe.filename, probe.lineno, False, False)
        # Per open call below the root: its node (None: not recorded) and its start time (or
        # INSTANCE, HIDDEN).
        self.nodes: List[Optional[Node]] = []
        self.starts: List[int] = []
        self.depth = 0
        self.hidden = 0
        self.instances: Dict[int, Instance] = {}  # depth -> the generator's or coroutine's call open there
        # Inside the root's body? sys.monitoring starts the profiler inside it; the code swap
        # starts it in the trampoline, so the tree begins at the call of the original code.
        self.inside = MONITORING
        # Generators and coroutines that returned or yielded, by (depth, id(code)): a later
        # resumption there continues the same call. (A log holds no frames, so two instances of one
        # generator alive under the same caller at once are told apart by order only.)
        self.suspended: Dict[Tuple[int, int], Instance] = {}
        self.root_return = 0  # when the root last returned or yielded
        self.root_gaps = 0  # ns the root spent suspended
        self.root_resumes = 0
        # Tasks the root awaited in its last suspension, and the deepest node of the await chain
        # that resumed after it: the one that awaited them.
        self.gap_tasks: Optional[Tuple[List[Any], int]] = None
        self.gap_node: Optional[Node] = None
        self.switched_at = 0  # the fold: when its greenlet was last switched out
        self.switch_gaps = 0  # ns its greenlet spent switched out
        return self.root

    def fold_now(self) -> None:
        """On the host's thread (the profiler does not see this): fold the log, or stop if cancelled."""
        try:
            if self.trace.cancelled:
                self.log.clear()
                self.stop()
                return
            self.fold()
        except Exception:
            self.log.clear()

    def fold(self) -> None:
        """Fold the log into the tree: same results whenever and however often it runs.

        Written without calls where it can (stacks indexed by depth, ``in`` before ``[]``): it may
        run while the interpreter reports calls to profilers, and each call would cost more then.
        A generator's or coroutine's call is one Instance from its first start to its last return:
        each return adds the time since the previous one (or the start), so the gaps between a
        yield and the next resumption are in its total. A gap is ``awaited`` when the instance was
        resumed in the chain that follows the root's own resumption (the whole await chain was
        suspended: it gets the root's gap, the time the loop ran something else), else ``yielded``
        (its consumer ran on meanwhile).
        """
        root = self.root or self._fold_state()
        log, nodes, starts, code_of_root = self.log, self.nodes, self.starts, self.call.probe.code
        suspended = self.suspended
        trace = self.trace
        max_depth = trace.max_depth
        inside = self.inside
        depth = self.depth  # open calls below the root: nodes[:depth], starts[:depth]
        chain = 0  # after the root resumed, while the await chain below it resumes: the root's gap
        hidden = self.hidden  # agent frames open (HIDDEN on the stack)
        # Locals, not globals or builtins: looked up on every entry (3.9/3.10 do not specialize them).
        int_, tuple_, agent, code_type, suspendable = int, tuple, AGENT, CodeType, SUSPENDABLE
        instances = self.instances
        for entry in log:
            cls = entry.__class__
            if cls is int_:  # a return (or a yield); negative: a C function raised
                if not depth:
                    chain = 0
                    if entry > 0 and inside:
                        inside = False  # the root returned (or yielded)
                        self.root_return = entry
                    continue
                depth -= 1
                node = nodes[depth]
                if node is None:
                    chain = 0
                    continue
                started = starts[depth]
                if started < 0:
                    if started == HIDDEN:
                        hidden -= 1
                        continue  # the agent's frames end no chain
                    chain = 0
                    if entry < 0:
                        entry = -entry
                        node.exceptions += 1
                    instance = instances[depth]  # a generator's or coroutine's call
                    node.total += entry - instance.last
                    instance.last = entry
                    if entry - instance.first > node.max:
                        node.max = entry - instance.first
                    suspended[instance.key] = instance
                    continue
                chain = 0
                if entry < 0:
                    entry = -entry
                    node.exceptions += 1
                elapsed = entry - started
                if node.count == 0 or elapsed < node.min:
                    node.min = elapsed
                if elapsed > node.max:
                    node.max = elapsed
                node.count += 1
                node.total += elapsed
                continue
            if cls is not tuple_:  # a mark on_resume or on_suspend logged
                if cls is SwitchedOut:
                    self.switched_at = entry
                elif cls is SwitchedIn:
                    self._switch_gap(entry - self.switched_at if self.switched_at else 0, depth)
                    self.switched_at = 0
                elif cls is Resumed:
                    inside = MONITORING
                    depth = hidden = 0
                    if self.root_return:
                        chain = entry - self.root_return
                        self.root_gaps += chain
                    self.root_resumes += 1
                    if self.gap_tasks is not None:
                        self.gap_tasks = (self.gap_tasks[0], chain)
                else:
                    self._attach_tasks()  # an Awaiting
                    self.gap_tasks = (entry.tasks, 0)
                continue
            callee = entry[1]
            python = callee.__class__ is code_type
            if not inside:
                if callee is code_of_root:
                    inside = True
                continue
            parent = nodes[depth - 1] if depth else root
            started = entry[0]
            # Below a library function, a depth cut or an unrecorded node: keep the stacks balanced only.
            if parent is None or parent.library or depth >= max_depth:
                node = None
            elif python:
                # Keyed by id(): hashing a code object hashes its bytecode and constants each time.
                children = parent.children
                key = id(callee)
                if key in children:
                    node = children[key]
                else:
                    node = children[key] = trace.python_node(callee)
                if node is agent:  # the agent's own frames stay out of the tree: their time is the caller's
                    node, started = parent, HIDDEN
                    hidden += 1
                elif callee.co_flags & suspendable:
                    instance = instances[depth] = self._instance(node, (depth, key), started,
                                                                 entry[2] > first_offset(callee), chain)
                    started = INSTANCE
                    if not instance.resumed:
                        chain = 0  # the chain goes on only below resumed calls
                else:
                    chain = 0
            elif hidden and starts[depth - 1] == HIDDEN:  # what the agent's frames call (but Python code)
                node, started = parent, HIDDEN
                hidden += 1
            else:
                node = trace.c_node(parent, callee)
                chain = 0
            if depth == len(nodes):
                nodes.append(node)
                starts.append(started)
            else:
                nodes[depth] = node
                starts[depth] = started
            depth += 1
        self.inside = inside
        self.depth = depth
        self.hidden = hidden
        log.clear()

    def _switch_gap(self, gap: int, depth: int) -> None:
        """Its greenlet was switched out for ``gap`` ns with ``depth`` calls open below the root: wall
        time in each of them (and the root), awaited at the innermost one shown, not anyone's self."""
        nodes, starts = self.nodes, self.starts
        innermost = self.root
        for at in range(depth):
            node = nodes[at]
            if node is not None and starts[at] != HIDDEN:  # a HIDDEN entry's node is its parent's
                node.awaited += gap
                innermost = node
        self.switch_gaps += gap
        if innermost is not None:
            innermost.switches += 1

    def _instance(self, node: Node, key: Tuple[int, int], now: int, resumed: bool, chain: int) -> "Instance":
        """The call a generator's or coroutine's start or resumption belongs to."""
        known = self.suspended.pop(key, None)
        if resumed:
            node.resumes += 1
            if known is not None and known.node is node:
                if chain:
                    node.awaited += chain
                    self.gap_node = node
                else:
                    node.yielded += now - known.last
                known.resumed = True
                return known
            # Started before the tree did (passed in from outside): counted from here.
        elif known is not None:
            known.close()  # a new call in its place: that one had ended
        node.count += 1
        return Instance(node, key, now, resumed)

    def _attach_tasks(self) -> None:
        """The tasks of the last suspension, to the node that awaited them (the root by default)."""
        if self.gap_tasks is not None:
            tasks, gap = self.gap_tasks
            node = self.gap_node or self.root
            if node is not None:
                self.trace.add_tasks(node, tasks, gap)
        self.gap_tasks = None
        self.gap_node = None

    def finish(self) -> None:
        """The traced call ended: the calls of generators and coroutines are final now."""
        self._attach_tasks()
        for instance in self.suspended.values():
            instance.close()
        self.suspended.clear()
        for depth in range(self.depth):
            if self.starts[depth] == INSTANCE:
                self.instances[depth].close()

    def start(self) -> None:
        self.previous = sys.getprofile()
        self.on = True
        sys.setprofile(self.profile if MONITORING else self.arm)

    def resume(self) -> None:
        self.log.append(Resumed(perf_counter_ns()))
        self.start()

    # switches.py calls these on the host's thread, at each switch of the call's greenlet.
    def switched_out(self) -> None:
        trace = self.trace
        thread = self.call.thread
        if self.on and trace.active.get(thread) is self:
            self.log.append(SwitchedOut(perf_counter_ns()))
            self.stop()
            del trace.active[thread]
            self.switched = True

    def switched_in(self) -> None:
        if not self.switched:
            return  # switched out while not recording (a generator's consumer, say)
        self.switched = False
        trace = self.trace
        thread = self.call.thread
        if not trace.cancelled and trace.active.get(thread) is None:
            trace.active[thread] = self
            self.log.append(SwitchedIn(perf_counter_ns()))
            self.previous = sys.getprofile()
            self.on = True
            # In the middle of the call: its frames are running, past where ``arm`` waits.
            sys.setprofile(self.profile or self.arm)

    def stop(self) -> None:
        """Gives the thread its previous profiler back, once (the root's return may have done it)."""
        if self.on:
            self.on = False
            sys.setprofile(self.previous)


class Instance:
    """One call of a generator or coroutine in the tree, from its first start to its last return."""

    __slots__ = ("node", "key", "first", "last", "resumed")

    def __init__(self, node: Node, key: Tuple[int, int], start: int, resumed: bool) -> None:
        self.node = node
        self.key = key
        self.first = start
        self.last = start  # its last return (or yield) so far; the start until then
        self.resumed = resumed

    def close(self) -> None:
        """No more resumptions: its wall time counts for the node's min."""
        node = self.node
        elapsed = self.last - self.first
        if node.min == 0 or elapsed < node.min:
            node.min = elapsed


class Trace(instrument.ProbeStream):
    needs_args = False
    wants_enter = True
    wants_suspend = True
    rehearses = True  # --overhead-budget: a sampled call's cost is its profiler's, calibrated for real

    def tree_size(self, call: Call) -> int:
        recorder = call.data
        # About two log entries per call below the root (its call and its return), until folded.
        return len(recorder.log) // 2 if isinstance(recorder, Recorder) else 0

    def __init__(self, agent: Any, args: Dict[str, Any]) -> None:
        self.condition = observe.CallExpression(args.get("condition"), "condition", bool(args.get("unsafe")))
        self.min_cost_ns = int((streams.float_arg(args, "min_cost", 0.0, 0.0) or 0.0) * 1e6)
        self.max_depth = streams.int_arg(args, "depth", 32, 1, 1000)
        self.all = bool(args.get("all"))
        self.library = origins.library_prefixes() + ("<frozen ",)  # frozen modules are the stdlib's too
        super().__init__(agent, args)
        self.needs_args = self.condition.needs_args
        self.active: Dict[int, Recorder] = {}  # thread id -> the traced call running there
        self.modules: Dict[str, Optional[str]] = {}  # source file -> module name, for node names
        self.modules_seen = 0
        self.fold_at = [FOLD_AT]  # log entries a traced call folds at; a list so cancel can make it -1
        self.green: Dict[int, Recorder] = {}  # id -> recorders whose greenlet switches.py watches
        # The code objects the trees ran (3.12+), for requicken when the stream ends.
        self.traced_codes: Optional[Dict[int, Tuple[Any, Dict[str, Any]]]] = {} if MONITORING else None

    def python_node(self, code: Any) -> Node:
        filename = code.co_filename
        if is_agent_code(code):
            return AGENT  # the agent's code, or the trampoline of a function another command probes (3.9-3.11)
        library = not self.all and filename.startswith(self.library)
        module = self.module_of(filename)
        namespace = compat.module_namespace(module)
        name = compat.qualname(code, namespace)
        ran = self.traced_codes
        if ran is not None and namespace is not None and len(ran) < requicken.MAX_CODES:
            ran[id(code)] = (code, namespace)
        return Node("%s.%s" % (module, name) if module else name, filename, code.co_firstlineno, False, library, code)

    def c_node(self, parent: Node, func: Any) -> Node:
        # Bound builtin methods are new objects per access: key C functions by name.
        key = getattr(func, "__qualname__", None) or repr(func)
        node = parent.children.get(key)
        if node is None:
            module = getattr(func, "__module__", None)
            node = parent.children[key] = Node("%s.%s" % (module, key) if module else key, None, None, True, False)
        return node

    def _task_name(self, task: Any) -> str:
        try:
            coro = task.get_coro()
            code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
            return self.python_node(code).name if code is not None else type(coro).__name__
        except Exception:
            return type(task).__name__

    def module_of(self, filename: str) -> Optional[str]:
        # The log keeps code objects, not frames (whose globals name the module): map files to modules.
        if filename.startswith("<frozen "):
            return filename[8:-1]  # "<frozen os>"
        if filename not in self.modules and len(sys.modules) != self.modules_seen:
            self.modules_seen = len(sys.modules)
            for name, module in list(sys.modules.items()):
                path = getattr(module, "__file__", None)
                if isinstance(path, str):
                    self.modules.setdefault(path, name)
        return self.modules.get(filename)

    def on_enter(self, call: Call) -> None:
        if self.cancelled:
            return
        current = self.active.get(call.thread)
        if current is not None:
            if current.on:
                return  # recursion: the inner call is part of the outer tree
            # Its root returned with no exit event for us (the governor paused the probe while it
            # ran: 3.12+), and its profiler switched itself off. Left here, every later call on this
            # thread would pass for recursion and vanish. (The valve counts it as unfinished.)
            self.on_cut([current.call])
        recorder = Recorder(self, call)
        call.data = recorder
        self.active[call.thread] = recorder
        switches.follow(recorder, self.green)
        recorder.start()

    def on_cut(self, calls: List[Call]) -> None:
        """Traced calls a pause of the probe kept from ending (no tree): their thread is free
        again. Left in ``active``, every later call there would pass for recursion and vanish. A
        cut call still running switches its profiler off itself when its root returns."""
        for call in calls:
            recorder = call.data
            if isinstance(recorder, Recorder):
                if self.active.get(call.thread) is recorder:
                    del self.active[call.thread]
                switches.drop(recorder, self.green)
                call.data = None

    def on_suspend(self, call: Call) -> None:
        recorder = call.data
        if isinstance(recorder, Recorder) and self.active.get(call.thread) is recorder:
            recorder.stop()
            del self.active[call.thread]
            tasks = awaited_tasks(call.awaiting)
            if tasks is not None:
                recorder.log.append(Awaiting(tasks))

    def add_tasks(self, node: Node, tasks: List[Any], awaited: int) -> None:
        """Tasks a node awaited (started by the traced call or not): by coroutine, how many, their
        outcome when the tree is built, and how long it waited for them. What runs inside them is theirs:
        they run as the event loop's own steps, not below this call."""
        if node.tasks is None:
            node.tasks = {}
        for task in tasks:
            name = self._task_name(task)
            state = task_outcome(task)
            entry = node.tasks.get(name)
            if entry is None:
                entry = node.tasks[name] = {"function": name, "count": 0, "awaited_ms": 0}
            entry["count"] += 1
            entry[state] = entry.get(state, 0) + 1
        # One wait for all of them together (a gather): each coroutine's entry gets that wait once.
        names = set()
        for task in tasks:
            names.add(self._task_name(task))
        for name in names:
            node.tasks[name]["awaited_ms"] += awaited

    def on_resume(self, call: Call) -> None:
        recorder = call.data
        if isinstance(recorder, Recorder) and not self.cancelled:
            if self.active.get(call.thread) is None:
                self.active[call.thread] = recorder
                recorder.resume()

    def on_exit(self, call: Call) -> None:
        recorder = call.data
        if not isinstance(recorder, Recorder):
            return
        if self.active.get(call.thread) is recorder:
            recorder.stop()
            del self.active[call.thread]
        switches.drop(recorder, self.green)
        recorder.profile = None  # it holds the root's frame
        call.data = None
        cost = call.end - call.start
        if self.cancelled or cost < self.min_cost_ns:
            return
        if not self.passes(call):
            return
        self.emit_later(self._event, call, recorder)  # the tree is built off the host's thread

    def on_stop(self) -> None:
        super().on_stop()
        # Calls still running keep their profiler until their next call event: make it the last.
        self.fold_at[0] = -1
        switches.drop_all(self.green)
        self.refresh_traced()

    def refresh_traced(self) -> None:
        """Superinstructions back for what the trees ran (see requicken.py): after each tree where
        they are put back in place; else fresh code once the stream is over (at its end and after
        each tree still folded then), not between trees: the tree's nodes are keyed by code object,
        so a callee given fresh code during a traced call would show as two nodes."""
        if self.traced_codes:
            requicken.refresh_pending(engine_of(self.agent), self.traced_codes)

    def _event(self, call: Call, recorder: Recorder) -> Dict[str, Any]:
        recorder.fold()
        root = recorder.root or recorder._fold_state()
        recorder.finish()
        cost = call.end - call.start
        root.count, root.total, root.min, root.max = 1, cost, cost, cost
        root.resumes = recorder.root_resumes
        # A traced coroutine's (or async generator's) suspensions are awaits; a generator's, yields;
        # its greenlet's switches out, awaits.
        if call.probe.kind == "generator":
            root.yielded = recorder.root_gaps
            root.awaited = recorder.switch_gaps
        else:
            root.awaited = recorder.root_gaps + recorder.switch_gaps
        if call.exception is not None:
            root.exceptions = 1
        event = instrument.call_facts(call)
        event["tree"] = root.to_dict(self.min_cost_ns)
        if call.exception is not None:
            event["exception"] = "%s: %s" % (type(call.exception).__name__, call.exception)
        if self.cancelled or requicken.in_place_ready(engine_of(self.agent)):
            self.refresh_traced()
        return event


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Trace:
    return Trace(agent, args)
