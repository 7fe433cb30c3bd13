"""Expressions and conditions over one observed call (watch, stack, trace, tt).

The names a call offers: ``args`` (positional parameter values, then ``*args``), ``kwargs``
(keyword-only parameters and ``**kwargs``), ``params`` (name -> value), ``result``, ``exception``,
``target`` (``self``/``cls``), ``cost`` (ms), ``thread`` (name). Only the names an expression uses
are built, and arguments are captured only when some expression or the default view needs them.
"""

from __future__ import annotations

import ast
from threading import get_ident
from typing import Any, Callable, Dict, FrozenSet, Optional

from . import expressions, values
from .instrument import thread_name
from .probes import CO_VARARGS, CO_VARKEYWORDS, Call, Gate
from .streams import CommandError

CALL_NAMES = frozenset(("args", "kwargs", "params", "result", "exception", "target", "cost", "thread"))
ARG_NAMES = frozenset(("args", "kwargs", "params", "target"))


def _split_params(call: Call) -> Any:
    code = call.probe.code
    params = call.params or {}
    names = code.co_varnames
    npos = code.co_argcount
    args = [params[n] for n in names[:npos] if n in params]
    idx = npos + code.co_kwonlyargcount
    kwargs = {n: params[n] for n in names[npos:idx] if n in params}
    if code.co_flags & CO_VARARGS:
        args.extend(params.get(names[idx], ()))
        idx += 1
    if code.co_flags & CO_VARKEYWORDS:
        kwargs.update(params.get(names[idx], {}))
    return tuple(args), kwargs


def _target(call: Call) -> Any:
    params = call.params or {}
    names = call.probe.code.co_varnames
    if call.probe.code.co_argcount and names[0] in ("self", "cls"):
        return params.get(names[0])
    return None


# Each name an expression may use, as Python over the call ``_c`` (helpers are trusted code).
_VARIABLES = {
    "args": "_peeka_args(_c)",
    "kwargs": "_peeka_kwargs(_c)",
    "params": "_c.params",
    "result": "_c.result",
    "exception": "_c.exception",
    "target": "_peeka_target(_c)",
    "cost": "((_c.end - _c.start) / 1e6)",
    "thread": "_c.thread_name",
}
_HELPERS = {
    "_peeka_args": lambda c: _split_params(c)[0],
    "_peeka_kwargs": lambda c: _split_params(c)[1],
    "_peeka_target": _target,
}


# What a gate (probes.Gate) offers: a call's ending before any Call object exists.
_GATE_VARIABLES = {
    "result": "_r",
    "exception": "_x",
    "cost": "((_e - _s) / 1e6)",
    "thread": "_peeka_thread(_peeka_ident())",
    "_peeka_cost_ns": "(_e - _s)",  # see _CostInNanoseconds
}
_GATE_HELPERS = {"_peeka_thread": thread_name, "_peeka_ident": get_ident}


class _CostInNanoseconds(ast.NodeTransformer):
    """``cost > 100`` becomes ``_peeka_cost_ns > 100000000``: a comparison of two ints, where
    ``(end - start) / 1e6 > 100`` makes a float and compares it with an int (~70 ns a call on
    3.12, most of what a false condition costs beyond its two clock readings). Same result: the
    bound in ns is an exact integer, and a difference of whole ns that is not equal to it is at
    least 1e-6 ms away from it, far beyond the division's rounding."""

    def visit_Compare(self, node: ast.Compare) -> Any:
        self.generic_visit(node)
        if len(node.ops) != 1:
            return node
        left, right = node.left, node.comparators[0]
        if _is_cost(left) and not _is_cost(right):
            bound = _ns_bound(right)
            if bound is not None:
                return ast.copy_location(ast.Compare(left=_cost_ns(), ops=node.ops, comparators=[bound]), node)
        elif _is_cost(right):
            bound = _ns_bound(left)
            if bound is not None:
                return ast.copy_location(ast.Compare(left=bound, ops=node.ops, comparators=[_cost_ns()]), node)
        return node


def _fold_cost(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):  # a comprehension's own ``cost`` is not the call's
        if isinstance(node, ast.comprehension) and any(isinstance(n, ast.Name) and n.id == "cost"
                                                       for n in ast.walk(node.target)):
            return tree
    return _CostInNanoseconds().visit(tree)


