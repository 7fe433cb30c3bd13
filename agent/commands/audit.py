"""audit: the agent's audit trail (agent/audit.py), every request that reached it, oldest first.

args: since (seq: only entries after it), follow (stream new entries as they are recorded, until
cancelled, ``limit`` entries or ``timeout`` seconds).
"""

from __future__ import annotations

from typing import Any, Dict

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

    def describe(self) -> Dict[str, Any]:
        answer = _answer(self.agent, self.since)
        if answer["entries"]:
            self.since = answer["entries"][-1]["seq"]
        return dict(answer, stream=True)

    def setup(self) -> None:
        trail = self.agent.audit
        trail.followers.append(self)
        # What was recorded between the first answer and now: the stream misses nothing.
        for entry in trail.entries(self.since):
            self.emit(entry)

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
