"""Properties of the expression language, on trees hypothesis generates within its grammar, and on
every expression of the escape corpus: the reference interpreter and the generated code give the
same value or the same refusal, and no evaluation exceeds its caps."""

from __future__ import annotations

import ast
import sys
import time
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peeka_agent import expressions
from peeka_agent.expressions import Expression, ExpressionError

pytestmark = pytest.mark.parallel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import escape_corpus  # noqa: E402

NAMES = {"params": {"user_id": 42, "items": [1, 2, 3]}, "result": "ok", "cost": 12.5, "exception": None,
         "args": (1, "two"), "kwargs": {"k": 3}, "target": None, "thread": "MainThread"}
VARIABLES = {n: f"_v[{n!r}]" for n in NAMES}


def outcome(run):  # type: ignore[no-untyped-def]
    try:
        value = run()
    except ExpressionError as exc:
        return ("error", type(exc).__name__, str(exc))
    return ("value", repr(value))


def both(source: str) -> tuple:
    interpreted = outcome(lambda: Expression(source, tuple(NAMES)).evaluate(NAMES))
    compiled = outcome(lambda: expressions.compile_expression(source, VARIABLES, argument="_v")(NAMES))
    return interpreted, compiled


# ---------------------------------------------------------------- trees within the grammar

def _const() -> st.SearchStrategy[ast.AST]:
    return st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False, width=32),
                     st.text("abxy ,%{}0", max_size=6), st.booleans(), st.none()).map(lambda v: ast.Constant(value=v))


NAME = st.sampled_from(sorted(NAMES)).map(lambda n: ast.Name(id=n, ctx=ast.Load()))
LEAF = st.one_of(_const(), NAME, st.just(ast.Name(id="x", ctx=ast.Load())))
BINOPS = [ast.Add(), ast.Sub(), ast.Mult(), ast.Div(), ast.FloorDiv(), ast.Mod(), ast.Pow(), ast.LShift(), ast.RShift(),
          ast.BitOr(), ast.BitAnd(), ast.BitXor()]
CMPOPS = [ast.Eq(), ast.NotEq(), ast.Lt(), ast.LtE(), ast.Gt(), ast.GtE(), ast.Is(), ast.IsNot(), ast.In(), ast.NotIn()]
FUNCS = ["len", "str", "repr", "int", "bool", "min", "max", "sum", "any", "all", "sorted", "abs", "round", "list",
         "tuple", "set", "range", "typename", "enumerate", "zip", "reversed"]
METHODS = ["upper", "split", "get", "keys", "items", "count", "index", "replace", "join", "startswith", "append", "pop"]


