"""Peeka's expression language: an allow-list, bounded, with one meaning on every path.

    evaluate("len(myapp.cache._store)")                          # names resolve over sys.modules
    condition = Expression("params['id'] > 3 and cost > 10", names=("params", "cost"))
    condition.evaluate({"params": {"id": 5}, "cost": 12.5})      # check once, evaluate often

What an expression may use (everything else is refused before it runs, or when reached):

* Names: the injected names (``params``, ``result``, ``it``...), the functions of ``FUNCTIONS``
  (callable only), comprehension variables, and loaded top-level modules (``myapp`` ->
  ``sys.modules['myapp']``; a submodule not yet an attribute is found in sys.modules too).
* Attributes (``a.b``), subscripts and slices, literals, comparisons, ``and``/``or``/``not``,
  arithmetic, ``x if c else y``, f-strings, and comprehensions with their own scope. No lambda,
  walrus, ``*``/``**`` unpacking, ``@``, await or yield.
* Refused attributes, on any object: dunders (``__class__``, ``__globals__``...) and the
  introspection names of ``_REFUSED_ATTRIBUTES``; and any attribute of a function, method, frame,
  traceback, code object, generator, coroutine or cell (they lead to globals and frames).
* Modules and functions are never values: a module is only the start of a dotted path, a function
  is only called. Peeka's own modules and objects are unreachable.
* Calls: the functions of ``FUNCTIONS``, read-only methods of builtin values (``_METHODS``: ``str``,
  ``bytes``, numbers, ``list``/``tuple``/``dict``/``set`` readers, datetimes...), and a few
  read-only functions of the standard library (``READ_ONLY_FUNCTIONS``: ``os.getpid``...). Calling
  anything else, the app's own functions included, needs ``unsafe`` (the CLI's ``--unsafe``).
* Implicit protocol methods still run: reading an attribute runs a property or ``__getattr__`` the
  app defines, ``a == b`` its ``__eq__``, ``len(x)`` its ``__len__``. They can only read what the
  app exposes, and what they cost is the app's.

Bounded cost: one evaluation walks at most ``MAX_STEPS`` steps in all (a comprehension's
iteration costs ``max(1, nodes/4)`` steps, a builtin walking a container one per item, a produced
string one per 64 characters); a produced string or bytes holds at most ``MAX_STRING``, a container
``MAX_ITEMS``; integers stay under ``MAX_INT_BITS``; exponents, shifts, repetitions, widths and
ranges are checked before they run; an iterator or generator of the app is never iterated (that
would consume it). Anything over a cap raises ``CapError`` naming it.

Nothing escapes: every exception, BaseException included (SystemExit, KeyboardInterrupt,
GeneratorExit raised inside the expression), becomes an ``ExpressionError``.

One checker (``_Checker``) makes the checked tree; the interpreter (``Expression.evaluate``) walks
it and the compiler (``compile_expression``, ``python_source``) generates Python from it. Both
call the same guards (``_g_*``), so they give the same value or the same refusal.
"""

from __future__ import annotations

import ast
import builtins
import collections
import re
import sys
import types
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple, Union

from . import values

MAX_SOURCE = 4096  # characters of source
MAX_NESTING = 40  # levels of the checked tree
MAX_STEPS = 100_000  # per evaluation, see the module docstring
MAX_ITEMS = 100_000  # items of one produced or walked container
MAX_STRING = 100_000  # characters (bytes) of one produced string
MAX_INT_BITS = 20_000  # about 6,000 decimal digits: their decimal form stays cheap
MAX_REPR = 10_000  # characters of repr(): cut there, with "..."
MAX_INT_TEXT = 5_000  # characters int() parses (quadratic below 3.12)
_STRING_STEP = 64  # characters a step pays for

_PACKAGE = __name__.rpartition(".")[0]
UNSAFE_HINT = "calls of the app's functions need --unsafe: they run with the app's full power"


class ExpressionError(Exception):
    """An expression that does not parse, is refused, hits a cap, or failed while it ran."""


class RefusedError(ExpressionError):
    """What the language does not allow; the message says what and what to do instead."""


class CapError(ExpressionError):
    """A size or cost cap was hit; the message names the cap."""


class _NoAttribute(ExpressionError):
    """The attribute does not exist (as opposed to: it is refused)."""


# ---------------------------------------------------------------- what is refused

_REFUSED_ATTRIBUTES = frozenset(
    """format format_map mro f_globals f_locals f_builtins f_back f_code f_trace f_lasti f_lineno
    tb_frame tb_next tb_lasti tb_lineno gi_frame gi_code gi_running gi_yieldfrom gi_suspended
    cr_frame cr_code cr_running cr_await cr_origin cr_suspended ag_frame ag_code ag_running ag_await
    co_code co_consts co_names co_varnames co_filename co_lnotab co_linetable co_exceptiontable
    func_globals func_code func_closure func_defaults func_dict im_func im_self im_class
    cell_contents""".split()
)
# Objects whose every attribute is refused: each leads to code, frames, globals or closures.
_OPAQUE_TYPES = frozenset(
    (
        types.FunctionType,
        types.LambdaType,
        types.MethodType,
        types.BuiltinFunctionType,
        types.BuiltinMethodType,
        types.MethodWrapperType,
        types.WrapperDescriptorType,
        types.MethodDescriptorType,
        types.ClassMethodDescriptorType,
        types.GetSetDescriptorType,
        types.MemberDescriptorType,
        types.CodeType,
        types.FrameType,
        types.TracebackType,
        types.GeneratorType,
        types.CoroutineType,
        types.AsyncGeneratorType,
        type(ast.parse),  # noqa: E721 - the same as FunctionType, kept for clarity
        types.CellType if hasattr(types, "CellType") else type((lambda x: lambda: x)(0).__closure__[0]),  # type: ignore[index]
        staticmethod,
        classmethod,
        property,
    )
)
# Never values (a module starts a dotted path, a function is only called).
_FUNCTION_TYPES = _OPAQUE_TYPES - {types.CodeType, types.FrameType, types.TracebackType, types.GeneratorType,
                                   types.CoroutineType, types.AsyncGeneratorType, property} | {
    type(len.__call__), type(str.upper), collections.namedtuple("_N", "a").a.__class__,
}
try:
    import functools as _functools
    import operator as _operator

    _FUNCTION_TYPES = _FUNCTION_TYPES | {_functools.partial, _operator.attrgetter, _operator.itemgetter,
                                         _operator.methodcaller}
except ImportError:  # pragma: no cover - stdlib
    pass
_FUNCTION_TYPES = frozenset(_FUNCTION_TYPES)


def _refuse_attribute(name: str) -> RefusedError:
    if name.startswith("__"):
        return RefusedError(
            "attribute %r is refused: dunder attributes are off limits in expressions; "
            "use typename(x) or isinstance(x, 'module.Class') to ask about types" % name
        )
    return RefusedError(
        "attribute %r is refused: it leads to frames, code, globals or formatting; "
        "read the data attributes instead" % name
    )


def _check_attribute_name(name: Any) -> str:
    if type(name) is not str:
        raise RefusedError("attribute names must be strings, not %s" % values.type_name(type(name)))
    if name.startswith("__") or name in _REFUSED_ATTRIBUTES:
        raise _refuse_attribute(name)
    return name


def _is_agent_name(name: Any) -> bool:
    return type(name) is str and (
        name.startswith("_peeka") or name == _PACKAGE or name.startswith(_PACKAGE + ".")
    )


def _module_name(module: Any) -> Optional[str]:
    try:
        name = object.__getattribute__(module, "__dict__").get("__name__")
    except Exception:
        return None
    return name if type(name) is str else None


_KIND_PLAIN, _KIND_MODULE, _KIND_OPAQUE, _KIND_AGENT, _KIND_CLASS = 0, 1, 2, 3, 4
_KINDS: Dict[int, Tuple[Any, int]] = {}


def _kind(cls: Any) -> int:
    """What a class's instances are to the language, cached by class (kept alive with it)."""
    known = _KINDS.get(id(cls))
    if known is not None and known[0] is cls:
        return known[1]
    if issubclass(cls, types.ModuleType):
        kind = _KIND_MODULE
    elif cls in _OPAQUE_TYPES:
        kind = _KIND_OPAQUE
    elif cls is _Lazy or _is_agent_name(_class_module(cls)):
        kind = _KIND_AGENT
    elif issubclass(cls, type):
        kind = _KIND_CLASS  # its instances are classes: each is checked as a class of its own
    else:
        kind = _KIND_PLAIN
    if len(_KINDS) > 4096:
        _KINDS.clear()
    _KINDS[id(cls)] = (cls, kind)
    return kind


def _class_module(cls: Any) -> Any:
    try:
        return type.__dict__["__module__"].__get__(cls)
    except Exception:
        return None


def _check_reachable(obj: Any) -> int:
    """Refuse reaching into Peeka's own modules, classes and objects; the object's kind."""
    kind = _kind(type(obj))
    if kind == _KIND_AGENT or (kind == _KIND_CLASS and _kind(obj) == _KIND_AGENT):
        raise RefusedError("Peeka's own objects are not reachable from expressions")
    if kind == _KIND_MODULE and _is_agent_name(_module_name(obj)):
        raise RefusedError("Peeka's own modules are not reachable from expressions")
    return kind


_PLAIN_VALUES = frozenset((int, float, str, bytes, bool, type(None), tuple, list, dict, set, frozenset))


def _g_value(value: Any) -> Any:
    """A value handed on (call argument, container item): never a module or function."""
    cls = type(value)
    if cls in _PLAIN_VALUES:
        return value
    if cls in _FUNCTION_TYPES:
        raise RefusedError(
            "a function (%s) cannot be a value in expressions: call it, or show it with `peeka sm`"
            % _callable_label(value)
        )
    kind = _kind(cls)
    if kind == _KIND_MODULE:
        raise RefusedError(
            "a module (%s) cannot be a value in expressions: read its attributes (%s.name)"
            % (_module_name(value), _module_name(value))
        )
    if (kind == _KIND_AGENT and cls is not _Lazy) or (kind == _KIND_CLASS and _kind(value) == _KIND_AGENT):
        raise RefusedError("Peeka's own objects are not reachable from expressions")
    return value


def _g_result(value: Any) -> Any:
    """An expression's final value: shown by Peeka, so a module or function may be it."""
    if type(value) is _Lazy:
        return value.materialize(None)
    _check_reachable(value)
    return value


# ---------------------------------------------------------------- the budget

class _Budget:
    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_STEPS


def _charge(budget: Optional[_Budget], steps: int) -> None:
    if budget is None:
        return
    budget.left -= steps
    if budget.left < 0:
        raise CapError(
            "expression walks more than %d steps (items, comprehension iterations, 64-character "
            "chunks of strings it makes): narrow it (a slice, a smaller collection)" % MAX_STEPS
        )


