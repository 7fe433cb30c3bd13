"""Expressions over the target's live objects, evaluated safely with simpleeval.

    evaluate("len(myapp.cache._store)")                      # names resolve over sys.modules
    condition = Expression("params[0] > 3 and cost > 10")    # parse once ...
    condition.evaluate({"params": args, "cost": 12.5})       # ... evaluate often, with injected names

Names resolve, in order, over the injected ``names``, the safe functions below, and the top-level
modules in ``sys.modules`` (``myapp`` -> the module; ``myapp.config.settings.timeout`` walks
attributes and submodules). Single-underscore attributes of the app (``cache._store``) are allowed.

Refused, with a message saying so: dunder names and attributes (``__class__``, ``__globals__``),
frame and generator internals, ``str.format``; the builtins that open, import, execute or change
things (``open``, ``exec``, ``eval``, ``__import__``, ``compile``, ``globals``, ``vars``,
``setattr``, ``delattr``, ...); any callable of the modules that act on the process or the machine
(os, subprocess, sys, signal, ctypes, importlib, io, threading, gc, ...) except a few read-only
ones (``os.getpid``, ``sys.getsizeof``, ``threading.enumerate``, ...), whether called or merely
obtained (so it cannot be smuggled into ``sorted(key=...)``). Lambdas, walrus, and statements do not
parse. This stops the classic escapes; it is no sandbox for the app's own functions: calling
``myapp.admin.drop_all()`` runs it.

Each evaluation builds its own small evaluator (simpleeval's are not thread-safe), without
``SimpleEval.__init__``, which swaps the process-wide warnings filters.
"""

from __future__ import annotations

import ast
import builtins
import sys
import types
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

from . import values

MAX_SOURCE = 4096

_PACKAGE = __name__.rpartition(".")[0]
_AGENT_MODULES = ("_peeka_agent", "_peeka_simpleeval", _PACKAGE)


class ExpressionError(Exception):
    """An expression that does not parse, is refused, or failed while it ran."""


class _NoAttribute(ExpressionError):
    """The attribute does not exist (as opposed to: it is refused)."""


def _refuse(what: str) -> ExpressionError:
    return ExpressionError("%s is refused in expressions" % what)


# ---------------------------------------------------------------- what may be reached and called

# Attribute names refused on any object (dunders are refused by prefix): frames and code objects
# lead to globals and builtins; str.format reads attributes from inside a format string.
_REFUSED_ATTRIBUTES = frozenset(
    """format format_map mro gi_frame gi_code cr_frame cr_code ag_frame ag_code tb_frame tb_next
    f_globals f_locals f_builtins f_back f_code f_trace co_code func_globals""".split()
)

# Builtins a user may reach for, refused by name with a clear message instead of "not defined".
_REFUSED_NAMES = frozenset(
    """open exec eval compile __import__ globals locals vars setattr delattr breakpoint input help
    exit quit memoryview""".split()
)

# Modules whose callables act on the process or the machine: refused unless listed as read-only.
_SIDE_EFFECT_MODULES = frozenset(
    """os posix nt subprocess _posixsubprocess shutil sys signal _signal ctypes _ctypes
    importlib _imp _frozen_importlib _frozen_importlib_external zipimport socket _socket ssl _ssl
    select selectors pickle _pickle marshal shelve dbm pty tty termios fcntl resource code codeop
    runpy atexit faulthandler tracemalloc multiprocessing _multiprocessing concurrent asyncio
    threading _thread gc io _io tempfile pdb bdb webbrowser _sitebuiltins builtins mmap
    _peeka_agent _peeka_simpleeval""".split()
)
_READ_ONLY_CALLS: Dict[str, frozenset] = {
    "os": frozenset(
        """getpid getppid getpgrp getuid geteuid getgid getegid getcwd getenv getlogin cpu_count
        getloadavg uname fspath fsdecode fsencode get_terminal_size strerror""".split()
    ),
    "sys": frozenset(
        """getsizeof getrefcount getrecursionlimit getswitchinterval getdefaultencoding
        getfilesystemencoding getallocatedblocks is_finalizing""".split()
    ),
    "threading": frozenset(
        """enumerate active_count current_thread main_thread get_ident get_native_id is_alive
        getName isDaemon Thread""".split()
    ),
    "_thread": frozenset("get_ident get_native_id locked _count".split()),
    "gc": frozenset("get_count get_threshold isenabled get_stats is_tracked is_finalized".split()),
    "asyncio": frozenset(
        "all_tasks current_task iscoroutine iscoroutinefunction done cancelled get_name get_coro get_loop "
        "is_running is_closed".split()
    ),
}
_READ_ONLY_CALLS["posix"] = _READ_ONLY_CALLS["os"]
_READ_ONLY_CALLS["nt"] = _READ_ONLY_CALLS["os"]


