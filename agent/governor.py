"""The overhead governor: keeps what a stream's probes cost their host under a share of its CPU.

Nobody writing an exporter's configuration knows how often a pattern's functions run, so the agent
finds out and decides. Three numbers per probed function feed the decision:

* its call rate while probed (exact: monitor's count of calls seen while the probe is on);
* what each call costs the host's thread, calibrated once in this interpreter by timing a dummy
  function bare and probed the same way (``calibrate``): ``base`` for every call (the callbacks,
  monitor's count, the sampling check), ``sampled`` more for a call that becomes a span, ``node``
  per Python call recorded below a traced call;
* what the agent's own threads spend (rendering, encoding, stack samples), measured directly from
  each thread's CPU clock and shared among functions by the spans they produced; what is left
  (wakeups, stack samples) is the agent's fixed part, which ``slower`` makes rarer when it is over
  a quarter of the budget.

The budget is a share of the process's CPU time over the same window (``time.process_time``).
``plan`` shares it out max-min fairly (a cold function beside a hot one costs little, so it keeps
every call), then pulls the levers cheapest first for a function over its share: head sampling
(1 call in N becomes a span; an unsampled call costs only ``base``), a rate cap, and, when ``base``
alone is over, a duty cycle: the probe is off (``Engine.pause``, zero cost) most of each period.

Export's feeds and the CLI's probe streams (``--overhead-budget``, ``Valve`` in front of the
stream, instrument.ProbeStream) run the same ``Governor``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

from . import procfs, protocol, threadids
from .probes import Call, Engine, Gate, Listener

DUTY_ON_MIN = 0.02  # s: the shortest on-window (the stream's thread must get the GIL to end it)
DUTY_PERIOD_MAX = 20.0  # s between on-windows at most
FULL = 0.999  # a duty ratio at or above this is "always on"
DUTY_MIN = DUTY_ON_MIN / DUTY_PERIOD_MAX  # on at least once a period, so the rate stays known
# The budget of what the levers control (calls and their spans) never goes under 5 ms of CPU per
# second, half a percent of one core: a share of a mostly idle process's CPU would sample out its few
# calls (~80 us a traced span, host and agent), where their whole cost is far from slowing anything.
# The floor only matters below a tenth of a core; the ratio reported stays the share of the process.
FLOOR_NS_PER_S = 5e6
MAX_EVERY = 1 << 20
KEEP_SHARE = 0.3  # of the budget: functions that cost less than their part of it keep every call
FIXED_SHARE = 0.25  # of the budget: the agent's own periodic work (wakeups, stack samples) above it runs slower
MAX_SLOWER = protocol.EXPORT_MAX_SLOWER  # that periodic work runs at most this many times less often
HEADROOM = 0.8  # plans aim at this share of the budget: estimates err, and the switches come late


class UnitCosts(NamedTuple):
    """Host CPU per call of one probe configuration (ns), calibrated in this interpreter."""

    base: float  # every call while the probe is on
    sampled: float  # more per call that becomes a span (or a traced tree's root)
    node: float = 0.0  # trace: more per Python call recorded below the root


class Demand(NamedTuple):
    """One probed function, as ``plan`` sees it."""

    name: str
    rate: float  # calls per second while its probe is on
    base_ns: float  # cost of every call while on
    sample_ns: float  # cost of each call that becomes a span (the host's part plus the agent's)
    pausable: bool  # only this stream listens: the probe may be duty-cycled off
    max_per_second: Optional[float] = None  # a configured cap on spans per second
    exports: bool = True  # False for monitor-only functions (nothing to sample)


class Setting(NamedTuple):
    every: int  # 1 call in ``every`` (while on) becomes a span
    duty: float  # share of the time the probe is on

    @property
    def ratio(self) -> float:
        """The share of all calls that becomes a span."""
        return self.duty / self.every


ALWAYS = Setting(1, 1.0)


def plan(demands: List[Demand], budget_ns_per_s: float, scale: float = 1.0, keep_ns_per_s: float = 0.0) -> Dict[str, Setting]:
    """Each function's setting so that the total cost stays under the budget (pure). ``scale``
    corrects the shares of functions over their fair share only (what the estimate missed comes from
    their switches and sampling), so a function that fits keeps every call. A function whose whole
    cost is at most ``keep_ns_per_s`` keeps every call whatever the others cost (a cold function)."""
    full = {d.name: d.rate * (d.base_ns + (d.sample_ns if d.exports else 0.0)) for d in demands}
    capped = {}
    for d in demands:
        every = 1
        if d.exports and d.max_per_second is not None and d.rate > d.max_per_second:
            every = max(1, math.ceil(d.rate / max(d.max_per_second, 1e-9)))
            full[d.name] = d.rate * (d.base_ns + d.sample_ns / every)
        capped[d.name] = every
    # Max-min fair shares: the cheapest first get all they need, the rest split what is left.
    shares: Dict[str, float] = {}
    left = max(budget_ns_per_s, 1.0)
    order = sorted(demands, key=lambda d: full[d.name])
    for i, d in enumerate(order):
        fair = max(left / (len(order) - i), keep_ns_per_s)
        shares[d.name] = min(full[d.name], fair)
        left = max(left - shares[d.name], 0.0)
    out: Dict[str, Setting] = {}
    for d in demands:
        every = capped[d.name]
        share = shares[d.name]
        if full[d.name] <= share or d.rate <= 0:
            out[d.name] = Setting(every, 1.0)
            continue
        base = d.rate * d.base_ns
        fits = base <= share / 2  # decided on the share as planned: the correction alone never pauses a probe
        share = max(share * scale, 1e-3)
        if not d.exports:
            duty = share / base if d.pausable else 1.0
            out[d.name] = Setting(1, min(1.0, max(duty, DUTY_MIN)))
            continue
        if fits or not d.pausable:
            # Head sampling alone: the rest of the share pays for the sampled calls.
            room = max(share - base, share / 2)
            every = max(every, math.ceil(d.rate * d.sample_ns / max(room, 1e-9)))
            out[d.name] = Setting(min(every, MAX_EVERY), 1.0)
            continue
        # Even unsampled calls cost too much: on for part of the time, half the share on the base.
        duty = max(share / 2 / base, DUTY_MIN)
        every = max(every, math.ceil(duty * d.rate * d.sample_ns / (share / 2)))
        out[d.name] = Setting(min(every, MAX_EVERY), duty)
    return out


# --------------------------------------------------------------------------- calibration
_DUMMIES = """
def _peeka_leaf(a, b):
    return a

