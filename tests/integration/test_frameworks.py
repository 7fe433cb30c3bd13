"""trace and watch on real services, every Python here: uvicorn + Starlette, a plain asyncio server,
Django's server (a sync and an async view), gunicorn pre-fork (sync and gthread workers: a worker, the
master, a worker the master started again), and export's span trees into a real OTLP receiver.

Ground truth is what the handlers do (tests/targets/webshop/work.py): each request awaits (or
sleeps) SLEEP_MS in fetch_price/find, computes SPIN_MS after it, and the async handler then
gathers two tasks that each await SLEEP_MS. What a user checks by eye must hold: the awaited child
costs what it awaited and computed, the same as watch says for the same call; every node's total is
its self time plus its awaits plus its children; the tasks are there; the root fits inside the
request the client timed. One target per framework per version, two requests each.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import VERSIONS, peeka_cli, python_for, target_web_env
from test_export import Sink, exporters, wait_for  # noqa: F401  (exporters: a fixture)
from test_instrument import SETTLE, http_get

from peeka.client import AgentClient
from peeka.process import TargetProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180), pytest.mark.parallel]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "targets"))
from webshop.work import SLEEP_MS, SPIN_MS  # noqa: E402

REQUESTS = (3, 4, 5)


class WebApp:
    def __init__(self, spawn: Any, version: str, tmp_path: Path, script: str, *args: str) -> None:
        portfile = tmp_path / f"{script}.port"
        self.target = spawn(python_for(version), script, str(portfile), *args, env=target_web_env(),
                            ready_timeout=60.0)
        self.pid = self.target.pid
        self.port = int(portfile.read_text())

    def get(self, path: str) -> tuple[int, Any, float]:
        return http_get(self.port, path)

    def close(self, detach: bool = False) -> None:
        if detach:  # (every other test detaches; here once per version, from a live server)
            out = peeka_cli("detach", str(self.pid), "--json")
            assert out.returncode == 0, out.stderr + out.stdout
            assert self.get("/items/1")[0] == 200
        assert self.target.alive()
        err = self.target.stop()
        assert "Traceback" not in err and "peeka" not in err.lower(), err


def find(node: dict[str, Any], name: str) -> list[dict[str, Any]]:
    found = [node] if node["function"] == name else []
    for c in node["children"]:
        found += find(c, name)
    return found


def adds_up(node: dict[str, Any]) -> None:
    """total = self + awaited + suspended + sum(child total - child suspended), at every node."""
    parts = node.get("self_ms", node["total_ms"]) + node.get("awaited_ms", 0) + node.get("suspended_ms", 0)
    parts += sum(c["total_ms"] - c.get("suspended_ms", 0) for c in node["children"])
    assert abs(parts - node["total_ms"]) <= 0.02 + 0.002 * node["total_ms"], node
    for child in node["children"]:
        adds_up(child)


def attach(pid: int) -> None:
    """The real CLI attaches (gdb on 3.9-3.13, sys.remote_exec on 3.14); the checks then talk to the
    agent over its socket, two connections at once, as the CLI's streams do."""
    out = peeka_cli("attach", str(pid), "--json", timeout=90)
    assert out.returncode == 0, out.stderr + out.stdout


def open_stream(pid: int, command: str, pattern: str, n: int) -> tuple[AgentClient, Iterator[Any]]:
    client = AgentClient(TargetProcess(pid), timeout=30).open()
    stream = client.stream(command, {"pattern": pattern, "limit": n, "timeout": 90})
    assert next(stream).data["functions"] == [pattern]
    return client, stream


def events_of(client: AgentClient, stream: Iterator[Any]) -> list[dict[str, Any]]:
    events = []
    with client:
        for message in stream:
            if message.type == "end":
                assert message.reason == "limit", message
                return events
            events.append(message.data)
    raise AssertionError("the stream ended without its end")


def trace_and_watch(pid: int, root: str, child: str | None, get: Any,
                    paths: list[str]) -> list[tuple[dict[str, Any], float | None, float]]:
    """Trace ``root`` and watch ``child`` at once over these requests, one at a time: per request
    (the trace event, watch's cost of the child, the client's seconds)."""
    attach(pid)
    trace = open_stream(pid, "trace", root, len(paths))
    watch = open_stream(pid, "watch", child, len(paths)) if child else None
    time.sleep(SETTLE)  # the agent answers "start" just before it installs the probes
    seconds = []
    for path in paths:
        status, _, elapsed = get(path)
        assert status == 200
        seconds.append(elapsed)
    trees = events_of(*trace)
    costs: list[float | None] = [w["cost_ms"] for w in events_of(*watch)] if watch else [None] * len(paths)
    assert len(trees) == len(costs) == len(paths)
    return list(zip(trees, costs, seconds))


