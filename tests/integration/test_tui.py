"""`peeka tui` against a real attached target (tests/targets/tui_target.py) on 3.12 and 3.14.

Pilot tests drive the app in this test's process (its own venv): keys switch views, a pattern is
typed, and the widgets are read: thread names and who burns CPU, the hot function, a watched call's
arguments (checked against the target's own rule: sku == "sku-{order_id % 5}"). Quitting leaves no
probe. Then one end-to-end run of the real `peeka tui PID` in tmux at a fixed size.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import test_session
from conftest import python_for
from test_session import Attached, probes_left

from peeka.attach import attach
from peeka.session import Session
from peeka.tui.app import PeekaApp

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
attached = test_session.attached  # the real attach per version, shared fixture (a target per module)

SIZE = (160, 45)


def cells(table: Any) -> list[list[str]]:
    """A DataTable's rows as plain strings, top to bottom."""
    return [[str(getattr(c, "plain", c)) for c in table.get_row(key)] for key in table.rows]


def text_of(static: Any) -> str:
    content = static.content
    return str(getattr(content, "plain", content))


async def until(pilot: Any, check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Let the app run until ``check()`` is truthy (the views refresh every second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(0.1)
        got = check()
        if got:
            return got
    raise AssertionError(f"the TUI never showed {what} within {timeout:g}s; status: "
                         f"{text_of(pilot.app.query_one('#status'))!r}")


def test_views_over_a_real_target(attached: Attached) -> None:
    session = Session(attached.client())

    async def scenario() -> None:
        app = PeekaApp(session)
        async with app.run_test(size=SIZE) as pilot:
            # Header: who the target is, from the agent.
            header = await until(pilot, lambda: re.search(r"CPU \d", text_of(app.query_one("#header")))
                                 and text_of(app.query_one("#header")), "the header's CPU")
            assert f"pid {attached.pid}" in header and f"python {attached.version}." in header
            assert f"via {attached.method}" in header and "tui_target.py" in header
            # 1 Threads: every thread by name; burner burns CPU, napper does not.
            table = app.query_one("#threads-table")

            def cpu_known() -> dict[str, list[str]]:
                rows = {r[0]: r for r in cells(table)}
                return rows if rows.get("burner", ["", "…"])[1] != "…" else {}

            rows = await until(pilot, cpu_known, "threads with CPU %")
            assert {"MainThread", "burner", "orders", "napper"} <= set(rows)
            assert float(rows["burner"][1]) > 5 > 2 > float(rows["napper"][1])  # a loaded 2-core machine
            assert rows["napper"][3] == "yes" and rows["orders"][3] == "no"
            # The selected thread's stack: move to burner, its stack runs through crunch.
            names = [r[0] for r in cells(table)]
            table.move_cursor(row=names.index("burner"))
            stack = await until(pilot, lambda: "crunch" in text_of(app.query_one("#threads-stack"))
                                and text_of(app.query_one("#threads-stack")), "burner's stack")
            assert stack.startswith("burner") and "burner" in stack.split("crunch")[1]
            # 2 Top: the hot function, live.
            await pilot.press("2")
            top = app.query_one("#top-table")
            first = await until(pilot, lambda: cells(top) and cells(top)[0][2] == "__main__.crunch", "crunch on top")
            assert first and float(cells(top)[0][0]) > 30
            # 3 Memory: the type census counts the target's 20000 Baskets exactly; RSS as /proc says.
            await pilot.press("3")
            types = app.query_one("#memory-types")
            baskets = await until(pilot, lambda: [r for r in cells(types) if r[0] == "__main__.Basket"], "Basket")
            assert baskets[0][1] == "20000"
            facts = text_of(app.query_one("#memory-facts"))
            rss_kib = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{attached.pid}/status").read_text()).group(1))
            shown = re.search(r"RSS ([\d.]+) MiB", facts)
            assert shown and abs(float(shown.group(1)) * 1024 - rss_kib) < 0.2 * rss_kib, (facts, rss_kib)
            # 4 Watch: type a pattern; calls stream in; the selected call's arguments are shown.
            await pilot.press("4")
            await pilot.press(*"__main__.place_order", "enter")
            calls = app.query_one("#watch-table")
            await until(pilot, lambda: len(cells(calls)) >= 3, "three watched calls")
            seen = []
            for row in cells(calls)[:3]:
                assert row[1] == "__main__.place_order" and row[3] == "exit" and row[4] == "orders"
                params = ast.literal_eval(row[5])["params"]
                assert params["sku"] == f"sku-{params['order_id'] % 5}"
                seen.append(params["order_id"])
            assert seen == sorted(seen) and len(set(seen)) == 3
            assert probes_left(attached) == ["__main__.place_order"]
            calls.focus()
            calls.move_cursor(row=0)
            detail = await until(pilot, lambda: "order_id" in text_of(app.query_one("#watch-value"))
                                 and text_of(app.query_one("#watch-value")), "the call's value")
            assert f"'order_id': {seen[0]}  (int)" in detail and f"'sku': 'sku-{seen[0] % 5}'  (str)" in detail
            assert f"'total': {seen[0] * 3}  (int)" in detail  # the result: place_order returns order_id * 3
            # Digits typed into the pattern box are text, not view keys.
            app.query_one("#watch-pattern").focus()
            await pilot.press("1")
            assert app.current == "watch" and app.query_one("#watch-pattern").value.endswith("1")
            # Back to threads from the table: the watch keeps running (quitting must remove it).
            calls.focus()
            await pilot.press("1")
            assert app.current == "threads"
            await pilot.press("q")
            await pilot.pause(0.2)

    asyncio.run(scenario())
    assert session.closed
    assert probes_left(attached) == []  # the watch's probe and both samplers went with the quit
    assert attached.process.alive()


def test_errors_show_in_the_status_line(attached: Attached) -> None:
    """A refused pattern, then the agent detached from elsewhere: the status line says so, the app runs on."""
    session = Session(attached.client())

    async def scenario() -> None:
        app = PeekaApp(session, first_view="watch")
        async with app.run_test(size=SIZE) as pilot:
            status = app.query_one("#status")
            await pilot.press(*"no_such_module_zz.f", "enter")
            await until(pilot, lambda: "no_such_module_zz" in text_of(status), "the refusal")
            assert "not watching" in text_of(app.query_one("#watch-info"))
            with attached.client() as other:
                other.request("detach", {})
            await until(pilot, lambda: "connection to the agent lost" in text_of(status), "the lost connection")
            await pilot.press("escape", "1", "2")  # out of the pattern box; views still switch, their requests fail into the status line
            assert app.current == "top" and app.is_running
            await pilot.press("q")

    asyncio.run(scenario())
    assert attached.process.alive()
    client, _report = attach(attached.pid, timeout=30)  # attached again for the tests after this one
    client.close()


def test_end_to_end_in_tmux(attached: Attached, tmp_path: Any) -> None:
    """The real `peeka tui PID` in a 160x45 tmux terminal: switch views, start a watch, quit; no probe is left."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/setup.sh installs it)")
    name = f"peeka-tui-{os.getpid()}"
    env = {"TERM": "xterm-256color", "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "TMPDIR": os.environ.get("TMPDIR", "/tmp")}
    command = f"{sys.executable} -m peeka tui {attached.pid}; echo tui-exited-$?; sleep 30"
    socket_dir = str(tmp_path)
    tmux = ["tmux", "-S", f"{socket_dir}/tmux.sock"]
    subprocess.run([*tmux, "new-session", "-d", "-s", name, "-x", "160", "-y", "45", command], check=True, env=env)
    try:
        def pane() -> str:
            return subprocess.run([*tmux, "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout

        def wait(pattern: str, timeout: float = 40.0) -> str:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                shown = pane()
                if re.search(pattern, shown):
                    return shown
                time.sleep(0.2)
            raise AssertionError(f"{pattern!r} never appeared; the pane:\n{pane()}")

        def keys(*k: str) -> None:
            subprocess.run([*tmux, "send-keys", "-t", name, *k], check=True)

        screen = wait(r"burner\s+│?\s*\d+\.\d")
        assert f"pid {attached.pid}" in screen and "napper" in screen
        keys("2")
        wait(r"__main__\.crunch")
        keys("4")
        wait(r"pattern, e\.g\.")
        keys("-l", "__main__.place_order")
        keys("Enter")
        screen = wait(r"'order_id': \d+")
        assert "__main__.place_order" in screen
        assert probes_left(attached) == ["__main__.place_order"]
        keys("Escape")  # stops the watch; then leave the pattern box for the table, where q quits
        wait(r"watch stopped")
        keys("Escape")  # apart from the q: ESC followed at once by q reads as alt+q in a terminal
        time.sleep(1.0)
        keys("q")
        wait(r"tui-exited-0")
        assert probes_left(attached) == []
        # Again, and this time the terminal goes away under a running watch (SIGHUP): no probe stays.
        subprocess.run([*tmux, "kill-session", "-t", name], check=True)
        subprocess.run([*tmux, "new-session", "-d", "-s", name, "-x", "160", "-y", "45", command], check=True, env=env)
        wait(r"napper")
        keys("4")
        wait(r"pattern, e\.g\.")
        keys("-l", "__main__.place_order")
        keys("Enter")
        wait(r"'order_id': \d+")
        assert probes_left(attached) == ["__main__.place_order"]
        subprocess.run([*tmux, "kill-server"], check=True)  # the pane's terminal closes: SIGHUP
        deadline = time.monotonic() + 15
        while probes_left(attached) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    assert probes_left(attached) == []
    assert attached.process.alive()


def test_target_death_shows_in_the_status_line(spawn: Any, tmp_path: Any) -> None:
    """The target is killed while the TUI is open: the status line says the connection is lost, the
    app keeps running and quits cleanly (one version: this is the client's behaviour)."""
    tmp = tempfile.mkdtemp(prefix="pk-")  # short: a Unix socket path has ~100 bytes
    target = spawn(python_for("3.14"), "tui_target.py", env={"TMPDIR": tmp, "PYTHONDONTWRITEBYTECODE": "1"})
    client, _report = attach(target.pid, timeout=30)
    session = Session(client)

    async def scenario() -> None:
        app = PeekaApp(session)
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one("#threads-table")
            await until(pilot, lambda: any(r[0] == "burner" for r in cells(table)), "the threads")
            os.killpg(target.proc.pid, 9)
            status = app.query_one("#status")
            await until(pilot, lambda: "connection to the agent lost" in text_of(status), "the lost connection")
            await pilot.press("2", "3")
            await pilot.pause(0.5)
            assert app.is_running and app.current == "memory"
            assert "lost" in text_of(status) or "closed" in text_of(status)
            await pilot.press("q")

    asyncio.run(scenario())
    assert session.closed
    shutil.rmtree(tmp, ignore_errors=True)
