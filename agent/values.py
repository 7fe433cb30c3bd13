"""Turn any object of the target into a bounded, JSON-ready tree node.

    {"type": "myapp.models.User",      qualified type name ("int", "dict" for builtins)
     "repr": "<User alice>",           bounded repr; a repr that raises is "<repr failed: ExcType>"
     "truncated": false,               repr cut, or children left out (item cap or size budget)
     "size": 3,                        len(), only for types whose len is C code (never a user __len__)
     "children": [{"key": "name", "value": {...node...}}, ...],   only when expanded (depth > 1)
     "omitted": 12}                    children not shown, only when some were left out

Keys: a dict entry's key is the repr of the key (``'name'``, ``1``), a sequence item's key its index
(``0``), an attribute's key its name; set members have the key ``""``.

Everything is bounded so that a huge or hostile object never stalls the target: expansion depth
(1-4; depth 1 = no children), items per container, and a total character budget (``max_size``,
spent by every repr and key). Builtin containers get a repr built here item by item, never the
full ``repr()`` of a million-element list; user ``__repr__`` runs guarded and its text is capped.
Attributes come from ``__dict__`` and ``__slots__`` only: no property or ``__getattr__`` runs.
Type checks use ``type(obj)``, never ``isinstance`` (which may read a proxy's ``__class__``).
Nothing raises out of here except KeyboardInterrupt: that is the host's, when a probe renders a
value in its main thread.
"""

from __future__ import annotations

import collections
import types
from itertools import islice
from typing import Any, Dict, List, Optional, Set, Tuple

from .protocol import DEFAULT_MAX_SIZE, MAX_DEPTH, MAX_MAX_SIZE, MIN_MAX_SIZE  # noqa: F401 - commands read them here too

DEFAULT_MAX_ITEMS = 50
MAX_MAX_ITEMS = 1000

_NODE_COST = 8  # every node spends at least this much budget, so tiny values still bound the tree
_SUMMARY_REPR = 160  # an expanded node's own repr: its children carry the detail
_KEY_REPR = 100
_REPR_LEVELS = 3  # nesting shown inside one repr before "..."
_REPR_ITEMS = 64  # items shown inside one repr before "..."
_INT_BITS = 4096  # larger ints are summarised: their decimal form costs quadratic time

_SCALARS = (type(None), bool, int, float, complex)
_SEQUENCES = (list, tuple, collections.deque, set, frozenset)
_NO_CHILDREN = (str, bytes, bytearray, int, float, complex, bool, type(None), range, memoryview)
_BRACKETS = {
    list: ("[", "]"),
    tuple: ("(", ")"),
    set: ("{", "}"),
    frozenset: ("frozenset({", "})"),
    collections.deque: ("deque([", "])"),
}
# Standard containers whose own repr would walk every item: rendered here as Name(<bounded body>).
_NAMED_CONTAINERS = (collections.OrderedDict, collections.defaultdict, collections.Counter)
_CLASS_NOISE = frozenset(("__module__", "__dict__", "__weakref__", "__doc__", "__qualname__", "__slots__"))


def type_name(cls: Any) -> str:
    """``module.Qualname`` of a class; builtins without their module."""
    try:
        qualname = cls.__qualname__
        module = cls.__module__
    except Exception:
        return "?"
    if not isinstance(qualname, str):
        qualname = "?"
    if module in (None, "builtins") or not isinstance(module, str):
        return qualname
    return module + "." + qualname


def _is(obj: Any, base: Any) -> bool:
    try:
        return issubclass(type(obj), base)
    except Exception:
        return False


def _builtin_base(cls: Any, bases: Tuple[Any, ...]) -> Any:
    for base in bases:
        try:
            if issubclass(cls, base):
                return base
        except Exception:
            return None
    return None


def _inherits_repr(cls: Any, base: Any) -> bool:
    """True when ``cls`` prints like ``base`` (a subclass that did not override ``__repr__``)."""
    try:
        return cls.__repr__ is base.__repr__
    except Exception:
        return False


# ---------------------------------------------------------------- bounded repr


class _Full(Exception):
    """The repr budget is spent: unwind and cut."""


class _Writer:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: List[str] = []
        self.used = 0

    @property
    def room(self) -> int:
        return self.limit - self.used

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.used += len(text)
        if self.used > self.limit:
            raise _Full