def _safe_repr(obj: Any) -> str:
    return values.safe_repr(obj, 10_000)


def _typename(obj: Any) -> str:
    return values.type_name(type(obj))


def _type(obj: Any) -> Any:
    return type(obj)


def _mro_names(obj: Any) -> Tuple[str, ...]:
    return tuple(values.type_name(klass) for klass in type(obj).__mro__)


def _isinstance(obj: Any, classinfo: Any) -> bool:
    """isinstance, also by qualified name: ``isinstance(x, "myapp.models.User")``."""
    names = classinfo if type(classinfo) is tuple else (classinfo,)
    if names and all(type(n) is str for n in names):
        mro = _mro_names(obj)
        return any(n in mro for n in names)
    return isinstance(obj, classinfo)


def _check_attribute_name(name: Any) -> str:
    if type(name) is not str:
        raise ExpressionError("attribute names must be strings, not %s" % type(name).__name__)
    if name.startswith("__"):
        raise ExpressionError(
            "access to %r is refused: dunder attributes are off limits in expressions" % name
        )
    if name in _REFUSED_ATTRIBUTES:
        raise _refuse("access to %r" % name)
    return name


_MISSING = object()


def _module_name(module: Any) -> Optional[str]:
    try:
        name = object.__getattribute__(module, "__dict__").get("__name__")
    except Exception:
        return None
    return name if type(name) is str else None


def get_attribute(obj: Any, name: str, default: Any = _MISSING) -> Any:
    """``obj.name`` with the refusals applied; a module's submodule is found in sys.modules too."""
    _check_attribute_name(name)
    try:
        value = getattr(obj, name)
    except AttributeError:
        value = _MISSING
        if issubclass(type(obj), types.ModuleType):
            module_name = _module_name(obj)
            if module_name:
                value = sys.modules.get(module_name + "." + name, _MISSING)
        elif issubclass(type(obj), dict):
            value = dict.get(obj, name, _MISSING)  # config dicts read like objects: settings.timeout
        if value is _MISSING:
            if default is not _MISSING:
                return default
            raise _NoAttribute(
                "%s object has no attribute %r" % (values.type_name(type(obj)), name)
            ) from None
    check_value(value)
    return value


def _getattr(obj: Any, name: Any, *default: Any) -> Any:
    if len(default) > 1:
        raise ExpressionError("getattr takes at most 3 arguments")
    return get_attribute(obj, _check_attribute_name(name), *default)


def _hasattr(obj: Any, name: Any) -> bool:
    try:
        get_attribute(obj, _check_attribute_name(name))
    except _NoAttribute:
        return False
    return True


SAFE_FUNCTIONS: Dict[str, Any] = {
    "len": len,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "bytes": bytes,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "min": min,
    "max": max,
    "sum": sum,
    "sorted": sorted,
    "abs": abs,
    "round": round,
    "any": any,
    "all": all,
    "callable": callable,
    "id": id,
    "hex": hex,
    "chr": chr,
    "ord": ord,
    "enumerate": enumerate,
    "zip": zip,
    "reversed": reversed,
    "divmod": divmod,
    "repr": _safe_repr,
    "type": _type,
    "typename": _typename,
    "isinstance": _isinstance,
    "hasattr": _hasattr,
    "getattr": _getattr,
}
_SAFE_IDS = frozenset(id(f) for f in SAFE_FUNCTIONS.values())
# Held by reference so their ids stay theirs.
_FORBIDDEN = tuple(
    getattr(builtins, name)
    for name in "open exec eval compile __import__ globals locals vars setattr delattr getattr breakpoint input "
    "memoryview type isinstance repr help exit quit".split()
    if hasattr(builtins, name)
)
_FORBIDDEN_IDS = frozenset(id(f) for f in _FORBIDDEN)


