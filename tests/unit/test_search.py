"""Class and function search over sys.modules: patterns, kinds, details, hostile modules."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from peeka_agent import search
from peeka_agent.commands import CommandError, sc, sm

pytestmark = pytest.mark.parallel

APP_SOURCE = textwrap.dedent(
    '''
    import functools


    class Base:
        def save(self):
            return 1


    @functools.total_ordering
    class User(Base):
        """A user."""

        class Meta:
            ordering = "name"

            def describe(self):
                return "meta"

        def __init__(self, name):
            self.name = name

        def get(self, key, default=None):
            return default

        @classmethod
        def create(cls, name):
            return cls(name)

        @staticmethod
        def validate(name):
            return bool(name)

        @property
        def display(self):
            return self.name

        @functools.cached_property
        def slow(self):
            return 1

        def __eq__(self, other):
            return False

        def __lt__(self, other):
            return False


    class Admin(User):
        pass


    def get(key):
        return key


    @functools.lru_cache(maxsize=None)
    def cached(key):
        return key


    def _factory():
        def inner():
            return 1
        return inner


    handler = _factory()
    Alias = User
    '''
)


@pytest.fixture(autouse=True)
def searchapp(tmp_path: Path) -> Iterator[types.ModuleType]:
    """searchapp (a package) and searchapp.models (a real file, for file/line details)."""
    package = types.ModuleType("searchapp")
    package.__path__ = []  # type: ignore[attr-defined]
    path = tmp_path / "models.py"
    path.write_text(APP_SOURCE)
    spec = importlib.util.spec_from_file_location("searchapp.models", path)
    assert spec is not None and spec.loader is not None
    models = importlib.util.module_from_spec(spec)
    sys.modules["searchapp"] = package
    sys.modules["searchapp.models"] = models
    spec.loader.exec_module(models)
    yield models
    sys.modules.pop("searchapp", None)
    sys.modules.pop("searchapp.models", None)


def class_names(pattern: str, **kwargs: object) -> list[str]:
    return [c["name"] for c in sc.handle(None, None, {"pattern": pattern, **kwargs})["classes"]]


def function_names(pattern: str, **kwargs: object) -> list[str]:
    return [f["name"] for f in sm.handle(None, None, {"pattern": pattern, **kwargs})["functions"]]


@pytest.mark.parametrize(
    ("pattern", "regex", "expected"),
    [
        ("x.y", False, ["x.y"]),
        ("y", False, ["x.y"]),
        ("x.*", False, ["x.y", "x.y.z"]),
        ("*.z", False, ["x.y.z"]),
        ("x.?", False, ["x.y"]),
        (r"y$", True, ["x.y", "xy"]),
        (r"^x\.y", True, ["x.y", "x.y.z"]),
    ],
)
def test_pattern(pattern: str, regex: bool, expected: list[str]) -> None:
    compiled = search.Pattern(pattern, regex=regex)
    assert [n for n in ["x.y", "x.y.z", "xy", "a.b"] if compiled.match(n)] == expected


def test_pattern_prefix_prunes_modules() -> None:
    p = search.Pattern("searchapp.models.User.*")
    assert p.may_contain("searchapp") and p.may_contain("searchapp.models.User")
    assert not p.may_contain("os")
    assert search.Pattern("*.User").may_contain("os")


def test_sc_wildcards() -> None:
    assert class_names("searchapp.models.*") == [
        "searchapp.models.Admin",
        "searchapp.models.Base",
        "searchapp.models.User",
        "searchapp.models.User.Meta",
    ]
    # The suite's own process is searched: other modules' Meta classes (mcp_types has one) are not this test's.
    assert [n for n in class_names("*.Meta") if n.startswith("searchapp.")] == ["searchapp.models.User.Meta"]
    assert class_names("searchapp.models.User") == ["searchapp.models.User"]


def test_sc_plain_name_is_a_suffix_match() -> None:
    assert "searchapp.models.Admin" in class_names("Admin")


def test_sc_regex() -> None:
    assert class_names(r"^searchapp\.models\.(Admin|Base)$", regex=True) == [
        "searchapp.models.Admin",
        "searchapp.models.Base",
    ]


def test_sc_counts_aliases_once_and_ignores_imports() -> None:
    names = class_names("searchapp.*")
    assert "searchapp.models.Alias" not in names  # an alias of User
    assert not any(n.startswith("searchapp.models.functools") for n in names)


def test_sc_limit_and_count() -> None:
    result = sc.handle(None, None, {"pattern": "searchapp.*", "limit": 2})
    assert result["count"] == 4 and result["truncated"] is True
    assert [c["name"] for c in result["classes"]] == ["searchapp.models.Admin", "searchapp.models.Base"]


def test_sc_detail(searchapp: types.ModuleType) -> None:
    (user,) = sc.handle(None, None, {"pattern": "searchapp.models.User", "detail": True})["classes"]
    assert user["module"] == "searchapp.models"
    assert user["file"] == searchapp.__file__
    # A decorated class starts at its decorator, as __firstlineno__ says on 3.13+.
    assert user["line"] == APP_SOURCE.splitlines().index("class User(Base):")
    assert APP_SOURCE.splitlines()[user["line"] - 1] == "@functools.total_ordering"
    assert user["bases"] == ["searchapp.models.Base"]
    assert user["mro_length"] == 3
    assert user["methods"] >= 8
    (meta,) = sc.handle(None, None, {"pattern": "*.User.Meta", "detail": True})["classes"]
    assert meta["line"] == APP_SOURCE.splitlines().index("    class Meta:") + 1


def test_sm_methods_of_every_kind() -> None:
    result = sm.handle(None, None, {"pattern": "searchapp.models.User.*"})
    kinds = {f["name"].rsplit(".", 1)[1]: f["kind"] for f in result["functions"]}
    assert kinds["__init__"] == "method"
    assert kinds["get"] == "method"
    assert kinds["create"] == "classmethod"
    assert kinds["validate"] == "staticmethod"
    assert kinds["display"] == "property"
    assert kinds["slow"] == "property"
    assert "searchapp.models.User.Meta.describe" in function_names("searchapp.models.User.*")


def test_sm_module_functions_and_wrappers() -> None:
    names = function_names("searchapp.models.*")
    assert "searchapp.models.get" in names
    assert "searchapp.models.cached" in names  # lru_cache keeps __wrapped__
    assert "searchapp.models.handler" in names  # a factory's function, named where it lives
    assert "searchapp.models._factory" in names


def test_sm_wildcard_in_the_middle() -> None:
    assert function_names("searchapp.*.get") == ["searchapp.models.User.get", "searchapp.models.get"]


def test_sm_detail(searchapp: types.ModuleType) -> None:
    (get,) = sm.handle(None, None, {"pattern": "searchapp.models.User.get", "detail": True})["functions"]
    assert get["signature"] == "(self, key, default=None)"
    assert get["file"] == searchapp.__file__
    assert get["line"] == APP_SOURCE.splitlines().index("    def get(self, key, default=None):") + 1
    (cached,) = sm.handle(None, None, {"pattern": "searchapp.models.cached", "detail": True})["functions"]
    assert cached["signature"] == "(key)"
    (create,) = sm.handle(None, None, {"pattern": "*.User.create", "detail": True})["functions"]
    assert create["kind"] == "classmethod" and create["signature"] == "(cls, name)"


def test_sm_builtin_methods_without_signature_do_not_fail() -> None:
    result = sm.handle(None, None, {"pattern": "builtins.dict.*", "detail": True, "limit": 500})
    assert result["count"] > 5
    assert any(f["name"] == "builtins.dict.get" for f in result["functions"])


class _Exploding(types.ModuleType):
    def __getattribute__(self, name: str) -> object:
        raise RuntimeError("do not touch " + name)


class _LazyModule(types.ModuleType):
    """Looks like importlib.util's lazy module: touching it would import the real one."""

    touched = False

    def __getattribute__(self, name: str) -> object:
        _LazyModule.touched = True
        raise AssertionError("a lazy module was loaded by the search")


