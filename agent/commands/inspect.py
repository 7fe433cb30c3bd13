"""inspect: evaluate an expression in the target and show its value as a tree.

Args: ``expression`` (see expressions.py: names resolve over the loaded modules, e.g.
``myapp.config.settings`` or ``len(myapp.cache._store)``), ``depth`` (1-4, default 2; 1 = the repr
only), ``max_size`` (characters per value, default 4096), ``instances`` (a class's qualified name:
find its live instances, subclasses included, with the garbage collector), ``limit`` (instances
shown, default 10), ``unsafe`` (let the expression call the app's functions).

Result without ``instances``: ``{"expression", "value": node}`` (node: see values.py).
With ``instances``: ``{"class", "expression", "total", "count", "truncated", "instances": [{"id",
"value" | "error"}]}``; the expression runs once per instance with the instance bound to ``it``
(default ``it``: the instance itself). Instances of classes the collector does not track (no
``__dict__``, only ``__slots__`` of atoms) are not found.
"""

from __future__ import annotations

import gc
import sys
import types
from typing import Any, Dict, List, Optional

from .. import expressions, protocol, search, values
from ..streams import CommandError, int_arg

DEFAULT_LIMIT = 10
MAX_LIMIT = 1000


def _compile(source: str, names: Any = (), unsafe: bool = False) -> expressions.Expression:
    try:
        return expressions.Expression(source, names, unsafe)
    except expressions.ExpressionError as exc:
        raise CommandError("expression error: %s" % exc) from None


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Dict[str, Any]:
    depth = int_arg(args, "depth", protocol.DEFAULT_DEPTH, 1, values.MAX_DEPTH)
    max_size = int_arg(args, "max_size", values.DEFAULT_MAX_SIZE, values.MIN_MAX_SIZE, values.MAX_MAX_SIZE)
    source = args.get("expression") or ""
    if type(source) is not str:
        raise CommandError("expression must be a string")
    class_name = args.get("instances")
    if class_name:
        if type(class_name) is not str:
            raise CommandError("instances must be a class's qualified name, e.g. myapp.models.User")
        limit = int_arg(args, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        return _instances(class_name, source or "it", depth, max_size, limit, bool(args.get("unsafe")))
    if not source.strip():
        raise CommandError("give an expression, e.g. `myapp.config.settings`, or --instances CLASS")
    expression = _compile(source, (), bool(args.get("unsafe")))
    try:
        value = expression.run()
    except expressions.ExpressionError as exc:
        raise CommandError("expression error: %s" % exc) from None
    return {"expression": expression.source, "value": values.render(value, depth=depth, max_size=max_size)}


def resolve_class(name: str) -> Any:
    """The class called ``name`` (``module.Qualname``), looked up without importing anything."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        if search.is_agent_module(module_name):
            continue
        module = sys.modules.get(module_name)
        if module is None or not issubclass(type(module), types.ModuleType):
            continue
        try:
            obj: Any = object.__getattribute__(module, "__dict__")
        except Exception:
            continue
        for part in parts[cut:]:
            namespace = obj if issubclass(type(obj), dict) else _namespace(obj)
            obj = namespace.get(part) if namespace is not None else None
            if obj is None:
                break
        if obj is not None and issubclass(type(obj), type):
            return obj
    # Not a full name: the unique class that ends with it (`User` -> myapp.models.User).
    matches, count = search.find_classes(search.Pattern(name), limit=5)
    if count == 1:
        return matches[0][1]
    if count > 1:
        raise CommandError(
            "%d classes match %r: %s; give the full name" % (count, name, ", ".join(n for n, _ in matches))
        )
    raise CommandError("no loaded class %r; `peeka sc PID '*%s'` finds classes by name" % (name, parts[-1]))


def _namespace(obj: Any) -> Optional[Any]:
    if not issubclass(type(obj), type):
        return None
    try:
        return type.__dict__["__dict__"].__get__(obj)
    except Exception:
        return None


def _instances(class_name: str, source: str, depth: int, max_size: int, limit: int, unsafe: bool) -> Dict[str, Any]:
    cls = resolve_class(class_name)
    expression = _compile(source, ("it",), unsafe)
    plain = expression.source == "it"
    found: List[Any] = []
    total = 0
    memo: Dict[int, bool] = {}  # by id: a metaclass's __eq__ or __hash__ never runs
    objects = gc.get_objects()
    try:
        for obj in objects:
            kind = type(obj)
            hit = memo.get(id(kind))
            if hit is None:
                try:
                    hit = any(base is cls for base in kind.__mro__)
                except Exception:
                    hit = False
                memo[id(kind)] = hit
            if hit:
                total += 1
                if len(found) < limit:
                    found.append(obj)
    finally:
        del objects
    rendered = []
    for obj in found:
        entry: Dict[str, Any] = {"id": hex(id(obj))}
        if plain:
            entry["value"] = values.render(obj, depth=depth, max_size=max_size)
        else:
            try:
                entry["value"] = values.render(
                    expression.run({"it": obj}), depth=depth, max_size=max_size
                )
            except expressions.ExpressionError as exc:
                entry["error"] = "expression error: %s" % exc
        rendered.append(entry)
    del found
    return {
        "class": values.type_name(cls),
        "expression": expression.source,
        "total": total,
        "count": len(rendered),
        "truncated": total > len(rendered),
        "instances": rendered,
    }
