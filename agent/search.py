"""Find the classes and functions of the loaded modules by qualified name (for ``sc`` and ``sm``).

Names are ``module.Qualname`` for classes (``myapp.models.User``, ``myapp.models.User.Meta``) and
``module.function`` / ``module.Class.method`` for functions. A class counts in the module that
defines it (``cls.__module__``), not in every module that imports it.

Patterns: wildcards over the whole name (``*`` any run of characters, dots included, ``?`` one,
``[abc]`` a set): ``myapp.models.*``, ``*.User``, ``myapp.*.get``. A pattern without wildcards
matches a name exactly or as its dotted suffix (``User`` finds ``myapp.models.User``). With
``regex`` the pattern is a Python regular expression searched anywhere in the name.

Each call walks a snapshot of ``sys.modules`` afresh (modules come and go) and skips the agent's own
modules, lazy modules not loaded yet (touching them would import them) and anything that raises.
"""

from __future__ import annotations

import fnmatch
import functools
import io
import re
import sys
import time
import types
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Set, Tuple

from . import protocol, values
from .streams import CommandError, int_arg

DEFAULT_LIMIT = protocol.DEFAULT_SEARCH_LIMIT
MAX_LIMIT = protocol.MAX_SEARCH_LIMIT
_NESTED_CLASS_DEPTH = 4
_SOURCE_SCAN_SECONDS = 0.5  # per call: reading source files for class lines (3.9-3.12 only)
_SOURCE_MAX_BYTES = 2 << 20

_PACKAGE = __name__.rpartition(".")[0]
_WILDCARDS = re.compile(r"[*?\[]")


class PatternError(ValueError):
    """A pattern that does not compile."""


class SearchArgs(NamedTuple):
    """A search request's arguments (sc, sm, source), checked."""

    pattern: "Pattern"
    detail: bool
    limit: int


def search_args(args: Dict[str, Any], default_limit: int = DEFAULT_LIMIT) -> SearchArgs:
    """``pattern``, ``regex``, ``detail`` and ``limit`` of a search request; CommandError when bad."""
    limit = int_arg(args, "limit", default_limit, 1, MAX_LIMIT)
    try:
        pattern = Pattern(args.get("pattern", ""), regex=bool(args.get("regex", False)))
    except PatternError as exc:
        raise CommandError(str(exc)) from None
    return SearchArgs(pattern, bool(args.get("detail", False)), limit)


class Pattern:
    def __init__(self, pattern: str, regex: bool = False) -> None:
        if type(pattern) is not str or not pattern:
            raise PatternError("empty pattern: give a qualified name, e.g. 'myapp.models.*' or '*.User'")
        self.text = pattern
        self.prefix = ""  # every match starts with this (lets the search skip whole modules)
        if regex:
            try:
                self._search: Callable[[str], Any] = re.compile(pattern).search
            except re.error as exc:
                raise PatternError("invalid regular expression %r: %s" % (pattern, exc)) from None
            self.match = lambda name: self._search(name) is not None
        elif _WILDCARDS.search(pattern):
            self.prefix = pattern[: _WILDCARDS.search(pattern).start()]  # type: ignore[union-attr]
            full = re.compile(fnmatch.translate(pattern)).match
            self.match = lambda name: full(name) is not None
        else:
            suffix = "." + pattern
            self.match = lambda name: name == pattern or name.endswith(suffix)

    def may_contain(self, scope: str) -> bool:
        """Could a name inside ``scope`` (a module or class name) match?"""
        if not self.prefix:
            return True
        inner = scope + "."
        return inner.startswith(self.prefix) or self.prefix.startswith(inner)


def is_agent_module(name: str) -> bool:
    return (
        name.startswith("_peeka_agent")
        or name == _PACKAGE
        or name.startswith(_PACKAGE + ".")
    )


def loaded_modules() -> Iterator[Tuple[str, Dict[str, Any]]]:
    """``(name, namespace)`` of every loaded module the search may look into."""
    for name, module in list(sys.modules.items()):
        if type(name) is not str or module is None or is_agent_module(name):
            continue
        cls = type(module)
        if not issubclass(cls, types.ModuleType):
            continue
        if cls.__name__ == "_LazyModule":
            continue  # importlib.util.LazyLoader: any attribute access would import it now
        try:
            namespace = object.__getattribute__(module, "__dict__")
        except Exception:
            continue
        if issubclass(type(namespace), dict):
            yield name, namespace


def _items(namespace: Any) -> List[Tuple[Any, Any]]:
    try:
        if issubclass(type(namespace), dict):
            return list(dict.items(namespace))
        return list(namespace.items())
    except Exception:
        return []


def _class_namespace(cls: Any) -> Any:
    try:
        return type.__dict__["__dict__"].__get__(cls)
    except Exception:
        return {}