def _guarded_repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except KeyboardInterrupt:
        raise  # the host's Ctrl-C, when a probe renders in its main thread
    except BaseException as exc:  # a repr may raise anything, SystemExit included
        return "<repr failed: %s>" % type(exc).__name__
    if type(text) is not str:
        return "<repr failed: TypeError>"
    return text


def _write(w: _Writer, obj: Any, level: int) -> None:
    cls = type(obj)
    if cls is str or cls is bytes or cls is bytearray:
        if len(obj) > w.room + 2:
            w.write(repr(obj[: w.room + 2]))  # a prefix is enough: the writer cuts it anyway
        else:
            w.write(repr(obj))
        return
    if cls is int:
        if obj.bit_length() > _INT_BITS:
            w.write("<int of %d bits>" % obj.bit_length())
        else:
            w.write(_guarded_repr(obj))
        return
    if cls in _SCALARS:
        w.write(repr(obj))
        return
    if cls is dict or (_is(obj, dict) and (_inherits_repr(cls, dict) or cls in _NAMED_CONTAINERS)):
        _write_dict(w, obj, level)
        return
    base = _builtin_base(cls, _SEQUENCES)
    if base is not None and (cls is base or _inherits_repr(cls, base)):
        _write_sequence(w, obj, base, level)
        return
    if base is tuple and _namedtuple_fields(cls):
        _write_namedtuple(w, obj, cls, level)
        return
    text = _guarded_repr(obj)
    if len(text) > w.room + 1:
        text = text[: w.room + 1]
    w.write(text)


def _write_items(w: _Writer, items: List[Any], more: bool, level: int, pairs: bool) -> None:
    for i, item in enumerate(items):
        if i:
            w.write(", ")
        if pairs:
            _write(w, item[0], level + 1)
            w.write(": ")
            _write(w, item[1], level + 1)
        else:
            _write(w, item, level + 1)
    if more:
        w.write(", ..." if items else "...")


def _write_dict(w: _Writer, obj: Any, level: int) -> None:
    cls = type(obj)
    named = cls in _NAMED_CONTAINERS
    if named:
        w.write(cls.__name__ + "(")
        if cls is collections.defaultdict:
            w.write(_guarded_repr(obj.default_factory)[:80] + ", ")
    if level >= _REPR_LEVELS:
        w.write("{...}")
    else:
        items = list(islice(dict.items(obj), _REPR_ITEMS))
        w.write("{")
        _write_items(w, items, dict.__len__(obj) > len(items), level, pairs=True)
        w.write("}")
    if named:
        w.write(")")


def _write_sequence(w: _Writer, obj: Any, base: Any, level: int) -> None:
    size = base.__len__(obj)
    if base is set and size == 0:
        w.write("set()")
        return
    if base is frozenset and size == 0:
        w.write("frozenset()")
        return
    opening, closing = _BRACKETS[base]
    w.write(opening)
    if level >= _REPR_LEVELS and size:
        w.write("...")
    else:
        items = list(islice(base.__iter__(obj), _REPR_ITEMS))
        _write_items(w, items, size > len(items), level, pairs=False)
        if base is tuple and size == 1:
            w.write(",")
    w.write(closing)


def _namedtuple_fields(cls: Any) -> Optional[Tuple[str, ...]]:
    try:
        fields = cls.__dict__.get("_fields")
        if fields is None:
            for klass in cls.__mro__[1:]:
                fields = klass.__dict__.get("_fields")
                if fields is not None:
                    break
    except Exception:
        return None
    if type(fields) is tuple and all(type(f) is str for f in fields):
        return fields
    return None


def _write_namedtuple(w: _Writer, obj: Any, cls: Any, level: int) -> None:
    fields = _namedtuple_fields(cls) or ()
    w.write(str(getattr(cls, "__name__", "?")) + "(")
    items = list(islice(tuple.__iter__(obj), _REPR_ITEMS))
    for i, value in enumerate(items):
        if i:
            w.write(", ")
        if i < len(fields):
            w.write(fields[i] + "=")
        _write(w, value, level + 1)
    w.write(")")


