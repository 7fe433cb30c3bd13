"""The expression evaluator: names over sys.modules, injected names, and every refusal."""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Iterator

import pytest
from peeka_agent import expressions
from peeka_agent.expressions import Expression, ExpressionError, evaluate


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
        ("exprapp.cache.get('b')", 2),
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
        ("max(*[1, 5, 3])", 5),
        ("dict(a=1, **{'b': 2})", {"a": 1, "b": 2}),
        ("min([3, 1, 2]) + sum([1, 2]) + abs(-1) + round(1.4)", 1 + 3 + 1 + 1),
        ("'abc'.upper()", "ABC"),
        ("len(threading.enumerate()) >= 1", True),
        ("sys.getsizeof([]) > 0", True),
        ("os.path.join('a', 'b')", "a/b"),
        ("all([]) and not any([])", True),
    ],
)
def test_evaluates(source: str, expected: object) -> None:
    import os  # noqa: F401 - loaded, so resolvable by name

    assert evaluate(source) == expected


def test_modules_resolve_to_themselves() -> None:
    assert evaluate("exprapp.config") is sys.modules["exprapp.config"]
    assert evaluate("exprapp.cache") is sys.modules["exprapp.cache"]


def test_injected_names_shadow_modules_and_can_be_reused() -> None:
    condition = Expression("params[0] > 3 and cost < 10")
    assert condition.evaluate({"params": (5,), "cost": 2.5}) is True
    assert condition.evaluate({"params": (1,), "cost": 2.5}) is False
    assert evaluate("exprapp + 1", {"exprapp": 1}) == 2


def test_modules_can_be_switched_off() -> None:
    with pytest.raises(ExpressionError, match="not defined"):
        evaluate("exprapp.config", modules=False)


def test_evaluators_are_independent_across_threads() -> None:
    condition = Expression("[x * n for x in range_]")
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
        ("getattr(exprapp, '__dict__')", "dunder"),
        ("hasattr(exprapp, '__dict__')", "dunder"),
        ("open('/etc/passwd')", "'open' is refused"),
        ("__import__('os')", "refused"),
        ("eval('1')", "'eval' is refused"),
        ("exec('1')", "'exec' is refused"),
        ("compile('1', '', 'eval')", "'compile' is refused"),
        ("globals()", "'globals' is refused"),
        ("vars(exprapp)", "'vars' is refused"),
        ("setattr(exprapp, 'x', 1)", "'setattr' is refused"),
        ("delattr(exprapp, 'config')", "'delattr' is refused"),
        ("os.system('true')", "refused"),
        ("sys.modules['os'].system('true')", "refused"),
        ("sorted(['/nonexistent'], key=os.remove)", "refused"),
        ("sys.exit(1)", "refused"),
        ("sys._getframe()", "refused"),
        ("builtins.open", "refused"),
        ("type(int)", "refused"),
        ("'{0.__class__}'.format(1)", "'format'"),
        ("exprapp.config.settings.name.format_map({})", "'format_map'"),
        ("lambda: 1", "lambda"),
        ("(x := 1)", "assignment"),
        ("x = 1", "invalid syntax"),
        ("import os", "invalid syntax"),
        ("1; 2", "invalid syntax"),
        ("", "empty"),
        ("peeka_agent.runtime", "agent's own"),
        ("9 ** 9 ** 9", "9 \\*\\* "),
        ("'a' * 10 ** 9", "too long|long"),
        ("x" * 5000, "characters"),
    ],
)
def test_refused(source: str, message: str) -> None:
    import builtins  # noqa: F401
    import os  # noqa: F401

    import peeka_agent.runtime  # noqa: F401

    with pytest.raises(ExpressionError, match=message):
        evaluate(source)


def test_format_spec_cannot_read_attributes() -> None:
    # simpleeval would build "{:}{0.__globals__}".format(value); format(value, spec) reads nothing.
    with pytest.raises(ExpressionError):
        evaluate("f'{exprapp.cache.get:{\"}{0.__globals__}\"}}'")


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
    exec("def leave():\n    raise SystemExit(2)\n", module.__dict__)
    sys.modules["exitapp"] = module
    try:
        with pytest.raises(ExpressionError, match="SystemExit"):
            evaluate("exitapp.leave()")
    finally:
        del sys.modules["exitapp"]


def test_call_refusal_reasons() -> None:
    import os

    assert expressions.call_refusal(len) is None
    assert expressions.call_refusal(os.getpid) is None
    assert "refused" in (expressions.call_refusal(os.kill) or "")
    assert "refused" in (expressions.call_refusal(print) or "")
    assert expressions.call_refusal(dict.fromkeys) is None
    assert expressions.call_refusal([].append) is None