def _str_attr(obj: Any, name: str) -> Optional[str]:
    try:
        value = getattr(obj, name)
    except Exception:
        return None
    return value if type(value) is str else None


def _classes_of(module_name: str, namespace: Any, pattern: Pattern) -> Iterator[Tuple[str, Any]]:
    """Classes defined in the module, nested classes included: ``(qualified name, class)``."""
    stack: List[Tuple[Any, int]] = [(namespace, 0)]
    while stack:
        scope, depth = stack.pop()
        for key, value in _items(scope):
            if not issubclass(type(value), type) or _str_attr(value, "__module__") != module_name:
                continue
            qualname = _str_attr(value, "__qualname__")
            if not qualname or "<locals>" in qualname:
                continue
            if depth and not (type(key) is str and qualname.endswith("." + key)):
                continue  # a class attribute that merely refers to another class
            name = module_name + "." + qualname
            yield name, value
            if depth + 1 < _NESTED_CLASS_DEPTH and pattern.may_contain(name):
                stack.append((_class_namespace(value), depth + 1))


def _trimmed(matches: List[Any], limit: int) -> List[Any]:
    matches.sort(key=lambda m: m[0])
    del matches[limit:]
    return matches


def find_classes(pattern: Pattern, limit: int = DEFAULT_LIMIT) -> Tuple[List[Tuple[str, Any]], int]:
    """The first ``limit`` matches by name, and how many there are in all."""
    matches: List[Tuple[str, Any]] = []
    seen: Set[int] = set()
    count = 0
    for module_name, namespace in loaded_modules():
        if not pattern.may_contain(module_name):
            continue
        for name, cls in _classes_of(module_name, namespace, pattern):
            if id(cls) in seen or not pattern.match(name):
                continue
            seen.add(id(cls))
            count += 1
            matches.append((name, cls))
            if len(matches) > 4 * limit + 1000:
                _trimmed(matches, limit)
    return _trimmed(matches, limit), count


# ---------------------------------------------------------------- functions and methods


def _function_kind(value: Any, in_class: bool) -> Optional[Tuple[str, Any]]:
    """``(kind, the function to describe)`` for things that are functions or methods, else None."""
    cls = type(value)
    if cls is types.FunctionType:
        return ("method" if in_class else "function"), value
    if cls is classmethod:
        return "classmethod", getattr(value, "__func__", None)
    if cls is staticmethod:
        return "staticmethod", getattr(value, "__func__", None)
    if cls is property:
        return "property", value.fget
    if cls is functools.cached_property:
        return "property", getattr(value, "func", None)
    if cls is types.BuiltinFunctionType and not in_class:
        return "builtin", value
    if cls in (types.MethodDescriptorType, types.ClassMethodDescriptorType):
        return "builtin-method", value
    # functools.lru_cache and other decorators that keep the original in __wrapped__
    if callable(value) and not issubclass(cls, type):
        try:
            own = object.__getattribute__(value, "__dict__")
        except Exception:
            return None
        if issubclass(type(own), dict) and "__wrapped__" in own:
            return ("method" if in_class else "function"), value
    return None


def _defined_in(func: Any, module_name: str) -> bool:
    return _str_attr(func, "__module__") == module_name


def find_functions(pattern: Pattern, limit: int = DEFAULT_LIMIT) -> Tuple[List[Tuple[str, Any, str]], int]:
    """``([(name, function object, kind)], total)``: the first ``limit`` matches by name."""
    matches: List[Tuple[str, Any, str]] = []
    seen: Set[str] = set()
    count = 0

    def add(name: str, obj: Any, kind: str) -> None:
        nonlocal count
        if name in seen or not pattern.match(name):
            return
        seen.add(name)
        count += 1
        matches.append((name, obj, kind))
        if len(matches) > 4 * limit + 1000:
            _trimmed(matches, limit)

    for module_name, namespace in loaded_modules():
        if not pattern.may_contain(module_name):
            continue
        for key, value in _items(namespace):
            found = _function_kind(value, in_class=False)
            if found is None or type(key) is not str or not _defined_in(value, module_name):
                continue
            qualname = _str_attr(value, "__qualname__") or key
            if "<locals>" in qualname or "." in qualname:
                qualname = key  # made by a factory, or a method assigned at module level
            add(module_name + "." + qualname, value, found[0])
        for class_name, cls in _classes_of(module_name, namespace, pattern):
            if not pattern.may_contain(class_name):
                continue
            for key, value in _items(_class_namespace(cls)):
                if type(key) is not str:
                    continue
                found = _function_kind(value, in_class=True)
                if found is not None:
                    add(class_name + "." + key, value, found[0])
    return _trimmed(matches, limit), count


# ---------------------------------------------------------------- details


