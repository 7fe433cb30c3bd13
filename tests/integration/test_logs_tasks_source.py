"""logger, tasks and source against a real target on every Python, attached the real way, via the real CLI.

The target (tests/targets/runtime_target.py) logs "order N" (INFO) and "debug order N" (DEBUG) every
20 ms into a log file, runs two asyncio loops with a server, clients and waiting tasks, and imports
runtime_lib.py from a per-version copy the source test edits. One target per version; the first
command attaches (3.14: sys.remote_exec, else gdb), detach is tested last and the target must
outlive it with an empty stderr.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import TARGETS, VERSIONS, Target, peeka_cli, python_for
from test_instrument import cli_json

pytestmark = [pytest.mark.integration, pytest.mark.parallel]

EXTRA_TASKS = 20


class Runtime:
    def __init__(self, process: Target, workdir: Path, version: str) -> None:
        self.process = process
        self.pid = str(process.pid)
        self.log = workdir / "app.log"
        self.lib = workdir / "lib" / "runtime_lib.py"
        self.version = version

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def last_order(self) -> int:
        numbers = [int(m.group(1)) for m in re.finditer(r"^INFO app\.orders order (\d+)$", self.log.read_text(), re.M)]
        return numbers[-1]

    def debug_after(self, number: int) -> list[str]:
        return [line for line in self.log_lines()
                if line.startswith("DEBUG") and int(line.rsplit(" ", 1)[1]) > number]


def wait_for(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


@pytest.fixture(scope="module", params=VERSIONS)
def runtime(request: pytest.FixtureRequest) -> Iterator[Runtime]:
    python = python_for(request.param)
    workdir = Path(tempfile.mkdtemp(prefix="pk-rt-"))
    (workdir / "lib").mkdir()
    shutil.copy(TARGETS / "runtime_lib.py", workdir / "lib" / "runtime_lib.py")
    process = Target(python, "runtime_target.py", str(workdir / "lib"), str(workdir / "app.log"), str(EXTRA_TASKS),
                     env={"PYTHONDONTWRITEBYTECODE": "1"})
    try:
        yield Runtime(process, workdir, request.param)
        assert process.alive(), "the target died"
    finally:
        peeka_cli("detach", str(process.pid))
        err = process.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    assert err == "", "the target wrote to stderr: " + err


def stream_json(*args: str) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """(start, events, end) of a CLI stream that ends by itself (-n or --timeout)."""
    out = peeka_cli(*args, "--json")
    assert out.returncode == 0, out.stderr + out.stdout
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    start, events, end = lines[0], lines[1:-1], lines[-1]
    assert start["type"] == "start" and end["type"] == "end" and end["events"] == len(events)
    return start, events, end


def fails(*args: str) -> str:
    out = peeka_cli(*args)
    assert out.returncode != 0, out.stdout
    return out.stderr + out.stdout


# ---------------------------------------------------------------- logger


def test_logger_lists_levels_and_where_handlers_write(runtime: Runtime) -> None:
    result = cli_json("logger", runtime.pid)
    loggers = {entry["name"]: entry for entry in result["loggers"]}
    assert {"root", "app", "app.orders", "app.audit"} <= set(loggers)
    app = loggers["app"]
    assert app["level"] == "INFO" and app["effective_level"] == "INFO"
    (handler,) = app["handlers"]
    assert handler["type"] == "logging.FileHandler"
    assert handler["writes_to"]["file"] == str(runtime.log)
    assert handler["format"] == "%(levelname)s %(name)s %(message)s"
    orders = loggers["app.orders"]
    assert orders["level"] == "NOTSET" and orders["effective_level"] == "INFO" and orders["propagate"]
    audit = loggers["app.audit"]
    assert not audit["propagate"]
    assert audit["handlers"][0]["type"] == "logging.handlers.SocketHandler"
    assert audit["handlers"][0]["writes_to"]["address"] == "127.0.0.1:9"
    assert [h["type"] for h in loggers["root"]["handlers"]] == ["logging.NullHandler"]
    assert loggers["root"]["level"] == "WARNING"
    text = peeka_cli("logger", runtime.pid).stdout
    assert "app.orders" in text and str(runtime.log) in text


def test_logger_level_change_takes_effect_and_reset_restores(runtime: Runtime) -> None:
    before = runtime.last_order()
    assert runtime.debug_after(0) == []  # INFO only so far
    changed = cli_json("logger", runtime.pid, "--name", "app.orders", "--level", "debug")
    assert changed["level"] == "DEBUG" and changed["previous_level"] == "NOTSET"
    assert changed["warnings"] == []
    assert wait_for(lambda: runtime.debug_after(before)), "no DEBUG record after the level change"
    listed = {e["name"]: e for e in cli_json("logger", runtime.pid, "--name", "app")["loggers"]}
    assert listed["app.orders"]["original_level"] == "NOTSET" and listed["app.orders"]["effective_level"] == "DEBUG"

    reset = cli_json("reset", runtime.pid)
    assert reset["loggers"] == [{"name": "app.orders", "level": "NOTSET", "restored": True}]
    after_reset = runtime.last_order()
    # More records keep coming (a record every 20 ms, slower on a busy machine), none of them DEBUG.
    assert wait_for(lambda: runtime.last_order() > after_reset + 5), "the logger stopped writing after reset"
    assert runtime.debug_after(after_reset + 1) == []
    assert cli_json("logger", runtime.pid, "--name", "app.orders")["changed"] == {}


@pytest.mark.timing  # the rate cap: records counted over 1.5 s of a ~50/s logger
def test_logger_follow_streams_records_and_removes_its_handler(runtime: Runtime) -> None:
    start, events, end = stream_json("logger", runtime.pid, "--follow", "--name", "app.orders", "-n", "5",
                                     "--timeout", "30")
    assert start["logger"] == "app.orders"
    assert end["reason"] == "limit" and len(events) == 5
    numbers = []
    for event in events:
        assert event["logger"] == "app.orders" and event["level"] == "INFO"
        assert event["thread"] == "logger-thread" and event["function"] == "log_forever"
        assert event["file"].endswith("runtime_target.py")
        numbers.append(int(event["message"].split()[-1]))
    assert numbers == list(range(numbers[0], numbers[0] + 5))
    # the threshold: nothing at WARNING or above is logged, so the timeout ends the stream
    _, events, end = stream_json("logger", runtime.pid, "--follow", "--name", "app", "--level", "WARNING",
                                 "--timeout", "0.5")
    assert events == [] and end["reason"] == "timeout"
    # below the logger's effective level: the start says why DEBUG records would not come
    start, events, _ = stream_json("logger", runtime.pid, "--follow", "--name", "app.orders", "--level", "DEBUG",
                                   "--timeout", "0.3")
    assert any("effective level is INFO" in note for note in start["notes"])
    assert events and all(event["level"] == "INFO" for event in events)
    # the rate cap: the target logs ~50 records/s; above 10/s the rest are only counted
    start, events, end = stream_json("logger", runtime.pid, "--follow", "--name", "app", "--max-rate", "10",
                                     "--timeout", "1.5")
    assert start["max_rate"] == 10
    assert 5 <= len(events) <= 20 and end["dropped"] >= 20
    handlers = cli_json("logger", runtime.pid, "--name", "app")["loggers"]
    assert not any(h["peeka"] for entry in handlers for h in entry["handlers"])


def test_logger_bad_input(runtime: Runtime) -> None:
    assert "no logger named 'app.order'" in fails("logger", runtime.pid, "--name", "app.order", "--level", "DEBUG")
    assert "similar: app.orders" in fails("logger", runtime.pid, "--name", "app.order", "--level", "DEBUG")
    assert "unknown level 'LOUD'" in fails("logger", runtime.pid, "--name", "app", "--level", "LOUD")
    assert "--level needs --name" in fails("logger", runtime.pid, "--level", "DEBUG")
    assert "no logger named 'nope'" in fails("logger", runtime.pid, "--follow", "--name", "nope")


# ---------------------------------------------------------------- tasks


def test_tasks_of_a_server_and_what_each_awaits(runtime: Runtime) -> None:
    result = cli_json("tasks", runtime.pid)
    loops = {loop["thread"]: loop for loop in result["loops"]}
    assert set(loops) == {"loop-main", "loop-side", "loop-busy"}
    (busy,) = loops["loop-busy"]["tasks"]
    assert busy["name"] == "busy" and busy["state"] == "running" and busy["awaits"]["kind"] == "running"
    assert busy["frames"][0]["function"] == "busy"  # its live stack, from the thread running it
    main = loops["loop-main"]
    assert main["running"]
    tasks = {t["name"]: t for t in main["tasks"]}

    def awaits(name: str) -> dict[str, Any]:
        return tasks[name]["awaits"]

    def functions(name: str) -> list[str]:
        return [f["function"].rsplit(".", 1)[-1] for f in tasks[name]["frames"]]

    assert awaits("sleeper")["kind"] == "sleep" and awaits("sleeper")["what"] == "asyncio.sleep(3600)"
    assert 3000 < awaits("sleeper")["wakes_in"] <= 3600
    assert functions("sleeper") == ["sleep", "sleeper"]  # innermost first
    assert tasks["sleeper"]["frames"][1]["file"] == str(TARGETS / "runtime_target.py")
    assert awaits("consumer")["kind"] == "queue get" and awaits("consumer")["size"] == 0
    assert awaits("event-waiter")["kind"] == "event" and awaits("event-waiter")["is_set"] is False
    assert awaits("lock-waiter")["kind"] == "lock" and awaits("lock-waiter")["locked"] is True
    assert functions("lock-waiter")[0] == "acquire" and functions("lock-waiter")[-1] == "lock_waiter"
    assert awaits("lock-holder")["kind"] == "sleep"
    assert awaits("parent") == {"kind": "task", "what": "child", "task_id": tasks["child"]["id"]}
    assert tasks["child"]["awaited_by"] == ["parent"]
    for name in ("client-0", "client-1"):
        assert awaits(name)["kind"] == "stream read" and awaits(name)["what"].startswith("StreamReader from 127.0.0.1:")
        assert functions(name)[-1] == "client"
    handlers = [t for t in main["tasks"] if t["frames"] and t["frames"][-1]["function"] == "handle_client"]
    assert len(handlers) == 2  # the server side of both connections, waiting on readline
    assert all(t["awaits"]["kind"] == "stream read" and t["awaits"]["buffered"] > 0 for t in handlers)
    sleeping = [t for t in main["tasks"] if t["awaits"]["what"].startswith("asyncio.sleep(36")]
    assert len(sleeping) >= EXTRA_TASKS
    assert all(t["state"] == "pending" for t in main["tasks"])
    side = {t["name"]: t for t in loops["loop-side"]["tasks"]}
    assert side["side-sleeper"]["awaits"]["kind"] == "sleep"
    assert result["count"] == main["task_count"] + loops["loop-side"]["task_count"] + 1

    text = peeka_cli("tasks", runtime.pid).stdout
    assert "awaits task child" in text and "awaited by parent" in text
    grouped = re.search(r"(\d+) tasks pending \(", text)  # the sleepers, grouped by their common stack
    assert grouped and int(grouped.group(1)) >= EXTRA_TASKS


# ---------------------------------------------------------------- source


def test_source_shows_live_code_and_flags_edits_on_disk(runtime: Runtime) -> None:
    result = cli_json("source", runtime.pid, "runtime_lib.price")
    (entry,) = result["sources"]
    assert entry["status"] == "matches" and entry["file"] == str(runtime.lib) and entry["line"] == 4
    assert entry["why"] == [], entry["why"]  # the copy was written just before the target started
    assert entry["lines"][0] == "def price(quantity, unit=3):" and entry["lines"][-1].strip() == "return total"
    basket, tagged = cli_json("source", runtime.pid, "-E", r"^runtime_lib\.(Basket|Tagged)$")["sources"]
    assert basket["kind"] == "class" and basket["status"] == "matches" and basket["lines"][0] == "class Basket:"
    assert tagged["status"] == "matches" and tagged["lines"][0] == "@tagged", tagged  # decorated

    text = runtime.lib.read_text()
    text = text.replace("total = quantity * unit\n", "total = quantity * unit * 2\n")  # what runs differs
    text = text.replace("class Basket:", "# a comment that moves what follows\n\nclass Basket:")
    runtime.lib.write_text(text)
    found = {e["name"]: e for e in cli_json("source", runtime.pid, "runtime_lib.*")["sources"]}
    price = found["runtime_lib.price"]
    assert price["status"] == "changed"
    assert any("constants only the file has: 2" in why for why in price["why"])
    assert any("modified after the process started" in why for why in price["why"])
    assert any("linecache holds an older copy" in why for why in price["why"])
    assert "total = quantity * unit * 2" in "\n".join(price["lines"])
    untouched = found["runtime_lib.untouched"]
    assert untouched["status"] == "moved" and untouched["line"] == 24 and untouched["disk_line"] == 26
    assert found["runtime_lib.Basket.add"]["status"] == "moved"
    pid_of = found["runtime_lib.pid_of"]  # os.getpid(): an import's; a form feed above it
    assert pid_of["status"] == "moved" and pid_of["disk_line"] == pid_of["line"] + 2, pid_of
    assert found["runtime_lib.Basket"]["status"] == "moved"
    shown = peeka_cli("source", runtime.pid, "runtime_lib.price").stdout
    assert "STALE" in shown and "constants only the file has: 2" in shown


def test_source_bad_input(runtime: Runtime) -> None:
    assert "nothing loaded matches 'runtime_lib.nothing_here'" in fails("source", runtime.pid, "runtime_lib.nothing_here")
    assert "invalid regular expression" in fails("source", runtime.pid, "-E", "runtime_lib.(")
    builtin = cli_json("source", runtime.pid, "posix.getpid")["sources"][0]
    assert builtin["status"] == "no-source"


# ---------------------------------------------------------------- detach (last: the agent goes away)


def test_detach_restores_logger_levels_and_handlers(runtime: Runtime) -> None:
    cli_json("logger", runtime.pid, "--name", "app", "--level", "DEBUG")
    follow = subprocess.Popen([sys.executable, "-m", "peeka", "logger", runtime.pid, "--follow", "--name", "app",
                               "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert json.loads(follow.stdout.readline())["type"] == "start"  # type: ignore[union-attr]
    before = runtime.last_order()
    assert wait_for(lambda: runtime.debug_after(before))
    out = peeka_cli("detach", runtime.pid, "--json")
    assert out.returncode == 0, out.stderr
    follow.communicate(timeout=10)  # the agent hung up on the follower: it ends, whatever it says
    after = runtime.last_order()
    assert wait_for(lambda: runtime.last_order() > after + 5), "the logger stopped writing after detach"
    assert runtime.debug_after(after + 1) == []
    # attach again: the level is the application's, and no Peeka handler is left behind
    app = {e["name"]: e for e in cli_json("logger", runtime.pid, "--name", "app")["loggers"]}["app"]
    assert app["level"] == "INFO" and [h["type"] for h in app["handlers"]] == ["logging.FileHandler"]
