"""Logger levels Peeka changed, remembered so that ``reset`` and detach put them back (logger sets them)."""

from __future__ import annotations

import logging
from typing import Any, Dict, List

from . import streams


def level_name(level: Any) -> str:
    name = logging.getLevelName(level)
    return name if type(name) is str and not name.startswith("Level ") else str(level)


def originals(agent: Any) -> Dict[str, List[int]]:
    """logger name -> [its level before Peeka touched it, the level Peeka set]."""
    found = agent.state.get("logger_levels")
    if found is None:
        found = agent.state["logger_levels"] = {}
    return found  # type: ignore[no-any-return]


def restore_levels(agent: Any) -> List[Dict[str, Any]]:
    """Put back every level Peeka changed (reset and detach).

    A level the application itself changed since Peeka set it is the application's now: left alone.
    """
    changed = agent.state.get("logger_levels") or {}
    restored = []
    for name, (original, ours) in list(changed.items()):
        changed.pop(name, None)
        found = logging.getLogger() if name == "root" else logging.Logger.manager.loggerDict.get(name)
        if not isinstance(found, logging.Logger):
            continue
        entry = {"name": name, "level": level_name(original), "restored": found.level == ours}
        if found.level == ours:
            found.setLevel(original)
        else:
            entry["note"] = "the application set it to %s since; left as it is" % level_name(found.level)
        restored.append(entry)
    return restored


streams.on_detach(restore_levels)
