"""Probing commands (watch, trace, stack, monitor, tt, reset) against a real HTTP app, via the real CLI.

The target (tests/targets/instr_app.py) serves HTTP on loopback; its routes call tests/targets/instr_lib.py.
Each test runs the CLI with --json while a thread (or the test) sends a bounded number of requests, then
detaches and checks the target is alive and wrote nothing to stderr.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, peeka_cli, python_for

pytestmark = [pytest.mark.integration, pytest.mark.parallel]

FAST = ("3.9", "3.12", "3.14")
CHEAP = ("3.9", "3.11", "3.12", "3.13", "3.14")
SETTLE = 0.3  # the agent answers "start" just before it installs the probes


# ---------------------------------------------------------------- helpers
def http_get(port: int, path: str) -> tuple[int, Any, float]:
    """(status, body as JSON or else text, seconds) of one GET on loopback."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            status, data = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, data = exc.code, exc.read()
    elapsed = time.perf_counter() - started
    try:
        return status, json.loads(data), elapsed
    except ValueError:
        return status, data.decode(errors="replace"), elapsed


class App:
    def __init__(self, spawn: Any, version: str, tmp_path: Path) -> None:
        portfile = tmp_path / "port"
        self.version = version
        self.target = spawn(python_for(version), "instr_app.py", str(portfile))
        self.pid = self.target.pid
        self.port = int(portfile.read_text())
        out = peeka_cli("attach", str(self.pid), "--json")
        assert out.returncode == 0, out.stderr + out.stdout

    def get(self, path: str) -> tuple[int, Any, float]:
        return http_get(self.port, path)

    def send(self, paths: list[str], delay: float = 0.0) -> threading.Thread:
        """Send these requests in order from a background thread."""
        def run() -> None:
            for p in paths:
                self.get(p)
                if delay:
                    time.sleep(delay)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        out = peeka_cli("detach", str(self.pid), "--json")
        assert out.returncode == 0, out.stderr + out.stdout
        assert self.target.alive()
        assert self.target.stop() == "", "the target printed to stderr"