def _peeka_root(a, b, n):
    for i in range(n):
        _peeka_leaf(i, b)
    return a

def _peeka_drive(f, n):
    for i in range(n):
        f(i, 2)

def _peeka_drive_root(f, n, k):
    for i in range(n):
        f(i, 2, k)
"""


class _Count(Listener):
    """A stand-in for monitor's light listener (what every exported function has)."""

    light = True

    def __init__(self) -> None:
        self.costs: List[int] = []

    def light_sink(self, probe: Any) -> Any:
        return self.costs.append

    def on_light(self, probe: Any, cost: int, failed: bool) -> None:
        self.costs.append(cost)


def _best(timed: Callable[[], float], reps: int = 5) -> float:
    """The median CPU a short loop took over a few tries: what a call typically costs. (The least,
    used before, was 10-20% under the median on 3.9 and 3.12: the host's calls run with caches
    other work has cooled, and the estimate erred low.)"""
    return sorted(timed() for _ in range(reps))[reps // 2]


def _thread_cpu_ns() -> int:
    return time.thread_time_ns()


def calibrate(engine: Engine, make_tap: Optional[Callable[[bool], Listener]], trace: bool, calls: int = 400,
              counted: bool = True) -> UnitCosts:
    """Time a dummy function bare and probed like an exported one: ``make_tap(sample_all)`` returns
    a listener configured as the stream's (sampling none or every call, sending nowhere), or None
    for monitor-only. ``counted``: monitor's count listens beside it (export's functions; a CLI
    stream has none). Runs on the stream's thread; takes a few ms of CPU once."""
    namespace: Dict[str, Any] = {"__name__": "_peeka_calibration"}
    exec(compile(_DUMMIES, "<peeka calibration>", "exec"), namespace)  # noqa: S102 - our template
    leaf, root, drive, drive_root = (namespace[k] for k in ("_peeka_leaf", "_peeka_root", "_peeka_drive",
                                                             "_peeka_drive_root"))
    target = root if trace else leaf

    def run(k: int = 0) -> float:
        start = _thread_cpu_ns()
        if trace:
            drive_root(target, calls, k)
        else:
            drive(target, calls)
        return (_thread_cpu_ns() - start) / calls

    def probed(listeners: List[Listener], k: int = 0) -> float:
        for listener in listeners:
            engine.add(target, "_peeka_calibration.dummy", listener)
        try:
            return _best(lambda: run(k))
        finally:
            for listener in listeners:
                engine.remove(listener)

    bare = _best(run)
    if make_tap is None:
        return UnitCosts(max(probed([_Count()]) - bare, 0.0), 0.0)
    beside: List[Listener] = [_Count()] if counted else []
    base = probed(beside + [make_tap(False)])
    sampled = probed(beside + [make_tap(True)])
    node = 0.0
    if trace:
        k = 10
        bare_k = _best(lambda: run(k))
        sampled_k = probed(beside + [make_tap(True)], k)
        # k leaf calls below each traced root: each costs the profile function twice (call, return).
        node = max(((sampled_k - bare_k) - (sampled - bare)) / k, 0.0)
    return UnitCosts(max(base - bare, 0.0), max(sampled - base, 0.0), node)


def agent_cpu_seconds(prefix: str = "peeka") -> float:
    """CPU time of the agent's own threads (named ``peeka...``): from each thread's CPU clock (ns,
    a few us to read), else from /proc (10 ms ticks: a half-second window of a few ms reads 0 or 10)."""
    import threading

    clocks = threadids.can_read_cpu_clocks()
    total = 0.0
    for thread in threading.enumerate():
        if thread.name.startswith(prefix):
            native = getattr(thread, "native_id", None)
            if native is None:
                continue
            ns = threadids.cpu_ns(threadids.cpu_clock(native)) if clocks else None
            if ns is not None:
                total += ns / 1e9
                continue
            stat = procfs.task_stat(native)
            if stat is not None:
                total += stat.cpu_seconds
    return total


def slower(factor: float, fixed_share: float, budget: float) -> float:
    """How many times less often a stream's periodic work (its wakeups, export's 10 Hz stack samples)
    runs: doubled while what the agent costs beside the calls it reports is over FIXED_SHARE of the
    budget, halved back when well under. The same work is a larger share of a target that gets little
    CPU (a loaded machine, a mostly idle service): only its rate can keep it in the budget."""
    if fixed_share > budget * FIXED_SHARE:
        return min(factor * 2, MAX_SLOWER)
    if fixed_share < budget * FIXED_SHARE / 3:
        return max(factor / 2, 1.0)
    return factor


def describe(setting: Setting, function: str, budget: float) -> Optional[str]:
    """The line a person reads about what the governor does to a function, or None when nothing."""
    if setting.every <= 1 and setting.duty >= FULL:
        return None
    parts = []
    if setting.every > 1:
        parts.append("sampling 1/%d calls of %s" % (setting.every, function))
    if setting.duty < FULL:
        parts.append("%s probed %.1f%% of the time" % ("" if parts else function, setting.duty * 100))
    return "%s to stay under %g%%" % (", ".join(p.strip() for p in parts), budget * 100)


# --------------------------------------------------------------------------- the levers on the host's path
START_CAP = 200.0  # a CLI stream's calls/s per function before the governor's first plan knows the rates


class Capped(Listener):
    """A listener with a cap on what it passes on per second (a token bucket): export's feeds
    (``max_per_second``, and a start cap until the first plan) and a CLI stream's valves."""

    cap: Optional[float] = None
    tokens = 0.0
    refilled = 0

    def _admit(self, now_ns: int) -> bool:
        cap = self.cap
        if cap is None:
            return True
        tokens = min(cap, self.tokens + (now_ns - self.refilled) * cap / 1e9)
        self.refilled = now_ns
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


# --------------------------------------------------------------------------- CLI streams
class Valve(Capped):
    """Head sampling in front of a CLI probe stream (watch, trace, stack, tt), one per function:
    1 call in ``every`` reaches the stream, decided where the stream decides (at entry when it
    wants entries, a trace's tree whole or absent; else by a gate when the call ends, before any
    Call is built). Every call it turns away is counted (``skipped``): the stream reports them.
    Its fields are the ones ``Governed``/``Governor`` read and set on export's feeds."""

    def __init__(self, stream: Any, inner: Optional[Listener] = None) -> None:
        self.stream = stream
        self.inner = inner if inner is not None else stream  # calibration: a listener that sends nowhere
        self.needs_args = stream.needs_args
        self.needs_frame = stream.needs_frame
        self.wants_enter = stream.wants_enter
        self.wants_suspend = stream.wants_suspend
        self.every = self.countdown = 1
        self.calls = 0  # calls seen while on, since the governor last looked (it resets them)
        self.sampled = self.nodes = 0  # since the governor last looked (Governed.counts resets them)
        self.seen = self.taken = 0  # since the stream started: calls seen, calls passed on
        self.probability = 1.0
        self.max_per_second: Optional[float] = None
        # Until the first plan (a fraction of a second) a hot function is only capped: the plan sets
        # cap to max_per_second, None.
        self.cap = START_CAP
        self.live: set = set()  # calls sampled at entry, still running
        self.cut = 0  # calls sampled at entry that a pause of the probe kept from ending (3.12+)
        if not self.wants_enter:
            test = stream.gate.test if stream.gate is not None and inner is None else None
            self.gate = Gate.calling(self._head if test is None else (
                lambda s, e, r, x: self._head(s, e) and test(s, e, r, x)))

    @property
    def skipped(self) -> int:
        return self.seen - self.taken

    @property
    def errors(self) -> int:  # type: ignore[override]  # what Probe.failed counts is the stream's
        return self.stream.errors  # type: ignore[no-any-return]

    @errors.setter
    def errors(self, value: int) -> None:
        self.stream.errors = value

    def _head(self, start: int = 0, end: int = 0, *_: Any) -> bool:
        self.calls += 1
        self.seen += 1
        left = self.countdown - 1
        if left > 0:
            self.countdown = left
            return False
        self.countdown = self.every
        if self.cap is not None and not self._admit(end or start):
            return False
        self.sampled += 1
        self.taken += 1
        return True

    def on_enter(self, call: Call) -> None:
        if self._head(call.start):
            self.live.add(call)
            self.inner.on_enter(call)

    def on_suspend(self, call: Call) -> None:
        if call in self.live:
            self.inner.on_suspend(call)

    def on_resume(self, call: Call) -> None:
        if call in self.live:
            self.inner.on_resume(call)

    def on_exit(self, call: Call) -> None:
        if self.wants_enter:
            if call not in self.live:
                return
            self.live.discard(call)
            self.nodes += self.stream.tree_size(call)
        self.inner.on_exit(call)

    def on_removed(self, probe: Any) -> None:
        self.stream.on_removed(probe)

    def on_cut(self, calls: List[Call]) -> None:
        mine = [call for call in calls if call in self.live]
        for call in mine:
            self.live.discard(call)
        self.cut += len(mine)
        if mine:
            self.inner.on_cut(mine)

    @property
    def unfinished(self) -> int:
        """Calls passed at entry that never ended while probed: cut by a pause, or still running."""
        return self.cut + len(self.live)


class Quiet(Listener):
    """What a Valve passes calls to while calibrating a stream that sends nowhere."""


# --------------------------------------------------------------------------- the live loop
UPDATE_EVERY = 0.5  # s between plans
_EWMA = 0.4  # weight of the newest window in smoothed rates
_SPAN_NS_DEFAULT = 30_000.0  # the agent's CPU per span (render + encode) until measured


class Governed:
    """One probed function under the governor: its levers, and what was seen while it was on."""

    def __init__(self, name: str, probe: Any, costs: UnitCosts, feeds: List[Any], ours: Callable[[Any], bool],
                 max_per_second: Optional[float]) -> None:
        self.name = name
        self.probe = probe
        self.costs = costs
        self.feeds = feeds  # per-function listeners that export spans (they hold the sampling state)
        self.ours = ours
        self.max_per_second = max_per_second
        self.setting = ALWAYS
        self.on = True
        self.on_since = time.monotonic()
        self.next_toggle: Optional[float] = None
        self.switched_at = self.on_since  # when the probe last went on or off
        self.late = 0.0  # s: how much later than planned on-windows ended lately (the thread waits for the GIL)
        self.window_on = 0.0  # s on since the last plan
        self.window_off = 0.0
        self.rate: Optional[float] = None  # smoothed calls/s while on
        self.estimated = 0.0  # calls while off, estimated from the rate while on (never added to counts)
        self.on_seconds = 0.0
        self.off_seconds = 0.0

    @property
    def pausable(self) -> bool:
        listeners = self.probe.listeners
        return bool(listeners) and all(self.ours(listener) for listener in listeners)

    def counts(self) -> Dict[str, int]:
        """Spans and recorded tree nodes since the last call (taken from the feeds)."""
        spans = nodes = 0
        for feed in self.feeds:
            spans += feed.sampled
            nodes += feed.nodes
            feed.sampled = feed.nodes = 0
        return {"spans": spans, "nodes": nodes}


class Shared:
    """One budget for several streams: those a front end opens with the same ``budget_group`` (the
    TUI's watch and monitor), which together must cost no more than it. Each stream's governor plans
    with what the others' last estimates leave, and never with less than an even split: a stream
    over a cold function leaves most of the budget to one over a hot function, two hot ones get half
    each."""

    def __init__(self, name: str, total: float) -> None:
        self.name = name
        self.total = total
        self.members: List["Governor"] = []

    def share(self, me: "Governor") -> float:
        others = [g for g in self.members if g is not me]
        used = sum(min(g.ratio, self.total) for g in others)
        return max(self.total / (len(others) + 1), self.total - used)


_GROUPS: Dict[str, Shared] = {}  # budget_group -> its streams' governors (names are the client's to keep apart)


def shared(name: Optional[str], budget: float) -> Optional[Shared]:
    """The group a new stream's governor joins (its budget the smallest any member asked for)."""
    if not name:
        return None
    group = _GROUPS.get(name)
    if group is None:
        group = _GROUPS[name] = Shared(name, budget)
    group.total = min(group.total, budget)
    return group


class Governor:
    """Plans every UPDATE_EVERY and switches probes on and off on time (the stream's thread)."""

    def __init__(self, engine: Engine, budget: float, functions: List[Governed], group: Optional[Shared] = None) -> None:
        self.engine = engine
        self.budget = budget  # this stream's: the group's share for it, when it shares one
        self.group = group
        if group is not None:
            group.members.append(self)
            self.budget = group.share(self)
        self.functions = functions
        self.last = time.monotonic()
        self.process_cpu = time.process_time()
        self.agent_cpu = agent_cpu_seconds()
        self.span_ns = _SPAN_NS_DEFAULT
        self.rendered_spans = 0  # spans, and CPU s spent rendering them, not yet in span_ns
        self.render_cpu = 0.0
        self.ratio = 0.0  # the last window's estimated overhead, share of the process's CPU
        self.scale = 1.0  # correction of the budget handed to plan, from what the levers then cost
        self.levers = 0.0  # smoothed ns/s the levers control: host cost of probed calls, agent's per span
        self.floored = False  # the last plan's budget was the floor (over BUDGET% of a mostly idle process)
        self.cpu_rate = 0.0
        self.parts: Dict[str, float] = {}  # the last window's estimate by where it is spent

    # -- switching
    def _switch(self, g: Governed, on: bool, now: float) -> None:
        if on == g.on:
            return
        g.switched_at = now
        if on:
            self.engine.resume(g.probe)
            g.window_off += now - g.on_since
            g.on_since = now
        else:
            self.engine.pause(g.probe)
            g.window_on += now - g.on_since
            g.on_since = now
        g.on = on

    def toggle(self, now: float) -> Optional[float]:
        """Switch whatever is due; the next time something is due, or None."""
        due: Optional[float] = None
        for g in self.functions:
            duty = g.setting.duty
            if duty >= FULL:
                self._switch(g, True, now)
                g.next_toggle = None
                continue
            period = min(max(DUTY_ON_MIN / duty, 1.0), DUTY_PERIOD_MAX)
            if g.next_toggle is None:  # a new duty: this on- or off-window ends as the new one would
                g.next_toggle = g.switched_at + (duty if g.on else 1.0 - duty) * period
            if now >= g.next_toggle:
                if g.on:
                    if g.pausable:
                        g.late = (1 - _EWMA) * g.late + _EWMA * (now - g.next_toggle)
                        self._switch(g, False, now)
                    g.next_toggle = now + (1.0 - duty) * period
                else:
                    self._switch(g, True, now)
                    # Planned shorter by how late the switch off has been: the on-time is what costs.
                    g.next_toggle = now + max(duty * period - g.late, DUTY_ON_MIN / 4)
            due = g.next_toggle if due is None else min(due, g.next_toggle)
        return due

    # -- planning
    def leave(self) -> None:
        """The stream ended: its share of a group's budget goes back to the others."""
        group, self.group = self.group, None
        if group is not None:
            group.members = [g for g in group.members if g is not self]
            if not group.members and _GROUPS.get(group.name) is group:
                del _GROUPS[group.name]

    def update(self, now: float, seen: Dict[str, int], render_cpu: float) -> None:
        """``seen``: calls counted per function since the last update (only while on);
        ``render_cpu``: CPU s the stream's thread spent rendering spans meanwhile."""
        elapsed = now - self.last
        if elapsed <= 0:
            return
        if self.group is not None:
            self.budget = self.group.share(self)
        self.last = now
        cpu = time.process_time()
        agent = agent_cpu_seconds()
        cpu_delta, agent_delta = cpu - self.process_cpu, max(agent - self.agent_cpu, 0.0)
        self.process_cpu, self.agent_cpu = cpu, agent
        host_ns = 0.0
        spans_all = 0
        counted = []
        for g in self.functions:
            if g.on:
                g.window_on += now - g.on_since
            else:
                g.window_off += now - g.on_since
            g.on_since = now
            calls = seen.get(g.name, 0)
            c = g.counts()
            spans_all += c["spans"] + c["nodes"]
            host_ns += calls * g.costs.base + c["spans"] * g.costs.sampled + c["nodes"] * g.costs.node
            counted.append((g, calls, c))
        # Rendering is timed; the writer's JSON encoding of a span costs about as much again. Summed
        # over windows until 200 spans: a function sampled to a few spans a window is measured too.
        self.rendered_spans += spans_all
        self.render_cpu += render_cpu
        if self.rendered_spans >= 200 and self.render_cpu > 0:
            measured = 2 * self.render_cpu * 1e9 / self.rendered_spans
            self.span_ns = (1 - _EWMA) * self.span_ns + _EWMA * measured
            self.rendered_spans, self.render_cpu = 0, 0.0
        agent_span_ns = self.span_ns * spans_all
        agent_fixed_ns = max(agent_delta * 1e9 - agent_span_ns, 0.0)
        total_ns = host_ns + agent_delta * 1e9
        ratio = total_ns / (cpu_delta * 1e9) if cpu_delta > 0 else 0.0
        # Smoothed over a few windows: one window may hold a duty cycle's on-window or none.
        self.ratio = ratio if self.ratio == 0.0 else (1 - _EWMA) * self.ratio + _EWMA * ratio
        self.parts = {"host": host_ns / max(cpu_delta * 1e9, 1.0), "agent": agent_delta / max(cpu_delta, 1e-9),
                      "agent_fixed": agent_fixed_ns / max(cpu_delta * 1e9, 1.0)}
        self.cpu_rate = (1 - _EWMA) * self.cpu_rate + _EWMA * (cpu_delta / elapsed) if self.cpu_rate else cpu_delta / elapsed
        nominal = HEADROOM * self.budget * self.cpu_rate * 1e9
        # The agent's own fixed work (stack samples, stats) is paid first, but never takes more than half;
        # what it costs beyond is ``slower``'s to cut, not the calls'.
        budget_ns = max(nominal - min(agent_fixed_ns / elapsed, nominal / 2), FLOOR_NS_PER_S)
        self.floored = budget_ns <= FLOOR_NS_PER_S
        levers_ns = (host_ns + agent_span_ns) / elapsed
        self.levers = (1 - _EWMA) * self.levers + _EWMA * levers_ns if self.levers else levers_ns
        # What plan predicted and what the window cost differ (late switches, costs that vary): the
        # correction steers the whole estimate onto the budget (with headroom). On a mostly idle
        # process (the floor) the agent's fixed part alone passes the budget and would drive every
        # function's share down to nothing: there it steers only what the levers control onto the floor.
        if self.floored and self.levers > 0:
            self.scale = min(max(self.scale * (budget_ns / self.levers) ** 0.5, 0.05), 1.5)
        elif not self.floored and self.ratio > 0:
            self.scale = min(max(self.scale * (self.budget * HEADROOM / self.ratio) ** 0.5, 0.05), 1.5)
        demands = []
        for g, calls, c in counted:
            if g.window_on > 0.05 or (g.window_on > 0 and calls):
                rate = calls / g.window_on
                g.rate = rate if g.rate is None else (1 - _EWMA) * g.rate + _EWMA * rate
            g.estimated += (g.rate or 0.0) * g.window_off
            g.on_seconds += g.window_on
            g.off_seconds += g.window_off
            g.window_on = g.window_off = 0.0
            if g.rate is None:
                continue
            nodes_per_span = c["nodes"] / c["spans"] if c["spans"] else 0.0
            sample_ns = (g.costs.sampled + nodes_per_span * g.costs.node + self.span_ns * (1 + nodes_per_span))
            demands.append(Demand(g.name, g.rate, g.costs.base, sample_ns, g.pausable, g.max_per_second,
                                  exports=bool(g.feeds)))
        # Part of the nominal budget, shared out, is kept for cold functions whatever the rest costs.
        keep_ns = max(nominal, FLOOR_NS_PER_S) * KEEP_SHARE / max(len(demands), 1)
        settings = plan(demands, budget_ns, self.scale, keep_ns)
        for g in self.functions:
            setting = settings.get(g.name)
            if setting is None:
                continue
            # Loosen by at most half a step per plan: one window's low count (a short on-window, calls
            # not yet drained) must not switch a hot function fully on.
            setting = Setting(max(setting.every, g.setting.every // 2), min(setting.duty, g.setting.duty * 2))
            if setting.duty != g.setting.duty:
                g.next_toggle = None
            g.setting = setting
            for feed in g.feeds:
                feed.every = setting.every
                feed.probability = setting.ratio
                feed.cap = feed.max_per_second

    def row(self, name: str) -> Optional[Dict[str, Any]]:
        for g in self.functions:
            if g.name == name:
                return {"sampling_ratio": g.setting.ratio, "every": g.setting.every, "duty": g.setting.duty,
                        "estimated_calls": int(g.estimated), "on_seconds": round(g.on_seconds, 3),
                        "off_seconds": round(g.off_seconds, 3),
                        "note": describe(g.setting, g.name, self.budget)}
        return None

    def resume_all(self) -> None:
        for g in self.functions:
            if not g.on:
                self.engine.resume(g.probe)
                g.on = True