def _is_cost(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "cost"


def _cost_ns() -> ast.AST:
    return ast.Name(id="_peeka_cost_ns", ctx=ast.Load())


def _ns_bound(node: ast.AST) -> Optional[ast.AST]:
    """A number of ms written in the condition, as an exact int of ns; None if it is not one."""
    if not isinstance(node, ast.Constant) or type(node.value) not in (int, float):
        return None
    ns = node.value * 1_000_000
    if isinstance(ns, float) and not (ns.is_integer() and abs(ns) < 2.0 ** 52):
        return None
    return ast.Constant(value=int(ns))


def used_names(source: str) -> FrozenSet[str]:
    """The call's names an expression uses (a comprehension's own ``result`` is not the call's)."""
    tree = expressions.Expression(source, CALL_NAMES).tree
    return frozenset(n.id for n in ast.walk(tree)
                     if isinstance(n, ast.Name) and getattr(n, "_pk", None) == "injected") & CALL_NAMES


class CallExpression:
    """An expression (or condition) checked and compiled once, evaluated per call.

    The language of expressions.py (its allow-list, caps and refusals), compiled so that a
    condition costs a function call, not a tree walk, on the host's hot path; ``unsafe`` lets it
    call the app's functions (the CLI's --unsafe). ``holds`` counts failures, so a stream reports
    the first one and ends with the count, and the probed call always goes on untouched.
    """

    def __init__(self, source: Optional[str], what: str, unsafe: bool = False) -> None:
        self.source = source
        self.what = what
        self.unsafe = bool(unsafe)
        self.names: FrozenSet[str] = frozenset()
        self.evaluate: Callable[[Call], Any] = _no_expression
        self.failures = 0
        self.first_failure = ""
        if source is None:
            return
        if not isinstance(source, str) or not source.strip():
            raise CommandError("%s must be a non-empty expression" % what)
        try:
            self.evaluate = expressions.compile_expression(source, _VARIABLES, _HELPERS, unsafe=self.unsafe)
            self.names = used_names(source)
        except expressions.ExpressionError as exc:
            raise CommandError("%s %r refused: %s" % (what, source, exc)) from None

    @property
    def needs_args(self) -> bool:
        return bool(self.names & ARG_NAMES)

    def holds(self, call: Call) -> Optional[bool]:
        """The condition's truth for ``call``; None when it failed (counted; the first failure's
        message kept in ``first_failure``), which the caller reports only if it is the first."""
        try:
            return _truth(self.evaluate(call))
        except BaseException as exc:  # evaluate raises only ExpressionError; _truth converts the rest
            self.failures += 1
            if self.failures == 1:
                self.first_failure = "%s failed: %s" % (self.what, exc)
                return None
            return False

    def failure_summary(self) -> str:
        """For the end of a stream: how often this expression failed, and the first failure."""
        if not self.failures:
            return ""
        return "%s failed on %d call%s (first: %s)" % (self.what, self.failures, "" if self.failures == 1 else "s",
                                                       self.first_failure)

    def gate(self, success: bool = True, failure: bool = True) -> Optional[Gate]:
        """A listener's gate: this condition, and which outcomes are wanted, tested on
        ``(start, end, result, exception)`` so that a call that fails them costs no Call object.
        None when it would spare nothing (no condition, or one that needs the arguments).

        Its source is generated from the same checked tree as the condition (see probes.Gate). A
        gate that raises (anything, BaseException included) lets the call through to on_exit,
        where ``holds`` decides and reports."""
        parts = []
        if not success and not failure:
            parts.append("False")
        elif not success:
            parts.append("_x is not None")
        elif not failure:
            parts.append("_x is None")
        if self.source is not None and self.names <= set(_GATE_VARIABLES):
            parts.append("(%s)" % expressions.python_source(self.source, _GATE_VARIABLES, _fold_cost, self.unsafe))
        if not parts:
            return None
        return Gate.compile(" and ".join(parts), expressions.expression_namespace(_GATE_HELPERS))


def _truth(value: Any) -> bool:
    try:
        return bool(value)  # an app object's __bool__ runs here
    except BaseException as exc:
        raise expressions.ExpressionError("%s: %s" % (type(exc).__name__, exc)) from None


def _no_expression(call: Call) -> Any:
    return None


def default_view(call: Call, at: str) -> Dict[str, Any]:
    """What watch shows when no expression is given: the arguments, then the result or exception."""
    view: Dict[str, Any] = {"params": dict(call.params or {})}
    if at == "exception":
        view["exception"] = call.exception
    elif at != "enter":
        view["result"] = call.result
    return view


def render(value: Any, args: Dict[str, Any]) -> Dict[str, Any]:
    return values.render(value, depth=args.get("depth") or 1, max_size=args.get("max_size") or values.DEFAULT_MAX_SIZE)
