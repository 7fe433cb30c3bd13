"""ping: the agent is alive; returns its facts (what the hello said, refreshed), and what one probed
call costs the host here (``probe_costs``): the calibrations the overhead governor made for the
probe streams run with a budget so far (agent/instrument.py, governor.calibrate), one row per kind
of stream: ``stream`` (watch, trace, stack, monitor, tt), ``base_ns`` (every call while probed),
``sampled_ns`` (more for a call that reaches the stream), ``node_ns`` (trace: more per call recorded
below it)."""

from __future__ import annotations

import threading
from typing import Any, Dict


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Dict[str, Any]:
    facts = agent.hello().to_dict()
    facts.pop("type", None)
    facts.update(
        method=agent.attach_method,
        clients=len(agent.clients),
        threads=threading.active_count(),
        # Exceptions Peeka's own code raised on probed calls since attach (each one lost that call's
        # observation; the host's call went on as if unprobed).
        probe_errors=getattr(agent.state.get("probes"), "errors", 0),
        probe_costs=[{"stream": _STREAMS.get(key[0], key[0].lower()), "base_ns": round(unit.base, 1),
                      "sampled_ns": round(unit.sampled, 1), "node_ns": round(unit.node, 1)}
                     for key, unit in list(agent.state.get("stream_calibration", {}).items())],
    )
    return facts


_STREAMS = {"Recorder": "tt"}  # the class of a stream kind, where it is not the command's name