def _unwrap(func: Any) -> Any:
    for _ in range(10):
        try:
            own = object.__getattribute__(func, "__dict__")
            inner = own.get("__wrapped__") if issubclass(type(own), dict) else None
        except Exception:
            inner = None
        if inner is None:
            break
        func = inner
    return func


def _code_of(func: Any) -> Any:
    func = _unwrap(func)
    if type(func) is types.MethodType:
        func = func.__func__
    return func.__code__ if type(func) is types.FunctionType else None


def _module_file(module_name: Optional[str]) -> Optional[str]:
    module = sys.modules.get(module_name) if module_name else None
    if module is None:
        return None
    try:
        path = object.__getattribute__(module, "__dict__").get("__file__")
    except Exception:
        return None
    return path if type(path) is str else None


def function_detail(obj: Any, kind: str) -> Dict[str, Any]:
    target = _function_kind(obj, in_class=kind not in ("function", "builtin"))
    func = target[1] if target else obj
    code = _code_of(func) if func is not None else None
    detail: Dict[str, Any] = {
        "kind": kind,
        "module": _str_attr(func, "__module__"),
        "file": code.co_filename if code is not None else _module_file(_str_attr(func, "__module__")),
        "line": code.co_firstlineno if code is not None else None,
        "signature": None,
    }
    if func is not None:
        import inspect

        try:
            detail["signature"] = str(inspect.signature(func))
        except Exception:
            pass  # builtins without a text signature, exotic callables
    return detail


class ClassLines:
    """Where classes start: ``__firstlineno__`` (3.13+), else a scan of the module's source.

    The scan reads the file (never imports or compiles it; compiling could print SyntaxWarnings
    into the target) and follows ``class``/``def`` lines by indentation to build qualified names.
    One instance per call: files are read once, within a time budget.
    """

    _LINE = re.compile(r"^([ \t]*)(?:async[ \t]+)?(class|def)[ \t]+([A-Za-z_]\w*)")

    def __init__(self) -> None:
        self._files: Dict[str, Dict[str, int]] = {}
        self._deadline = time.monotonic() + _SOURCE_SCAN_SECONDS

    def line(self, cls: Any, path: Optional[str]) -> Optional[int]:
        first = _class_namespace(cls).get("__firstlineno__")
        if type(first) is int:
            return first
        qualname = _str_attr(cls, "__qualname__")
        if path and qualname and path.endswith(".py"):
            lines = self._scan(path)
            if qualname in lines:
                return lines[qualname]
        # No source: the first method is close enough.
        starts = []
        for value in list(_class_namespace(cls).values()):
            found = _function_kind(value, in_class=True)
            code = _code_of(found[1]) if found and found[1] is not None else None
            if code is not None:
                starts.append(code.co_firstlineno)
        return min(starts) if starts else None

    def _scan(self, path: str) -> Dict[str, int]:
        cached = self._files.get(path)
        if cached is not None:
            return cached
        found: Dict[str, int] = {}
        self._files[path] = found
        if time.monotonic() > self._deadline:
            return found
        try:
            with open(path, "rb") as f:
                data = f.read(_SOURCE_MAX_BYTES + 1)
        except OSError:
            return found
        if len(data) > _SOURCE_MAX_BYTES:
            return found
        scopes: List[Tuple[int, str]] = []  # (indent, qualname prefix for what is inside)
        # Lines as Python counts them (str.splitlines also breaks at form feeds, page breaks in many files).
        lines = io.StringIO(data.decode("utf-8", "replace"), newline=None).readlines()
        for number, raw in enumerate(lines, 1):
            hit = self._LINE.match(raw)
            if hit is None:
                continue
            indent = len(hit.group(1).expandtabs())
            while scopes and scopes[-1][0] >= indent:
                scopes.pop()
            outer = scopes[-1][1] if scopes else ""
            qualname = outer + hit.group(3)
            if hit.group(2) == "class":
                first = number  # where the class's definition starts: its first decorator, as __firstlineno__ (3.13+)
                while first > 1 and lines[first - 2].lstrip().startswith("@"):
                    first -= 1
                found.setdefault(qualname, first)
                scopes.append((indent, qualname + "."))
            else:
                scopes.append((indent, qualname + ".<locals>."))
        return found


def class_detail(cls: Any, lines: ClassLines) -> Dict[str, Any]:
    module = _str_attr(cls, "__module__")
    path = _module_file(module)
    try:
        bases = [values.type_name(b) for b in type.__dict__["__bases__"].__get__(cls)]
        mro_length = len(type.__dict__["__mro__"].__get__(cls))
    except Exception:
        bases, mro_length = [], None
    methods = 0
    for value in list(_class_namespace(cls).values()):
        if _function_kind(value, in_class=True) is not None:
            methods += 1
    return {
        "module": module,
        "file": path,
        "line": lines.line(cls, path),
        "bases": bases,
        "mro_length": mro_length,
        "methods": methods,
    }