def bounded_repr(obj: Any, limit: int = DEFAULT_MAX_SIZE) -> Tuple[str, bool]:
    """``(text, truncated)``: a repr of at most ``limit`` characters (plus "..." when cut)."""
    limit = max(1, int(limit))
    w = _Writer(limit)
    try:
        _write(w, obj, 0)
    except _Full:
        return "".join(w.parts)[:limit] + "...", True
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a container changed size under us, a hostile __eq__, ...
        return "<repr failed: %s>" % type(exc).__name__, False
    return "".join(w.parts), False


def safe_repr(obj: Any, limit: int = DEFAULT_MAX_SIZE) -> str:
    return bounded_repr(obj, limit)[0]


# Names whose values are secrets: an argument (or dict key) whose name holds one of these fragments
# is shown as REDACTED. Export's attributes and the audit trail's arguments both go through here.
SECRET_FRAGMENTS = ("password", "passwd", "token", "secret", "authorization", "cookie", "key")
REDACTED = "[redacted]"


def is_secret(name: Any, fragments: Tuple[str, ...] = SECRET_FRAGMENTS) -> bool:
    lowered = str(name).lower()
    return any(fragment in lowered for fragment in fragments)


def redacted_repr(name: Any, value: Any, limit: int, fragments: Tuple[str, ...] = SECRET_FRAGMENTS) -> str:
    """``value`` as at most ``limit`` characters, REDACTED when ``name`` (or, for a dict, a key) is a secret's."""
    if is_secret(name, fragments):
        return REDACTED
    if type(value) is dict and any(is_secret(k, fragments) for k in value):
        value = {k: (REDACTED if is_secret(k, fragments) else v) for k, v in value.items()}
    return safe_repr(value, limit)


# ---------------------------------------------------------------- tree


def _size(obj: Any) -> Optional[int]:
    """len(obj) when it is C code: a user ``__len__`` may run a database query."""
    cls = type(obj)
    try:
        method = getattr(cls, "__len__", None)
        if method is None or type(method) is types.FunctionType:
            return None
        size = len(obj)
        return size if type(size) is int else None
    except BaseException:
        return None


def _instance_dict(obj: Any) -> Optional[Dict[Any, Any]]:
    try:
        d = object.__getattribute__(obj, "__dict__")
    except BaseException:
        return None
    return d if _is(d, dict) else None


def _slot_items(obj: Any, limit: int) -> List[Tuple[str, Any]]:
    out: List[Tuple[str, Any]] = []
    try:
        mro = type(obj).__mro__
    except Exception:
        return out
    seen: Set[str] = set()
    for klass in mro:
        try:
            slots = klass.__dict__.get("__slots__")
        except Exception:
            continue
        if slots is None:
            continue
        names = [slots] if type(slots) is str else list(islice(iter(slots), limit))
        for name in names:
            if type(name) is not str or name in ("__dict__", "__weakref__") or name in seen:
                continue
            seen.add(name)
            attr = name
            if name.startswith("__") and not name.endswith("__"):
                attr = "_" + klass.__name__.lstrip("_") + name  # private names are mangled
            descriptor = klass.__dict__.get(attr)
            if type(descriptor) is not types.MemberDescriptorType:
                continue
            try:
                out.append((name, descriptor.__get__(obj, type(obj))))
            except AttributeError:
                continue  # slot never assigned
            if len(out) >= limit:
                return out
    return out