def _cap_items(n: int, what: str) -> None:
    if n > MAX_ITEMS:
        raise CapError("%s of %d items is over the cap of %d items in expressions: slice it first" % (what, n, MAX_ITEMS))


def _cap_string(n: int, what: str) -> None:
    if n > MAX_STRING:
        raise CapError("%s of %d characters is over the cap of %d in expressions: slice it first" % (what, n, MAX_STRING))


def _cap_int(value: Any) -> Any:
    if type(value) is int and value.bit_length() > MAX_INT_BITS:
        raise CapError("an integer of more than %d bits is over the cap in expressions" % MAX_INT_BITS)
    return value


def _charged(budget: Optional[_Budget], value: Any, what: str) -> Any:
    """A value the expression produced: under the size caps, and paid for."""
    cls = type(value)
    if cls is str or cls is bytes:
        _cap_string(len(value), what)
        _charge(budget, len(value) // _STRING_STEP)
    elif cls in (list, tuple, dict, set, frozenset):
        _cap_items(len(value), what)
        _charge(budget, len(value))
    elif cls is int:
        _cap_int(value)
    return value


class _Lazy:
    """A generator expression's value: iterated only by the language's own walks."""

    __slots__ = ("gen",)

    def __init__(self, gen: Any) -> None:
        self.gen = gen

    def materialize(self, budget: Optional[_Budget]) -> List[Any]:
        return _walk(budget, self, "a generator expression")


_SIZED_WALKS = (list, tuple, dict, set, frozenset, str, bytes, range, collections.deque,
                type({}.keys()), type({}.values()), type({}.items()))


def _iterator_of(obj: Any, what: str) -> Any:
    if type(obj) is _Lazy:
        return obj.gen
    if isinstance(obj, _SIZED_WALKS):
        return iter(obj)
    _check_reachable(obj)
    it = iter(obj)
    if it is obj:
        raise RefusedError(
            "%s is an iterator or generator (%s): iterating it would consume it for the app; "
            "expressions iterate containers only" % (what, values.type_name(type(obj)))
        )
    return it


def _walk(budget: Optional[_Budget], obj: Any, what: str) -> List[Any]:
    """The items of ``obj`` as a list, paid for item by item, at most MAX_ITEMS."""
    if isinstance(obj, _SIZED_WALKS) and type(obj) is not _Lazy:
        try:
            n = len(obj)
        except Exception:
            n = 0
        _cap_items(n, what)
        _charge(budget, n)
        return list(obj)
    out: List[Any] = []
    for item in _iterator_of(obj, what):
        if len(out) >= MAX_ITEMS:
            _cap_items(len(out) + 1, what)
        _charge(budget, 1)
        out.append(item)
    return out


def _g_iter(budget: _Budget, obj: Any, steps: int, shape: Any) -> Any:
    """A comprehension's iteration: each item pays ``steps``; tuple targets are checked first."""
    for item in _iterator_of(obj, "the iterable of a comprehension"):
        budget.left -= steps  # _charge, inlined: this runs per item
        if budget.left < 0:
            _charge(budget, 0)
        if shape is not None:
            _check_shape(item, shape)
        yield item


def _check_shape(item: Any, shape: Any) -> None:
    if not isinstance(item, (tuple, list, str, bytes)):
        raise RefusedError(
            "unpacking a %s in a comprehension target is not supported: unpack tuples or lists"
            % values.type_name(type(item))
        )
    if len(item) != len(shape):
        raise ExpressionError("cannot unpack %d values into %d names" % (len(item), len(shape)))
    for sub, inner in zip(item, shape):
        if inner is not None:
            _check_shape(sub, inner)


# ---------------------------------------------------------------- attributes, items, names

_MISSING = object()


def _g_module(name: str) -> Any:
    module = sys.modules.get(name)
    if module is None or not issubclass(type(module), types.ModuleType):
        raise ExpressionError(
            "name %r is not defined: use an injected name, a loaded module (myapp.config.value) "
            "or one of the functions (%s)" % (name, ", ".join(sorted(FUNCTIONS)))
        )
    if _is_agent_name(name):
        raise RefusedError("Peeka's own modules are not reachable from expressions")
    return module


def get_attribute(obj: Any, name: str, default: Any = _MISSING) -> Any:
    """``obj.name`` with the refusals applied; a module's submodule is found in sys.modules too."""
    _check_attribute_name(name)
    kind = _check_reachable(obj)
    if kind == _KIND_OPAQUE:
        raise RefusedError(
            "attributes of a %s are refused: they lead to code, frames and globals"
            % values.type_name(type(obj))
        )
    try:
        value = getattr(obj, name)
    except AttributeError:
        value = _MISSING
        if kind == _KIND_MODULE:
            module_name = _module_name(obj)
            if module_name:
                value = sys.modules.get(module_name + "." + name, _MISSING)
        elif issubclass(type(obj), dict):
            value = dict.get(obj, name, _MISSING)  # config dicts read like objects: settings.timeout
        if value is _MISSING:
            if default is not _MISSING:
                return default
            raise _NoAttribute("%s object has no attribute %r" % (values.type_name(type(obj)), name)) from None
    return value


_g_attr = get_attribute


def _g_item(obj: Any, key: Any) -> Any:
    cls = type(obj)
    if cls is dict or ((cls is list or cls is tuple) and type(key) is int):
        return obj[key]
    if type(key) is slice:
        raise RefusedError("slice objects are refused as keys: write x[a:b]")
    _check_reachable(obj)
    if isinstance(obj, collections.defaultdict) and key not in obj:
        raise ExpressionError("KeyError: %s (reading a missing key of a defaultdict would insert it; use .get())"
                              % values.safe_repr(key, 200))
    return obj[key]


def _g_slice(budget: Optional[_Budget], obj: Any, lower: Any, upper: Any, step: Any) -> Any:
    _check_reachable(obj)
    key = slice(lower, upper, step)
    if isinstance(obj, (list, tuple, str, bytes, range)):
        n = len(range(*key.indices(len(obj))))
        if isinstance(obj, (str, bytes)):
            _cap_string(n, "a slice")
            _charge(budget, n // _STRING_STEP)
        else:
            _cap_items(n, "a slice")
            _charge(budget, n)
        return obj[key]
    return _charged(budget, obj[key], "a slice")


# ---------------------------------------------------------------- operators

def _is_number(value: Any) -> bool:
    return type(value) in (int, float, bool, complex)


def _g_add(budget: Optional[_Budget], a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return _cap_int(a + b)
    if isinstance(a, (str, bytes, list, tuple)) and isinstance(b, (str, bytes, list, tuple)):
        n = len(a) + len(b)
        if isinstance(a, (str, bytes)):
            _cap_string(n, "a sum of strings")
        else:
            _cap_items(n, "a concatenation")
    return _charged(budget, a + b, "a sum")


def _g_mul(budget: Optional[_Budget], a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        if a.bit_length() + b.bit_length() > MAX_INT_BITS + 1:
            raise CapError("a product of more than %d bits is over the cap in expressions" % MAX_INT_BITS)
        return _cap_int(a * b)
    for seq, n in ((a, b), (b, a)):
        if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int):
            total = len(seq) * max(n, 0)
            if isinstance(seq, (str, bytes)):
                _cap_string(total, "a repetition")
            else:
                _cap_items(total, "a repetition")
    return _charged(budget, a * b, "a product")


def _g_pow(budget: Optional[_Budget], a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and b > 0 and a not in (0, 1, -1):
        if b > MAX_INT_BITS or a.bit_length() * b > MAX_INT_BITS + a.bit_length():
            raise CapError("%s ** %s is over the cap of %d bits in expressions" % (
                values.safe_repr(a, 40), values.safe_repr(b, 40), MAX_INT_BITS))
    elif not (_is_number(a) and _is_number(b)) and isinstance(b, int) and abs(b) > MAX_INT_BITS:
        raise CapError("exponent %d is over the cap of %d in expressions" % (b, MAX_INT_BITS))
    return _charged(budget, a ** b, "a power")


def _g_lshift(budget: Optional[_Budget], a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and a and b > 0 and a.bit_length() + b > MAX_INT_BITS:
        raise CapError("a shift past %d bits is over the cap in expressions" % MAX_INT_BITS)
    return _charged(budget, a << b, "a shift")


_PERCENT = re.compile(r"%(\([^)]*\))?([#0\- +]*)(\*|\d*)(?:\.(\*|\d*))?[hlL]?(.)", re.S)


def _g_mod(budget: Optional[_Budget], a: Any, b: Any) -> Any:
    if not isinstance(a, (str, bytes)):
        if type(a) is int and type(b) is int:
            return a % b
        return _charged(budget, a % b, "a remainder")
    text = a.decode("latin-1") if isinstance(a, bytes) else a
    _cap_string(len(text), "a format")
    args = b if type(b) is tuple else (b,)
    width_total = len(text)
    for m in _PERCENT.finditer(text):
        if m.group(5) == "%":
            continue
        if m.group(1) is not None:
            raise RefusedError("%(name) formats are refused in expressions: use an f-string")
        for digits in (m.group(3), m.group(4)):
            if digits == "*":
                raise RefusedError("'*' widths are refused in % formats: write the width")
            if digits and (len(digits) > 6 or int(digits) > MAX_STRING):
                raise CapError("a width or precision of %s is over the cap of %d" % (digits, MAX_STRING))
            width_total += int(digits or 0)
    for arg in args:
        width_total += _text_cost(budget, arg)
    _cap_string(width_total, "a % format")
    return _charged(budget, a % tuple(_g_value(x) for x in args) if type(b) is tuple else a % _g_value(b), "a % format")


def _text_cost(budget: Optional[_Budget], value: Any) -> int:
    """An estimate of str()/repr() of ``value`` in characters, refusing what is over the caps
    before it is built (a huge container, a huge int)."""
    cls = type(value)
    if cls is str or cls is bytes:
        return len(value) * (4 if cls is bytes else 1) + 2
    if cls is int:
        _cap_int(value)
        return value.bit_length() // 3 + 2
    if cls in (float, bool, complex, type(None)):
        return 32
    if isinstance(value, (list, tuple, dict, set, frozenset, collections.deque)) and _kind(cls) != _KIND_AGENT:
        try:
            n = len(value)
        except Exception:
            n = 0
        _cap_items(n, "a container shown as text")
        _charge(budget, n)
        total = 2 + 2 * n
        items = list(value.items()) if isinstance(value, dict) else list(value)
        for item in items:
            if isinstance(item, tuple) and isinstance(value, dict):
                total += _text_cost(budget, item[0]) + _text_cost(budget, item[1])
            else:
                total += _text_cost(budget, item)
            if total > MAX_STRING:
                _cap_string(total, "a container shown as text")
        return total
    return 64  # the app's own __str__/__repr__: checked after it ran


def _text(budget: Optional[_Budget], value: Any) -> str:
    cls = type(value)
    if cls is str:
        return value
    _cap_string(_text_cost(budget, value), "a text")
    return _charged(budget, str(value), "a text")


_FORMAT_SPEC = re.compile(r"(?:.?[<>=^])?[+\- ]?z?#?0?(\d*)[,_]?(?:\.(\d+))?[a-zA-Z%]?\Z", re.S)


def _g_format(budget: Optional[_Budget], value: Any, conversion: int, spec: Any) -> str:
    """One ``{value!c:spec}`` of an f-string: ``format(value, spec)``, never ``spec.format``."""
    if conversion == 114:  # !r
        value = _g_repr(budget, value)
    elif conversion == 97:  # !a
        value = _g_repr(budget, value).encode("ascii", "backslashreplace").decode("ascii")
    elif conversion == 115:  # !s
        value = _text(budget, value)
    spec = "" if spec is None else spec
    if type(spec) is not str:
        raise ExpressionError("a format spec must be a string")
    _cap_string(len(spec), "a format spec")
    m = _FORMAT_SPEC.match(spec)
    if m:
        for digits in m.groups():
            if digits and (len(digits) > 6 or int(digits) > MAX_STRING):
                raise CapError("a width or precision of %s is over the cap of %d" % (digits, MAX_STRING))
    elif len(spec) > 200:
        raise CapError("a format spec of more than 200 characters is over the cap")
    if type(value) is not str:
        _cap_string(_text_cost(budget, value), "a formatted value")
    return _charged(budget, format(value, spec), "a formatted value")


def _g_fstring(budget: Optional[_Budget], parts: Iterable[str]) -> str:
    pieces = list(parts)
    _cap_string(sum(len(p) for p in pieces), "an f-string")
    return _charged(budget, "".join(pieces), "an f-string")


def _g_binop(budget: Optional[_Budget], op: str, a: Any, b: Any) -> Any:
    """``-``, ``|``, ``&``, ``^``, ``/``, ``//``, ``>>``: cheap on numbers; on sets and dicts paid by size."""
    if not (_is_number(a) and _is_number(b)):
        for side in (a, b):
            if isinstance(side, (set, frozenset, dict, type({}.keys()), type({}.items()))):
                _cap_items(len(side), "an operand")
                _charge(budget, len(side))
    return _charged(budget, _BINARY[op](a, b), "a result")


def _g_in(budget: Optional[_Budget], item: Any, container: Any) -> bool:
    cls = type(container)
    if cls in (set, frozenset, dict, str, bytes, range) or isinstance(container, (set, frozenset, dict, str, bytes)):
        return item in container
    if type(container) is _Lazy or isinstance(container, (list, tuple, collections.deque)):
        for x in _walk(budget, container, "the right side of 'in'"):
            if x is item or x == item:
                return True
        return False
    _check_reachable(container)
    if getattr(type(container), "__contains__", None) is None and iter(container) is container:
        raise RefusedError("'in' over an iterator or generator would consume it for the app")
    return item in container


_COMPARE = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _g_compare(budget: Optional[_Budget], op: str, a: Any, b: Any) -> Any:
    """A comparison whose both sides may be containers: paid by their size."""
    for side in (a, b):
        if isinstance(side, (list, tuple, dict, set, frozenset, collections.deque)):
            _cap_items(len(side), "a compared container")
            _charge(budget, len(side))
    return _COMPARE[op](a, b)


_BINARY: Dict[str, Callable[[Any, Any], Any]] = {
    "-": lambda a, b: a - b, "|": lambda a, b: a | b, "&": lambda a, b: a & b, "^": lambda a, b: a ^ b,
    ">>": lambda a, b: a >> b,
}


# ---------------------------------------------------------------- the functions

def _f_len(budget: Optional[_Budget], obj: Any) -> int:
    return len(obj)


def _f_str(budget: Optional[_Budget], *args: Any) -> str:
    if not args:
        return ""
    if len(args) > 1:  # str(bytes, encoding)
        obj = args[0]
        if isinstance(obj, bytes):
            _cap_string(len(obj), "decoded bytes")
        return _charged(budget, str(*args), "a string")
    return _text(budget, args[0])


def _g_repr(budget: Optional[_Budget], obj: Any) -> str:
    text = values.safe_repr(obj, MAX_REPR)
    return _charged(budget, text, "a repr")


def _f_repr(budget: Optional[_Budget], obj: Any) -> str:
    return _g_repr(budget, obj)


def _f_int(budget: Optional[_Budget], *args: Any) -> int:
    if args and isinstance(args[0], (str, bytes)) and len(args[0]) > MAX_INT_TEXT:
        raise CapError("int() of more than %d characters is over the cap in expressions" % MAX_INT_TEXT)
    return _cap_int(int(*args))


def _f_float(budget: Optional[_Budget], *args: Any) -> float:
    if args and isinstance(args[0], (str, bytes)):
        _cap_string(len(args[0]), "float()'s text")
    return float(*args)


def _f_bool(budget: Optional[_Budget], *args: Any) -> bool:
    return bool(*args)


def _items_of(budget: Optional[_Budget], args: Tuple[Any, ...], what: str) -> List[Any]:
    if len(args) == 1:
        return _walk(budget, args[0], what)
    _charge(budget, len(args))
    return list(args)


def _f_min(budget: Optional[_Budget], *args: Any, **kwargs: Any) -> Any:
    return _extreme(budget, min, args, kwargs)


def _f_max(budget: Optional[_Budget], *args: Any, **kwargs: Any) -> Any:
    return _extreme(budget, max, args, kwargs)


def _extreme(budget: Optional[_Budget], fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    if set(kwargs) - {"default"}:
        raise RefusedError("%s() takes only default= in expressions (no key functions)" % fn.__name__)
    if not args:
        raise ExpressionError("%s expected at least 1 argument" % fn.__name__)
    items = _items_of(budget, args, "%s()'s input" % fn.__name__)
    return fn(items, **kwargs)


def _f_sum(budget: Optional[_Budget], iterable: Any, start: Any = 0) -> Any:
    if not _is_number(start):
        raise RefusedError("sum()'s start must be a number in expressions (adding sequences is quadratic)")
    total = start
    for item in _walk(budget, iterable, "sum()'s input"):
        total = total + item
        if type(total) is int:
            _cap_int(total)
        elif not _is_number(total):
            return _charged(budget, total, "a sum")
    return total


def _f_any(budget: Optional[_Budget], iterable: Any) -> bool:
    for item in _each(budget, iterable, "any()'s input"):
        if item:
            return True
    return False


def _f_all(budget: Optional[_Budget], iterable: Any) -> bool:
    for item in _each(budget, iterable, "all()'s input"):
        if not item:
            return False
    return True


def _each(budget: Optional[_Budget], obj: Any, what: str) -> Any:
    """Items one by one (any/all stop early), each paid for, at most MAX_ITEMS."""
    n = 0
    for item in _iterator_of(obj, what):
        n += 1
        if n > MAX_ITEMS:
            _cap_items(n, what)
        _charge(budget, 1)
        yield item


def _f_sorted(budget: Optional[_Budget], iterable: Any, reverse: Any = False) -> List[Any]:
    items = _walk(budget, iterable, "sorted()'s input")
    items.sort(reverse=bool(reverse))
    return items


def _f_abs(budget: Optional[_Budget], x: Any) -> Any:
    return abs(x)


def _f_round(budget: Optional[_Budget], x: Any, ndigits: Any = None) -> Any:
    if ndigits is None:
        return round(x)
    if isinstance(ndigits, int) and abs(ndigits) > 1000:
        raise CapError("round() to more than 1000 digits is over the cap in expressions")
    return round(x, ndigits)


def _class_names(obj: Any) -> Tuple[str, ...]:
    return tuple(values.type_name(klass) for klass in type(obj).__mro__)


def _f_isinstance(budget: Optional[_Budget], obj: Any, classinfo: Any) -> bool:
    """isinstance, also by qualified name: ``isinstance(x, "myapp.models.User")``."""
    names = classinfo if type(classinfo) is tuple else (classinfo,)
    if names and all(type(n) is str for n in names):
        mro = _class_names(obj)
        return any(n in mro for n in names)
    for c in names:
        if not isinstance(c, type):
            raise ExpressionError("isinstance() wants classes or qualified class names")
    return isinstance(obj, classinfo)


def _f_hasattr(budget: Optional[_Budget], obj: Any, name: Any) -> bool:
    try:
        get_attribute(obj, _check_attribute_name(name))
    except _NoAttribute:
        return False
    return True


def _f_getattr(budget: Optional[_Budget], obj: Any, name: Any, *default: Any) -> Any:
    if len(default) > 1:
        raise ExpressionError("getattr takes at most 3 arguments")
    return _g_value(get_attribute(obj, _check_attribute_name(name), *default))


def _f_typename(budget: Optional[_Budget], obj: Any) -> str:
    return values.type_name(type(obj))


def _f_list(budget: Optional[_Budget], *args: Any) -> List[Any]:
    return _walk(budget, args[0], "list()'s input") if args else []


def _f_tuple(budget: Optional[_Budget], *args: Any) -> Tuple[Any, ...]:
    return tuple(_walk(budget, args[0], "tuple()'s input")) if args else ()


def _f_set(budget: Optional[_Budget], *args: Any) -> set:
    return set(_walk(budget, args[0], "set()'s input")) if args else set()


def _f_frozenset(budget: Optional[_Budget], *args: Any) -> frozenset:
    return frozenset(_walk(budget, args[0], "frozenset()'s input")) if args else frozenset()


def _f_dict(budget: Optional[_Budget], *args: Any, **kwargs: Any) -> Dict[Any, Any]:
    if len(args) > 1:
        raise ExpressionError("dict expected at most 1 argument")
    out: Dict[Any, Any] = {}
    if args:
        source = args[0]
        if isinstance(source, dict):
            _cap_items(len(source), "dict()'s input")
            _charge(budget, len(source))
            out = dict(source)
        else:
            for pair in _walk(budget, source, "dict()'s input"):
                _check_shape(pair, (None, None))
                out[pair[0]] = pair[1]
    for key, value in kwargs.items():
        out[key] = _g_value(value)
    return _charged(budget, out, "a dict")


def _f_range(budget: Optional[_Budget], *args: Any) -> range:
    r = range(*args)
    _cap_items(len(r), "a range")
    return r


def _f_enumerate(budget: Optional[_Budget], iterable: Any, start: Any = 0) -> List[Tuple[int, Any]]:
    if not isinstance(start, int):
        raise ExpressionError("enumerate()'s start must be an integer")
    return list(enumerate(_walk(budget, iterable, "enumerate()'s input"), _cap_int(start)))


def _f_zip(budget: Optional[_Budget], *iterables: Any) -> List[Tuple[Any, ...]]:
    return list(zip(*[_walk(budget, it, "zip()'s input") for it in iterables]))


def _f_reversed(budget: Optional[_Budget], seq: Any) -> List[Any]:
    items = _walk(budget, seq, "reversed()'s input")
    items.reverse()
    return items


def _f_bytes(budget: Optional[_Budget], *args: Any) -> bytes:
    if args and isinstance(args[0], int):
        _cap_string(args[0], "bytes(n)")
    elif args and isinstance(args[0], str):
        _cap_string(len(args[0]) * 4, "encoded text")
    elif args:
        return _charged(budget, bytes(_walk(budget, args[0], "bytes()'s input")), "bytes")
    return _charged(budget, bytes(*args), "bytes")


def _f_chr(budget: Optional[_Budget], i: Any) -> str:
    return chr(i)


def _f_ord(budget: Optional[_Budget], c: Any) -> int:
    return ord(c)


def _f_hex(budget: Optional[_Budget], i: Any) -> str:
    return hex(_cap_int(i))


def _f_oct(budget: Optional[_Budget], i: Any) -> str:
    return oct(_cap_int(i))


def _f_bin(budget: Optional[_Budget], i: Any) -> str:
    return bin(_cap_int(i))


def _f_divmod(budget: Optional[_Budget], a: Any, b: Any) -> Any:
    return divmod(a, b)


def _f_id(budget: Optional[_Budget], obj: Any) -> int:
    return id(obj)


def _f_callable(budget: Optional[_Budget], obj: Any) -> bool:
    return callable(obj)


def _f_format(budget: Optional[_Budget], value: Any, spec: Any = "") -> str:
    return _g_format(budget, value, -1, spec)


# The functions an expression may call, by name. Each takes the evaluation's budget first.
FUNCTIONS: Dict[str, Callable[..., Any]] = {
    name[3:]: fn for name, fn in sorted(globals().items()) if name.startswith("_f_") and callable(fn)
}


# ---------------------------------------------------------------- methods of builtin values

_STR_READ = """count endswith find index isalnum isalpha isascii isdecimal isdigit isidentifier islower
    isnumeric isprintable isspace istitle isupper rfind rindex startswith""".split()
_STR_MAKE = """capitalize casefold lower upper swapcase title strip lstrip rstrip removeprefix removesuffix
    encode decode hex split rsplit splitlines partition rpartition""".split()
_STR_PAD = "center ljust rjust zfill".split()
_SPECIAL = ["expandtabs", "replace", "join"]
_STRINGISH = frozenset(_STR_READ + _STR_MAKE + _STR_PAD + _SPECIAL)

_METHODS: Dict[Any, FrozenSet[str]] = {
    str: _STRINGISH,
    bytes: _STRINGISH,
    int: frozenset("bit_length bit_count conjugate as_integer_ratio is_integer to_bytes".split()),
    float: frozenset("is_integer hex as_integer_ratio conjugate".split()),
    complex: frozenset(["conjugate"]),
    list: frozenset("count index copy".split()),
    tuple: frozenset("count index".split()),
    range: frozenset("count index".split()),
    dict: frozenset("get keys values items copy".split()),
    set: frozenset("isdisjoint issubset issuperset union intersection difference symmetric_difference copy".split()),
    frozenset: frozenset("isdisjoint issubset issuperset union intersection difference symmetric_difference copy".split()),
    type({}.keys()): frozenset(["isdisjoint"]),
    type({}.items()): frozenset(["isdisjoint"]),
    collections.deque: frozenset("count index".split()),
    collections.OrderedDict: frozenset("get keys values items copy".split()),
    collections.Counter: frozenset(["most_common", "total"]),
}
# The datetime module's classes, added when the app has loaded it (the agent never imports it).
_DATETIME_METHODS = {
    "datetime": frozenset("isoformat timestamp date time weekday isoweekday toordinal utcoffset tzname strftime "
                          "isocalendar".split()),
    "date": frozenset("isoformat weekday isoweekday toordinal strftime isocalendar".split()),
    "time": frozenset("isoformat utcoffset tzname strftime".split()),
    "timedelta": frozenset(["total_seconds"]),
}
_STRFTIME_TYPES: Tuple[Any, ...] = ()


def _add_datetime() -> None:
    global _STRFTIME_TYPES
    module = sys.modules.get("datetime")
    if module is None or _STRFTIME_TYPES:
        return
    try:
        classes = {name: object.__getattribute__(module, name) for name in _DATETIME_METHODS}
    except Exception:
        return
    for name, cls in classes.items():
        _METHODS[cls] = _DATETIME_METHODS[name]
    _STRFTIME_TYPES = (classes["datetime"], classes["date"], classes["time"])
try:
    import functools as _ft

    _METHODS[_ft._lru_cache_wrapper] = frozenset(["cache_info"])  # type: ignore[attr-defined]
except (ImportError, AttributeError):  # pragma: no cover
    pass


def _bound_method(func: Any) -> Tuple[Any, str]:
    """``(owner, name)`` of a method bound to an object (not a class or module), else (None, "")."""
    cls = type(func)
    try:
        if cls is types.BuiltinMethodType:
            owner = func.__self__
            name = func.__name__
        elif cls is types.MethodType:
            owner = func.__self__
            name = func.__func__.__name__
        else:
            return None, ""
    except Exception:
        return None, ""
    if owner is None or isinstance(owner, (types.ModuleType, type)) or type(name) is not str:
        return None, ""
    return owner, name


def _method_wrapper(func: Any) -> Optional[Callable[..., Any]]:
    """How to call ``func`` when it is a read-only method of a builtin value, else None. The method
    must be that very method of the table's class, not a look-alike or a subclass's override."""
    owner, name = _bound_method(func)
    if owner is None:
        return None
    if not _STRFTIME_TYPES:
        _add_datetime()
    cls = type(owner)
    try:
        mro = cls.__mro__
    except Exception:
        return None
    for base in mro:
        names = _METHODS.get(base)
        if names is None or name not in names:
            continue
        try:
            attribute = type.__dict__["__dict__"].__get__(base)[name]
            if getattr(cls, name) is not getattr(base, name):
                return None  # overridden by a subclass
            if type(func) is types.MethodType:
                genuine = func.__func__ is attribute
            else:
                genuine = type(attribute) is types.MethodDescriptorType and attribute.__get__(owner, cls) == func
        except Exception:
            return None
        if not genuine:
            return None
        if base in (str, bytes):
            return _STRING_WRAPPERS.get(name, _string_method)
        if base in (set, frozenset, list, dict, collections.OrderedDict, collections.Counter):
            return _container_method
        if base is int and name == "to_bytes":
            return _int_to_bytes
        if base in _STRFTIME_TYPES and name == "strftime":
            return _strftime
        return _plain_method
    return None


def _plain_method(budget: Optional[_Budget], method: Any, owner: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    return _charged(budget, method(*args, **kwargs), "a method's result")


def _container_method(budget: Optional[_Budget], method: Any, owner: Any, args: Tuple[Any, ...],
                      kwargs: Dict[str, Any]) -> Any:
    total = len(owner)
    for arg in args:
        if isinstance(arg, _SIZED_WALKS):
            total += len(arg)
        elif type(arg) is _Lazy or not _is_number(arg):
            _iterator_of(arg, "a method's argument")  # an app iterator would be consumed: refused
    _cap_items(total, "a method's input")
    _charge(budget, total)
    return _charged(budget, method(*args, **kwargs), "a method's result")


def _string_method(budget: Optional[_Budget], method: Any, owner: Any, args: Tuple[Any, ...],
                   kwargs: Dict[str, Any]) -> Any:
    name = method.__name__
    if name in _STR_MAKE or name in _STR_PAD:
        _cap_string(len(owner) * (2 if name == "hex" else 1), "the string of %s()" % name)
        _charge(budget, len(owner) // _STRING_STEP)
    if name in _STR_PAD and args:
        width = args[0]
        if isinstance(width, int):
            _cap_string(width, "%s()'s width" % name)
    return _charged(budget, method(*args, **kwargs), "a string method's result")


def _s_expandtabs(budget: Optional[_Budget], method: Any, owner: Any, args: Tuple[Any, ...],
                  kwargs: Dict[str, Any]) -> Any:
    size = (list(args) + list(kwargs.values()) + [8])[0]
    if isinstance(size, int):
        _cap_string(len(owner) * max(size, 1), "expandtabs()'s result")
    return _charged(budget, method(*args, **kwargs), "a string method's result")


def _s_replace(budget: Optional[_Budget], method: Any, owner: Any, args: Tuple[Any, ...],
               kwargs: Dict[str, Any]) -> Any:
    _cap_string(len(owner), "the string of replace()")
    if len(args) >= 2 and isinstance(args[0], type(owner)) and isinstance(args[1], type(owner)):
        old, new = args[0], args[1]
        count = owner.count(old) if old else len(owner) + 1
        if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
            count = min(count, args[2])
        _cap_string(len(owner) + count * (len(new) - len(old)), "replace()'s result")
    return _charged(budget, method(*args, **kwargs), "a string method's result")


def _s_join(budget: Optional[_Budget], method: Any, owner: Any, args: Tuple[Any, ...],
            kwargs: Dict[str, Any]) -> Any:
    if len(args) != 1 or kwargs:
        raise ExpressionError("join() takes exactly one argument")
    items = _walk(budget, args[0], "join()'s input")
    total = len(owner) * max(len(items) - 1, 0)
    for item in items:
        if isinstance(item, (str, bytes)):
            total += len(item)
    _cap_string(total, "join()'s result")
    return _charged(budget, method(items), "join()'s result")


_STRING_WRAPPERS = {"expandtabs": _s_expandtabs, "replace": _s_replace, "join": _s_join}


def _int_to_bytes(budget: Optional[_Budget], method: Any, owner: Any, args: Tuple[Any, ...],
                  kwargs: Dict[str, Any]) -> Any:
    length = args[0] if args else kwargs.get("length", 1)
    if isinstance(length, int):
        _cap_string(length, "to_bytes()'s length")
    return method(*args, **kwargs)


def _strftime(budget: Optional[_Budget], method: Any, owner: Any, args: Tuple[Any, ...],
              kwargs: Dict[str, Any]) -> Any:
    if args and isinstance(args[0], str) and len(args[0]) > 1000:
        raise CapError("a strftime format of more than 1000 characters is over the cap")
    return _charged(budget, method(*args, **kwargs), "strftime()'s result")


# Read-only functions and methods of the standard library, by (module, qualified name): callable
# when the object called is that very one (read from sys.modules, never imported for it).
READ_ONLY_FUNCTIONS = frozenset(
    [("os", n) for n in "getpid getppid getpgrp getuid geteuid getgid getegid getcwd cpu_count getloadavg".split()]
    + [("os.path", n) for n in "join basename dirname split splitext normpath isabs".split()]
    + [("sys", n) for n in "getsizeof getrecursionlimit getswitchinterval getdefaultencoding "
       "getfilesystemencoding getallocatedblocks is_finalizing".split()]
    + [("threading", n) for n in "active_count current_thread main_thread get_ident get_native_id enumerate "
       "Thread.is_alive Thread.getName Thread.isDaemon".split()]
    + [("gc", n) for n in "get_count get_threshold isenabled is_tracked is_finalized".split()]
    + [("time", n) for n in "time time_ns monotonic monotonic_ns perf_counter perf_counter_ns thread_time "
       "thread_time_ns process_time".split()]
    + [("math", n) for n in "floor ceil trunc sqrt log log2 log10 exp fabs isnan isinf isfinite isclose copysign "
       "hypot".split()]
    + [("collections.abc", n) for n in "Mapping.get Mapping.keys Mapping.values Mapping.items".split()]
    + [("asyncio", n) for n in "current_task Task.done Task.cancelled Task.get_name Future.done "
       "Future.cancelled".split()]
)


def _resolve(module: str, qualname: str) -> Any:
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        if obj is None:
            return None
        try:
            obj = object.__getattribute__(obj, "__dict__").get(part) if isinstance(obj, types.ModuleType) else \
                type.__dict__["__dict__"].__get__(obj).get(part)
        except Exception:
            return None
    return obj


_READ_ONLY_BY_NAME: Dict[str, List[Tuple[str, str]]] = {}
for _module_, _qual_ in READ_ONLY_FUNCTIONS:
    _READ_ONLY_BY_NAME.setdefault(_qual_.rpartition(".")[2], []).append((_module_, _qual_))
_MODULE_ALIASES = {"os": ("os", "posix", "nt"), "os.path": ("os.path", "posixpath", "ntpath"),
                   "threading": ("threading", "_thread"), "asyncio": ("asyncio", "_asyncio", "asyncio.tasks",
                                                                      "asyncio.futures")}


def _is_read_only(func: Any) -> bool:
    """Is ``func`` one of READ_ONLY_FUNCTIONS (that very object, or that method bound to an object)?"""
    owner, name = _bound_method(func)
    target = func
    if owner is not None:
        target = func.__func__ if type(func) is types.MethodType else None
    elif type(func) not in (types.BuiltinFunctionType, types.FunctionType):
        return False
    else:
        try:
            name = func.__name__
        except Exception:
            return False
    for module, qual in _READ_ONLY_BY_NAME.get(name, ()):
        for alias in _MODULE_ALIASES.get(module, (module,)):
            found = _resolve(alias, qual)
            if found is None:
                continue
            if target is not None and found is target:
                return True
            if owner is not None and target is None and type(found) is types.MethodDescriptorType:
                try:
                    if found.__get__(owner, type(owner)) == func:
                        return True
                except Exception:
                    pass
    return False


def _callable_label(func: Any) -> str:
    try:
        cls = type(func)
        if cls in (types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType):
            owner = getattr(func, "__self__", None)
            if owner is not None and not isinstance(owner, types.ModuleType):
                return "%s.%s" % (values.type_name(type(owner)) if not isinstance(owner, type) else values.type_name(owner),
                                  func.__name__)
            return "%s.%s" % (func.__module__ or "builtins", func.__name__)
        if cls is types.MethodType:
            return "%s.%s" % (func.__func__.__module__, func.__func__.__qualname__)
        if cls is types.FunctionType:
            return "%s.%s" % (func.__module__, func.__qualname__)
        if isinstance(func, type):
            return values.type_name(func)
    except Exception:
        pass
    return "a %s" % values.type_name(type(func))


def call_refusal(func: Any, unsafe: bool = False) -> Optional[str]:
    """Why calling ``func`` is refused, or None (the table's functions are called by name)."""
    if unsafe and _kind(type(func)) != _KIND_AGENT:
        owner_module = getattr(getattr(func, "__func__", func), "__module__", None)
        if not _is_agent_name(owner_module if type(owner_module) is str else None):
            return None
    if _method_wrapper(func) is not None or _is_read_only(func):
        return None
    label = _callable_label(func)
    if _bound_method(func)[0] is not None and type(_bound_method(func)[0]).__module__ == "builtins":
        return ("%s is not a read-only method: expressions call only read-only methods of builtin values "
                "(str, bytes, numbers, list, tuple, dict, set, datetime); %s" % (label, UNSAFE_HINT))
    return ("calling %s is refused: %s (without it, expressions call only their own functions such as len, "
            "sorted, typename, read-only methods of builtin values, and read-only helpers such as os.getpid)"
            % (label, UNSAFE_HINT))


def _g_call(budget: Optional[_Budget], unsafe: bool, func: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    """Any call not of the table's functions by name: read-only methods and helpers, or --unsafe."""
    table_name = _TYPE_FUNCTIONS.get(id(func))
    if table_name is not None and _TYPES[table_name] is func:  # str reached as a value: still the table's str
        return FUNCTIONS[table_name](budget, *[_g_value(a) for a in args], **kwargs)
    wrapper = _method_wrapper(func)
    if wrapper is not None:
        return wrapper(budget, func, func.__self__, args, kwargs)
    reason = call_refusal(func, unsafe)
    if reason:
        raise RefusedError(reason)
    if not unsafe:
        for value in args:
            _g_value(value)
        return _charged(budget, func(*args, **kwargs), "a call's result")
    return func(*args, **kwargs)


# ---------------------------------------------------------------- the checker

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
        ast.Pow: "**", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^"}
_CMP = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
        ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}
_UNARY = {ast.Not: "not ", ast.USub: "-", ast.UAdd: "+", ast.Invert: "~"}
_SCALARS = (int, float, str, bytes, bool, type(None), complex)
_BUILTIN_NAMES = frozenset(dir(builtins))

# Names a checked tree gives each ast.Name (stored as node._pk):
_LOCAL, _INJECTED, _FUNCTION, _MODULE, _TYPE = "local", "injected", "function", "module", "type"
# The table's functions that are builtin classes: as values they are the classes themselves.
_TYPES = {name: getattr(builtins, name) for name in
          "str int float bool list tuple dict set frozenset bytes range enumerate zip reversed".split()}
_TYPE_FUNCTIONS = {id(cls): name for name, cls in _TYPES.items()}


_GRAMMAR = "write one expression of names, attributes, items, literals, operators, calls and comprehensions"


class _Checker:
    """Refuses what is outside the language, resolves each name, and weighs comprehensions."""

    def __init__(self, injected: FrozenSet[str]) -> None:
        self.injected = injected
        self.scopes: List[Dict[str, bool]] = []  # comprehension scopes: name -> bound yet

    def check(self, node: ast.AST, depth: int = 0, position: str = "value") -> None:
        if depth > MAX_NESTING:
            raise RefusedError("expression nested too deeply (more than %d levels): split it" % MAX_NESTING)
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise RefusedError("%s is not supported in expressions: %s" % (_describe(node), _GRAMMAR))
        method(node, depth + 1, position)

    def _Constant(self, node: Any, depth: int, position: str) -> None:
        if not isinstance(node.value, _SCALARS) and node.value is not Ellipsis:
            raise RefusedError("constant %r is not supported" % (node.value,))

    def _Name(self, node: Any, depth: int, position: str) -> None:
        name = node.id
        if not isinstance(node.ctx, ast.Load):
            raise RefusedError("assignment is not supported in expressions: they only read")
        if (name.startswith("__") and name != "__main__") or name.startswith("_pk") or name.startswith("_peeka"):
            # __main__ is the app's script, a module like any other (read through its attributes)
            raise RefusedError("the name %r is refused: dunder and Peeka's own names are off limits" % name)
        for scope in reversed(self.scopes):
            if name in scope:
                if not scope[name]:
                    raise RefusedError("%r is used before the for clause that binds it" % name)
                node._pk = _LOCAL
                return
        if name in self.injected:
            node._pk = _INJECTED
        elif name in _TYPES and position != "callee":
            node._pk = _TYPE  # the class itself, for isinstance(x, (str, int))
        elif name in FUNCTIONS:
            if position != "callee":
                raise RefusedError("%s is a function: call it, %s(...); functions are not values in expressions"
                                   % (name, name))
            node._pk = _FUNCTION
        elif name in _BUILTIN_NAMES:
            raise RefusedError(
                "%r is refused: it is not one of the expression functions (%s)" % (name, ", ".join(sorted(FUNCTIONS)))
                if name != "type" else
                "'type' is refused: use typename(x), or isinstance(x, 'module.Class')"
            )
        else:
            if position not in ("base", "result"):
                raise RefusedError("%r is not an injected name here (%s), so it names a module, and a module "
                                   "cannot be a value: read its attributes (%s.name)"
                                   % (name, ", ".join(sorted(self.injected)) or "none", name))
            node._pk = _MODULE

    def _Attribute(self, node: Any, depth: int, position: str) -> None:
        if not isinstance(node.ctx, ast.Load):
            raise RefusedError("assignment is not supported in expressions: they only read")
        _check_attribute_name(node.attr)
        self.check(node.value, depth, "base")

    def _Subscript(self, node: Any, depth: int, position: str) -> None:
        if not isinstance(node.ctx, ast.Load):
            raise RefusedError("assignment is not supported in expressions: they only read")
        self.check(node.value, depth, "base")
        key = node.slice
        if type(key).__name__ == "Index":  # 3.8's wrapper; parse never makes it on 3.9+
            key = key.value  # pragma: no cover
        if isinstance(key, ast.Slice):
            for part in (key.lower, key.upper, key.step):
                if part is not None:
                    self.check(part, depth, "value")
        else:
            self.check(key, depth, "value")

    def _UnaryOp(self, node: Any, depth: int, position: str) -> None:
        self.check(node.operand, depth, "value")

    def _BinOp(self, node: Any, depth: int, position: str) -> None:
        if type(node.op) not in _OPS:
            raise RefusedError("%s is not supported in expressions: %s" % (_describe(node), _GRAMMAR))
        self.check(node.left, depth, "value")
        self.check(node.right, depth, "value")

    def _BoolOp(self, node: Any, depth: int, position: str) -> None:
        for value in node.values:
            self.check(value, depth, position if position == "result" else "value")

    def _Compare(self, node: Any, depth: int, position: str) -> None:
        operands = [node.left] + list(node.comparators)
        for operand in operands:
            self.check(operand, depth, "value")
        for i, op in enumerate(node.ops):
            if isinstance(op, (ast.Is, ast.IsNot)) and any(_pure_literal(x) for x in operands[i:i + 2]):
                # Python merges and folds equal literals, so their identity means nothing
                raise RefusedError("'is' compares identity, not values: use == to compare with a literal")
        if len(node.ops) > 1:
            for i, op in enumerate(node.ops):
                if isinstance(op, (ast.Is, ast.IsNot)) and not all(_identity_operand(x) for x in operands[i:i + 2]):
                    raise RefusedError("'is' beside a literal in a chain: write it on its own, or use ==")
                if isinstance(op, (ast.In, ast.NotIn)):
                    raise RefusedError("'in' cannot be chained with other comparisons: join them with 'and'")
                if not (isinstance(op, (ast.Is, ast.IsNot)) or _scalar_constant(operands[i])
                        or _scalar_constant(operands[i + 1])):
                    raise RefusedError("a chain of comparisons needs a constant on a side of each: "
                                       "write a < b and b < c")

    def _IfExp(self, node: Any, depth: int, position: str) -> None:
        self.check(node.test, depth, "value")
        self.check(node.body, depth, position if position == "result" else "value")
        self.check(node.orelse, depth, position if position == "result" else "value")

    def _Call(self, node: Any, depth: int, position: str) -> None:
        self.check(node.func, depth, "callee")  # first, so a refused function is what the message names
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise RefusedError("*args unpacking is not supported in calls: pass the arguments one by one")
            self.check(arg, depth, "value")
        for keyword in node.keywords:
            if keyword.arg is None:
                raise RefusedError("**kwargs unpacking is not supported in calls: pass name=value one by one")
            if keyword.arg.startswith("_"):
                raise RefusedError("keyword %r is refused" % keyword.arg)
            self.check(keyword.value, depth, "value")

    def _JoinedStr(self, node: Any, depth: int, position: str) -> None:
        for value in node.values:
            self.check(value, depth, "value")

    def _FormattedValue(self, node: Any, depth: int, position: str) -> None:
        self.check(node.value, depth, "format")
        if node.format_spec is not None:
            self.check(node.format_spec, depth, "value")

    def _elements(self, elements: List[Any], depth: int) -> None:
        for element in elements:
            if isinstance(element, ast.Starred):
                raise RefusedError("* unpacking is not supported in expressions")
            self.check(element, depth, "value")

    def _List(self, node: Any, depth: int, position: str) -> None:
        if not isinstance(node.ctx, ast.Load):
            raise RefusedError("assignment is not supported in expressions: they only read")
        self._elements(node.elts, depth)

    def _Tuple(self, node: Any, depth: int, position: str) -> None:
        if not isinstance(node.ctx, ast.Load):
            raise RefusedError("assignment is not supported in expressions: they only read")
        self._elements(node.elts, depth)

    def _Set(self, node: Any, depth: int, position: str) -> None:
        self._elements(node.elts, depth)

    def _Dict(self, node: Any, depth: int, position: str) -> None:
        for key in node.keys:
            if key is None:
                raise RefusedError("** unpacking is not supported in expressions")
        self._elements(list(node.keys) + list(node.values), depth)

    def _comprehension(self, node: Any, depth: int, elements: List[Any]) -> None:
        generators = node.generators
        scope: Dict[str, bool] = {}
        for gen in generators:
            if getattr(gen, "is_async", 0):
                raise RefusedError("async comprehensions are not supported: iterate a container with a plain for")
            for name in _target_names(gen.target):
                if name.startswith("_"):
                    raise RefusedError("comprehension variable %r is refused: names starting with '_' are "
                                       "reserved; pick another name" % name)
                scope[name] = False
        # The first iterable is evaluated outside the comprehension's scope.
        self.check(generators[0].iter, depth, "value")
        self.scopes.append(scope)
        try:
            for i, gen in enumerate(generators):
                if i:
                    self.check(gen.iter, depth, "value")
                for name in _target_names(gen.target):
                    scope[name] = True
                gen._pk_shape = _shape(gen.target)
                for cond in gen.ifs:
                    self.check(cond, depth, "value")
            for element in elements:
                self.check(element, depth, "value")
        finally:
            self.scopes.pop()
        # What one iteration of each clause pays: its share of the nodes evaluated per item.
        inner = sum(_count(n) for n in elements)
        for gen in reversed(generators):
            inner += sum(_count(c) for c in gen.ifs)
            gen._pk_steps = max(1, inner // 4)
            inner += _count(gen.iter) + 1

    def _ListComp(self, node: Any, depth: int, position: str) -> None:
        self._comprehension(node, depth, [node.elt])

    _SetComp = _ListComp
    _GeneratorExp = _ListComp

    def _DictComp(self, node: Any, depth: int, position: str) -> None:
        self._comprehension(node, depth, [node.key, node.value])


def _target_names(target: Any) -> List[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        out: List[str] = []
        for element in target.elts:
            out.extend(_target_names(element))
        return out
    raise RefusedError("comprehension targets are names or tuples of names, not %s" % _describe(target))


def _shape(target: Any) -> Any:
    if isinstance(target, ast.Name):
        return None
    return tuple(_shape(e) for e in target.elts)


def _count(node: ast.AST) -> int:
    return sum(1 for _ in ast.walk(node))


def _pure_literal(node: Any) -> bool:
    """An expression of literals only (no name, attribute, item or call), other than a singleton."""
    if isinstance(node, ast.Constant) and any(node.value is v for v in (None, True, False, Ellipsis)):
        return False
    return not any(isinstance(n, (ast.Name, ast.Attribute, ast.Call)) for n in ast.walk(node))


def _identity_operand(node: Any) -> bool:
    """Can ``node`` stand beside ``is`` in generated code? Not if Python could fold it into a
    constant (``-1``, ``'a' * 2``): its compiler would warn about ``is`` with a literal on the
    host's stderr. A name, an attribute, an item, a call or a singleton can."""
    if isinstance(node, ast.Constant):
        return any(node.value is v for v in (None, True, False, Ellipsis))
    return isinstance(node, (ast.Name, ast.Attribute, ast.Subscript, ast.Call))


def _scalar_constant(node: Any) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float, str, bool, type(None))


def _describe(node: Any) -> str:
    names = {"Lambda": "lambda", "NamedExpr": "assignment (:=)", "Await": "await", "Yield": "yield",
             "YieldFrom": "yield from", "Starred": "* unpacking", "Slice": "a slice here"}
    kind = type(node).__name__
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
        return "the @ operator"
    return names.get(kind, kind)


# ---------------------------------------------------------------- parsing and interpreting

def _parse(source: Any) -> Tuple[str, Any]:
    if type(source) is not str or not source.strip():
        raise ExpressionError("empty expression")
    if len(source) > MAX_SOURCE:
        raise CapError("expression of %d characters; at most %d" % (len(source), MAX_SOURCE))
    text = source.strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        if "too many nested" in str(exc.msg):
            raise RefusedError("expression nested too deeply: split it into smaller expressions") from None
        raise ExpressionError("invalid syntax: %s (column %s)" % (exc.msg, exc.offset)) from None
    except (RecursionError, MemoryError):
        raise RefusedError("expression nested too deeply: split it into smaller expressions") from None
    except ValueError as exc:
        raise ExpressionError("cannot parse: %s" % exc) from None
    return text, _canonical(tree.body)


def _canonical(tree: Any) -> Any:
    """Constants as Python's compiler makes them, so that both evaluators see the same objects: a
    sign on a number folded into it (``-1``), and equal constants one object."""
    try:
        folded = _Fold().visit(tree)
    except RecursionError:
        raise RefusedError("expression nested too deeply: split it into smaller expressions") from None
    merged: Dict[Tuple[Any, str], Any] = {}
    for node in ast.walk(folded):
        if isinstance(node, ast.Constant):
            node.value = merged.setdefault((type(node.value), repr(node.value)), node.value)
    return folded


class _Fold(ast.NodeTransformer):
    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        self.generic_visit(node)
        operand = node.operand
        if (isinstance(operand, ast.Constant) and type(operand.value) in (int, float, complex)
                and isinstance(node.op, (ast.USub, ast.UAdd))):
            value = -operand.value if isinstance(node.op, ast.USub) else +operand.value
            return ast.copy_location(ast.Constant(value=value), node)
        return node


class Expression:
    """One checked expression; ``evaluate`` may run it many times, from any thread (interpreted)."""

    def __init__(self, source: str, names: Iterable[str] = (), unsafe: bool = False) -> None:
        self.source, self.tree = _parse(source)
        self.names = frozenset(names)
        self.unsafe = bool(unsafe)
        _Checker(self.names).check(self.tree, 0, "result")
        self.uses_budget = _uses_budget(self.tree)
        self._compiled: Optional[Callable[..., Any]] = None

    def run(self, names: Optional[Mapping[str, Any]] = None) -> Any:
        """The value, from the generated code (what the agent runs: several times faster than
        ``evaluate``, the reference interpreter, with the same value or refusal)."""
        if self._compiled is None:
            self._compiled = compile_expression(self.source, {n: "_v[%r]" % n for n in self.names}, argument="_v",
                                                unsafe=self.unsafe)
        scope = dict(names or {})
        missing = self.names - set(scope)
        if missing:
            raise ExpressionError("no value given for %s" % ", ".join(sorted(missing)))
        return self._compiled(scope)

    def evaluate(self, names: Optional[Mapping[str, Any]] = None, modules: bool = True) -> Any:
        """The value; ``ExpressionError`` for anything that went wrong (never another exception)."""
        scope = dict(names or {})
        missing = self.names - set(scope)
        if missing:
            raise ExpressionError("no value given for %s" % ", ".join(sorted(missing)))
        return _contained(lambda: _g_result(_Interpreter(scope, self.unsafe, modules).run(self.tree)))


def _contained(run: Callable[..., Any], *args: Any) -> Any:
    """``run(*args)``, where every exception, BaseException included (SystemExit, KeyboardInterrupt,
    GeneratorExit raised inside the expression), becomes an ExpressionError."""
    try:
        return run(*args)
    except ExpressionError:
        raise
    except RecursionError:
        raise ExpressionError("expression nested too deeply (RecursionError)") from None
    except BaseException as exc:
        raise ExpressionError("%s: %s" % (type(exc).__name__, _message(exc))) from None


def evaluate(source: str, names: Optional[Mapping[str, Any]] = None, modules: bool = True, unsafe: bool = False) -> Any:
    return Expression(source, tuple(names or ()), unsafe).evaluate(names, modules)


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except BaseException:
        text = ""
    return values.safe_repr(text, 500)[1:-1] if len(text) > 500 else text


_NATIVE_BINARY: Dict[str, Callable[[Any, Any], Any]] = {"/": lambda a, b: a / b, "//": lambda a, b: a // b}
_UNARY_FN = {"not ": lambda a: not a, "-": lambda a: -a, "+": lambda a: +a, "~": lambda a: ~a}
_IDENTITY = {"is": lambda a, b: a is b, "is not": lambda a, b: a is not b}


class _Interpreter:
    """Walks a checked tree, calling the same guards as the generated code, in the same order."""

    def __init__(self, names: Dict[str, Any], unsafe: bool, modules: bool) -> None:
        self.names = names
        self.unsafe = unsafe
        self.modules = modules
        self.budget = _Budget()
        self.locals: List[Dict[str, Any]] = []

    def run(self, node: Any) -> Any:
        return getattr(self, "_" + type(node).__name__)(node)

    def _Constant(self, node: Any) -> Any:
        return node.value

    def _Name(self, node: Any) -> Any:
        kind = node._pk
        if kind == _LOCAL:
            for scope in reversed(self.locals):
                if node.id in scope:
                    return scope[node.id]
            raise ExpressionError("name %r is not bound yet" % node.id)  # pragma: no cover - checked
        if kind == _INJECTED:
            return self.names[node.id]
        if kind == _TYPE:
            return _TYPES[node.id]
        if not self.modules:
            raise ExpressionError("name %r is not defined" % node.id)
        return _g_module(node.id)

    def _Attribute(self, node: Any) -> Any:
        return _g_attr(self.run(node.value), node.attr)

    def _Subscript(self, node: Any) -> Any:
        obj = self.run(node.value)
        key = node.slice
        if isinstance(key, ast.Slice):
            parts = [self.run(p) if p is not None else None for p in (key.lower, key.upper, key.step)]
            return _g_slice(self.budget, obj, *parts)
        return _g_item(obj, self.run(key))

    def _UnaryOp(self, node: Any) -> Any:
        return _UNARY_FN[_UNARY[type(node.op)]](self.run(node.operand))

    def _BinOp(self, node: Any) -> Any:
        op = _OPS[type(node.op)]
        left = self.run(node.left)
        right = self.run(node.right)
        if op in _NATIVE_BINARY:
            return _NATIVE_BINARY[op](left, right)
        guard = _BINOP_GUARDS.get(op)
        if guard is not None:
            return guard(self.budget, left, right)
        return _g_binop(self.budget, op, left, right)

    def _BoolOp(self, node: Any) -> Any:
        value: Any = None
        if isinstance(node.op, ast.And):
            for sub in node.values:
                value = self.run(sub)
                if not value:
                    return value
            return value
        for sub in node.values:
            value = self.run(sub)
            if value:
                return value
        return value

    def _Compare(self, node: Any) -> Any:
        left = self.run(node.left)
        operands = list(node.comparators)
        ops = [_CMP[type(op)] for op in node.ops]
        if len(ops) == 1:
            right = self.run(operands[0])
            return _compare_one(self.budget, ops[0], left, right, node.left, operands[0])
        result: Any = True
        previous_node = node.left
        for op, operand in zip(ops, operands):
            right = self.run(operand)
            result = _compare_one(self.budget, op, left, right, previous_node, operand)
            if not result:
                return result
            left, previous_node = right, operand
        return result

    def _IfExp(self, node: Any) -> Any:
        return self.run(node.body) if self.run(node.test) else self.run(node.orelse)

    def _Call(self, node: Any) -> Any:
        func = node.func
        if isinstance(func, ast.Name) and func._pk == _FUNCTION:
            args = [_g_value(self.run(a)) for a in node.args]
            kwargs = {k.arg: _g_value(self.run(k.value)) for k in node.keywords}
            return FUNCTIONS[func.id](self.budget, *args, **kwargs)
        callee = self.run(func)
        args = [_g_value(self.run(a)) for a in node.args]
        kwargs = {k.arg: _g_value(self.run(k.value)) for k in node.keywords}
        return _g_call(self.budget, self.unsafe, callee, tuple(args), kwargs)

    def _JoinedStr(self, node: Any) -> Any:
        parts = []
        for value in node.values:
            parts.append(value.value if isinstance(value, ast.Constant) else self.run(value))
        return _g_fstring(self.budget, parts)

    def _FormattedValue(self, node: Any) -> Any:
        value = self.run(node.value)
        spec = self.run(node.format_spec) if node.format_spec is not None else None
        return _g_format(self.budget, value, node.conversion, spec)

    def _List(self, node: Any) -> Any:
        return [_g_value(self.run(e)) for e in node.elts]

    def _Tuple(self, node: Any) -> Any:
        return tuple([_g_value(self.run(e)) for e in node.elts])

    def _Set(self, node: Any) -> Any:
        return {_g_value(self.run(e)) for e in node.elts}

    def _Dict(self, node: Any) -> Any:
        out = {}
        for k, v in zip(node.keys, node.values):
            key = _g_value(self.run(k))
            out[key] = _g_value(self.run(v))
        return out

    def _iterate(self, generators: List[Any], index: int) -> Any:
        """Yields once per innermost binding, with self.locals[-1] holding the variables."""
        gen = generators[index]
        source = self.run(gen.iter)
        scope = self.locals[-1]
        for item in _g_iter(self.budget, source, gen._pk_steps, gen._pk_shape):
            _bind(scope, gen.target, item)
            if all(self.run(cond) for cond in gen.ifs):
                if index + 1 == len(generators):
                    yield
                else:
                    yield from self._iterate(generators, index + 1)

    def _comprehension(self, node: Any, make: Callable[[], Any]) -> Any:
        first = self.run(node.generators[0].iter)  # outside the comprehension's scope
        generators = node.generators
        scope: Dict[str, Any] = {}
        self.locals.append(scope)
        try:
            out = []
            for _ in self._iterate_first(first, generators):
                out.append(make())
            return out
        finally:
            self.locals.pop()

    def _iterate_first(self, first: Any, generators: List[Any]) -> Any:
        gen = generators[0]
        scope = self.locals[-1]
        for item in _g_iter(self.budget, first, gen._pk_steps, gen._pk_shape):
            _bind(scope, gen.target, item)
            if all(self.run(cond) for cond in gen.ifs):
                if len(generators) == 1:
                    yield
                else:
                    yield from self._iterate(generators, 1)

    def _ListComp(self, node: Any) -> Any:
        return self._comprehension(node, lambda: _g_value(self.run(node.elt)))

    def _SetComp(self, node: Any) -> Any:
        return set(self._comprehension(node, lambda: _g_value(self.run(node.elt))))

    def _DictComp(self, node: Any) -> Any:
        def pair() -> Tuple[Any, Any]:
            key = _g_value(self.run(node.key))
            return key, _g_value(self.run(node.value))
        return dict(self._comprehension(node, pair))

    def _GeneratorExp(self, node: Any) -> Any:
        # Lazy, as the generated code's generator expression: only the first iterable now.
        first = self.run(node.generators[0].iter)
        return _Lazy(_lazy_scope(self, list(self.locals), first, node))


def _lazy_scope(interp: _Interpreter, saved: List[Dict[str, Any]], first: Any, node: Any) -> Any:
    scope: Dict[str, Any] = {}
    stack = saved + [scope]
    outer = interp.locals
    interp.locals = stack
    try:
        iterator = interp._iterate_first(first, node.generators)
    finally:
        interp.locals = outer
    while True:
        outer = interp.locals
        interp.locals = stack
        try:
            try:
                next(iterator)
            except StopIteration:
                return
            value = _g_value(interp.run(node.elt))
        finally:
            interp.locals = outer
        yield value


def _bind(scope: Dict[str, Any], target: Any, item: Any) -> None:
    if isinstance(target, ast.Name):
        scope[target.id] = item
        return
    for sub, value in zip(target.elts, item):
        _bind(scope, sub, value)


def _compare_one(budget: _Budget, op: str, left: Any, right: Any, left_node: Any, right_node: Any) -> Any:
    if op in _IDENTITY:
        return _IDENTITY[op](left, right)
    if op == "in":
        return _g_in(budget, left, right) if not _literal_container(right_node) else left in right
    if op == "not in":
        return (not _g_in(budget, left, right)) if not _literal_container(right_node) else left not in right
    if _scalar_constant(left_node) or _scalar_constant(right_node):
        return _COMPARE[op](left, right)
    return _g_compare(budget, op, left, right)


def _literal_container(node: Any) -> bool:
    return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and all(_scalar_constant(e) for e in node.elts)


_BINOP_GUARDS: Dict[str, Callable[[Any, Any, Any], Any]] = {
    "+": _g_add, "*": _g_mul, "**": _g_pow, "<<": _g_lshift, "%": _g_mod,
}


def _uses_budget(tree: Any) -> bool:
    """Does the generated code need a budget (anything but names, attributes, items, comparisons
    with constants, identity tests, boolean and unary operators)?"""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Call, ast.BinOp, ast.JoinedStr, ast.ListComp, ast.SetComp, ast.DictComp,
                             ast.GeneratorExp, ast.Slice)):
            return True
        if isinstance(node, ast.Compare):
            operands = [node.left] + list(node.comparators)
            for i, op in enumerate(node.ops):
                if isinstance(op, (ast.Is, ast.IsNot)):
                    continue
                if isinstance(op, (ast.In, ast.NotIn)):
                    if not _literal_container(operands[i + 1]):
                        return True
                elif not (_scalar_constant(operands[i]) or _scalar_constant(operands[i + 1])):
                    return True
    return False


# ---------------------------------------------------------------- the compiler
#
# Python source generated from the checked tree: every operation the interpreter routes through a
# guard is the same guard call here; what the interpreter does natively (comparisons with a
# constant, identity, not/and/or, / and //, literals) is native here. Comprehension variables are
# renamed ``_pkv_<name>`` and the user's names can never start with ``_pk``: nothing shadows a
# helper. The budget is a local of a wrapping lambda, made only when something needs it.

_HELPERS: Dict[str, Any] = {
    "_pk_attr": _g_attr, "_pk_item": _g_item, "_pk_slice": _g_slice, "_pk_module": _g_module,
    "_pk_value": _g_value, "_pk_result": _g_result, "_pk_call": _g_call, "_pk_iter": _g_iter,
    "_pk_fstring": _g_fstring, "_pk_format": _g_format, "_pk_in": _g_in, "_pk_compare": _g_compare,
    "_pk_binop": _g_binop, "_pk_add": _g_add, "_pk_mul": _g_mul, "_pk_pow": _g_pow, "_pk_lshift": _g_lshift,
    "_pk_mod": _g_mod, "_pk_Budget": _Budget, "_pk_Lazy": _Lazy, "_pk_set": set, "_pk_dict": dict,
    "_pk_tuple": tuple, "_pk_identity": lambda op, a, b: _IDENTITY[op](a, b),
}
_HELPERS.update({"_pkf_" + name: fn for name, fn in FUNCTIONS.items()})
_HELPERS.update({"_pkt_" + name: cls for name, cls in _TYPES.items()})
_BINOP_HELPERS = {"+": "_pk_add", "*": "_pk_mul", "**": "_pk_pow", "<<": "_pk_lshift", "%": "_pk_mod"}


class _Emitter:
    def __init__(self, variables: Mapping[str, str], unsafe: bool, budget: str) -> None:
        self.variables = variables
        self.unsafe = unsafe
        self.b = budget  # the budget's expression: "_pk_b", or "None" when nothing needs one

    def emit(self, node: Any) -> str:
        return getattr(self, "_" + type(node).__name__)(node)

    def _Constant(self, node: Any) -> str:
        return repr(node.value) if node.value is not Ellipsis else "..."

    def _Name(self, node: Any) -> str:
        kind = getattr(node, "_pk", None)
        if kind == _LOCAL:
            return "_pkv_" + node.id
        if kind == _TYPE:
            return "_pkt_" + node.id
        if kind is None or kind == _INJECTED:  # None: a name a transform put in, over the variables
            if node.id not in self.variables:
                raise ExpressionError("no value given for %s" % node.id)
            return "(%s)" % self.variables[node.id]
        return "_pk_module(%r)" % node.id

    def _Attribute(self, node: Any) -> str:
        return "_pk_attr(%s, %r)" % (self.emit(node.value), node.attr)

    def _Subscript(self, node: Any) -> str:
        key = node.slice
        if isinstance(key, ast.Slice):
            parts = [self.emit(p) if p is not None else "None" for p in (key.lower, key.upper, key.step)]
            return "_pk_slice(%s, %s, %s)" % (self.b, self.emit(node.value), ", ".join(parts))
        return "_pk_item(%s, %s)" % (self.emit(node.value), self.emit(key))

    def _UnaryOp(self, node: Any) -> str:
        return "(%s(%s))" % (_UNARY[type(node.op)], self.emit(node.operand))

    def _BinOp(self, node: Any) -> str:
        op = _OPS[type(node.op)]
        left, right = self.emit(node.left), self.emit(node.right)
        if op in _NATIVE_BINARY:
            return "(%s %s %s)" % (left, op, right)
        helper = _BINOP_HELPERS.get(op)
        if helper is not None:
            return "%s(%s, %s, %s)" % (helper, self.b, left, right)
        return "_pk_binop(%s, %r, %s, %s)" % (self.b, op, left, right)

    def _BoolOp(self, node: Any) -> str:
        word = " and " if isinstance(node.op, ast.And) else " or "
        return "(%s)" % word.join(self.emit(v) for v in node.values)

    def _Compare(self, node: Any) -> str:
        operands = [node.left] + list(node.comparators)
        ops = [_CMP[type(op)] for op in node.ops]
        if len(ops) == 1:
            return self._compare(ops[0], operands[0], operands[1])
        # A chain: every comparison is native (the checker made sure), so Python's chain is exact.
        text = self.emit(operands[0])
        for op, operand in zip(ops, operands[1:]):
            text += " %s %s" % (op, self.emit(operand))
        return "(%s)" % text

    def _compare(self, op: str, left_node: Any, right_node: Any) -> str:
        left, right = self.emit(left_node), self.emit(right_node)
        if op in ("is", "is not") and not (_identity_operand(left_node) and _identity_operand(right_node)):
            return "_pk_identity(%r, %s, %s)" % (op, left, right)
        if op in ("is", "is not") or (op in ("in", "not in") and _literal_container(right_node)):
            return "(%s %s %s)" % (left, op, right)
        if op == "in":
            return "_pk_in(%s, %s, %s)" % (self.b, left, right)
        if op == "not in":
            return "(not _pk_in(%s, %s, %s))" % (self.b, left, right)
        if _scalar_constant(left_node) or _scalar_constant(right_node):
            return "(%s %s %s)" % (left, op, right)
        return "_pk_compare(%s, %r, %s, %s)" % (self.b, op, left, right)

    def _IfExp(self, node: Any) -> str:
        return "(%s if %s else %s)" % (self.emit(node.body), self.emit(node.test), self.emit(node.orelse))

    def _Call(self, node: Any) -> str:
        func = node.func
        if isinstance(func, ast.Name) and getattr(func, "_pk", None) == _FUNCTION:
            args = [("_pk_value(%s)" % self.emit(a)) for a in node.args] + \
                   ["%s=_pk_value(%s)" % (k.arg, self.emit(k.value)) for k in node.keywords]
            return "_pkf_%s(%s)" % (func.id, ", ".join([self.b] + args))
        callee = self.emit(func)
        args = "".join("_pk_value(%s), " % self.emit(a) for a in node.args)
        kwargs = ", ".join("%r: _pk_value(%s)" % (k.arg, self.emit(k.value)) for k in node.keywords)
        return "_pk_call(%s, %r, %s, (%s), {%s})" % (self.b, self.unsafe, callee, args, kwargs)

    def _JoinedStr(self, node: Any) -> str:
        parts = [repr(v.value) if isinstance(v, ast.Constant) else self.emit(v) for v in node.values]
        return "_pk_fstring(%s, (%s))" % (self.b, "".join(p + ", " for p in parts))

    def _FormattedValue(self, node: Any) -> str:
        spec = self.emit(node.format_spec) if node.format_spec is not None else "None"
        return "_pk_format(%s, %s, %d, %s)" % (self.b, self.emit(node.value), node.conversion, spec)

    def _List(self, node: Any) -> str:
        return "[%s]" % "".join("_pk_value(%s), " % self.emit(e) for e in node.elts)

    def _Tuple(self, node: Any) -> str:
        return "(%s)" % "".join("_pk_value(%s), " % self.emit(e) for e in node.elts)

    def _Set(self, node: Any) -> str:
        return "{%s}" % "".join("_pk_value(%s), " % self.emit(e) for e in node.elts)

    def _Dict(self, node: Any) -> str:
        return "{%s}" % "".join("_pk_value(%s): _pk_value(%s), " % (self.emit(k), self.emit(v))
                                for k, v in zip(node.keys, node.values))

    def _clauses(self, node: Any) -> str:
        out = []
        for gen in node.generators:
            out.append("for %s in _pk_iter(%s, %s, %d, %r)" % (self._target(gen.target), self.b, self.emit(gen.iter),
                                                                gen._pk_steps, gen._pk_shape))
            for cond in gen.ifs:
                out.append("if %s" % self.emit(cond))
        return " ".join(out)

    def _target(self, target: Any) -> str:
        if isinstance(target, ast.Name):
            return "_pkv_" + target.id
        return "(%s)" % "".join(self._target(e) + ", " for e in target.elts)

    def _ListComp(self, node: Any) -> str:
        return "[_pk_value(%s) %s]" % (self.emit(node.elt), self._clauses(node))

    def _SetComp(self, node: Any) -> str:
        return "_pk_set([_pk_value(%s) %s])" % (self.emit(node.elt), self._clauses(node))

    def _DictComp(self, node: Any) -> str:
        return "_pk_dict([(_pk_value(%s), _pk_value(%s)) %s])" % (self.emit(node.key), self.emit(node.value),
                                                               self._clauses(node))

    def _GeneratorExp(self, node: Any) -> str:
        return "_pk_Lazy((_pk_value(%s) %s))" % (self.emit(node.elt), self._clauses(node))


def python_source(source: str, variables: Mapping[str, str],
                  transform: Optional[Callable[[ast.AST], ast.AST]] = None, unsafe: bool = False) -> str:
    """``source`` checked, as one Python expression over ``variables`` (name -> Python source),
    to run in an ``expression_namespace``; ``transform`` may first replace parts of the checked
    tree with equivalents over ``variables``. The value is the expression's final value."""
    expression = Expression(source, [n for n in variables if not n.startswith("_")], unsafe)
    tree: Any = expression.tree
    if transform is not None:
        tree = transform(ast.Expression(body=tree)).body  # type: ignore[attr-defined]
    uses_budget = _uses_budget(tree)
    body = _Emitter(variables, unsafe, "_pk_b" if uses_budget else "None").emit(tree)
    if not _plain_result(tree):
        body = "_pk_result(%s)" % body
    if uses_budget:
        body = "(lambda _pk_b: %s)(_pk_Budget())" % body
    return body


def _plain_result(tree: Any) -> bool:
    """A value that needs no final check: a comparison, a not, a constant."""
    if isinstance(tree, (ast.Compare, ast.Constant)):
        return True
    if isinstance(tree, ast.UnaryOp) and isinstance(tree.op, ast.Not):
        return True
    if isinstance(tree, ast.BoolOp):
        return all(_plain_result(v) for v in tree.values)
    return False


def expression_namespace(helpers: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The globals a generated expression runs in: the guards and helpers, no builtins."""
    namespace: Dict[str, Any] = {"__builtins__": {}}
    namespace.update(_HELPERS)
    namespace.update(helpers or {})
    return namespace


def compile_expression(source: str, variables: Mapping[str, str], helpers: Optional[Mapping[str, Any]] = None,
                       argument: Union[str, Tuple[str, ...]] = "_c", unsafe: bool = False) -> Callable[..., Any]:
    """A function of ``argument`` (one name, or a tuple of names) computing ``source``.

    ``variables`` maps the names the expression may use to Python source over ``argument``
    (``{"cost": "(_c.end - _c.start) / 1e6"}``), which may call ``helpers`` (trusted functions,
    named ``_peeka_*``). Raises ExpressionError when refused; the function raises only
    ExpressionError (every BaseException raised inside becomes one).
    """
    names = (argument,) if isinstance(argument, str) else tuple(argument)
    body = python_source(source, variables, unsafe=unsafe)
    try:
        code = compile("lambda %s: %s" % (", ".join(names), body), "<peeka expression>", "eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError("cannot compile %r: %s" % (source, exc)) from None
    compiled = eval(code, expression_namespace(helpers))  # noqa: S307 - generated from a checked tree

    def evaluate(*args: Any) -> Any:
        return _contained(compiled, *args)

    evaluate.source = body  # type: ignore[attr-defined]  # for tests and a debugging session
    return evaluate


def refusal_help() -> str:
    """What an expression may do, in a few lines (for errors and --help)."""
    return ("expressions read: names, attributes, items, literals, operators, comprehensions; they call "
            "%s and read-only methods of builtin values; %s" % (", ".join(sorted(FUNCTIONS)), UNSAFE_HINT))