def _extend(children: st.SearchStrategy[ast.AST]) -> st.SearchStrategy[ast.AST]:
    return st.one_of(
        st.tuples(children, st.sampled_from(BINOPS), children).map(lambda t: ast.BinOp(left=t[0], op=t[1], right=t[2])),
        st.tuples(children, st.sampled_from(CMPOPS), children).map(
            lambda t: ast.Compare(left=t[0], ops=[t[1]], comparators=[t[2]])),
        st.tuples(st.sampled_from([ast.And(), ast.Or()]), st.lists(children, min_size=2, max_size=3)).map(
            lambda t: ast.BoolOp(op=t[0], values=t[1])),
        st.tuples(st.sampled_from([ast.Not(), ast.USub(), ast.Invert()]), children).map(
            lambda t: ast.UnaryOp(op=t[0], operand=t[1])),
        st.tuples(children, children, children).map(lambda t: ast.IfExp(test=t[0], body=t[1], orelse=t[2])),
        st.tuples(children, children).map(lambda t: ast.Subscript(value=t[0], slice=t[1], ctx=ast.Load())),
        st.tuples(children, st.one_of(st.none(), children), st.one_of(st.none(), children)).map(
            lambda t: ast.Subscript(value=t[0], slice=ast.Slice(lower=t[1], upper=t[2], step=None), ctx=ast.Load())),
        st.lists(children, max_size=3).map(lambda e: ast.List(elts=e, ctx=ast.Load())),
        st.lists(children, max_size=3).map(lambda e: ast.Tuple(elts=e, ctx=ast.Load())),
        st.tuples(st.sampled_from(FUNCS), st.lists(children, min_size=1, max_size=2)).map(
            lambda t: ast.Call(func=ast.Name(id=t[0], ctx=ast.Load()), args=t[1], keywords=[])),
        st.tuples(children, st.sampled_from(METHODS), st.lists(children, max_size=2)).map(
            lambda t: ast.Call(func=ast.Attribute(value=t[0], attr=t[1], ctx=ast.Load()), args=t[2], keywords=[])),
        st.tuples(children, children, st.lists(children, max_size=1)).map(
            lambda t: ast.ListComp(elt=t[0], generators=[
                ast.comprehension(target=ast.Name(id="x", ctx=ast.Store()), iter=t[1], ifs=t[2], is_async=0)])),
        st.tuples(children, children).map(
            lambda t: ast.Call(func=ast.Name(id="any", ctx=ast.Load()), args=[ast.GeneratorExp(elt=t[0], generators=[
                ast.comprehension(target=ast.Name(id="x", ctx=ast.Store()), iter=t[1], ifs=[], is_async=0)])],
                keywords=[])),
        st.tuples(children, st.sampled_from(["", ">8", ".2f", "d", "!r"])).map(_fstring),
    )


def _fstring(t: tuple) -> ast.AST:
    value, spec = t
    conversion = ord("r") if spec == "!r" else -1
    format_spec = ast.JoinedStr(values=[ast.Constant(value=spec)]) if spec and spec != "!r" else None
    return ast.JoinedStr(values=[ast.Constant(value="<"),
                                 ast.FormattedValue(value=value, conversion=conversion, format_spec=format_spec)])


TREES = st.recursive(LEAF, _extend, max_leaves=12)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TREES)
def test_interpreted_and_compiled_agree_and_stay_bounded(tree: ast.AST) -> None:
    try:
        source = ast.unparse(ast.fix_missing_locations(ast.Expression(body=tree)))
    except Exception:
        return  # a tree Python itself cannot write
    if len(source) > expressions.MAX_SOURCE:
        return
    started = time.perf_counter()
    interpreted, compiled = both(source)
    elapsed = time.perf_counter() - started
    assert interpreted == compiled, source
    if interpreted[0] == "value":
        # no produced value beyond the caps (a repr is at most a few times the value's size)
        assert len(interpreted[1]) <= 8 * expressions.MAX_STRING + 100, source
    assert elapsed < 5.0, (source, elapsed)  # generous: a loaded machine; the caps bound it far below


# ---------------------------------------------------------------- the corpus, both ways

@pytest.fixture(scope="module")
def escapeapp() -> types.ModuleType:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "targets"))
    import escapeapp as module

    return module


@pytest.mark.parametrize("source", [s for _, s in escape_corpus.HOSTILE] + [s for s, _ in escape_corpus.WORKING])
def test_every_corpus_expression_has_one_meaning(source: str, escapeapp: types.ModuleType, tmp_path: Path) -> None:
    escapeapp.MARKER_DIR = str(tmp_path)
    interpreted, compiled = both(source)
    assert interpreted == compiled, source
    assert not list(tmp_path.iterdir()), source
    if interpreted[0] == "error" and interpreted[1] in ("RefusedError", "CapError"):
        assert len(interpreted[2]) > 40, source  # refusals say what and what instead


def test_the_budget_bounds_a_nested_comprehension() -> None:
    for run in (lambda s: Expression(s).evaluate(), lambda s: expressions.compile_expression(s, {})(None)):
        started = time.perf_counter()
        with pytest.raises(expressions.CapError, match="steps"):
            run("[(x, y) for x in range(1000) for y in range(1000)]")
        assert time.perf_counter() - started < 10