def _callable_origin(func: Any) -> Tuple[str, str, str]:
    """``(module, name, kind)`` of a callable, read without running any of its code.

    kind: "function" (module level), "method" (bound to an object or class), "class", "instance"
    (an object with ``__call__``: its class decides).
    """
    cls = type(func)
    module: Any = None
    name: Any = ""
    kind = "instance"
    try:
        if cls is types.BuiltinFunctionType:  # C functions, and the methods of C objects
            owner = func.__self__
            name = func.__name__
            if owner is None or issubclass(type(owner), types.ModuleType):
                module, kind = func.__module__ or _module_name(owner), "function"
            elif issubclass(type(owner), type):
                module, kind = owner.__module__, "method"  # a C classmethod: dict.fromkeys
            else:
                module, kind = type(owner).__module__, "method"  # lock.acquire
        elif cls is types.MethodType:
            module, name, _ = _callable_origin(func.__func__)
            kind = "method"
        elif cls is types.FunctionType:
            module, name, kind = func.__module__, func.__name__, "function"
        elif issubclass(cls, type):
            module, name, kind = func.__module__, func.__name__, "class"
        elif cls in _DESCRIPTOR_TYPES:
            owner = getattr(func, "__objclass__", None) or type(getattr(func, "__self__", None))
            module, name, kind = owner.__module__, func.__name__, "method"
        else:
            module, name = cls.__module__, cls.__name__
    except Exception:
        pass
    return (module if type(module) is str else ""), (name if type(name) is str else ""), kind


_DESCRIPTOR_TYPES = (
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
)


def call_refusal(func: Any) -> Optional[str]:
    """Why ``func`` may not be called (or handed on) by an expression, or None."""
    fid = id(func)
    if fid in _SAFE_IDS:
        return None
    module, name, kind = _callable_origin(func)
    label = (module + "." + name) if module and name else (name or values.type_name(type(func)))
    if fid in _FORBIDDEN_IDS:
        return "%s is refused in expressions" % (name or label)
    if module == "builtins":
        if kind == "function":  # print, exec, ...: only the safe functions are callable
            return "%s is refused in expressions; the safe functions are %s" % (
                name,
                ", ".join(sorted(SAFE_FUNCTIONS)),
            )
        return None  # builtin classes (int, range, ...) and the methods of builtin objects
    top = module.partition(".")[0]
    if top in _SIDE_EFFECT_MODULES or top == _PACKAGE.partition(".")[0]:
        if name in _READ_ONLY_CALLS.get(top, ()):
            return None
        return "%s is refused in expressions: %s can act on the process or the machine" % (label, top)
    return None


def check_value(value: Any) -> None:
    """Refuse a forbidden callable as soon as it is reached, not only when it is called."""
    if callable(value):
        reason = call_refusal(value)
        if reason:
            raise ExpressionError(reason)


# ---------------------------------------------------------------- parsing


class _Checker(ast.NodeVisitor):
    """Static refusals, so a bad watch condition fails once, at parse time, with a clear message."""

    def visit_Attribute(self, node: ast.Attribute) -> None:
        _check_attribute_name(node.attr)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        _check_name(node.id)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        raise ExpressionError("lambda is not supported in expressions")

    def visit_NamedExpr(self, node: Any) -> None:
        raise ExpressionError("assignment (:=) is not supported in expressions")

    def visit_Await(self, node: ast.Await) -> None:
        raise ExpressionError("await is not supported in expressions")

    def visit_Yield(self, node: ast.Yield) -> None:
        raise ExpressionError("yield is not supported in expressions")

    visit_YieldFrom = visit_Yield  # type: ignore[assignment]


def _check_name(name: str) -> None:
    if name in _REFUSED_NAMES:
        raise _refuse(repr(name))
    if name.startswith("__") and name != "__main__":
        raise ExpressionError("the name %r is refused: dunder names are off limits in expressions" % name)


