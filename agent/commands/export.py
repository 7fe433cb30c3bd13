"""export: the observations the exporter sidecar (``peeka export``) turns into spans and metrics.

One stream per exporter connection. The host's threads only append finished calls to a bounded
buffer (full: the call is counted as dropped, never waited for); this stream's own thread renders
them in batches and sends ``{"kind": "spans", "spans": [...]}`` events, and every ``interval``
a ``{"kind": "stats", ...}`` event with monitor rows (exact call counts and cumulative duration
buckets for every probed function, whatever was dropped), GC collections, top-function sample
shares and drop counts. Probes leave with the stream: a new exporter never finds old ones.

What the probes cost the host is kept under ``overhead_budget`` percent of the process's CPU by
the governor (agent/governor.py): per function, 1 call in N becomes a span (decided before anything
is built; a traced tree at the root's start, so a tree is whole or absent), and a function whose
calls cost too much even unsampled is probed only part of the time. Monitor rows stay exact for the
calls seen; each row's ``governor`` says what was done (``sampling_ratio``, ``duty``, and
``estimated_calls``: calls while the probe was off, estimated from its rate while on, never added
to the counts). Spans of sampled functions carry ``peeka.sampling.probability``.

args:
  watch, trace, monitor   lists of probes, each a pattern string or {"pattern", "condition", "sample",
                          "max_per_second"} (watch and trace)
  regex, max_match        as for watch
  overhead_budget         percent of the process's CPU (default 5); 0 turns the governor off
  interval (s, default 5), capture_args (default true), capture_result (default true),
  max_value (chars per rendered value, default 256), redact (extra name fragments),
  buffer (calls waiting to be sent, default 20000), max_nodes (spans per trace tree, default 500)
  profile (default false), profile_rate (Hz, default 19): a continuous CPU profile, one event per interval

With ``profile``, the stream's stack sampler (the one ``top`` uses, CPU-weighted) runs at
``profile_rate`` instead of 10 Hz, keeps the lines its frames were at, and every ``interval`` sends
``{"kind": "profile", ...}``: the fields of ``top --record``'s profile event (time, duration_s, ticks,
rate_hz, weighting, frames, stacks, stacks_left_out) and ``links``: which samples may lie inside an
exported call, for the sidecar to tie to span ids (the agent never knows those; the sidecar makes
them): ``ticks``, [start, end] epoch ns of each sampling round, and ``stacks``, one per thread
and stack that held a watched or traced function, ``{"thread", "thread_id", "functions" (innermost
first), "ticks" (indices of the rounds that caught it)}``. Only the sampler, in this thread, reads
them: the host's threads do nothing more. Its CPU is the agent's, which the governor counts.

A span: {"name", "file", "line", "thread_id", "thread", "start_ns", "end_ns", "attributes",
"exception": {"type", "message", "stacktrace", "time_ns"} | None, "parent": index in the same
batch | None, "otel": [trace_id, span_id] (the target's own current OpenTelemetry span) | None};
when there is none, "remote": {"trace_id", "span_id", "flags", "tracestate"} from the W3C
traceparent of the request the call served (agent/inbound.py), and "kind": "server" with HTTP
attributes when the function is that request's entry point or view.
"""

from __future__ import annotations

import gc
import random
import sys
import threading
import time
import traceback
from collections import deque
from contextvars import copy_context as _copy_context
from typing import Any, Dict, List, Optional, Tuple

from .. import (
    compat,
    costs,
    governor,
    inbound,
    instrument,
    observe,
    origins,
    protocol,
    requicken,
    sampling,
    streams,
    switches,
    values,
)
from ..probes import (
    MONITORING,
    SUSPENDABLE,
    Call,
    Gate,
    awaited_tasks,
    engine_of,
    first_offset,
    task_outcome,
    to_epoch_ns,
)
from ..streams import CommandError, Stream
from ..threadids import cpu_clocks, native_ids

_FLUSH_EVERY = protocol.EXPORT_FLUSH_EVERY  # s between batches (one wakeup also takes a stack sample: each costs the host a GIL switch)
_BATCH = 2000  # spans per event at most
_SAMPLE_EVERY = 0.1  # s between stack samples for top-function shares
_TOP = 10  # top functions reported per interval (bounded label set)
_PROFILE_BYTES = 4 * 1024 * 1024  # JSON of one profile event's stacks, about (the heaviest first)
_SAMPLING = random.Random()  # the user's `sample`: our own generator, the host's random sequence untouched
_LINKED_SAMPLES = 50_000  # samples per interval kept with their round for linking to spans
_START_CAP = 500.0  # spans/s per function before the governor knows the rates


