"""trace's fold: the tree from a log of real profiler events, the same however the log is split.

The traced call runs for real under the recorder's own profile function (sys.setprofile, in this
interpreter); the log is then folded at once, and again in small pieces as the host's thread does
every FOLD_AT entries, and both trees must be identical and right.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
from peeka_agent import probes
from peeka_agent.commands import trace

pytestmark = pytest.mark.parallel


def leaf(x: int) -> int:
    return x + 1


def numbers(n: int) -> Any:
    for i in range(n):
        yield leaf(i)


def work() -> int:
    total = sum(leaf(i) for i in range(3))
    total += sum(numbers(4))
    try:
        divmod(1, 0)
    except ZeroDivisionError:
        total += 1
    return total


class Agent:
    state: dict[str, Any] = {}


def recorded() -> tuple[trace.Trace, probes.Call, list[Any]]:
    """The log of one real call of work(), recorded the way the agent records it."""
    stream = trace.Trace(Agent(), {"pattern": __name__ + ".work"})
    call = probes.Call(probes.Probe(probes.Engine(), work, __name__ + ".work"), 0)
    recorder = trace.Recorder(stream, call)
    recorder.start()
    work()
    recorder.stop()
    assert sys.getprofile() is None
    log = list(recorder.log)
    # The code swap (3.9-3.11) starts the profiler before the call of the original code, as here;
    # sys.monitoring (3.12+) starts it inside the call: the log begins after the root's call there.
    if probes.MONITORING:
        log = log[[i for i, e in enumerate(log) if type(e) is tuple and e[1] is work.__code__][0] + 1 :]
    return stream, call, log


def fold(stream: trace.Trace, call: probes.Call, log: list[Any], piece: int) -> dict[str, Any]:
    recorder = trace.Recorder(stream, call)
    for i in range(0, len(log), piece):
        recorder.log[:] = log[i : i + piece]
        recorder.fold()
    root = recorder.root or recorder._fold_state()
    return root.to_dict(0)


def test_fold_in_pieces_gives_the_same_tree() -> None:
    stream, call, log = recorded()
    whole = fold(stream, call, log, len(log))
    for piece in (1, 2, 3, 7):
        assert fold(stream, call, log, piece) == whole
    kids = {c["function"]: c for c in whole["children"]}
    assert kids["builtins.sum"]["count"] == 2 and kids["builtins.sum"]["c"]
    below_sum = {c["function"]: c for c in kids["builtins.sum"]["children"]}
    # Generators resumed by sum(): one call each, with all their time
    (genexpr,) = [c for name, c in below_sum.items() if "genexpr" in name]
    assert genexpr["count"] == 1 and [(c["function"], c["count"]) for c in genexpr["children"]] == [
        (__name__ + ".leaf", 3)
    ]
    gen = below_sum[__name__ + ".numbers"]
    assert gen["count"] == 1 and [(c["function"], c["count"]) for c in gen["children"]] == [(__name__ + ".leaf", 4)]
    assert kids["builtins.divmod"]["exceptions"] == 1 and kids["builtins.divmod"]["c"]
    assert all(c["min_ms"] <= c["max_ms"] <= c["total_ms"] for c in whole["children"])


def test_depth_cut_and_events_outside_the_call() -> None:
    stream, call, log = recorded()
    stream.max_depth = 1
    tree = fold(stream, call, log, 5)
    assert tree["children"] and all(c["children"] == [] for c in tree["children"])
    # The agent's own frames around the traced call leave no trace: after it returned, and with
    # the code swap before the call of the original code too.
    noise = [12345, (1, len), 12346, (2, leaf.__code__, -1), 12347]
    assert fold(stream, call, log + noise, 4) == fold(stream, call, log, 4)
    if not probes.MONITORING:
        assert fold(stream, call, noise + log, 4) == fold(stream, call, log, 4)


# -- generators and coroutines: one call from first start to final return, across awaits and yields
import asyncio  # noqa: E402
import time  # noqa: E402

SLEEP = 0.02
SPIN = 0.004


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def fetch_price(item: int) -> int:
    await asyncio.sleep(SLEEP)  # awaited: the loop runs other things meanwhile
    spin(SPIN)  # known compute after the await
    return item * 100


def items(n: int) -> Any:
    for i in range(n):
        yield i
        time.sleep(0.001)  # the generator's own time, after each resumption


async def get_item(item: int) -> int:
    price = await fetch_price(item)
    price += await fetch_price(item + 1)
    total = 0
    for i in items(3):
        spin(0.002)  # the consumer's time, while the generator is suspended
        total += i
    return price + total


def traced_tree(func: Any, run: Any) -> tuple[dict[str, Any], float]:
    """The tree of one real call of ``func`` through the real probe engine, and watch's cost."""
    stream = trace.Trace(Agent(), {"pattern": __name__ + "." + func.__name__})
    built: list[Any] = []
    stream.emit_later = lambda build, *args: built.append(build(*args))  # type: ignore[method-assign]
    engine = probes.Engine()
    engine.add(func, __name__ + "." + func.__name__, stream)
    try:
        run()
    finally:
        engine.shutdown()
    assert sys.getprofile() is None
    (event,) = built
    return event["tree"], event["cost_ms"]


def adds_up(node: dict[str, Any]) -> None:
    """total = self + awaited + suspended + sum(child total - child suspended), at every node."""
    parts = node["self_ms"] + node.get("awaited_ms", 0) + node.get("suspended_ms", 0)
    parts += sum(c["total_ms"] - c.get("suspended_ms", 0) for c in node["children"])
    assert abs(parts - node["total_ms"]) < 0.01 + 0.001 * node["total_ms"], node
    for child in node["children"]:
        adds_up(child)