class _Meta(type):
    def __getattribute__(cls, name: str) -> object:
        if name in ("__module__", "__qualname__"):
            raise RuntimeError("hostile metaclass")
        return super().__getattribute__(name)


def test_hostile_modules_are_skipped_or_survived() -> None:
    exploding = _Exploding("exploding")
    object.__getattribute__(exploding, "__dict__")["Thing"] = type("Thing", (), {"__module__": "exploding"})
    lazy = _LazyModule("lazyapp")
    hostile = types.ModuleType("hostileapp")
    hostile.__dict__["Weird"] = _Meta("Weird", (), {})
    sys.modules.update({"exploding": exploding, "lazyapp": lazy, "hostileapp": hostile, "notamodule": 42})  # type: ignore[dict-item]
    sys.modules["nonemodule"] = None  # type: ignore[assignment]
    try:
        assert class_names("exploding.*") == ["exploding.Thing"]
        assert class_names("*") and function_names("*", limit=5)
        assert not _LazyModule.touched
        assert class_names("hostileapp.*") == []
    finally:
        for name in ("exploding", "lazyapp", "hostileapp", "notamodule", "nonemodule"):
            sys.modules.pop(name, None)


def test_agent_modules_are_skipped() -> None:
    import peeka_agent.runtime  # noqa: F401

    assert class_names("peeka_agent.*") == []
    assert function_names("*peeka_agent*") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"pattern": ""}, "empty pattern"),
        ({"pattern": "(", "regex": True}, "invalid regular expression"),
        ({"pattern": "x", "limit": 0}, "limit"),
        ({"pattern": "x", "limit": "5"}, "limit"),
    ],
)
def test_bad_arguments(args: dict, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        sc.handle(None, None, args)
