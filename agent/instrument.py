"""What every probing command (watch, trace, stack, monitor, tt) shares.

``resolve`` turns a pattern into the Python functions to probe (refusing more than ``max_match``
instead of guessing), and ``ProbeStream`` is a stream that installs one listener on them, ends on
``-n`` hits, on its timeout or on cancel, and always takes its listener off again.

Streams that name the same ``budget_group`` (a front end's, over its connection) share one budget
(``governor.Shared``) instead of each having its own.

With ``overhead_budget`` (percent of the process's CPU; 0, the default, is off) the stream runs
export's governor (agent/governor.py) over its functions: each gets a ``governor.Valve`` in front
of the stream (1 call in N passes, decided before anything is built) and may be switched off part
of the time; monitor's counts are never sampled, only duty-cycled. What the governor decides, and
how many calls it kept from the stream, goes to the client as ``{"type": "governor", ...}``
events (not counted by ``-n``): when a function's setting changes much, and once at the end.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from . import compat, governor, protocol, search
from .probes import Call, Listener, ProbeError, engine_of, to_epoch_ns, unwrap
from .streams import CommandError, Stream, float_arg, int_arg


def resolve(args: Dict[str, Any]) -> List[Tuple[str, Any]]:
    """``[(qualified name, function)]`` for the request's pattern; CommandError when none or too many."""
    text = args.get("pattern")
    try:
        pattern = search.Pattern(text, bool(args.get("regex")))  # type: ignore[arg-type]
    except search.PatternError as exc:
        raise CommandError(str(exc)) from None
    max_match = int_arg(args, "max_match", protocol.DEFAULT_MAX_MATCH, 1, protocol.MAX_MAX_MATCH)
    found, total = search.find_functions(pattern, limit=max_match + 1)
    usable: List[Tuple[str, Any]] = []
    refused: List[str] = []
    for name, obj, _kind in found:
        try:
            usable.append((name, unwrap(obj)))
        except ProbeError as exc:
            refused.append(str(exc))
    if total > max_match:
        raise CommandError(
            "%r matches %d functions, more than --max-match %d; narrow the pattern or raise --max-match"
            % (text, total, max_match)
        )
    if not usable:
        if refused:
            raise CommandError("nothing to observe for %r: %s" % (text, "; ".join(refused[:3])))
        raise CommandError(
            "no loaded function matches %r; `peeka sm PID PATTERN` lists what is there "
            "(modules not imported yet cannot be probed)" % (text,)
        )
    return usable


def thread_name(ident: int) -> str:
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    return thread.name if thread is not None else str(ident)


def call_facts(call: Call) -> Dict[str, Any]:
    """Where and when a call ran, as every observation reports it."""
    probe = call.probe
    facts = {
        "function": probe.name,
        "file": probe.filename,
        "line": probe.lineno,
        "thread": call.thread_name,
        "thread_id": call.thread,
        "start_ns": to_epoch_ns(call.start),
        "end_ns": to_epoch_ns(call.end) if call.end else None,
        "cost_ms": round((call.end - call.start) / 1e6, 6) if call.end else None,
    }
    if probe.kind != "function":
        # Generators: values yielded before exhaustion; coroutines: suspensions at an await.
        facts["kind"] = probe.kind
        facts["yields"] = call.yields
    return facts