def _otel_parent() -> Optional[Tuple[str, str]]:
    """The target's own current OpenTelemetry span, read only when the target imported the API."""
    api = sys.modules.get("opentelemetry.trace")
    if api is None:
        return None
    try:
        ctx = api.get_current_span().get_span_context()
        if ctx.is_valid:
            return ("%032x" % ctx.trace_id, "%016x" % ctx.span_id)
    except Exception:
        pass
    return None


class _Tap:
    """A watch or trace entry: its pattern, condition, sampling and cap. Each of its functions gets
    its own listener (a feed) holding that function's sampling state, so a hot function sampled
    1 in 1000 leaves a cold one beside it untouched."""

    def __init__(self, export: "Export", spec: Dict[str, Any]) -> None:
        self.export = export
        self.pattern = spec["pattern"]
        # The export config's conditions follow the same rules as the CLI's, and are never --unsafe.
        self.condition = observe.CallExpression(spec.get("condition"), "condition")
        self.sample = float(spec.get("sample", 1.0))
        self.max_per_second = spec.get("max_per_second")
        self.targets = instrument.resolve(dict(export.args, pattern=self.pattern))
        self.needs_args = export.capture_args or self.condition.needs_args
        self.active: Dict[int, "SpanRecorder"] = {}  # trace: thread -> the tree being recorded there
        self.green: Dict[int, "SpanRecorder"] = {}  # trace: id -> trees whose greenlet switches.py watches
        self.feeds: Dict[str, "_Feed"] = {}

    def feed(self, name: str, push: Any = None) -> "_Feed":
        feed = (TreeFeed if isinstance(self, TreeTap) else SpanFeed)(self, push)
        self.feeds[name] = feed
        return feed

    def wanted(self, call: Call) -> bool:
        """The user's own sampling and condition (the governor's 1-in-N was decided before)."""
        if self.sample < 1.0 and _SAMPLING.random() >= self.sample:
            return False
        if self.condition.source is not None:
            return bool(self.condition.holds(call))  # failures counted in condition.failures
        return True


class SpanTap(_Tap):
    """watch entries: one span per call."""


class TreeTap(_Tap):
    """trace entries: the call and every Python call below it, each with its exact times."""


class _Feed(governor.Capped):
    """One function of a tap: head sampling (1 call in ``every``, set by the governor) and the cap."""

    def __init__(self, tap: _Tap, push: Any) -> None:
        self.tap = tap
        self.push = push or tap.export.push
        self.needs_args = tap.needs_args
        self.every = 1
        self.countdown = 1
        self.probability = 1.0  # share of all calls that may become spans (governor's view), for span attributes
        self.sampled = 0  # calls that passed the head sample (read and reset by the governor)
        self.nodes = 0  # trace: nodes recorded below them
        cap = tap.max_per_second
        self.max_per_second = float(cap) if cap is not None else None
        # Until the governor's first plan, a hot function could fill the buffer and starve a cold one.
        self.cap = self.max_per_second if not tap.export.budget else min(self.max_per_second or _START_CAP, _START_CAP)
        self.tokens = self.cap or 0.0

    def on_removed(self, probe: Any) -> None:
        self.tap.export.reset = True

    def _head(self, *_: Any) -> bool:
        """Whether this call is sampled: a countdown, no clock and no random number."""
        left = self.countdown - 1
        if left > 0:
            self.countdown = left
            return False
        self.countdown = self.every
        return True

    def weight(self) -> float:
        return self.probability * self.tap.sample


class SpanFeed(_Feed):
    """watch: unsampled calls are turned away by the gate, before any Call is made."""

    def __init__(self, tap: _Tap, push: Any) -> None:
        super().__init__(tap, push)
        self.gate = Gate.calling(self._head)  # (start, end, result, exception) -> sampled?

    def on_exit(self, call: Call) -> None:
        self.sampled += 1
        if self._admit(call.end) and self.tap.wanted(call):
            otel = _otel_parent()
            self.push(("call", call, otel, self.weight(), None if otel else _copy_context()))