def close_enough(pairs: list[tuple[float, float]]) -> None:
    """Trace's and watch's costs of the same calls agree (two probes' clock readings around each
    call): judged on the median call, as a thread descheduled between two readings on a loaded
    machine can put a few ms into one of them."""
    diffs = sorted(abs(a - b) - (1.0 + 0.1 * b) for a, b in pairs)
    assert diffs[len(diffs) // 2] <= 0, pairs


def check_tree(event: dict[str, Any], watched_ms: float | None, seconds: float, child: str,
               asynchronous: bool) -> float:
    """The checks on one tree; returns the child node's total."""
    tree = event["tree"]
    assert tree["total_ms"] <= seconds * 1000  # inside the request the client timed
    adds_up(tree)
    # The awaited (or slept) child: one call from its first start to its final return, what it
    # waited plus what it computed, the same as watch measured for the same call.
    nodes = find(tree, child)
    assert nodes and sum(n["count"] for n in nodes) == 1, tree
    (node,) = [n for n in nodes if n["count"] == 1]
    assert node["total_ms"] >= SLEEP_MS + SPIN_MS * 0.9, node
    (spin,) = find(node, "webshop.work.spin")
    assert spin["total_ms"] >= SPIN_MS * 0.9 and spin["count"] == 1
    if asynchronous:
        assert node["resumes"] >= 1
        (sleep,) = [c for c in node["children"] if c["function"] == "asyncio.tasks.sleep"]
        # The wait is the sleep's (awaited: the part when the loop ran other things, most of it).
        assert sleep["total_ms"] >= SLEEP_MS and sleep["awaited_ms"] >= SLEEP_MS / 2 and "awaited_ms" not in node
        (handler,) = find(tree, "webshop.work.get_item")
        (tasks,) = handler["tasks"]  # the gather's two tasks, which ran as the loop's own steps
        assert tasks["function"] == "webshop.work.fetch_stock" and tasks["count"] == 2 and tasks["done"] == 2
        assert tasks["awaited_ms"] >= SLEEP_MS * 0.95 and handler["awaited_ms"] >= tasks["awaited_ms"]
        assert handler["total_ms"] >= 2 * SLEEP_MS + SPIN_MS * 0.9
    else:
        (sleep,) = [c for c in node["children"] if c["function"] == "time.sleep"]
        assert sleep["total_ms"] >= SLEEP_MS * 0.95 and sleep.get("c")
    return float(node["total_ms"])


def check(pid: int, root: str, child: str, get: Any, path: str, asynchronous: bool) -> None:
    pairs = []
    for event, watched, seconds in trace_and_watch(pid, root, child, get, [path % i for i in REQUESTS]):
        assert watched is not None
        pairs.append((check_tree(event, watched, seconds, child, asynchronous), watched))
    close_enough(pairs)


@pytest.mark.parametrize("version", VERSIONS)
def test_uvicorn_starlette_and_its_exported_spans(spawn, exporters, tmp_path, version: str) -> None:  # noqa: F811
    app = WebApp(spawn, version, tmp_path, "asgi_target.py")
    check(app.pid, "__main__.item_view", "webshop.work.fetch_price", app.get, "/items/%d", True)
    check_export(app, exporters, "__main__.item_view")
    app.close(detach=True)


def check_export(app: WebApp, start_exporter: Any, root: str) -> None:
    """export --trace ROOT --watch fetch_price: the same tree as nested spans in a real OTLP receiver;
    every child span lies within its parent, and the awaited child's span lasts what export's watch
    span of the same call lasts (from its first start to its final return, across the await)."""
    sink = Sink("http")
    exp = start_exporter("--pid", str(app.pid), "--trace", root, "--watch", "webshop.work.fetch_price",
                    "--keep-agent", env=sink.env())
    try:
        exp.wait_up(app.pid)
        time.sleep(SETTLE)
        sent = [app.get(f"/items/{i}") for i in REQUESTS]
        assert all(status == 200 for status, _, _ in sent)
        n = len(REQUESTS)
        wait_for(lambda: len(sink.spans.named(root)) >= n
                 and len(sink.spans.named("webshop.work.fetch_price")) >= 2 * n, what=f"{n} trees and {n} watch spans")
        assert exp.stop() == 0, exp.output()
    finally:
        sink.stop()
    spans = sink.spans.items
    by_id = {s["span"]: s for s in spans}
    roots = sink.spans.named(root)
    assert len(roots) == len(REQUESTS) and all(r["parent"] == "" for r in roots)
    for r in roots:  # the gather's tasks run as the loop's steps: a span for the wait on them, below the call
        (wait,) = [k for k in spans if k["parent"] == r["span"] and k["name"].startswith("await ")]
        assert wait["name"] == "await webshop.work.fetch_stock (2 tasks: 2 done)", wait["name"]
        assert wait["end"] - wait["start"] >= SLEEP_MS * 1e6
    for span in spans:  # every child within its parent
        parent = by_id.get(span["parent"])
        if parent is not None:
            assert parent["start"] <= span["start"] <= span["end"] <= parent["end"], (span["name"], parent["name"])
            assert span["trace"] == parent["trace"]
    prices = sink.spans.named("webshop.work.fetch_price")
    watched = [s for s in prices if s["parent"] == ""]
    in_trees = [s for s in prices if s["parent"]]
    assert len(watched) == len(in_trees) == len(REQUESTS)
    pairs = []
    for span in in_trees:
        same = min(watched, key=lambda w: abs(w["start"] - span["start"]))  # the same call
        ms = (span["end"] - span["start"]) / 1e6
        assert ms >= SLEEP_MS + SPIN_MS * 0.9
        pairs.append((ms, (same["end"] - same["start"]) / 1e6))
        assert by_id[span["parent"]]["name"] == "webshop.work.get_item"
        assert [k["name"] for k in spans if k["parent"] == span["span"]] == ["asyncio.tasks.sleep", "webshop.work.spin"]
    close_enough(pairs)


@pytest.mark.parametrize("version", VERSIONS)
def test_plain_asyncio_server(spawn, tmp_path, version: str) -> None:
    app = WebApp(spawn, version, tmp_path, "asyncio_target.py")
    check(app.pid, "__main__.answer", "webshop.work.fetch_price", app.get, "/items/%d", True)
    app.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_django_sync_and_async_views(spawn, tmp_path, version: str) -> None:
    app = WebApp(spawn, version, tmp_path, "django_target.py")
    check(app.pid, "webshop.djangoviews.item", "webshop.work.find", app.get, "/items/%d", False)
    # An async view under Django's WSGI server runs in asgiref's event loop on another thread.
    check(app.pid, "webshop.djangoviews.item_async", "webshop.work.fetch_price", app.get, "/async/items/%d", True)
    app.close()


def worker_pids(pidfile: Path) -> list[int]:
    return [int(x) for x in pidfile.read_text().split()] if pidfile.exists() else []


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_gunicorn_prefork(spawn, tmp_path, version: str, worker: str) -> None:
    pidfile = tmp_path / "workers"
    app = WebApp(spawn, version, tmp_path, "gunicorn_target.py", str(pidfile), worker)
    (first,) = worker_pids(pidfile)
    check(first, "webshop.wsgiapp.application", "webshop.work.find", app.get, "/items/%d", False)
    if worker == "sync":  # the master and a restarted worker: the same for either worker class
        # The master: attached too, its main thread in gunicorn's arbiter loop.
        out = peeka_cli("thread", str(app.pid), "--json", timeout=90)
        assert out.returncode == 0, out.stderr
        assert "gunicorn/arbiter.py" in out.stdout, out.stdout[:2000]
        # A worker the master starts again after the first died: a fresh process, traced the same way.
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(worker_pids(pidfile)) < 2:
            assert time.monotonic() < deadline, "the master started no new worker"
            time.sleep(0.05)
        while app.get("/items/1")[0] != 200:  # serving
            assert time.monotonic() < deadline
        again = worker_pids(pidfile)[-1]
        for event, watched, seconds in trace_and_watch(again, "webshop.wsgiapp.application", None, app.get,
                                                       ["/items/5"]):
            check_tree(event, watched, seconds, "webshop.work.find", False)
    assert app.get("/items/2")[0] == 200 and app.target.alive()
    err = app.target.stop()
    assert "Traceback" not in err and "peeka" not in err.lower(), err
