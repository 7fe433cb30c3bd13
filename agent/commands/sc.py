"""sc: search the classes of the loaded modules by qualified name.

Args: ``pattern`` (wildcards over ``module.Qualname``, e.g. ``myapp.models.*``, ``*.User``; a name
without wildcards matches exactly or as a dotted suffix), ``regex`` (the pattern is a regular
expression, searched), ``detail`` (add module, file, line, bases, MRO length, method count),
``limit`` (default 100).

Result: ``{"pattern", "count": all matches, "truncated": count > limit, "classes": [{"name", ...}]}``
sorted by name. Details on the rules: ``search.py``.
"""

from __future__ import annotations

from typing import Any, Dict

from .. import search
from . import CommandError

NAME = "sc"


def parse_search_args(args: Dict[str, Any]) -> Any:
    """``(Pattern, detail, limit)`` from a search request; shared with ``sm``."""
    limit = args.get("limit", search.DEFAULT_LIMIT)
    if type(limit) is not int or not 1 <= limit <= search.MAX_LIMIT:
        raise CommandError("limit must be an integer from 1 to %d, got %r" % (search.MAX_LIMIT, limit))
    try:
        pattern = search.Pattern(args.get("pattern", ""), regex=bool(args.get("regex", False)))
    except search.PatternError as exc:
        raise CommandError(str(exc)) from None
    return pattern, bool(args.get("detail", False)), limit


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Dict[str, Any]:
    pattern, detail, limit = parse_search_args(args)
    matches, count = search.find_classes(pattern, limit)
    lines = search.ClassLines()
    classes = []
    for name, cls in matches:
        entry: Dict[str, Any] = {"name": name}
        if detail:
            entry.update(search.class_detail(cls, lines))
        classes.append(entry)
    return {"pattern": pattern.text, "count": count, "truncated": count > len(classes), "classes": classes}