class CliStream:
    """One streaming CLI command (--json) running in the background."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, COLUMNS="200")
        self.proc = subprocess.Popen([sys.executable, "-m", "peeka", *args, "--json"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        try:
            self.start = json.loads(line)
        except ValueError:
            self.proc.kill()
            raise AssertionError(f"no start line: {line!r} {self.proc.communicate()}") from None
        assert self.start.get("type") == "start", self.start
        time.sleep(SETTLE)

    def finish(self, timeout: float = 30.0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        # Read through the text wrapper that already holds what followed the start line
        # (communicate() would read the raw pipe and lose it); a timer bounds the wait.
        timer = threading.Timer(timeout, self.proc.kill)
        timer.start()
        try:
            out = self.proc.stdout.read()  # type: ignore[union-attr]
            err = self.proc.stderr.read()  # type: ignore[union-attr]
            self.proc.wait()
        finally:
            timer.cancel()
            self.proc.stdout.close()  # type: ignore[union-attr]
            self.proc.stderr.close()  # type: ignore[union-attr]
        assert self.proc.returncode == 0, err + out
        lines = [json.loads(x) for x in out.splitlines() if x.strip()]
        assert lines and lines[-1].get("type") == "end", out
        events, end = lines[:-1], lines[-1]
        assert end["events"] == len(events)
        return events, end


def child(node: dict[str, Any], key: str) -> dict[str, Any]:
    for c in node.get("children", []):
        if c.get("key") == repr(key):
            return c["value"]
    raise AssertionError(f"no {key!r} in {node}")


def value(node: dict[str, Any]) -> Any:
    return ast.literal_eval(node["repr"])


def cli_json(*args: str) -> dict[str, Any]:
    out = peeka_cli(*args, "--json")
    assert out.returncode == 0, out.stderr + out.stdout
    return json.loads(out.stdout)


@pytest.fixture
def app_factory(spawn, tmp_path):
    def make(version: str) -> App:
        return App(spawn, version, tmp_path)

    return make


# ---------------------------------------------------------------- watch
@pytest.mark.parametrize("version", FAST)
def test_watch_sees_each_request_args_and_result(app_factory, version: str) -> None:
    app = app_factory(version)
    stream = CliStream("watch", str(app.pid), "instr_lib.handle", "-n", "5", "--timeout", "30")
    assert stream.start["functions"] == ["instr_lib.handle"]
    ids = [11, 12, 13, 14, 15]
    app.send([f"/handle/{i}" for i in ids]).join(20)
    events, end = stream.finish()
    assert end["reason"] == "limit" and end["dropped"] == 0
    assert len(events) == len(ids)
    seen = []
    for e in events:
        assert e["function"] == "instr_lib.handle" and e["location"] == "exit"
        assert e["cost_ms"] >= 2.0  # load() sleeps 2 ms
        assert e["thread"] != "MainThread"
        params = value(child(e["value"], "params"))
        result = value(child(e["value"], "result"))
        assert result == {"user": {"id": params["user_id"], "name": f"user-{params['user_id']}"},
                          "price": round(params["user_id"] * 10 * 1.2, 2)}
        seen.append(params["user_id"])
    assert sorted(seen) == ids
    app.close()


@pytest.mark.parametrize("version", FAST)
def test_watch_sees_alias_and_registry_calls(app_factory, version: str) -> None:
    app = app_factory(version)
    stream = CliStream("watch", str(app.pid), "instr_lib.handle", "params['user_id']", "-n", "3", "--timeout", "30")
    app.send(["/handle/1", "/alias/2", "/registry/3"]).join(20)
    events, end = stream.finish()
    assert end["reason"] == "limit"
    assert sorted(value(e["value"]) for e in events) == [1, 2, 3]
    app.close()


@pytest.mark.parametrize("version", FAST)
def test_watch_exception_only(app_factory, version: str) -> None:
    app = app_factory(version)
    stream = CliStream("watch", str(app.pid), "instr_lib.parse", "-e", "-n", "1", "--timeout", "30")
    thread = app.send(["/parse/7", "/parse/8", "/parse/bad"])
    events, end = stream.finish()
    thread.join(20)
    assert end["reason"] == "limit" and len(events) == 1
    e = events[0]
    assert e["location"] == "exception"
    assert value(child(e["value"], "params")) == {"text": "bad"}
    exc = child(e["value"], "exception")
    assert exc["type"] == "ValueError" and "bad input" in exc["repr"]
    app.close()


@pytest.mark.parametrize("version", FAST)
def test_watch_condition(app_factory, version: str) -> None:
    app = app_factory(version)
    # false: nothing is reported, --timeout ends the stream
    stream = CliStream("watch", str(app.pid), "instr_lib.handle", "--condition", "params['user_id'] > 100",
                       "--timeout", "1.5")
    app.send(["/handle/1", "/handle/2", "/handle/3"]).join(20)
    events, end = stream.finish()
    assert events == [] and end["reason"] == "timeout"
    # true for one request only
    stream = CliStream("watch", str(app.pid), "instr_lib.handle", "result['price']", "--condition",
                       "params['user_id'] == 2", "-n", "1", "--timeout", "30")
    app.send(["/handle/1", "/handle/2", "/handle/3"]).join(20)
    events, end = stream.finish()
    assert end["reason"] == "limit" and len(events) == 1
    assert value(events[0]["value"]) == 24.0
    app.close()


@pytest.mark.parametrize("version", FAST)
def test_watch_limit_ends_and_expression_errors_do_not(app_factory, version: str) -> None:
    app = app_factory(version)
    stream = CliStream("watch", str(app.pid), "instr_lib.handle", "params['nope']", "-n", "3", "--timeout", "30")
    thread = app.send([f"/handle/{i}" for i in range(6)])
    events, end = stream.finish()
    thread.join(20)
    assert end["reason"] == "limit" and len(events) == 3
    for e in events:
        assert "value" not in e
        assert e["error"].startswith("expression failed: KeyError")
    # the app kept serving, every request answered
    status, body, _ = app.get("/handle/9")
    assert status == 200 and body["user"]["id"] == 9
    app.close()


@pytest.mark.parametrize("version", CHEAP)
def test_watch_max_match_refused(app_factory, version: str) -> None:
    app = app_factory(version)
    out = peeka_cli("watch", str(app.pid), "instr_lib.*", "--max-match", "1", "--json")
    assert out.returncode == 2, out.stderr + out.stdout
    err = json.loads(out.stdout)
    m = re.search(r"matches (\d+) functions, more than --max-match 1", err["error"] + err.get("message", ""))
    assert m and int(m.group(1)) >= 10, err
    # and nothing was left installed
    assert cli_json("reset", str(app.pid))["count"] == 0
    app.close()


# ---------------------------------------------------------------- trace
@pytest.mark.parametrize("version", FAST)
def test_trace_tree_has_callees_with_costs(app_factory, version: str) -> None:
    app = app_factory(version)
    stream = CliStream("trace", str(app.pid), "instr_lib.handle", "-n", "1", "--timeout", "30")
    status, _, seconds = app.get("/handle/5")
    assert status == 200
    events, end = stream.finish()
    assert end["reason"] == "limit" and len(events) == 1
    tree = events[0]["tree"]
    assert tree["function"] == "instr_lib.handle" and tree["count"] == 1
    kids = {c["function"]: c for c in tree["children"]}
    assert "instr_lib.load" in kids and "instr_lib.price" in kids, kids.keys()
    assert kids["instr_lib.load"]["total_ms"] >= 2.0
    assert kids["instr_lib.load"]["count"] == 1 and kids["instr_lib.price"]["count"] == 1
    assert any("sleep" in c["function"] for c in kids["instr_lib.load"]["children"])
    assert sum(c["total_ms"] for c in tree["children"]) <= tree["total_ms"]
    assert tree["total_ms"] <= seconds * 1000
    app.close()


# ---------------------------------------------------------------- kinds of functions
@pytest.mark.parametrize("version", FAST)
def test_async_handler_cost_includes_awaits(app_factory, version: str) -> None:
    app = app_factory(version)
    stream = CliStream("watch", str(app.pid), "instr_lib.fetch", "-n", "2", "--timeout", "30")
    app.send(["/async/1", "/async/2"]).join(20)
    events, end = stream.finish()
    assert end["reason"] == "limit" and len(events) == 2
    for e in events:
        assert e["cost_ms"] >= 5.0, e
        n = value(child(e["value"], "params"))["n"]
        assert value(child(e["value"], "result")) == n + 1
    app.close()


@pytest.mark.parametrize("version", FAST)
def test_generator_recursion_decorated_and_method(app_factory, version: str) -> None:
    app = app_factory(version)
    pattern = r"^instr_lib\.(countdown|fact|decorated|Account\.balance)$"
    stream = CliStream("watch", str(app.pid), pattern, "-E", "-n", "8", "--timeout", "30")
    assert sorted(stream.start["functions"]) == ["instr_lib.Account.balance", "instr_lib.countdown",
                                                 "instr_lib.decorated", "instr_lib.fact"]
    app.send(["/gen/3", "/fact/5", "/deco/21", "/account/250"]).join(20)
    events, end = stream.finish()
    assert end["reason"] == "limit" and len(events) == 8
    by_fn: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_fn.setdefault(e["function"], []).append(e)
    (gen,) = by_fn["instr_lib.countdown"]
    assert value(child(gen["value"], "params")) == {"n": 3}
    facts = sorted((value(child(e["value"], "params"))["n"], value(child(e["value"], "result")))
                   for e in by_fn["instr_lib.fact"])
    assert facts == [(1, 1), (2, 2), (3, 6), (4, 24), (5, 120)]
    (deco,) = by_fn["instr_lib.decorated"]
    assert value(child(deco["value"], "result")) == 42
    (bal,) = by_fn["instr_lib.Account.balance"]
    assert value(child(bal["value"], "result")) == {"owner": "alice", "balance": 2.5}
    app.close()


@pytest.mark.parametrize("version", FAST)
def test_generators_report_cost_to_exhaustion_and_yields(app_factory, version: str) -> None:
    app = app_factory(version)
    stream = CliStream("watch", str(app.pid), r"^instr_lib\.(countdown|ticks)$", "-E", "-n", "2", "--timeout", "30")
    app.send(["/gen/3", "/agen/4"]).join(20)
    events, end = stream.finish()
    assert end["reason"] == "limit" and len(events) == 2
    by_fn = {e["function"]: e for e in events}
    gen, agen = by_fn["instr_lib.countdown"], by_fn["instr_lib.ticks"]
    assert gen["kind"] == "generator" and gen["yields"] == 3
    assert agen["kind"] == "asyncgen" and agen["yields"] >= 4  # its awaits suspend it too on 3.12+
    assert agen["cost_ms"] >= 4 * 2.0  # from first start to exhaustion, across its awaits
    app.close()


# ---------------------------------------------------------------- monitor
@pytest.mark.parametrize("version", FAST)
def test_monitor_counts_calls_and_failures(app_factory, version: str) -> None:
    app = app_factory(version)
    stream = CliStream("monitor", str(app.pid), "instr_lib.parse", "--cycle", "0.5", "-n", "2")
    paths = ["/parse/1", "/parse/bad", "/parse/2", "/parse/bad", "/parse/3", "/parse/4"]
    thread = app.send(paths)  # a few ms in all: well inside the two 0.5 s cycles
    events, end = stream.finish()
    thread.join(20)
    assert end["reason"] == "limit" and len(events) == 2
    rows = [e["functions"][0] for e in events]
    assert all(r["function"] == "instr_lib.parse" for r in rows)
    assert sum(r["calls"] for r in rows) == len(paths)
    assert sum(r["failures"] for r in rows) == 2
    assert sum(r["success"] for r in rows) == 4
    assert rows[0]["calls"] >= 1
    assert rows[-1]["total"]["count"] == len(paths)
    assert rows[-1]["total"]["buckets"][-1] == ["+Inf", len(paths)]
    app.close()


# ---------------------------------------------------------------- stack
@pytest.mark.parametrize("version", FAST)
def test_stack_shows_caller_chain(app_factory, version: str) -> None:
    app = app_factory(version)
    stream = CliStream("stack", str(app.pid), "instr_lib.load", "-n", "1", "--timeout", "30")
    app.send(["/handle/4"]).join(20)
    events, end = stream.finish()
    assert end["reason"] == "limit" and len(events) == 1
    names = [f["function"] for f in events[0]["stack"]]
    assert names[0] == "instr_lib.load"
    assert names[1] == "instr_lib.handle", names
    do_get = [i for i, n in enumerate(names) if n.endswith("do_GET")]
    assert do_get and do_get[0] == 2, names
    assert not any("peeka" in n for n in names), names
    app.close()


# ---------------------------------------------------------------- tt
@pytest.mark.parametrize("version", FAST)
def test_tt_record_list_show_replay(app_factory, version: str) -> None:
    app = app_factory(version)
    stream = CliStream("tt", str(app.pid), "instr_lib.handle", "-n", "3", "--timeout", "30")
    app.send(["/handle/1", "/handle/2", "/handle/3"]).join(20)
    events, end = stream.finish()
    assert end["reason"] == "limit" and len(events) == 3
    listed = cli_json("tt", str(app.pid), "--list")["records"]
    assert [r["index"] for r in listed] == [e["index"] for e in events]
    assert all(r["is_return"] for r in listed)
    index = listed[1]["index"]
    shown = cli_json("tt", str(app.pid), "--show", str(index))
    params = value(shown["params"])
    original = value(shown["outcome"])
    assert params["user_id"] in (1, 2, 3)
    assert original["user"]["id"] == params["user_id"]
    replayed = cli_json("tt", str(app.pid), "--replay", str(index))
    assert "exception" not in replayed
    assert value(replayed["result"]) == original
    # A call that raised SystemExit replays to the same outcome, reported (the agent's thread
    # running it must not end with it), and the agent goes on serving.
    stream = CliStream("tt", str(app.pid), "instr_lib.give_up", "-n", "1", "--timeout", "30")
    app.send(["/quit/7"]).join(20)
    events, end = stream.finish()
    assert end["reason"] == "limit" and len(events) == 1
    replayed = cli_json("tt", str(app.pid), "--replay", str(events[0]["index"]))
    assert replayed["exception"]["type"] == "SystemExit", replayed
    assert cli_json("tt", str(app.pid), "--clear")["cleared"] == 4
    app.close()


# ---------------------------------------------------------------- reset
@pytest.mark.parametrize("version", FAST)
def test_reset_restores_the_function(app_factory, version: str) -> None:
    app = app_factory(version)
    _, before, _ = app.get("/check")
    assert before["same_code"] and before["kwdefaults"] == "None" and not before["signature"]
    stream = CliStream("watch", str(app.pid), "instr_lib.handle", "--timeout", "60")
    app.send(["/handle/1", "/alias/2"]).join(20)
    _, during, _ = app.get("/check")
    if tuple(map(int, version.split("."))) >= (3, 12):
        assert during["same_code"] and "peeka" in during["tools"]
    else:
        assert not during["same_code"] and "_peeka_hook" in during["kwdefaults"]
    reset = cli_json("reset", str(app.pid))
    assert reset["removed"] == ["instr_lib.handle"] and reset["remaining"] == []
    events, end = stream.finish()
    assert end["reason"] == "reset" and len(events) == 2 and end["errors"] == 0  # no listener failed
    _, after, _ = app.get("/check")
    # 3.12 gets an equal copy of the code (its own lost its superinstructions to the probe:
    # test_probe_leaves_code_fast); the others their own code object back.
    assert after["same_code"] or (version == "3.12" and after["equal_code"]), after
    assert after["same_kwdefaults"] and after["kwdefaults"] == "None", after
    assert not after["signature"], after
    if tuple(map(int, version.split("."))) >= (3, 12):
        assert "peeka" not in after["tools"], after
    status, body, _ = app.get("/handle/7")
    assert status == 200 and body["user"]["id"] == 7
    app.close()


# ---------------------------------------------------------------- two clients
@pytest.mark.parametrize("version", FAST)
def test_two_clients_watch_different_functions(app_factory, version: str) -> None:
    app = app_factory(version)
    first = CliStream("watch", str(app.pid), "instr_lib.load", "params['user_id']", "-n", "3", "--timeout", "30")
    second = CliStream("watch", str(app.pid), "instr_lib.parse", "params['text']", "-n", "3", "--timeout", "30")
    a = app.send(["/handle/1", "/handle/2", "/handle/3"])
    b = app.send(["/parse/4", "/parse/5", "/parse/6"])
    a.join(20)
    b.join(20)
    events1, end1 = first.finish()
    events2, end2 = second.finish()
    assert end1["reason"] == end2["reason"] == "limit"
    assert {e["function"] for e in events1} == {"instr_lib.load"}
    assert {e["function"] for e in events2} == {"instr_lib.parse"}
    assert sorted(value(e["value"]) for e in events1) == [1, 2, 3]
    assert sorted(value(e["value"]) for e in events2) == ["4", "5", "6"]
    assert cli_json("reset", str(app.pid))["count"] == 0  # both streams took their probes off
    app.close()


# ---------------------------------------------------------------- a client that does not read
@pytest.mark.timing  # the host's time per call bounded
@pytest.mark.parametrize("version", ("3.12", "3.14"))
def test_slow_client_drops_are_counted_and_the_target_never_waits(app_factory, version: str) -> None:
    app = app_factory(version)
    _, plain, _ = app.get("/burst/60000")
    # A watch whose reader is stalled: its stdout pipe is never read while the burst runs, so the
    # CLI stops reading the socket, the agent's outbox (10,000) fills and further events are dropped.
    env = dict(os.environ, COLUMNS="200")
    proc = subprocess.Popen([sys.executable, "-m", "peeka", "watch", str(app.pid), "instr_lib.price", "-n",
                             "1000000", "--timeout", "5", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
    assert json.loads(proc.stdout.readline())["type"] == "start"  # type: ignore[union-attr]
    time.sleep(SETTLE)
    status, watched, _ = app.get("/burst/60000")
    assert status == 200
    out, err = proc.communicate(timeout=30)
    lines = [json.loads(x) for x in out.splitlines() if x.strip()]
    end = lines[-1]
    assert end["type"] == "end" and end["reason"] == "timeout", err
    assert end["dropped"] > 0 and end["events"] + end["dropped"] == 60000, end
    assert end["events"] == len(lines) - 1
    # the host paid for probes, never for the stalled reader: no more than a probe's cost per call
    assert watched["seconds"] < plain["seconds"] + 60000 * 50e-6, (plain, watched)
    app.close()
