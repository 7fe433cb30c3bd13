"""sm: search the functions and methods of the loaded modules by qualified name.

Args as ``sc``: ``pattern`` over ``module.function`` and ``module.Class.method`` (``myapp.*.get``),
``regex``, ``detail`` (add signature, file, line, module), ``limit`` (default 100).
Methods are a class's own: plain, classmethod, staticmethod, property getters (kind says which).

Result: ``{"pattern", "count", "truncated", "functions": [{"name", "kind", ...}]}`` sorted by name.
"""

from __future__ import annotations

from typing import Any, Dict

from .. import search


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Dict[str, Any]:
    pattern, detail, limit = search.search_args(args)
    matches, count = search.find_functions(pattern, limit)
    functions = []
    for name, obj, kind in matches:
        entry: Dict[str, Any] = {"name": name, "kind": kind}
        if detail:
            entry.update(search.function_detail(obj, kind))
        functions.append(entry)
    return {
        "pattern": pattern.text,
        "count": count,
        "truncated": count > len(functions),
        "functions": functions,
    }
