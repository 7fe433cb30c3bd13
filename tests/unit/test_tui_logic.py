"""The TUI's pure parts: the command line (the CLI's own parser, the agent's arguments), the Top
view's caller/callee tree from collapsed stacks, the Tasks view's grouping."""

from __future__ import annotations

import pytest

from peeka.errors import UsageError
from peeka.tui.commandline import parse
from peeka.tui.views.tasks import group_tasks
from peeka.tui.views.top import function_tree

pytestmark = pytest.mark.parallel


def test_the_command_line_takes_the_clis_verbs_and_options() -> None:
    watch = parse("watch shop.orders.place -n 5 -c 'cost > 1' -x 3", 42)
    assert watch.stream and watch.verb == "watch"
    assert watch.args["pattern"] == "shop.orders.place" and watch.args["limit"] == 5
    assert watch.args["condition"] == "cost > 1" and watch.args["depth"] == 3 and watch.args["at"] == ["finish"]
    inspect = parse("inspect 'len(shop.CART)'", 42)
    assert not inspect.stream and inspect.args["expression"] == "len(shop.CART)"
    assert parse("thread -b", 42).args["blocked"] is True
    assert parse("sm 'shop.*' -n 3", 42).args == {"pattern": "shop.*", "detail": False, "regex": False, "limit": 3}
    assert parse("monitor shop.f --cycle 2", 42).args["cycle"] == 2.0


@pytest.mark.parametrize(("line", "says"), [
    ("watch", "Missing argument"),  # click's own words, from the CLI's command
    ("watch a.b -n 0", "-n"),
    ("watch a.b --bogus", "--bogus"),
    ("top", "not available"),
    ("frobnicate x", "unknown verb"),
    ("inspect --help", "no help"),
    ("watch 'a.b", "quote"),
    ("", "empty"),
])
def test_bad_command_lines_say_what_was_wrong(line: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(line, 42)
    assert says in caught.value.message + caught.value.help


def test_function_tree_splits_callers_and_callees() -> None:
    stacks = [["thread a;main;serve;handle;parse", 3.0], ["thread b;main;serve;handle;render;escape", 2.0],
              ["thread c;cron;handle", 1.0], ["thread d;main;idle", 9.0]]
    callers, callees = function_tree(stacks, "handle")
    assert callers == {"main → serve": 5.0, "cron": 1.0}
    assert callees.samples == 6.0
    assert {name: node.samples for name, node in callees.children.items()} == {"parse": 3.0, "render": 2.0}
    assert callees.children["render"].children["escape"].samples == 2.0


def test_tasks_group_by_loop_stack_and_await() -> None:
    frames = [{"function": "Event.wait", "file": "locks.py", "line": 212}, {"function": "waiter", "file": "t.py", "line": 3}]
    result = {"loops": [{"id": 1, "thread": "loop", "tasks": [
        {"name": f"w{i}", "state": "pending", "frames": frames, "awaits": {"kind": "event"}} for i in range(3)
    ] + [{"name": "other", "state": "pending", "frames": frames[1:], "awaits": {"kind": "sleep"}}]}]}
    groups = sorted(group_tasks(result).values(), key=lambda g: -len(g.tasks))
    assert [[t["name"] for t in g.tasks] for g in groups] == [["w0", "w1", "w2"], ["other"]]