class TreeFeed(_Feed):
    """trace: sampled at the call's start, so an unsampled call records nothing and a sampled tree is whole."""

    wants_enter = True
    wants_suspend = True

    def on_enter(self, call: Call) -> None:
        tap = self.tap
        if tap.export.cancelled or call.thread in tap.active:
            return  # recursion, or a call below another traced one: part of the outer tree
        if not self._head() or not self._admit(call.start):
            return
        self.sampled += 1
        recorder = SpanRecorder(tap, call)
        call.data = recorder
        tap.active[call.thread] = recorder
        switches.follow(recorder, tap.green)
        recorder.start()

    def on_suspend(self, call: Call) -> None:
        recorder = call.data
        if isinstance(recorder, SpanRecorder) and self.tap.active.get(call.thread) is recorder:
            recorder.stop()
            del self.tap.active[call.thread]
            tasks = awaited_tasks(call.awaiting)
            if tasks is not None:
                recorder.awaiting(tasks)

    def on_resume(self, call: Call) -> None:
        recorder = call.data
        tap = self.tap
        if isinstance(recorder, SpanRecorder) and not tap.export.cancelled and call.thread not in tap.active:
            recorder.resumed()
            tap.active[call.thread] = recorder
            recorder.start()

    def on_cut(self, calls: List[Call]) -> None:
        """Traced calls a pause of the probe kept from ending for us: absent (counted as incomplete),
        and their thread free again for the next traced call (a stale entry in ``active`` made every
        later call there pass for recursion and vanish). One still running switches its profiler
        off when its root returns (``orphan``)."""
        tap = self.tap
        for call in calls:
            recorder = call.data
            if isinstance(recorder, SpanRecorder):
                recorder.orphan = True
                if tap.active.get(call.thread) is recorder:
                    del tap.active[call.thread]
                switches.drop(recorder, tap.green)
                call.data = None
                tap.export.incomplete += 1

    def on_exit(self, call: Call) -> None:
        recorder = call.data
        if not isinstance(recorder, SpanRecorder):
            return
        tap = self.tap
        if tap.active.get(call.thread) is recorder:
            recorder.stop()
            del tap.active[call.thread]
        switches.drop(recorder, tap.green)
        call.data = None
        recorder.add_awaits(call.end)
        self.nodes += len(recorder.nodes)
        if recorder.cut:
            tap.export.incomplete += 1  # complete or absent: a tree cut by max_nodes or depth is not sent
        elif tap.wanted(call):
            otel = _otel_parent()
            self.push(("tree", call, otel, self.weight(), None if otel else _copy_context(), recorder.nodes))


