"""ping: the agent is alive; returns its facts (what the hello said, refreshed)."""

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
    )
    return facts
