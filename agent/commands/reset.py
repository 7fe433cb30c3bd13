"""reset: remove instrumentation, all of it or the functions matching a pattern.

Streams watching a reset function stop seeing it; the function is exactly as before.
Without a pattern, logger levels changed by ``peeka logger`` are restored too.
args: pattern (optional), regex.
"""

from __future__ import annotations

from typing import Any, Dict

from .. import loglevels, search
from ..probes import engine_of
from ..streams import CommandError


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Dict[str, Any]:
    engine = engine_of(agent)
    text = args.get("pattern")
    loggers = []
    if not text:
        removed = engine.shutdown()
        loggers = loglevels.restore_levels(agent)
    else:
        try:
            pattern = search.Pattern(text, bool(args.get("regex")))
        except search.PatternError as exc:
            raise CommandError(str(exc)) from None
        removed = engine.remove_matching(lambda probe: pattern.match(probe.name))
    return {"removed": sorted(removed), "count": len(removed), "remaining": sorted(p.name for p in engine.by_func.values()),
            "loggers": loggers}
