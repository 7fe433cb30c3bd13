"""tt (time tunnel): record calls, then list, search, show and replay them.

args: action = record | list | search | show | replay | clear
  record:  pattern, regex, max_match, condition, limit (-n calls, default 100), timeout, depth, max_size
  list:    (none)          search: condition          show: index, depth, max_size
  replay:  index           clear: (none)
Records live in the agent (shared by clients) until cleared, reset or detach; they are bounded by
count (``limit``) and by an estimate of their rendered size (``max_bytes``, default 50 MB).
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Dict, List

from .. import compat, instrument, observe, streams, values
from ..probes import Call
from ..streams import CommandError

DEFAULT_MAX_BYTES = 50 << 20


class Record:
    __slots__ = ("index", "call", "time", "render_args", "params_view", "outcome_view", "size")

    def __init__(self, index: int, call: Call, render_args: Dict[str, Any]) -> None:
        self.index = index
        self.call = call  # keeps params/result references for replay
        self.time = time.time()
        call.frame = None  # no frames kept alive
        self.render_args = render_args
        self.params_view = observe.render(dict(call.params or {}), render_args)
        outcome = call.exception if call.exception is not None else call.result
        self.outcome_view = observe.render(outcome, render_args)
        self.size = len(repr(self.params_view)) + len(repr(self.outcome_view))

    def summary(self) -> Dict[str, Any]:
        facts = instrument.call_facts(self.call)
        facts.update(index=self.index, time=self.time, is_return=self.call.exception is None,
                     is_exception=self.call.exception is not None,
                     result=values.safe_repr(self.call.exception if self.call.exception is not None else self.call.result, 200))
        return facts

    def detail(self) -> Dict[str, Any]:
        out = self.summary()
        out.update(params=self.params_view, outcome=self.outcome_view)
        return out


class Tunnel:
    """The records of one agent."""

    def __init__(self) -> None:
        self.records: List[Record] = []
        self.bytes = 0
        self.counter = itertools.count(1000)
        self.lock = compat.lock()

    def find(self, index: Any) -> Record:
        for record in self.records:
            if record.index == index:
                return record
        raise CommandError("no record with index %r; `peeka tt PID --list` shows them" % (index,))


def tunnel(agent: Any) -> Tunnel:
    found = agent.state.get("tt")
    if found is None:
        found = agent.state["tt"] = Tunnel()
    return found


class Recorder(instrument.ProbeStream):
    def __init__(self, agent: Any, args: Dict[str, Any]) -> None:
        self.condition = observe.CallExpression(args.get("condition"), "condition", bool(args.get("unsafe")))
        self.render_args = streams.render_args(args)
        self.max_bytes = streams.int_arg(args, "max_bytes", DEFAULT_MAX_BYTES, 1024, 1 << 31)
        super().__init__(agent, args)
        self.tunnel = tunnel(agent)
        self.needs_args = True
        self.gate = self.condition.gate()

    def on_exit(self, call: Call) -> None:
        if self.cancelled:
            return
        if not self.passes(call):
            return
        record = Record(next(self.tunnel.counter), call, self.render_args)
        with self.tunnel.lock:
            if self.tunnel.bytes + record.size > self.max_bytes:
                self.finish("memory bound of %d bytes reached" % self.max_bytes)
                return
            self.tunnel.records.append(record)
            self.tunnel.bytes += record.size
        self.emit(record.summary())


def _replay(agent: Any, record: Record) -> Dict[str, Any]:
    call = record.call
    args, kwargs = observe._split_params(call)  # noqa: SLF001 (one definition of the split)
    func = call.probe.func
    started = time.perf_counter_ns()
    out: Dict[str, Any] = {"index": record.index, "function": call.probe.name}
    try:
        result = func(*args, **kwargs)
        out["result"] = values.render(result, depth=2)
    except BaseException as exc:  # SystemExit too: the call's outcome, not the end of this agent thread
        out["exception"] = values.render(exc, depth=2)
    out["cost_ms"] = round((time.perf_counter_ns() - started) / 1e6, 4)
    return out


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Any:
    action = args.get("action", "record")
    if action == "record":
        return Recorder(agent, args)
    tun = tunnel(agent)
    with tun.lock:
        records = list(tun.records)
    if action == "list":
        return {"records": [r.summary() for r in records], "bytes": tun.bytes}
    if action == "search":
        condition = observe.CallExpression(args.get("condition"), "condition", bool(args.get("unsafe")))
        hits: List[Dict[str, Any]] = []
        first_failed = None
        for r in records:
            holds = condition.holds(r.call)
            if holds is None:
                first_failed = r.index
            if holds:
                hits.append(r.summary())
        out: Dict[str, Any] = {"records": hits, "searched": len(records)}
        if condition.failures:
            out["failed"] = condition.failures
            out["error"] = "%s (first on record %s)" % (condition.failure_summary(), first_failed)
        return out
    if action == "show":
        record = tun.find(args.get("index"))
        render_args = streams.render_args(args, **record.render_args)
        detail = record.detail()
        if render_args != record.render_args:  # shown otherwise than recorded: render again
            detail["params"] = observe.render(dict(record.call.params or {}), render_args)
            outcome = record.call.exception if record.call.exception is not None else record.call.result
            detail["outcome"] = observe.render(outcome, render_args)
        return detail
    if action == "replay":
        return _replay(agent, tun.find(args.get("index")))
    if action == "clear":
        with tun.lock:
            n = len(tun.records)
            tun.records.clear()
            tun.bytes = 0
        return {"cleared": n}
    raise CommandError("unknown tt action %r; use record, list, search, show, replay or clear" % (action,))


@streams.on_detach
def cleanup(agent: Any) -> None:
    agent.state.pop("tt", None)