class Expression:
    """One parsed expression; ``evaluate`` may run it many times, from any thread."""

    def __init__(self, source: str) -> None:
        if type(source) is not str or not source.strip():
            raise ExpressionError("empty expression")
        if len(source) > MAX_SOURCE:
            raise ExpressionError("expression of %d characters; at most %d" % (len(source), MAX_SOURCE))
        self.source = source.strip()
        try:
            tree = ast.parse(self.source, mode="eval")
        except SyntaxError as exc:
            raise ExpressionError("invalid syntax: %s (column %s)" % (exc.msg, exc.offset)) from None
        except (ValueError, RecursionError, MemoryError) as exc:
            raise ExpressionError("cannot parse: %s" % type(exc).__name__) from None
        _Checker().visit(tree)
        self.tree = tree.body

    def evaluate(self, names: Optional[Mapping[str, Any]] = None, modules: bool = True) -> Any:
        """The value; ``ExpressionError`` for anything that went wrong (never another exception)."""
        se = _simpleeval()
        scope = names if type(names) is dict else dict(names or {})
        evaluator = _evaluator_class(se)(scope, modules)
        try:
            return evaluator.eval(self.source, previously_parsed=self.tree)
        except ExpressionError:
            raise
        except se.InvalidExpression as exc:
            raise ExpressionError(_message(exc)) from None
        except RecursionError:
            raise ExpressionError("expression nested too deeply") from None
        except (Exception, SystemExit) as exc:
            raise ExpressionError("%s: %s" % (type(exc).__name__, _message(exc))) from None
        finally:
            evaluator.nodes = None  # break the evaluator's self-reference cycle now


def evaluate(source: str, names: Optional[Mapping[str, Any]] = None, modules: bool = True) -> Any:
    return Expression(source).evaluate(names, modules)


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    return values.safe_repr(text, 500)[1:-1] if len(text) > 500 else text


# ---------------------------------------------------------------- the evaluator


def _simpleeval() -> Any:
    module = sys.modules.get("_peeka_simpleeval")
    if module is None:
        try:
            import simpleeval as module  # outside a target: unit tests, the client
        except ImportError:
            raise ExpressionError("simpleeval is not available to the agent; re-attach to ship it") from None
    return module


_CLASSES: Dict[int, Any] = {}


def _evaluator_class(se: Any) -> Any:
    cls = _CLASSES.get(id(se))
    if cls is None:
        cls = _CLASSES[id(se)] = _build_evaluator_class(se)
    return cls


def _build_evaluator_class(se: Any) -> Any:
    base = se.EvalWithCompoundTypes
    operators = dict(se.DEFAULT_OPERATORS)

    class SafeEvaluator(base):  # type: ignore[misc,valid-type]
        def __init__(self, names: Dict[str, Any], modules: bool) -> None:
            # Deliberately not base.__init__ (see the module docstring); the same attributes.
            self.operators = operators
            self.functions = SAFE_FUNCTIONS
            self.names = names
            self.allowed_attrs = None
            self.ATTR_INDEX_FALLBACK = True
            self._max_count = 0
            self.expr = ""
            self.modules = modules
            self.nodes = {
                ast.Expr: self._eval_expr,
                ast.Name: self._eval_name,
                ast.UnaryOp: self._eval_unaryop,
                ast.BinOp: self._eval_binop,
                ast.BoolOp: self._eval_boolop,
                ast.Compare: self._eval_compare,
                ast.IfExp: self._eval_ifexp,
                ast.Call: self._eval_call,
                ast.Subscript: self._eval_subscript,
                ast.Attribute: self._eval_attribute,
                ast.Slice: self._eval_slice,
                ast.JoinedStr: self._eval_joinedstr,
                ast.FormattedValue: self._eval_formattedvalue,
                ast.Constant: self._eval_constant,
                ast.Dict: self._eval_dict,
                ast.Tuple: self._eval_tuple,
                ast.List: self._eval_list,
                ast.Set: self._eval_set,
                ast.ListComp: self._eval_comprehension,
                ast.GeneratorExp: self._eval_comprehension,
                ast.DictComp: self._eval_comprehension,
            }
            index = getattr(ast, "Index", None)  # 3.8's subscript wrapper; parse never makes it on 3.9+
            if index is not None:
                self.nodes[index] = self._eval_index

        def _check_disallowed_items(self, item: Any) -> None:
            # Instead of simpleeval's walk over whole containers (unbounded on a huge dict):
            # every value is checked as it is reached, so a container holds only checked values.
            check_value(item)

        def _eval_name(self, node: ast.Name) -> Any:
            name = node.id
            _check_name(name)
            if name in self.names:
                return self.names[name]
            if name in self.functions:
                return self.functions[name]
            if self.modules:
                module = sys.modules.get(name)
                if module is not None and issubclass(type(module), types.ModuleType):
                    if name in _AGENT_MODULES or name.startswith("_peeka_"):
                        raise _refuse("the agent's own module %r" % name)
                    return module
            hint = ", ".join(sorted(self.names)) if self.names else ""
            raise ExpressionError(
                "name %r is not defined: use a loaded module (myapp.config.value)%s, or a safe function"
                % (name, ", one of " + hint if hint else "")
            )

        def _eval_attribute(self, node: ast.Attribute) -> Any:
            name = _check_attribute_name(node.attr)
            return get_attribute(self._eval(node.value), name)

        def _eval_call(self, node: ast.Call) -> Any:
            func = self._eval(node.func)
            reason = call_refusal(func)
            if reason:
                raise ExpressionError(reason)
            args = []
            for arg in node.args:
                if isinstance(arg, ast.Starred):
                    args.extend(self._eval(arg.value))
                else:
                    args.append(self._eval(arg))
            kwargs: Dict[str, Any] = {}
            for keyword in node.keywords:
                if keyword.arg is None:
                    kwargs.update(self._eval(keyword.value))
                else:
                    kwargs[keyword.arg] = self._eval(keyword.value)
            return func(*args, **kwargs)

        def _eval_formattedvalue(self, node: ast.FormattedValue) -> Any:
            # format(value, spec), never spec.format(value): a spec like "}{0.__globals__}" reads attributes.
            value = self._eval(node.value)
            if node.conversion == ord("r"):
                value = _safe_repr(value)
            elif node.conversion == ord("a"):
                value = _safe_repr(value).encode("ascii", "backslashreplace").decode("ascii")
            elif node.conversion == ord("s"):
                value = str(value)
            spec = self._eval(node.format_spec) if node.format_spec is not None else ""
            return format(value, spec)

    return SafeEvaluator


