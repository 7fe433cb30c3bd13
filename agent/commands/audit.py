"""audit: the agent's audit trail (agent/audit.py), every request that reached it, oldest first.

args: since (seq: only entries after it), follow (stream new entries as they are recorded, until
cancelled, ``limit`` entries or ``timeout`` seconds).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .. import compat, streams
from ..streams import Stream


def _answer(agent: Any, since: int) -> Dict[str, Any]:
    trail = agent.audit
    return {"entries": trail.entries(since), "stats": trail.stats(), "read_only": agent.read_only}


class Follow(Stream):
    def __init__(self, agent: Any, args: Dict[str, Any]) -> None:
        Stream.__init__(self, streams.int_arg(args, "limit", None, 1, 1 << 62))  # type: ignore[arg-type]
        self.agent = agent
        self.since = streams.int_arg(args, "since", 0, 0, 1 << 62)
        self.timeout = streams.float_arg(args, "timeout", None, 0.0)
        self._done = compat.Event()  # a real lock, as in logger's follow
        self._early: Optional[List[Dict[str, Any]]] = []  # recorded before the answer was made
        self._early_lock = compat.lock()

    def describe(self) -> Dict[str, Any]:
        # The answer holds what the trail has now; the stream what came after it, recorded since
        # setup (held until now) or later, each entry once.
        with self._early_lock:
            answer = _answer(self.agent, self.since)
            if answer["entries"]:
                self.since = answer["entries"][-1]["seq"]
            early, self._early = self._early, None
        for entry in early or ():
            if entry["seq"] > self.since:
                Stream.emit(self, entry)
        return dict(answer, stream=True)

    def setup(self) -> None:
        self.agent.audit.followers.append(self)  # before the answer is made: the stream misses nothing

    def emit(self, data: Any) -> bool:
        if self._early is not None:
            with self._early_lock:
                if self._early is not None:  # the answer is not made yet: it may hold this entry
                    self._early.append(data)
                    return True
        return Stream.emit(self, data)

    def run(self) -> None:
        self._done.wait(self.timeout)
        if not self.cancelled:
            self.finish("timeout")

    def on_stop(self) -> None:
        try:
            self.agent.audit.followers.remove(self)
        except ValueError:
            pass
        self._done.set()


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Any:
    if args.get("follow"):
        return Follow(agent, args)
    return _answer(agent, streams.int_arg(args, "since", 0, 0, 1 << 62))
