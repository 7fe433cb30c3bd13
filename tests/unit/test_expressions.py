"""The expression language: names over sys.modules, injected names, every refusal, and the same
answer from the interpreter and the generated code (``both``)."""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Iterator

import pytest
from peeka_agent import expressions
from peeka_agent.expressions import Expression, ExpressionError

pytestmark = pytest.mark.parallel


def both(source: str, names: dict | None = None, unsafe: bool = False) -> object:
    """The value (or the ExpressionError) of ``source``, interpreted and compiled: they must agree."""
    names = names or {}
    outcomes = []
    for run in (lambda: Expression(source, tuple(names), unsafe).evaluate(names),
                lambda: expressions.compile_expression(source, {n: f"_v[{n!r}]" for n in names}, argument="_v",
                                                       unsafe=unsafe)(names)):
        try:
            outcomes.append(("value", run()))
        except ExpressionError as exc:
            outcomes.append(("error", f"{type(exc).__name__}: {exc}"))
    assert outcomes[0] == outcomes[1], (source, outcomes)
    kind, value = outcomes[0]
    if kind == "error":
        raise ExpressionError(value)
    return value


def evaluate(source: str, names: dict | None = None, unsafe: bool = False) -> object:
    return both(source, names, unsafe)


@pytest.fixture(autouse=True)
def exprapp() -> Iterator[types.ModuleType]:
    """A fake app package in sys.modules: exprapp, exprapp.config, exprapp.cache."""
    package = types.ModuleType("exprapp")
    config = types.ModuleType("exprapp.config")
    cache = types.ModuleType("exprapp.cache")
    exec(
        "class Settings:\n"
        "    def __init__(self):\n"
        "        self.timeout = 30\n"
        "        self.name = 'svc'\n"
        "    @property\n"
        "    def broken(self):\n"
        "        raise RuntimeError('nope')\n"
        "settings = Settings()\n"
        "FLAGS = {'debug': True}\n",
        config.__dict__,
    )
    exec("_store = {'a': 1, 'b': 2, 'c': 3}\ndef get(key):\n    return _store.get(key)\n", cache.__dict__)
    package.config = config  # type: ignore[attr-defined]
    # exprapp.cache is deliberately not an attribute of the package: found through sys.modules
    sys.modules.update({"exprapp": package, "exprapp.config": config, "exprapp.cache": cache})
    yield package
    for name in ("exprapp", "exprapp.config", "exprapp.cache"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("exprapp.config.settings.timeout", 30),
        ("len(exprapp.cache._store)", 3),
        ("exprapp.config.FLAGS.debug", True),
        ("exprapp.config.FLAGS['debug']", True),
        ("sorted(exprapp.cache._store, reverse=True)", ["c", "b", "a"]),
        ("[k for k, v in exprapp.cache._store.items() if v > 1]", ["b", "c"]),
        ("{k: v * 2 for k, v in exprapp.cache._store.items()}", {"a": 2, "b": 4, "c": 6}),
        ("any(v > 2 for v in exprapp.cache._store.values())", True),
        ("typename(exprapp.config.settings)", "exprapp.config.Settings"),
        ("isinstance(exprapp.config.settings, 'exprapp.config.Settings')", True),
        ("isinstance(exprapp.config.settings, exprapp.config.Settings)", True),
        ("isinstance(1, (str, int))", True),
        ("hasattr(exprapp.config.settings, 'timeout')", True),
        ("hasattr(exprapp.config.settings, 'missing')", False),
        ("getattr(exprapp.config.settings, 'missing', 7)", 7),
        ("repr('x')", "'x'"),
        ("f'{exprapp.config.settings.timeout:>4}|{exprapp.config.settings.name!r}'", "  30|'svc'"),
        ("max([1, 5, 3]) + max(1, 5, 3)", 10),
        ("dict(a=1, b=2)", {"a": 1, "b": 2}),
        ("min([3, 1, 2]) + sum([1, 2]) + abs(-1) + round(1.4)", 1 + 3 + 1 + 1),
        ("'abc'.upper()", "ABC"),
        ("len(threading.enumerate()) >= 1", True),
        ("sys.getsizeof([]) > 0", True),
        ("os.path.join('a', 'b')", "a/b"),
        ("all([]) and not any([])", True),
        ("os.environ.get('PATH') is not None", True),
        ("exprapp.cache._store.get('zz', 0) + len(exprapp.cache._store.keys())", 3),
        ("[r for r in [1, 2] if r > 1]", [2]),
        ("'%s=%d' % ('a', 1)", "a=1"),
        ("f'{exprapp.config.settings.timeout:.1f}'", "30.0"),
        ("'a,b'.split(',')[-1].upper()", "B"),
        ("sorted({3, 1, 2})[:2]", [1, 2]),
        ("round(2.675, 2) if 1 < 2 < 3 else 0", 2.67),
        ("{x % 3 for x in range(9)}", {0, 1, 2}),
        ("list(zip([1, 2], 'ab'))", [(1, "a"), (2, "b")]),
        ("2 ** 100 > 10 ** 30 and 1 << 10 == 1024", True),
    ],
)
def test_evaluates(source: str, expected: object) -> None:
    import os  # noqa: F401 - loaded, so resolvable by name

    assert evaluate(source) == expected


