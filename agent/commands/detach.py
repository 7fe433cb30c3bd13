"""detach: undo every change, stop the agent's threads, remove its socket and files."""

from __future__ import annotations

from typing import Any, Dict


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Dict[str, Any]:
    from .. import runtime

    others = len([c for c in agent.clients if c is not client])
    runtime.detach(keep=client, serving=agent)
    return {"detached": True, "pid": agent.pid, "other_clients_closed": others}
