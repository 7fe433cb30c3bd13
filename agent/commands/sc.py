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


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Dict[str, Any]:
    pattern, detail, limit = search.search_args(args)
    matches, count = search.find_classes(pattern, limit)
    lines = search.ClassLines()
    classes = []
    for name, cls in matches:
        entry: Dict[str, Any] = {"name": name}
        if detail:
            entry.update(search.class_detail(cls, lines))
        classes.append(entry)
    return {"pattern": pattern.text, "count": count, "truncated": count > len(classes), "classes": classes}