def test_modules_resolve_to_themselves() -> None:
    # a module (or function) may be the final value, shown by Peeka; it is never handed on
    assert evaluate("exprapp.config") is sys.modules["exprapp.config"]
    assert evaluate("exprapp.cache") is sys.modules["exprapp.cache"]
    with pytest.raises(ExpressionError, match="module .* cannot be a value"):
        evaluate("len(exprapp.cache)")


def test_the_script_is_reachable_as_main() -> None:
    # `python shop.py` is the module __main__: `inspect PID __main__.INVENTORY[3]` must work
    main = sys.modules["__main__"]
    main.INVENTORY_FOR_TEST = {3: "bolt"}  # type: ignore[attr-defined]
    try:
        assert both("__main__.INVENTORY_FOR_TEST[3]") == "bolt"
        assert both("len(__main__.INVENTORY_FOR_TEST)") == 1
        for refused in ("__main__.__dict__", "__builtins__", "[__main__ for _ in [1]]", "len(__main__)"):
            with pytest.raises(ExpressionError):
                both(refused)
    finally:
        del main.INVENTORY_FOR_TEST  # type: ignore[attr-defined]


def test_unsafe_calls_the_apps_functions() -> None:
    assert evaluate("exprapp.cache.get('b')", unsafe=True) == 2
    with pytest.raises(ExpressionError, match="calls of the app's functions need --unsafe: they run with the app's full power"):
        evaluate("exprapp.cache.get('b')")
    # a condition with --unsafe, as watch uses it
    assert evaluate("exprapp.cache.get('a') == params['x']", {"params": {"x": 1}}, unsafe=True) is True


def test_injected_names_shadow_modules_and_can_be_reused() -> None:
    condition = Expression("params[0] > 3 and cost < 10", ("params", "cost"))
    assert condition.evaluate({"params": (5,), "cost": 2.5}) is True
    assert condition.evaluate({"params": (1,), "cost": 2.5}) is False
    assert Expression("exprapp + 1", ("exprapp",)).evaluate({"exprapp": 1}) == 2


def test_modules_can_be_switched_off() -> None:
    with pytest.raises(ExpressionError, match="not defined"):
        Expression("exprapp.config").evaluate(modules=False)


