"""Read-only mode: which requests change the target, and the refusal of those while read-only.

The one classification of "changes the target" (the agent applies it to every request; clients
may ask it ahead of time, but the agent's answer is the one that holds):

- ``--unsafe`` expressions, in any command: they may call the application's own functions;
- ``logger`` setting a level (following a logger only adds a handler of the agent's own);
- ``tt`` replay: it calls the recorded function again, with its side effects;
- ``memory --tracemalloc start`` (tracing costs every allocation) and ``stop``: stopping tracing
  that another operator started throws away their baseline and traces.

Probes (watch, trace, ...) are not changes in this sense: they observe, cost bounded time, and go
when their stream ends. ``reset`` and ``detach`` are allowed: they restore the target.

A request is held to read-only when it says so itself (``read_only``: the MCP server without
``--allow-changes``, ``export``), or when the agent was attached with ``--read-only``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from . import protocol


def change_of(command: Any, args: Dict[str, Any]) -> str:
    """What the request would change in the target, in words ("" when it changes nothing)."""
    if args.get("unsafe"):
        return "an --unsafe expression (it may call the application's functions)"
    if command == "logger" and args.get("level") is not None and not args.get("follow"):
        return "setting logger %s's level to %s" % (args.get("name") or "root", args.get("level"))
    if command == "tt" and args.get("action") == "replay":
        return "tt --replay of record %s (it calls the function again)" % (args.get("index"),)
    if command == "memory" and args.get("tracemalloc") in ("start", "stop"):
        return "%s tracemalloc" % ("starting" if args.get("tracemalloc") == "start" else "stopping")
    return ""


def refusal(agent_read_only: bool, request: Any) -> Optional[Any]:
    """The error response refusing ``request``, or None when it may run."""
    held_by_agent = bool(agent_read_only)
    if not held_by_agent and request.read_only is not True:
        return None
    change = change_of(request.command, request.args)
    if not change:
        return None
    if held_by_agent:
        text = "read-only agent refused %s: the agent was attached with --read-only; detach and attach again without it" % change
        by = protocol.READ_ONLY_BY_AGENT
    else:
        text = "read-only client refused %s" % change
        by = protocol.READ_ONLY_BY_REQUEST
    response = protocol.failure(request.id, text, protocol.REFUSED_READ_ONLY)
    response.result = {"refused": change, "by": by}
    return response