class SpanRecorder:
    """Python calls below one traced call, as a flat list: [name, file, line, start, end, parent, library].

    A generator's or coroutine's call is one span from its first start to its final return, as
    watch times it: its node is found again, by its frame, when the call resumes (the frame lives
    while the call is suspended), and each return or yield moves its end. A greenlet's (gevent,
    eventlet): while it is switched out the profiler is off (switches.py), so other greenlets'
    calls are not below it, and its open spans go on: they end when their calls return.
    """

    def __init__(self, tap: _Tap, call: Call) -> None:
        self.tap = tap
        self.call = call
        self.nodes: List[List[Any]] = []
        # Indexes of nodes in progress (-1: not recorded, stack kept balanced; (parent,): an agent frame)
        self.open: List[Any] = []
        self.suspendable: Dict[int, Tuple[int, Any]] = {}  # id(frame) of a generator or coroutine -> (node, code)
        self.root_frame: Any = call.frame if MONITORING else None
        self.inside = MONITORING  # code swap: the copy's own frame starts the tree
        self.previous: Any = None
        self.cut = False  # nodes were left out for max_nodes or depth: the tree is not sent
        # Tasks the traced call awaited (they run as the event loop's steps, not below it): per
        # suspension [tasks, their functions, start, end].
        self.awaits: List[List[Any]] = []
        self.greenlet: Any = None  # the greenlet the call runs in, when switches.py watches it
        self.switched = False  # its greenlet was switched out with our profiler on
        self.orphan = False  # a pause of the probe kept its call from ending for us (TreeFeed.on_cut)

    # switches.py calls these on the host's thread, at each switch of the call's greenlet.
    def switched_out(self) -> None:
        active = self.tap.active
        thread = self.call.thread
        if active.get(thread) is self:
            sys.setprofile(self.previous)
            del active[thread]
            self.switched = True

    def switched_in(self) -> None:
        if not self.switched:
            return
        self.switched = False
        active = self.tap.active
        thread = self.call.thread
        if not self.tap.export.cancelled and active.get(thread) is None:
            active[thread] = self
            self.previous = sys.getprofile()
            sys.setprofile(self.profile)

    def profile(self, frame: Any, event: str, arg: Any) -> None:
        if self.tap.export.cancelled:
            sys.setprofile(self.previous)
            return
        try:
            self._event(frame, event)
        except Exception:
            pass

    def _event(self, frame: Any, event: str) -> None:
        if not self.inside:
            if event == "call" and frame.f_code is self.call.probe.code and self.root_frame is None:
                self.root_frame = frame
                self.inside = True
            return
        if frame is self.root_frame:
            if event == "return":
                self.inside = False  # a yield, or the end: what follows is not below this call
                if self.call.probe.paused or self.orphan:
                    # The governor switched the probe off (3.12+), now or for a while during the
                    # call: no exit event will come to stop us.
                    sys.setprofile(self.previous)
                    if self.tap.active.get(self.call.thread) is self:
                        del self.tap.active[self.call.thread]
            return
        if event == "call":
            export = self.tap.export
            parent = self.open[-1] if self.open else None
            if parent.__class__ is tuple:
                parent = parent[0]
            code = frame.f_code
            if code.co_filename.startswith("<peeka") or (code.co_kwonlyargcount == 1
                                                         and code.co_varnames[0] == "_peeka_hook"):
                self.open.append((parent,))  # the agent's frame (probes.is_agent_code): its callees are the caller's
                return
            if code.co_flags & SUSPENDABLE and frame.f_lasti > first_offset(code):
                # A resumption: the same call goes on (-1 when its start was not recorded; the code
                # tells a frame id reused after a recorded call ended).
                known = self.suspendable.get(id(frame))
                self.open.append(known[0] if known is not None and known[1] is code else -1)
                return
            if parent == -1 or (parent is not None and self.nodes[parent][6]):
                self.open.append(-1)  # below a library callee
                return
            if len(self.open) >= 32 or len(self.nodes) >= export.max_nodes:
                self.cut = True  # too deep or too many: the tree is not sent
                self.open.append(-1)
                return
            module = frame.f_globals.get("__name__")
            name = compat.qualname(code, frame.f_globals)
            ran = export.traced_codes
            if ran is not None and len(ran) < requicken.MAX_CODES:
                ran[id(code)] = (code, frame.f_globals)
            if code.co_flags & SUSPENDABLE:
                self.suspendable[id(frame)] = (len(self.nodes), code)
            self.open.append(len(self.nodes))
            self.nodes.append(["%s.%s" % (module, name) if module else name, code.co_filename,
                               code.co_firstlineno, time.perf_counter_ns(), 0, parent,
                               code.co_filename.startswith(export.library)])
        elif event == "return" and self.open:
            index = self.open.pop()
            if index.__class__ is int and index >= 0:
                self.nodes[index][4] = time.perf_counter_ns()  # a yield's, until the call's last return

    def awaiting(self, tasks: List[Any]) -> None:
        """The traced call suspended on these tasks (the host's thread: their functions read now,
        while their coroutines have frames)."""
        names = []
        for task in tasks:
            try:
                coro = task.get_coro()
                code = coro.cr_code
                frame = coro.cr_frame
                module = frame.f_globals.get("__name__") if frame is not None else None
                name = compat.qualname(code, frame.f_globals if frame is not None else None)
                names.append("%s.%s" % (module, name) if module else name)
            except Exception:
                names.append(type(task).__name__)
        self.awaits.append([tasks, names, time.perf_counter_ns(), 0])

    def resumed(self) -> None:
        if self.awaits and not self.awaits[-1][3]:
            self.awaits[-1][3] = time.perf_counter_ns()

    def add_awaits(self, end: int) -> None:
        """Each wait on tasks as a span below the traced call: ``await F (N tasks: outcomes)``, from
        the suspension to the resumption. (What runs inside the tasks is not traced: not below it.)"""
        for tasks, names, start, resumed in self.awaits:
            by_name: Dict[str, List[str]] = {}
            for task, name in zip(tasks, names):
                by_name.setdefault(name, []).append(task_outcome(task))
            for name, outcomes in by_name.items():
                counted = ", ".join("%d %s" % (outcomes.count(o), o) for o in sorted(set(outcomes)))
                self.nodes.append(["await %s (%d task%s: %s)" % (name, len(outcomes), "" if len(outcomes) == 1 else "s",
                                                                  counted), None, 0, start, resumed or end, None, False])
        self.awaits = []

    def start(self) -> None:
        if self.root_frame is not None:
            self.inside = True
        self.previous = sys.getprofile()
        sys.setprofile(self.profile)

    def stop(self) -> None:
        sys.setprofile(self.previous)
        now = time.perf_counter_ns()
        for index in self.open:  # suspended or cut short: close what is open at this moment
            if index.__class__ is int and index >= 0:
                self.nodes[index][4] = now
        self.open = []


def _probe_specs(args: Dict[str, Any], key: str) -> List[Dict[str, Any]]:
    raw = args.get(key) or []
    if not isinstance(raw, list):
        raise CommandError("%s must be a list of patterns, got %r" % (key, raw))
    specs = []
    for item in raw:
        spec = {"pattern": item} if isinstance(item, str) else item
        if not isinstance(spec, dict) or not isinstance(spec.get("pattern"), str):
            raise CommandError("each %s entry is a pattern or {\"pattern\": ...}, got %r" % (key, item))
        sample = spec.get("sample", 1.0)
        if type(sample) not in (int, float) or not 0.0 < sample <= 1.0:
            raise CommandError("sample for %r must be a ratio in (0, 1], got %r" % (spec["pattern"], sample))
        cap = spec.get("max_per_second")
        if cap is not None and (type(cap) not in (int, float) or cap <= 0):
            raise CommandError("max_per_second for %r must be a positive number, got %r" % (spec["pattern"], cap))
        specs.append(spec)
    return specs