def _children(obj: Any, max_items: int) -> Tuple[List[Tuple[str, Any]], int]:
    """``(pairs, omitted)``: what an expanded node shows, and how many more there were."""
    cls = type(obj)
    if cls in _NO_CHILDREN:
        return [], 0
    if _is(obj, dict):
        total = dict.__len__(obj)
        items = list(islice(dict.items(obj), max_items))
        return [(safe_repr(k, _KEY_REPR), v) for k, v in items], total - len(items)
    if cls is types.MappingProxyType:
        total = len(obj)
        items = list(islice(obj.items(), max_items))
        return [(safe_repr(k, _KEY_REPR), v) for k, v in items], total - len(items)
    base = _builtin_base(cls, _SEQUENCES)
    if base is not None:
        total = base.__len__(obj)
        values = list(islice(base.__iter__(obj), max_items))
        fields = _namedtuple_fields(cls) if base is tuple else None
        if fields:
            keys = [fields[i] if i < len(fields) else str(i) for i in range(len(values))]
        elif base in (set, frozenset):
            keys = [""] * len(values)
        else:
            keys = [str(i) for i in range(len(values))]
        return list(zip(keys, values)), total - len(values)
    if _is(obj, _NO_CHILDREN):
        return [], 0
    is_class = _is(obj, type)
    # The same bookkeeping in every module and class is noise; a class's own __init__ is not.
    hide_dunders = is_class or _is(obj, types.ModuleType)
    if is_class:
        try:
            namespace: Any = type.__dict__["__dict__"].__get__(obj)  # the mappingproxy, no metaclass code
        except Exception:
            namespace = None
    else:
        namespace = _instance_dict(obj)
    pairs: List[Tuple[str, Any]] = []
    omitted = 0
    if namespace is not None:
        is_dict = _is(namespace, dict)
        total = dict.__len__(namespace) if is_dict else len(namespace)
        scan = list(islice(dict.items(namespace) if is_dict else namespace.items(), max_items * 4 + 64))
        for key, value in scan:
            if type(key) is not str:
                key = safe_repr(key, _KEY_REPR)
            elif hide_dunders and key.startswith("__") and key.endswith("__"):
                if not is_class or key in _CLASS_NOISE or type(value) is not types.FunctionType:
                    continue
            if len(pairs) < max_items:
                pairs.append((key, value))
            else:
                omitted += 1
        omitted += total - len(scan)
    if len(pairs) < max_items:
        pairs.extend(_slot_items(obj, max_items - len(pairs)))
    return pairs, omitted


class _Budget:
    def __init__(self, total: int) -> None:
        self.left = total

    def spend(self, n: int) -> None:
        self.left -= n


def _node(
    obj: Any, depth: int, budget: _Budget, max_items: int, leaf_cap: int, path: Set[int], root_cap: int = 0
) -> Dict[str, Any]:
    pairs: List[Tuple[str, Any]] = []
    omitted = 0
    if depth > 1 and id(obj) not in path:
        try:
            pairs, omitted = _children(obj, max_items)
        except BaseException:
            pairs, omitted = [], 0  # a container that changed size while we looked
    expand = bool(pairs) or omitted > 0
    cap = min(budget.left, _SUMMARY_REPR if expand else (root_cap or leaf_cap))
    text, cut = bounded_repr(obj, max(cap, 16))
    budget.spend(len(text) + _NODE_COST)
    node: Dict[str, Any] = {"type": type_name(type(obj)), "repr": text, "truncated": cut}
    size = _size(obj)
    if size is not None:
        node["size"] = size
    if not expand:
        return node
    children: List[Dict[str, Any]] = []
    path.add(id(obj))
    try:
        for i, (key, value) in enumerate(pairs):
            if budget.left <= _NODE_COST + len(key) + 16:
                omitted += len(pairs) - i
                break
            budget.spend(len(key))
            children.append({"key": key, "value": _node(value, depth - 1, budget, max_items, leaf_cap, path)})
    finally:
        path.discard(id(obj))
    node["children"] = children
    if omitted > 0:
        node["truncated"] = True
        node["omitted"] = omitted
    return node


def clamp(value: Any, low: int, high: int, default: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return max(low, min(high, number))


def render(
    obj: Any, depth: int = 1, max_size: int = DEFAULT_MAX_SIZE, max_items: int = DEFAULT_MAX_ITEMS
) -> Dict[str, Any]:
    """One value as a tree node (see the module docstring); never raises."""
    depth = clamp(depth, 1, MAX_DEPTH, 1)
    max_size = clamp(max_size, MIN_MAX_SIZE, MAX_MAX_SIZE, DEFAULT_MAX_SIZE)
    max_items = clamp(max_items, 1, MAX_MAX_ITEMS, DEFAULT_MAX_ITEMS)
    # A leaf deep in the tree may not eat the budget its siblings need; the root may use it all.
    leaf_cap = min(max_size, max(128, max_size // 8))
    try:
        return _node(obj, depth, _Budget(max_size), max_items, leaf_cap, set(), root_cap=max_size)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return {
            "type": type_name(type(obj)),
            "repr": "<render failed: %s>" % type(exc).__name__,
            "truncated": True,
        }
