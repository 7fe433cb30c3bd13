"""Qualified names (``Class.method``, nested classes, static and class methods, properties) in what
Peeka shows from frames and code objects: thread stacks, top, trace trees. 3.11+ code objects carry
them; on 3.9 and 3.10 the agent finds each code's function in its module (agent/compat.py qualname).
Ground truth: the target's own classes (tests/targets/qualname_target.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import VERSIONS, python_for

from peeka.attach import attach, detach

pytestmark = [pytest.mark.integration, pytest.mark.parallel, pytest.mark.timeout(120)]


def _functions(node: dict[str, Any]) -> set[str]:
    found = {node["function"]}
    for child in node.get("children", []):
        found |= _functions(child)
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_methods_show_with_their_classes(spawn, version: str) -> None:
    target = spawn(python_for(version), "qualname_target.py")
    client, _ = attach(target.pid, timeout=60)
    try:
        with client:
            threads = {t["name"]: t for t in client.request("thread", {})["threads"]}
            main = [f["function"] for f in threads["MainThread"]["frames"]]
            assert "Shop.Desk.serve" in main, main
            cruncher = [f["function"] for f in threads["cruncher"]["frames"]]
            assert "Cruncher.start" in cruncher, cruncher
            deadline = time.monotonic() + 20
            labels: set[str] = set()
            while "__main__.Cruncher.crunch" not in labels and time.monotonic() < deadline:
                for message in client.stream("top", {"interval": 1.0, "limit": 1, "functions": 50}):
                    data = getattr(message, "data", None)
                    if isinstance(data, dict) and data.get("type") == "summary":
                        labels |= {f["function"] for f in data["functions"]}
            assert "__main__.Cruncher.crunch" in labels, sorted(labels)
            trees = [m.data for m in client.stream("trace", {"pattern": "__main__.Shop.Desk.tick", "limit": 4})
                     if isinstance(getattr(m, "data", None), dict) and "tree" in m.data]
            names = set().union(*(_functions(t["tree"]) for t in trees))
            assert {"__main__.Shop.Desk.tick", "__main__.Shop.price", "__main__.Shop.Desk.busy"} <= names, names
    finally:
        detach(target.pid)