def _one_monitor_per_function(monitors: List[costs.Monitor]) -> List[costs.Monitor]:
    """Patterns may overlap (a watch and a trace on the same view): count each function once."""
    seen = set()
    kept = []
    for monitor in monitors:
        monitor.targets = [(name, f) for name, f in monitor.targets if name not in seen]
        seen.update(name for name, _ in monitor.targets)
        if monitor.targets:
            monitor.keep({name for name, _ in monitor.targets})
            kept.append(monitor)
    return kept


class Export(Stream):
    def __init__(self, agent: Any, args: Dict[str, Any]) -> None:
        Stream.__init__(self, None)
        self.agent = agent
        self.args = {k: args[k] for k in ("regex", "max_match") if k in args}
        self.interval = streams.float_arg(args, "interval", 5.0, 0.05) or 5.0
        self.capture_args = args.get("capture_args", True) is not False
        self.capture_result = args.get("capture_result", True) is not False
        self.max_value = streams.int_arg(args, "max_value", 256, 16, 1 << 16)
        self.capacity = streams.int_arg(args, "buffer", 20_000, 1, 10_000_000)
        self.max_nodes = streams.int_arg(args, "max_nodes", 500, 1, 100_000)
        # The code objects traced trees ran, for requicken: kept (setup) only where the interpreter
        # needs it, so elsewhere a traced call's callees cost nothing more on the host's thread.
        self.traced_codes: Optional[Dict[int, Tuple[Any, Dict[str, Any]]]] = None
        budget = streams.float_arg(args, "overhead_budget", protocol.DEFAULT_EXPORT_BUDGET, 0.0)
        self.budget = budget / 100.0 if budget else None  # share of the process's CPU; 0: no governor
        extra = args.get("redact") or []
        if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
            raise CommandError("redact must be a list of name fragments, got %r" % (extra,))
        self.redact = tuple(x.lower() for x in values.SECRET_FRAGMENTS + tuple(extra))
        self.library = origins.library_prefixes()
        self.taps: List[_Tap] = [SpanTap(self, s) for s in _probe_specs(args, "watch")]
        self.taps += [TreeTap(self, s) for s in _probe_specs(args, "trace")]
        patterns = [t.pattern for t in self.taps] + [s["pattern"] for s in _probe_specs(args, "monitor")]
        if not patterns:
            raise CommandError("nothing to export: give at least one watch, trace or monitor pattern")
        # Exact counts and durations for every probed function come from monitor's light listener.
        self.monitors = _one_monitor_per_function(
            [costs.Monitor(agent, dict(self.args, pattern=p, cycle=self.interval)) for p in dict.fromkeys(patterns)])
        self.buffer: Any = deque()  # append and popleft are atomic: no lock on the host's path
        self.buffer_dropped = 0
        self.incomplete = 0  # traced trees not sent because max_nodes or depth cut them
        self.governor: Optional[governor.Governor] = None
        # Calibrated before the first response: once the client hears the stream started, every call counts.
        self.unit_costs = self._calibrated(engine_of(agent)) if self.budget else {}
        self.reset = False
        self.sampler = sampling.Sampler()
        self.sampler.use_clocks(cpu_clocks(native_ids()))
        self.names = sampling.Names()
        self.profiling = bool(args.get("profile", False))
        self.profile_rate = streams.int_arg(args, "profile_rate", protocol.DEFAULT_PROFILE_RATE, 1, protocol.MAX_TOP_RATE)
        self.profile = _ProfileWindow(self) if self.profiling else None
        self._threads_seen = -1  # threading.active_count() when the sampler's skip set was made
        self._done = threading.Event()

    def describe(self) -> Dict[str, Any]:
        functions = sorted({name for m in self.monitors for name, _ in m.targets})
        return {"stream": True, "functions": functions, "technique": engine_of(self.agent).technique,
                "affected": "%d function%s" % (len(functions), "" if len(functions) == 1 else "s")}

    def setup(self) -> None:
        engine = engine_of(self.agent)
        try:
            for monitor in self.monitors:
                monitor.setup()
            for tap in self.taps:
                for name, func in tap.targets:
                    engine.add(func, name, tap.feed(name))
            if self.budget:
                self.governor = governor.Governor(engine, self.budget, self._governed(self.unit_costs))
            if any(isinstance(tap, TreeTap) for tap in self.taps) and requicken.needed(engine):
                self.traced_codes = {}
        except Exception:
            self.on_stop()
            raise

    def _calibrated(self, engine: Any) -> Dict[str, governor.UnitCosts]:
        """Per-call costs of each kind of probe this stream installs, timed once per agent and
        configuration (a restarted exporter reuses them)."""
        cache = self.agent.state.setdefault("export_calibration", {})
        discard: Any = deque(maxlen=64)
        out = {}
        for kind, tap in (("monitor", None), ("watch", next((t for t in self.taps if isinstance(t, SpanTap)), None)),
                          ("trace", next((t for t in self.taps if isinstance(t, TreeTap)), None))):
            if kind != "monitor" and tap is None:
                continue
            key = (kind, tap is not None and tap.needs_args)
            if key not in cache:
                def make(sample_all: bool, tap: Any = tap) -> Any:
                    feed = tap.feed("_peeka_calibration", discard.append)
                    feed.every = feed.countdown = 1 if sample_all else governor.MAX_EVERY
                    feed.cap = None
                    return feed
                cache[key] = governor.calibrate(engine, make if tap is not None else None, kind == "trace")
            out[kind] = cache[key]
        for tap in self.taps:
            tap.feeds.pop("_peeka_calibration", None)
        return out

    def _governed(self, unit_costs: Dict[str, governor.UnitCosts]) -> List[governor.Governed]:
        ours = set(self.monitors)
        feeds: Dict[str, List[Any]] = {}
        caps: Dict[str, Optional[float]] = {}
        kinds: Dict[str, str] = {}
        for tap in self.taps:
            kind = "trace" if isinstance(tap, TreeTap) else "watch"
            for name, feed in tap.feeds.items():
                ours.add(feed)
                feeds.setdefault(name, []).append(feed)
                if kind == "trace" or name not in kinds:
                    kinds[name] = kind
                if tap.max_per_second is not None:
                    caps[name] = min(caps.get(name) or float("inf"), float(tap.max_per_second))
        out = []
        for monitor in self.monitors:
            for (name, _), probe in zip(monitor.targets, monitor.probes):
                out.append(governor.Governed(name, probe, unit_costs[kinds.get(name, "monitor")], feeds.get(name, []),
                                             ours.__contains__, caps.get(name)))
        return out

    def on_stop(self) -> None:
        engine = engine_of(self.agent)
        if self.governor is not None:
            self.governor.resume_all()  # paused probes are installed again, then removed as usual
        for tap in self.taps:
            for feed in tap.feeds.values():
                engine.remove(feed)
            switches.drop_all(tap.green)
        self.refresh_traced()
        self.traced_codes = None
        for monitor in self.monitors:
            monitor.cancel("export ended")
        self._done.set()

    def refresh_traced(self) -> None:
        """Fresh code for the functions traced trees ran since the last time (see requicken.py):
        at each flush (stream's thread), and when the stream ends."""
        if self.traced_codes:
            requicken.refresh_pending(engine_of(self.agent), self.traced_codes)

    # -- host threads
    def push(self, item: Tuple[Any, ...]) -> None:
        if self.cancelled:
            return
        if len(self.buffer) >= self.capacity:
            self.buffer_dropped += 1
            return
        self.buffer.append(item)

    # -- this stream's thread
    def run(self) -> None:
        next_stats = time.monotonic() + self.interval
        next_sample = 0.0
        next_plan = time.monotonic() + governor.UPDATE_EVERY / 2  # a first look soon: a hot probe costs from the start
        due: Optional[float] = None  # the governor's next switch of a probe on or off
        render_cpu = 0.0
        sample_every = 1.0 / self.profile_rate if self.profiling else _SAMPLE_EVERY
        slow = 1.0  # the governor's factor on the flush and (without --profile) stack sample intervals
        wait = _FLUSH_EVERY
        while not self._done.wait(wait):
            now = time.monotonic()
            rule = self.governor
            if rule is not None:
                due = rule.toggle(now)
            if now >= next_sample:
                self._sample()
                next_sample += sampling.jittered(sample_every)
                if next_sample < now:  # fell behind (a long GIL wait): skip, do not burst
                    next_sample = now + sampling.jittered(sample_every)
            started = time.thread_time()
            self._flush(due)
            self.refresh_traced()
            render_cpu += time.thread_time() - started
            for monitor in self.monitors:
                monitor.drain()
            if rule is not None and now >= next_plan:
                rule.update(now, self._seen(), render_cpu)
                render_cpu = 0.0
                next_plan = now + governor.UPDATE_EVERY
                due = rule.toggle(time.monotonic())
                slow = governor.slower(slow, rule.parts.get("agent_fixed", 0.0), rule.budget)
                if not self.profiling:  # a profile's rate is the user's
                    sample_every = _SAMPLE_EVERY * slow
            if now >= next_stats:
                self.emit(self._stats())
                next_stats = now + self.interval
            wait = min(_FLUSH_EVERY * slow, next_sample - time.monotonic())
            if due is not None:
                wait = min(wait, due - time.monotonic())
            wait = max(0.0, wait)
            if self.reset or any(m.cancelled for m in self.monitors):
                # `peeka reset` took probes away: end, so the exporter re-installs them (it retries).
                self._flush()
                self.emit(self._stats())
                self.finish("reset")
                return

    def _flush(self, until: Optional[float] = None) -> None:
        """Render and send what the buffer holds; ``until``: stop then (the governor has a probe to switch)."""
        spans: List[Dict[str, Any]] = []
        for n in range(len(self.buffer)):
            if until is not None and not n % 64 and time.monotonic() >= until:
                break
            item = self.buffer.popleft()
            try:
                self._render(item, spans)
            except Exception:
                self.buffer_dropped += 1
            if len(spans) >= _BATCH:
                self._send(spans)
                spans = []
        if spans:
            self._send(spans)

    def _send(self, spans: List[Dict[str, Any]]) -> None:
        if not self.emit({"kind": "spans", "spans": spans}):
            self.buffer_dropped += len(spans)  # the client's outbox was full

    def _seen(self) -> Dict[str, int]:
        """Calls each function's monitor counted since the last look (only while its probe was on)."""
        seen: Dict[str, int] = {}
        for monitor in self.monitors:
            for name in monitor.seen:
                seen[name] = monitor.seen[name]
                monitor.seen[name] = 0
        return seen

    def _render(self, item: Tuple[Any, ...], out: List[Dict[str, Any]]) -> None:
        # item: (kind "call" | "tree", call, the target's own OTel parent, sampling probability,
        #        the call's contextvars when it had no OTel parent[, tree nodes])
        call = item[1]
        root = len(out)
        span = self._call_span(call)
        span["otel"] = item[2]
        if item[3] < 1.0:
            span["attributes"]["peeka.sampling.probability"] = item[3]
        if item[2] is None:
            self._join(span, call, item[4])
        out.append(span)
        if item[0] != "tree":
            return
        base = len(out)
        for name, file, line, start, end, parent, _library in item[5]:
            out.append({"name": name, "file": file, "line": line, "thread_id": span["thread_id"],
                        "thread": span["thread"], "start_ns": to_epoch_ns(start),
                        "end_ns": to_epoch_ns(end or call.end), "attributes": {}, "exception": None,
                        "parent": root if parent is None else base + parent, "otel": None})

    def _join(self, span: Dict[str, Any], call: Call, context: Any) -> None:
        """The request the call served (its arguments, its context): the remote parent from its
        traceparent, and the HTTP server facts when the function is its entry point or view."""
        try:
            found = inbound.inbound(call.params, context, call.result, call.probe.func)
        except Exception:
            return
        if found is None:
            return
        if found.parent is not None:
            span["remote"] = found.parent
        if found.server:
            span["kind"] = "server"
            span["attributes"].update(found.attributes)

    def _call_span(self, call: Call) -> Dict[str, Any]:
        attributes: Dict[str, str] = {}
        if self.capture_args and call.params:
            for key, value in call.params.items():
                attributes["peeka.arg." + key] = self._value(key, value)
        if self.capture_result and call.exception is None:
            attributes["peeka.result"] = self._value("result", call.result)
        exception = None
        if call.exception is not None:
            exc = call.exception
            exception = {"type": "%s.%s" % (type(exc).__module__, type(exc).__qualname__)
                         if type(exc).__module__ != "builtins" else type(exc).__qualname__,
                         "message": str(exc)[: self.max_value * 4],
                         "stacktrace": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                         "time_ns": to_epoch_ns(call.end)}
        return {"name": call.probe.name, "file": call.probe.filename, "line": call.probe.lineno,
                "thread_id": call.thread, "thread": call.thread_name,
                "start_ns": to_epoch_ns(call.start), "end_ns": to_epoch_ns(call.end),
                "attributes": attributes, "exception": exception, "parent": None}

    def _value(self, name: str, value: Any) -> str:
        return values.redacted_repr(name, value, self.max_value, self.redact)

    def _sample(self) -> None:
        # The agent's own threads are not sampled; listed again only when the thread count moved
        # (every round, a 500-thread process's enumeration would cost more than the sample).
        count = threading.active_count()
        if count != self._threads_seen:
            self._threads_seen = count
            self.sampler.skip = frozenset(t.ident for t in threading.enumerate()
                                          if t.name.startswith("peeka") and t.ident is not None)
        profile = self.profile
        if profile is None:
            self.sampler.sample()
        else:
            profile.sample()

    def _top(self) -> List[List[Any]]:
        """The busiest functions since the last stats: share of the CPU the samples caught in each
        (self time), weighted by each thread's CPU clock as ``top`` weighs them (top.py); with a
        profile, its event goes out first, from the same samples."""
        weigh = self.sampler.clocks is not None
        raw, ticks, _busy = self.sampler.take()
        if weigh:
            raw, _shared = sampling.apportion(raw)
        if self.profile is not None:
            try:
                self.emit(self.profile.close(raw, ticks, weigh))
            except Exception:
                self.profile.failed += 1
        # The threads of the next interval; a thread started since counts from then on.
        self.sampler.use_clocks(cpu_clocks(native_ids()))
        _samples, functions = sampling.summarize(sampling.label_stacks(raw, 1.0, {}, self.names), self.names.where, _TOP)
        self.names.forget()  # this report is done: code objects no longer sampled are let go
        return [[f["function"], round(f["self_percent"] / 100.0, 4)] for f in functions if f["self_samples"]]

    def _stats(self) -> Dict[str, Any]:
        rows = [row for monitor in self.monitors for row in monitor.snapshot()["functions"]]
        rule = self.governor
        overhead = None
        if rule is not None:
            for row in rows:
                row["governor"] = rule.row(row["function"])
            overhead = {"ratio": round(rule.ratio, 5), "budget": rule.budget,
                        "unit_costs_ns": {g.name: [round(c) for c in g.costs] for g in rule.functions},
                        "agent_ns_per_span": round(rule.span_ns),
                        "parts": {k: round(v, 5) for k, v in rule.parts.items()},
                        # The calls' budget was the floor: a mostly idle process, whose ratio may pass the budget.
                        "floored": rule.floored, "floor_ns_per_s": governor.FLOOR_NS_PER_S,
                        "scale": round(rule.scale, 3)}
        return {"kind": "stats", "time": time.time(), "functions": rows,
                "gc": [g.get("collections", 0) for g in gc.get_stats()], "top": self._top(),
                "dropped": self.buffer_dropped, "incomplete_trees": self.incomplete, "overhead": overhead}