class ProbeStream(Stream, Listener):
    """A stream that is also the listener on the functions it probes."""

    def __init__(self, agent: Any, args: Dict[str, Any], limit: Optional[int] = protocol.DEFAULT_LIMIT) -> None:
        if limit is not None:
            limit = int_arg(args, "limit", limit, 1, protocol.MAX_LIMIT)
        Stream.__init__(self, limit)
        self.agent = agent
        self.args = args
        self.timeout = float_arg(args, "timeout", None, 0.0)
        budget = float_arg(args, "overhead_budget", protocol.DEFAULT_STREAM_BUDGET, 0.0) or 0.0
        if budget > 100:
            raise CommandError("overhead_budget is a percentage of the process's CPU from 0 (off) to 100, got %r"
                               % (budget,))
        self.budget = budget / 100.0 if budget else None
        group = args.get("budget_group")
        if group is not None and (not isinstance(group, str) or not 0 < len(group) <= 100):
            raise CommandError("budget_group names the streams that share one overhead budget: a string of "
                               "1-100 characters, got %r" % (group,))
        self.budget_group: Optional[str] = group
        self.targets = resolve(args)
        self._done = compat.Event()
        self.probes: List[Any] = []
        self.valves: Dict[str, governor.Valve] = {}  # with a budget: per function, in front of this listener
        self.governor: Optional[governor.Governor] = None
        self.next_plan = 0.0
        self.announced: Dict[str, governor.Setting] = {}  # per function: the setting the client last heard of
        self.announced_at = 0.0
        self.announced_skips = 0

    def describe(self) -> Dict[str, Any]:
        modules = {name.rsplit(".", 1)[0] for name, _ in self.targets}
        return {
            "stream": True,
            "functions": [name for name, _ in self.targets],
            "modules": len(modules),
            "technique": engine_of(self.agent).technique,
            "affected": "%d function%s in %d module%s"
            % (len(self.targets), "" if len(self.targets) == 1 else "s", len(modules), "" if len(modules) == 1 else "s"),
        }

    def setup(self) -> None:
        engine = engine_of(self.agent)
        unit = self._calibrated(engine) if self.budget else None
        try:
            for name, func in self.targets:
                listener = self
                if self.budget and not self.light:
                    listener = self.valves[name] = governor.Valve(self)
                self.probes.append(engine.add(func, name, listener))
        except ProbeError:
            self.on_stop()
            raise
        if unit is not None:
            ours = {id(self)} | {id(v) for v in self.valves.values()}
            functions = [governor.Governed(name, probe, unit, [self.valves[name]] if name in self.valves else [],
                                          lambda listener: id(listener) in ours, None)
                         for (name, _), probe in zip(self.targets, self.probes)]
            self.governor = governor.Governor(engine, self.budget, functions,  # type: ignore[arg-type]
                                              governor.shared(self.budget_group, self.budget))
            self.next_plan = time.monotonic() + governor.UPDATE_EVERY / 5  # a hot probe costs from the start

    # Trace: a sampled call's cost is its profiler's, so calibration runs the stream's own listener
    # (sending nowhere: no client yet); the others' sampled calls cost the engine's Call, timed with a no-op.
    rehearses = False

    def _calibrated(self, engine: Any) -> governor.UnitCosts:
        """What one call costs the host probed as this stream probes it (``governor.calibrate``),
        timed once per agent and kind of stream."""
        cache = self.agent.state.setdefault("stream_calibration", {})
        key = (type(self).__name__, self.light, self.needs_args, self.needs_frame, self.wants_enter)
        if key not in cache:
            if self.light:
                cache[key] = governor.calibrate(engine, None, False)
            else:
                def make(sample_all: bool) -> governor.Valve:
                    valve = governor.Valve(self, None if self.rehearses else governor.Quiet())
                    valve.every = valve.countdown = 1 if sample_all else governor.MAX_EVERY
                    valve.cap = None
                    return valve

                client, self.client = self.client, None  # what a rehearsal emits goes nowhere
                condition = getattr(self, "condition", None)
                if condition is not None:
                    from .observe import CallExpression

                    self.condition = CallExpression(None, "condition")  # the dummy's calls are not the user's
                try:
                    cache[key] = governor.calibrate(engine, make, self.rehearses, counted=False)
                finally:
                    self.client = client
                    if condition is not None:
                        self.condition = condition
        return cache[key]  # type: ignore[no-any-return]

    def tree_size(self, call: Call) -> int:
        """Calls recorded below a sampled call (trace's nodes): what the governor counts it for."""
        return 0

    def run(self) -> None:
        if self.governor is None:
            self._done.wait(self.timeout)
        else:
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            while True:
                due = self.govern(time.monotonic())
                if deadline is not None:
                    due = deadline if due is None else min(due, deadline)
                if self._done.wait(max(0.0, (due or 0.0) - time.monotonic())):
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
        if not self.cancelled:
            self.finish("timeout" if self.timeout is not None else "done")

    # -- the overhead governor (with a budget), on the stream's thread
    def govern(self, now: float) -> Optional[float]:
        """Switch probes on or off and plan what is due; the next time the governor needs this thread."""
        rule = self.governor
        if rule is None:
            return None
        try:
            due = rule.toggle(now)
            if now >= self.next_plan:
                self.next_plan = now + governor.UPDATE_EVERY  # first: a plan that raises is not retried at once
                rendered, self.render_cpu = self.render_cpu, 0.0
                rule.update(now, self.seen_calls(), rendered)
                due = rule.toggle(time.monotonic())
                self._announce(False)
        except Exception:
            return self.next_plan  # the governor's own failure never ends the stream: probes keep their setting
        return self.next_plan if due is None else min(due, self.next_plan)

    def seen_calls(self) -> Dict[str, int]:
        """Calls of each function since the last look, while its probe was on (monitor overrides)."""
        seen = {}
        for name, valve in self.valves.items():
            seen[name], valve.calls = valve.calls, 0
        return seen

    def governor_rows(self) -> List[Dict[str, Any]]:
        rule = self.governor
        rows = []
        for g in rule.functions if rule is not None else ():
            row = rule.row(g.name) or {}  # type: ignore[union-attr]
            valve = self.valves.get(g.name)
            row["function"] = g.name
            if valve is not None:
                row["calls_seen"] = valve.seen
                row["skipped"] = valve.skipped  # seen while on, kept from the stream by sampling
                if valve.wants_enter:  # passed at entry (a trace's tree), never ended while probed
                    row["unfinished"] = valve.unfinished
            rows.append(row)
        return rows

    def _announce(self, final: bool) -> None:
        """Tell the client what the governor does: when a setting moved much since the client last
        heard, every few seconds while calls are skipped, and at the end with what was skipped."""
        rule = self.governor
        if rule is None or self.client is None:
            return
        changed = []
        for g in rule.functions:
            said = self.announced.get(g.name, governor.ALWAYS)
            now = g.setting
            # A setting that moved 4x or more (plans move a little each time), or back to every call.
            if said != now and (now == governor.ALWAYS or not 0.25 < now.ratio / max(said.ratio, 1e-12) < 4):
                self.announced[g.name] = now
                changed.append(g.name)
        skips = sum(v.skipped for v in self.valves.values())
        # The running count of skipped calls goes out every few seconds while it grows.
        counts = skips != self.announced_skips and time.monotonic() >= self.announced_at + 5
        if changed or final or counts:
            self.announced_at, self.announced_skips = time.monotonic(), skips
            data = {"type": "governor", "final": final, "changed": changed, "budget_percent": round(rule.budget * 100, 3),
                    "overhead_percent": round(rule.ratio * 100, 3), "functions": self.governor_rows()}
            group = rule.group
            if group is not None:  # this stream's budget is its share of the group's
                data["budget_group"] = {"name": group.name, "budget_percent": round(group.total * 100, 3),
                                        "streams": len(group.members)}
            self.client.send(protocol.Event(self.request_id, data, self.dropped))

    def passes(self, call: Call, **facts: Any) -> bool:
        """Does ``self.condition`` (an observe.CallExpression) hold for the call? Its first failure
        is reported here as an event (with ``facts``), the rest only counted: ``finish`` says how
        often. The probed call goes on either way."""
        condition = self.condition  # type: ignore[attr-defined]
        if condition.source is None:
            return True
        holds = condition.holds(call)
        if holds is None:
            self.emit(dict(call_facts(call), error=condition.first_failure, **facts))
        return bool(holds)

    def finish(self, reason: str) -> None:
        if not self.cancelled and self.governor is not None:
            try:
                self._announce(True)  # what was skipped, before the end
            except Exception:
                pass
        # A failing condition or expression was reported once, when it first failed: the end says how often.
        failures = [summary() for summary in (getattr(getattr(self, name, None), "failure_summary", None)
                                              for name in ("condition", "expression")) if summary is not None]
        failures = [f for f in failures if f]
        if failures:
            reason = "%s; %s" % (reason, "; ".join(failures))
        Stream.finish(self, reason)
        self._done.set()

    def cancel(self, reason: str) -> None:
        Stream.cancel(self, reason)
        self._done.set()

    def on_stop(self) -> None:
        engine = engine_of(self.agent)
        if self.governor is not None:
            self.governor.leave()
            self.governor.resume_all()  # paused probes are installed again, then removed as usual
        for valve in self.valves.values():
            engine.remove(valve)
        engine.remove(self)

    def on_removed(self, probe: Any) -> None:
        self.probes = [p for p in self.probes if p is not probe]
        if not self.probes and not self.cancelled:
            self.finish("reset")
