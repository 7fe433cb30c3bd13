"""values.render and bounded_repr: the node shape, the bounds, and hostile objects."""

from __future__ import annotations

import collections
import json
import time

import pytest
from peeka_agent import values

pytestmark = pytest.mark.parallel


class Plain:
    def __init__(self) -> None:
        self.name = "alice"
        self.tags = ["a", "b"]
        self._private = 1


class Slotted:
    __slots__ = ("x", "__hidden", "unset")

    def __init__(self) -> None:
        self.x = 1
        self.__hidden = 2


class BadRepr:
    def __repr__(self) -> str:
        raise ValueError("boom")


class ExitRepr:
    def __repr__(self) -> str:
        raise SystemExit(3)


class HugeRepr:
    def __repr__(self) -> str:
        return "x" * 100_000


class WrongRepr:
    def __repr__(self):  # type: ignore[no-untyped-def]
        return 42


class CostlyLen:
    """A user __len__ may run a database query: render must never call it."""

    calls = 0

    def __len__(self) -> int:
        CostlyLen.calls += 1
        return 3


class Proxy:
    """Reading __class__ (what isinstance does) or any attribute has side effects."""

    touched = 0

    @property  # type: ignore[misc]
    def __class__(self):  # type: ignore[no-untyped-def,override]
        Proxy.touched += 1
        return dict

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        Proxy.touched += 1
        raise AttributeError(name)


def keys(node: dict) -> list[str]:
    return [child["key"] for child in node.get("children", [])]


def test_node_shape_depth_1_has_no_children() -> None:
    node = values.render({"a": 1}, depth=1)
    assert node == {"type": "dict", "repr": "{'a': 1}", "truncated": False, "size": 1}


def test_object_expands_dict_attributes() -> None:
    node = values.render(Plain(), depth=2)
    assert node["type"].endswith("test_values.Plain")
    assert keys(node) == ["name", "tags", "_private"]
    tags = node["children"][1]["value"]
    assert tags["type"] == "list" and tags["size"] == 2 and "children" not in tags


def test_depth_3_expands_grandchildren() -> None:
    node = values.render(Plain(), depth=3)
    tags = node["children"][1]["value"]
    assert keys(tags) == ["0", "1"]
    assert tags["children"][0]["value"]["repr"] == "'a'"


def test_slots_including_private_and_unset() -> None:
    node = values.render(Slotted(), depth=2)
    assert keys(node) == ["x", "__hidden"]
    assert node["children"][1]["value"]["repr"] == "2"


def test_dict_keys_are_reprs_and_sets_have_empty_keys() -> None:
    assert keys(values.render({"a": 1, 2: "b"}, depth=2)) == ["'a'", "2"]
    assert keys(values.render({1}, depth=2)) == [""]


def test_namedtuple_fields_are_keys() -> None:
    Point = collections.namedtuple("Point", "x y")
    node = values.render(Point(1, 2), depth=2)
    assert node["repr"] == "Point(x=1, y=2)"
    assert keys(node) == ["x", "y"]


def test_items_capped_and_omitted_counted() -> None:
    node = values.render(list(range(1000)), depth=2, max_items=10)
    assert len(node["children"]) == 10
    assert node["omitted"] == 990
    assert node["truncated"] is True
    assert node["size"] == 1000


def test_total_budget_bounds_the_tree() -> None:
    big = {str(i): "v" * 200 for i in range(50)}
    node = values.render(big, depth=2, max_size=1024)
    text = json.dumps(node)
    assert len(text) < 4 * 1024
    assert node["truncated"] is True
    assert node["omitted"] > 0


def test_huge_list_is_fast_and_cut() -> None:
    huge = list(range(2_000_000))
    started = time.perf_counter()
    node = values.render(huge, depth=3)
    assert time.perf_counter() - started < 0.5
    assert node["repr"].endswith("...")
    assert len(node["repr"]) < 200


def test_repr_failures_are_contained() -> None:
    assert values.render(BadRepr())["repr"] == "<repr failed: ValueError>"
    assert values.render(ExitRepr())["repr"] == "<repr failed: SystemExit>"
    assert values.render(WrongRepr())["repr"] == "<repr failed: TypeError>"
    node = values.render([BadRepr()], depth=2)
    assert node["repr"] == "[<repr failed: ValueError>]"


def test_huge_user_repr_capped() -> None:
    node = values.render(HugeRepr(), max_size=100)
    assert node["truncated"] is True
    assert len(node["repr"]) <= 103


def test_user_len_never_called() -> None:
    CostlyLen.calls = 0
    node = values.render(CostlyLen(), depth=2)
    assert "size" not in node
    assert CostlyLen.calls == 0


def test_proxy_class_and_getattr_never_touched() -> None:
    Proxy.touched = 0
    node = values.render(Proxy(), depth=3)
    assert node["type"].endswith("Proxy")
    assert Proxy.touched == 0


def test_cycles_do_not_recurse() -> None:
    a: list = []
    a.append(a)
    node = values.render(a, depth=4)
    assert node["children"][0]["value"].get("children") is None
    d: dict = {}
    d["self"] = d
    assert values.bounded_repr(d)[0] == "{'self': {'self': {'self': {...}}}}"


def test_big_int_and_long_string() -> None:
    assert values.bounded_repr(10**10000)[0].startswith("<int of ")
    text, cut = values.bounded_repr("y" * 10_000, 50)
    assert cut and len(text) == 53 and text.startswith("'yyy")


def test_stdlib_containers_bounded() -> None:
    counter = collections.Counter({i: i for i in range(100_000)})
    text, cut = values.bounded_repr(counter, 200)
    assert text.startswith("Counter({") and cut
    assert (
        values.bounded_repr(collections.defaultdict(list, a=[1]))[0]
        == "defaultdict(<class 'list'>, {'a': [1]})"
    )
    assert values.bounded_repr(collections.deque([1, 2]))[0] == "deque([1, 2])"
    assert values.bounded_repr((1,))[0] == "(1,)"
    assert values.bounded_repr(frozenset())[0] == "frozenset()"


def test_module_and_class_hide_bookkeeping_dunders() -> None:
    node = values.render(collections, depth=2)
    assert "__name__" not in keys(node) and "__builtins__" not in keys(node)
    node = values.render(Plain, depth=2)
    assert keys(node) == ["__init__"]


def test_type_names() -> None:
    assert values.type_name(int) == "int"
    assert values.type_name(collections.OrderedDict) == "collections.OrderedDict"


@pytest.mark.parametrize("depth", [0, -3, 99, "x"])
def test_out_of_range_depth_is_clamped(depth: object) -> None:
    node = values.render([1], depth=depth)  # type: ignore[arg-type]
    assert node["type"] == "list"


def test_json_ready() -> None:
    node = values.render({"a": Plain(), "b": b"\x00", "c": 1.5, "d": None, "e": {1, 2}}, depth=4)
    json.dumps(node)