def test_evaluators_are_independent_across_threads() -> None:
    condition = Expression("[x * n for x in range_]", ("range_", "n"))
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            for _ in range(200):
                assert condition.evaluate({"range_": [1, 2, 3], "n": n}) == [n, 2 * n, 3 * n]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("exprapp.__dict__", "dunder"),
        ("exprapp.config.settings.__class__", "dunder"),
        ("(1).__class__.__bases__", "dunder"),
        ("__builtins__", "dunder"),
        ("getattr(exprapp.config.settings, '__dict__')", "dunder"),
        ("hasattr(exprapp.config.settings, '__dict__')", "dunder"),
        ("open('/etc/passwd')", "'open' is refused"),
        ("__import__('os')", "refused"),
        ("eval('1')", "'eval' is refused"),
        ("exec('1')", "'exec' is refused"),
        ("compile('1', '', 'eval')", "'compile' is refused"),
        ("globals()", "'globals' is refused"),
        ("vars(exprapp)", "'vars' is refused"),
        ("setattr(exprapp, 'x', 1)", "'setattr' is refused"),
        ("delattr(exprapp, 'config')", "'delattr' is refused"),
        ("os.system('true')", "need --unsafe"),
        ("sys.modules['os'].system('true')", "need --unsafe"),
        ("sorted(['/nonexistent'], key=os.remove)", "cannot be a value"),
        ("sys.exit(1)", "need --unsafe"),
        ("sys._getframe()", "need --unsafe"),
        ("builtins.open('/etc/passwd')", "need --unsafe"),
        ("type(int)", "'type' is refused"),
        ("'{0.__class__}'.format(1)", "'format'"),
        ("exprapp.config.settings.name.format_map({})", "'format_map'"),
        ("lambda: 1", "lambda"),
        ("(x := 1)", "assignment"),
        ("x = 1", "invalid syntax"),
        ("import os", "invalid syntax"),
        ("1; 2", "invalid syntax"),
        ("", "empty"),
        ("peeka_agent.runtime.start", "Peeka's own"),
        ("9 ** 9 ** 9", "cap"),
        ("'a' * 10 ** 9", "cap"),
        ("x" * 5000, "characters"),
        ("max(*[1, 2])", "unpacking"),
        ("dict(**{'a': 1})", "unpacking"),
        ("sys.path.insert(0, '/tmp')", "not a read-only method"),
        ("exprapp.cache._store.pop('a')", "not a read-only method"),
        ("[_pk_attr for x in [1]]", "refused"),
        ("[x for _pk_attr in [1]]", "refused"),
        ("sum(range(10 ** 12))", "cap"),
        ("bytes(10 ** 10)", "cap"),
        ("'%*d' % (2 * 10 ** 9, 1)", "'\\*' widths"),
        ("len(str(list(range(100000))) * 2)", "steps|cap"),
        ("[[x for x in range(1000)] for y in range(1000)]", "steps"),
        ("-" * 3000 + "1", "nested too deeply"),
        ("[" * 60 + "]" * 60, "nested too deeply"),
        ("a @ b", "@"),
        ("1 < exprapp.config.settings.timeout < len([])", "chain"),
    ],
)
def test_refused(source: str, message: str) -> None:
    import builtins  # noqa: F401
    import os  # noqa: F401

    import peeka_agent.runtime  # noqa: F401

    with pytest.raises(ExpressionError, match=message):
        evaluate(source)


def test_format_spec_cannot_read_attributes() -> None:
    # format(value, spec), never spec.format(value): a spec like "}{0.__globals__}" reads nothing.
    with pytest.raises(ExpressionError):
        evaluate("f'{exprapp.config.settings.timeout:{\"}{0.__globals__}\"}}'")


def test_runtime_errors_become_expression_errors() -> None:
    with pytest.raises(ExpressionError, match="RuntimeError: nope"):
        evaluate("exprapp.config.settings.broken")
    with pytest.raises(ExpressionError, match="KeyError"):
        evaluate("exprapp.cache._store['zzz']")
    with pytest.raises(ExpressionError, match="no attribute 'nope'"):
        evaluate("exprapp.config.nope")
    with pytest.raises(ExpressionError, match="name 'nope' is not defined"):
        evaluate("nope")


def test_system_exit_from_app_code_is_contained() -> None:
    module = types.ModuleType("exitapp")
    exec("def leave():\n    raise SystemExit(2)\n"
         "class Eq:\n    def __eq__(self, other):\n        raise KeyboardInterrupt\n"
         "    __hash__ = None\neq = Eq()\n", module.__dict__)
    sys.modules["exitapp"] = module
    try:
        with pytest.raises(ExpressionError, match="SystemExit"):
            evaluate("exitapp.leave()", unsafe=True)
        with pytest.raises(ExpressionError, match="KeyboardInterrupt"):
            evaluate("exitapp.eq == 1")
    finally:
        del sys.modules["exitapp"]


def test_call_refusal_reasons() -> None:
    import os

    assert expressions.call_refusal(os.getpid) is None
    assert expressions.call_refusal("abc".upper) is None
    assert expressions.call_refusal({}.get) is None
    assert "--unsafe" in (expressions.call_refusal(os.kill) or "")
    assert "--unsafe" in (expressions.call_refusal(print) or "")
    assert "read-only" in (expressions.call_refusal([].append) or "")
    assert expressions.call_refusal(os.kill, unsafe=True) is None
    assert expressions.call_refusal(expressions.evaluate, unsafe=True)  # Peeka's own: never


def test_refusals_say_what_to_do() -> None:
    """Every refusal names what was refused and what to do instead."""
    for source, hint in [("exprapp.__dict__", "use typename"), ("os.system('x')", "--unsafe"),
                         ("'a' * 10 ** 9", "slice it first"), ("max(*[1])", "one by one"),
                         ("[x for _x in [1]]", "pick another name"), ("str(os)", "read its attributes")]:
        with pytest.raises(ExpressionError, match=hint):
            evaluate(source)
