"""Exceptions Peeka's own listeners raise on probed calls never reach the host's call, and are
counted where a user sees them: on the listener (a stream's end message), the probe and the engine
(``ping``). Real probes on a real function of this process, on the generated and the generic path."""

from __future__ import annotations

from typing import Any

import pytest
from peeka_agent import probes, protocol, streams

pytestmark = pytest.mark.parallel


def probed(x: int) -> int:
    return x + 1


class Failing(probes.Listener):
    def on_exit(self, call: probes.Call) -> None:
        raise RuntimeError("a bug in a listener")


class Quiet(probes.Listener):
    def __init__(self) -> None:
        self.seen = 0

    def on_exit(self, call: probes.Call) -> None:
        self.seen += 1


class Sent:
    """The stream's client end: what the agent would write to the socket."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.streams: dict[int, Any] = {}

    def send(self, message: Any, droppable: bool = False) -> bool:
        self.messages.append(message)
        return True


def test_a_lone_listener_failing_is_counted_and_the_call_goes_on() -> None:
    engine = probes.Engine()
    failing = Failing()
    probe = engine.add(probed, "probed", failing)  # alone: the generated callbacks / hook
    try:
        assert [probed(i) for i in range(5)] == [1, 2, 3, 4, 5]
    finally:
        engine.shutdown()
    assert (failing.errors, probe.errors, engine.errors) == (5, 5, 5)
    assert probed.__code__ is probe.code  # restored


def test_each_listener_counts_its_own_failures() -> None:
    engine = probes.Engine()
    failing, quiet = Failing(), Quiet()
    engine.add(probed, "probed", failing)
    engine.add(probed, "probed", quiet)  # two listeners: the generic path
    try:
        assert [probed(i) for i in range(3)] == [1, 2, 3]
    finally:
        engine.shutdown()
    assert (failing.errors, quiet.errors, quiet.seen, engine.errors) == (3, 0, 3, 3)


def test_a_stream_reports_its_errors_in_its_end_message() -> None:
    class FailingStream(streams.Stream, Failing):
        pass

    stream, client = FailingStream(), Sent()
    stream.client, stream.request_id = client, 7
    engine = probes.Engine()
    engine.add(probed, "probed", stream)
    try:
        probed(1)
        probed(2)
    finally:
        engine.shutdown()
    stream.finish("done")
    end = client.messages[-1]
    assert isinstance(end, protocol.End) and (end.id, end.reason, end.errors) == (7, "done", 2)
    assert protocol.decode(protocol.encode(end)[protocol.HEADER.size:]).errors == 2