# ---------------------------------------------------------------- compiled, for the hot path
#
# Conditions run on every observed call, where simpleeval's tree walk (tens of microseconds) is
# far too slow. The same checked tree is compiled instead, with every attribute access, call and
# potentially huge operation routed through the guards above, and without builtins: what simpleeval
# refuses is refused here too, at compile time or when reached.

MAX_POWER = 4_000_000
MAX_SEQUENCE = 100_000


def _guarded_attribute(obj: Any, name: str) -> Any:
    return get_attribute(obj, name)


def _guarded_call(func: Any, *args: Any, **kwargs: Any) -> Any:
    reason = call_refusal(func)
    if reason:
        raise ExpressionError(reason)
    for value in args:
        check_value(value)
    for value in kwargs.values():
        check_value(value)
    return func(*args, **kwargs)


def _guarded_pow(a: Any, b: Any) -> Any:
    if isinstance(b, (int, float)) and abs(b) > MAX_POWER:
        raise ExpressionError("exponent %r is too large (at most %d)" % (b, MAX_POWER))
    return a ** b


def _sized(value: Any) -> int:
    try:
        return len(value) if isinstance(value, (str, bytes, list, tuple)) else 0
    except Exception:
        return 0


def _guarded_mul(a: Any, b: Any) -> Any:
    for seq, n in ((a, b), (b, a)):
        if _sized(seq) and isinstance(n, int) and _sized(seq) * n > MAX_SEQUENCE:
            raise ExpressionError("result longer than %d items" % MAX_SEQUENCE)
    return a * b


def _guarded_lshift(a: Any, b: Any) -> Any:
    if isinstance(b, int) and b > MAX_POWER:
        raise ExpressionError("shift %r is too large" % b)
    return a << b


def _module(name: str) -> Any:
    module = sys.modules.get(name)
    if module is None or name.startswith(_AGENT_MODULES):
        raise ExpressionError("name %r is not defined" % name)
    return module


_HELPERS = {
    "_peeka_getattr": _guarded_attribute,
    "_peeka_call": _guarded_call,
    "_peeka_pow": _guarded_pow,
    "_peeka_mul": _guarded_mul,
    "_peeka_lshift": _guarded_lshift,
    "_peeka_module": _module,
}
_GUARDED_OPS = {ast.Pow: "_peeka_pow", ast.Mult: "_peeka_mul", ast.LShift: "_peeka_lshift"}


