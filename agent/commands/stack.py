"""stack: the call path that led to a function, per call (optionally only when a condition holds).

args: pattern, regex, max_match, condition, limit (-n, default 100), timeout, max_frames (default 64).
"""

from __future__ import annotations

from typing import Any, Dict, List

from .. import compat, instrument, observe, streams
from ..probes import Call


def call_path(call: Call, max_frames: int) -> List[Dict[str, Any]]:
    """Innermost first: the probed function, then its callers."""
    frames = [{"function": call.probe.name, "file": call.probe.filename, "line": call.probe.lineno}]
    frame = call.frame.f_back if call.frame is not None else None
    while frame is not None and len(frames) < max_frames:
        code = frame.f_code
        module = frame.f_globals.get("__name__")
        name = compat.qualname(code, frame.f_globals)
        frames.append({"function": "%s.%s" % (module, name) if module else name, "file": code.co_filename,
                       "line": frame.f_lineno})
        frame = frame.f_back
    return frames


class Stack(instrument.ProbeStream):
    def __init__(self, agent: Any, args: Dict[str, Any]) -> None:
        self.condition = observe.CallExpression(args.get("condition"), "condition", bool(args.get("unsafe")))
        self.max_frames = streams.int_arg(args, "max_frames", 64, 1, 1000)
        super().__init__(agent, args)
        self.needs_args = self.condition.needs_args
        self.gate = self.condition.gate()

    needs_frame = True  # the path is walked from the call's frame

    def on_exit(self, call: Call) -> None:
        if self.cancelled:
            return
        if not self.passes(call):
            return
        event = instrument.call_facts(call)
        event["stack"] = call_path(call, self.max_frames)
        if call.exception is not None:
            event["exception"] = "%s: %s" % (type(call.exception).__name__, call.exception)
        self.emit(event)


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Stack:
    return Stack(agent, args)