def test_coroutine_tree_across_awaits() -> None:
    tree, cost = traced_tree(get_item, lambda: asyncio.run(get_item(1)))
    assert tree["total_ms"] == round(cost, 4)
    kids = {c["function"]: c for c in tree["children"]}
    fetch = kids[__name__ + ".fetch_price"]
    # Two calls, each its first start to its final return: the sleep and the compute after it.
    assert fetch["count"] == 2 and fetch["resumes"] == 2, fetch
    assert fetch["min_ms"] >= (SLEEP + SPIN) * 1000 and fetch["total_ms"] >= 2 * (SLEEP + SPIN) * 1000
    assert "awaited_ms" not in fetch  # what it awaits is its children's
    below = {c["function"]: c for c in fetch["children"]}
    assert below[__name__ + ".spin"]["total_ms"] >= 2 * SPIN * 1000 and below[__name__ + ".spin"]["count"] == 2
    (sleep,) = [c for c in fetch["children"] if c["function"].endswith(".sleep")]
    assert sleep["count"] == 2 and sleep["total_ms"] >= 2 * SLEEP * 1000 and sleep["awaited_ms"] >= SLEEP * 1000
    # The handler's own time is small: its awaits belong to fetch_price and what it awaits.
    assert tree["resumes"] == 2 and tree["self_ms"] < 5 and "awaited_ms" not in tree
    gen = kids[__name__ + ".items"]
    assert gen["count"] == 1 and gen["resumes"] == 3
    assert gen["suspended_ms"] >= 3 * 2.0 * 0.9  # its consumer's spin
    assert gen["total_ms"] >= gen["suspended_ms"] + 3 * 1.0
    adds_up(tree)


async def delegate() -> int:
    return await fetch_price(3)


def test_awaited_child_matches_watch_of_the_same_call() -> None:
    """The child's node is what a watch on it reports for the same call."""
    watched: list[float] = []

    class Watch(probes.Listener):
        def on_exit(self, call: probes.Call) -> None:
            watched.append(call.end - call.start)

    engine = probes.Engine()
    engine.add(fetch_price, __name__ + ".fetch_price", Watch())
    try:
        tree, _ = traced_tree(delegate, lambda: asyncio.run(delegate()))
    finally:
        engine.shutdown()
    (fetch,) = tree["children"]
    (ns,) = watched
    # Within the probes' own bookkeeping around the call (a few us each side).
    assert abs(fetch["total_ms"] - ns / 1e6) < 0.2, (fetch, ns)


async def spawns() -> int:
    a, b = await asyncio.gather(fetch_price(1), fetch_price(2))  # two tasks, run by the loop
    task = asyncio.ensure_future(fetch_price(3))
    return a + b + await task


def test_spawned_tasks_are_shown_as_tasks() -> None:
    tree, _ = traced_tree(spawns, lambda: asyncio.run(spawns()))
    # Their bodies run as the loop's steps, not below this call: no fetch_price node, but the
    # tasks, how many, their outcome and how long the call waited for them.
    assert not [c for c in tree["children"] if c["function"].endswith(".fetch_price")], tree
    (tasks,) = tree["tasks"]
    assert tasks["function"] == __name__ + ".fetch_price" and tasks["count"] == 3 and tasks["done"] == 3
    assert tasks["awaited_ms"] >= 2 * (SLEEP + SPIN) * 1000  # two waits: the gather, then the task
    assert tree["awaited_ms"] >= tasks["awaited_ms"] * 0.99
    adds_up(tree)


def test_the_cli_shows_awaits_yields_resumes_and_tasks() -> None:
    from rich.console import Console

    from peeka.commands import trace as cli_trace

    tree, _ = traced_tree(spawns, lambda: asyncio.run(spawns()))
    console = Console(record=True, width=300)
    cli_trace.console, saved = console, cli_trace.console
    try:
        cli_trace.render_event({"thread": "MainThread", "tree": tree})
    finally:
        cli_trace.console = saved
    text = console.export_text()
    assert "self " in text and "awaited " in text and "2 resumes" in text, text
    assert f"task {__name__}.fetch_price x3 (3 done; awaited" in text, text


async def ticks(n: int) -> Any:
    for i in range(n):
        await asyncio.sleep(0.002)  # awaited inside the async generator
        yield i


async def slow() -> None:
    await asyncio.sleep(1)


async def edges() -> int:
    total = 0
    async for i in ticks(3):
        spin(0.001)
        total += i
    try:
        await asyncio.wait_for(slow(), 0.01)  # cancelled mid-await
    except asyncio.TimeoutError:
        total += 1
    return total


def test_async_generators_and_cancelled_awaits() -> None:
    tree, cost = traced_tree(edges, lambda: asyncio.run(edges()))
    kids = {c["function"]: c for c in tree["children"]}
    gen = kids[__name__ + ".ticks"]
    # One call across its awaits and yields: it awaited its sleeps, its consumer spun meanwhile.
    assert gen["count"] == 1 and gen["resumes"] >= 6, gen
    assert gen["suspended_ms"] >= 3 * 1.0 * 0.9 and gen["total_ms"] >= 3 * 2.0 + gen["suspended_ms"]
    (sleeps,) = [c for c in gen["children"] if c["function"].endswith(".sleep")]
    assert sleeps["count"] == 3 and sleeps["total_ms"] >= 3 * 2.0
    assert tree["total_ms"] == round(cost, 4) and cost >= 10.0  # the wait_for's 10 ms timeout included
    adds_up(tree)
