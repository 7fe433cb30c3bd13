"""What every probing command (watch, trace, stack, monitor, tt) shares.

``resolve`` turns a pattern into the Python functions to probe (refusing more than ``max_match``
instead of guessing), and ``ProbeStream`` is a stream that installs one listener on them, ends on
``-n`` hits, on its timeout or on cancel, and always takes its listener off again.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Tuple

from . import compat, protocol, search
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
        self.targets = resolve(args)
        self._done = compat.Event()
        self.probes: List[Any] = []

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
        try:
            for name, func in self.targets:
                self.probes.append(engine.add(func, name, self))
        except ProbeError:
            engine.remove(self)
            raise

    def run(self) -> None:
        self._done.wait(self.timeout)
        if not self.cancelled:
            self.finish("timeout" if self.timeout is not None else "done")

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
        engine_of(self.agent).remove(self)

    def on_removed(self, probe: Any) -> None:
        self.probes = [p for p in self.probes if p is not probe]
        if not self.probes and not self.cancelled:
            self.finish("reset")