class _ProfileWindow:
    """One interval of the continuous profile: the sampler's counts with lines, and the rounds that
    caught a thread inside a watched or traced function (kept for the sidecar's links to spans)."""

    def __init__(self, export: Export) -> None:
        self.export = export
        self.sampler = export.sampler
        self.sampler.counts = {}
        self.roots = frozenset(name for tap in export.taps for name, _func in tap.targets)
        self.sampler.caught = [] if self.roots else None
        self.started = time.time()
        self.rounds: List[List[int]] = []
        self.linked: Dict[sampling.Sid, List[int]] = {}  # stack -> the rounds that caught it inside a root
        self.linked_samples = 0
        self.links_left_out = 0
        self.failed = 0
        # The stacks seen, by the sampler's Sid (ids of code objects: a tuple of code objects hashes
        # every code object's fields anew) -> ((ident, codes), a root function is on them). The entry
        # holds the code objects, so the ids in its Sid stay theirs.
        self._inside: Dict[sampling.Sid, Tuple[Tuple[int, Tuple[Any, ...]], bool]] = {}

    def sample(self) -> None:
        sampler = self.sampler
        caught = sampler.caught
        start = time.perf_counter_ns()
        sampler.sample()
        end = time.perf_counter_ns()
        if caught is None:
            return
        tick = len(self.rounds)  # this round's index, if it catches a thread inside a root function
        kept = False
        inside = self._inside
        label = self.export.names.label
        for sid in caught:
            known = inside.get(sid)
            if known is None:
                key = sampler.stack(sid)
                known = inside[sid] = (key, any(label(code) in self.roots for code in key[1]))
            if known[1]:
                if self.linked_samples >= _LINKED_SAMPLES:
                    self.links_left_out += 1
                    continue
                self.linked.setdefault(sid, []).append(tick)
                self.linked_samples += 1
                kept = True
        caught.clear()
        if kept:
            self.rounds.append([to_epoch_ns(start), to_epoch_ns(end)])

    def close(self, raw: Any, ticks: int, weigh: bool) -> Dict[str, Any]:
        """The interval's profile event (see the module's docstring), and start the next."""
        sampler = self.sampler
        now = time.time()
        counts = sampler.take_counts()
        names = self.export.names
        thread_names = {t.ident: t.name for t in threading.enumerate() if t.ident is not None}
        detail: sampling.Detailed = {}
        sampling.detail(raw if weigh else None, counts, thread_names, names, detail)
        frames, stacks, left_out = sampling.frames_and_stacks(detail, names, weigh, _PROFILE_BYTES)
        linked = [{"thread": thread_names.get(ident, str(ident)), "thread_id": ident,
                   "functions": [names.label(code) for code in codes], "ticks": rounds}
                  for (ident, codes), rounds in ((self._inside[sid][0], rounds) for sid, rounds in self.linked.items())]
        event = {"kind": "profile", "time": self.started, "duration_s": round(now - self.started, 3), "ticks": ticks,
                 "rate_hz": self.export.profile_rate, "weighting": "cpu" if weigh else "wall",
                 "frames": frames, "stacks": stacks, "stacks_left_out": left_out,
                 "links": {"ticks": self.rounds, "stacks": linked, "left_out": self.links_left_out}}
        self.started = now
        self.rounds, self.linked, self.linked_samples, self.links_left_out = [], {}, 0, 0
        if len(self._inside) > 10_000:
            self._inside.clear()
        return event


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Export:
    return Export(agent, args)