class _Rewriter(ast.NodeTransformer):
    def __init__(self, variables: Mapping[str, str]) -> None:
        self.variables = {name: ast.parse(src, mode="eval").body for name, src in variables.items()}
        self.local_names: set = set()

    def _helper(self, name: str, node: ast.AST, args: list, keywords: Optional[list] = None) -> ast.AST:
        call = ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=args, keywords=keywords or [])
        return ast.copy_location(call, node)

    def visit_comprehension(self, node: ast.comprehension) -> Any:
        for target in ast.walk(node.target):
            if isinstance(target, ast.Name):
                self.local_names.add(target.id)
        return self.generic_visit(node)

    def _visit_comp(self, node: Any) -> Any:
        # Bind the comprehension's own names before its element expression is rewritten.
        for gen in node.generators:
            for target in ast.walk(gen.target):
                if isinstance(target, ast.Name):
                    self.local_names.add(target.id)
        return self.generic_visit(node)

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _visit_comp  # type: ignore[assignment]

    def visit_Name(self, node: ast.Name) -> Any:
        if not isinstance(node.ctx, ast.Load) or node.id in self.local_names:
            return node
        if node.id in self.variables:
            import copy

            return ast.copy_location(copy.deepcopy(self.variables[node.id]), node)
        if node.id in SAFE_FUNCTIONS:
            return node  # bound in the compiled function's globals
        if node.id in ("True", "False", "None"):
            return node
        return self._helper("_peeka_module", node, [ast.Constant(value=node.id)])

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        value = self.visit(node.value)
        return self._helper("_peeka_getattr", node, [value, ast.Constant(value=node.attr)])

    def visit_Call(self, node: ast.Call) -> Any:
        if isinstance(node.func, ast.Name) and node.func.id in SAFE_FUNCTIONS and node.func.id not in self.local_names:
            return self.generic_visit(node)  # the safe functions are safe with any argument
        func = self.visit(node.func)
        args = [self.visit(a) for a in node.args]
        keywords = [self.visit(k) for k in node.keywords]
        return self._helper("_peeka_call", node, [func] + args, keywords)

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        node = self.generic_visit(node)  # type: ignore[assignment]
        helper = _GUARDED_OPS.get(type(node.op))
        if helper is None:
            return node
        return self._helper(helper, node, [node.left, node.right])


def compile_expression(source: str, variables: Mapping[str, str], helpers: Optional[Mapping[str, Any]] = None,
                       argument: Union[str, Tuple[str, ...]] = "_c") -> Any:
    """A function of ``argument`` (one name, or a tuple of names) computing ``source``.

    ``variables`` maps the names the expression may use to Python source over ``argument``
    (``{"cost": "(_c.end - _c.start) / 1e6"}``), which may call ``helpers`` (trusted functions,
    named ``_peeka_*``). Raises ExpressionError when refused.
    """
    names = (argument,) if isinstance(argument, str) else argument
    lam = ast.Expression(
        body=ast.Lambda(
            args=ast.arguments(posonlyargs=[], args=[ast.arg(arg=name) for name in names], vararg=None, kwonlyargs=[],
                               kw_defaults=[], kwarg=None, defaults=[]),
            body=_rewritten(source, variables),
        )
    )
    ast.fix_missing_locations(lam)
    try:
        code = compile(lam, "<peeka expression>", "eval")
    except (SyntaxError, ValueError) as exc:
        raise ExpressionError("cannot compile %r: %s" % (source, exc)) from None
    return eval(code, expression_namespace(helpers))  # noqa: S307 - a checked, rewritten tree with no builtins


def python_source(source: str, variables: Mapping[str, str],
                  transform: Optional[Callable[[ast.AST], ast.AST]] = None) -> str:
    """``source`` checked and rewritten as compile_expression does, as Python source to be compiled
    into other code (the probes inline a condition into their callbacks) in an
    ``expression_namespace``; ``transform`` may first replace parts of the checked tree with
    equivalents over ``variables``. Raises ExpressionError when refused."""
    body = _rewritten(source, variables, transform)
    try:
        return ast.unparse(ast.fix_missing_locations(body))
    except Exception as exc:  # ast.unparse of a tree we built: not expected to fail
        raise ExpressionError("cannot compile %r: %s" % (source, exc)) from None


def expression_namespace(helpers: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The globals a compiled expression runs in: the safe functions and helpers, no builtins."""
    namespace: Dict[str, Any] = {"__builtins__": {}}
    namespace.update(SAFE_FUNCTIONS)
    namespace.update(_HELPERS)
    namespace.update(helpers or {})
    return namespace


def _rewritten(source: str, variables: Mapping[str, str],
               transform: Optional[Callable[[ast.AST], ast.AST]] = None) -> Any:
    expression = Expression(source)  # parses and applies the static refusals
    tree: Any = ast.Expression(body=expression.tree)
    if transform is not None:
        tree = transform(tree)
    return _Rewriter(variables).visit(tree).body
