"""watch: what a function receives, returns or raises, per call, as it happens.

args: pattern, regex, max_match, expression (default: params and result or exception),
condition, at (list of "enter", "success", "exception", "finish"; default finish),
depth (1-4), max_size, limit (-n, default 100), timeout (s).
"""

from __future__ import annotations

from typing import Any, Dict

from .. import instrument, observe, streams
from ..probes import Call
from ..streams import CommandError, DeferredEvent, make_deferred

POINTS = ("enter", "success", "exception", "finish")


class Watch(instrument.ProbeStream):
    def __init__(self, agent: Any, args: Dict[str, Any]) -> None:
        at = args.get("at") or ["finish"]
        if not isinstance(at, list) or not at or any(p not in POINTS for p in at):
            raise CommandError("at must be a list of %s, got %r" % ("/".join(POINTS), at))
        self.at = frozenset(at)
        unsafe = bool(args.get("unsafe"))
        self.expression = observe.CallExpression(args.get("expression"), "expression", unsafe)
        self.condition = observe.CallExpression(args.get("condition"), "condition", unsafe)
        if "enter" in self.at and len(self.at) == 1:
            late = (self.expression.names | self.condition.names) & {"result", "exception", "cost"}
            if late:
                raise CommandError(
                    "%s %s not known at entry (-b); watch at -s/-e/-f instead" % (", ".join(sorted(late)),
                                                                                  "is" if len(late) == 1 else "are")
                )
        self.render_args = streams.render_args(args)
        super().__init__(agent, args)
        self.needs_args = self.expression.source is None or self.expression.needs_args or self.condition.needs_args
        self.wants_enter = "enter" in self.at
        # Which exits are reported, decided once: on_exit runs on the host's hot path.
        self.on_success = bool(self.at & {"finish", "success"})
        self.on_exception = bool(self.at & {"finish", "exception"})
        self.gate = self.condition.gate(self.on_success, self.on_exception)

    def on_enter(self, call: Call) -> None:
        if self.cancelled or not self.passes(call, location="enter"):
            return
        # Arguments as they are now, before the body runs and perhaps changes them.
        self.emit(self._event(call, "enter"))

    def on_exit(self, call: Call) -> None:
        if self.cancelled:
            return
        if call.exception is None:
            if not self.on_success:
                return
            location = "exit"
        else:
            if not self.on_exception:
                return
            location = "exception"
        if self.condition.source is not None and not self.passes(call, location=location):
            return
        # Rendering happens in the writer thread: the host thread only queues references
        # (emit_later's queueing, inlined: this runs on every reported call).
        self._queue(make_deferred(DeferredEvent, (self, self._event, (call, location))))

    def _event(self, call: Call, location: str) -> Dict[str, Any]:
        event = instrument.call_facts(call)
        event["location"] = location
        try:
            if self.expression.source is None:
                value = observe.default_view(call, location)
            else:
                value = self.expression.evaluate(call)
            event["value"] = observe.render(value, self.render_args)
        except Exception as exc:
            event["error"] = "expression failed: %s" % (exc,)
        return event


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Watch:
    return Watch(agent, args)

