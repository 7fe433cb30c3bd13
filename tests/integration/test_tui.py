"""`peeka tui` against a real attached target (tests/targets/tui_target.py) on 3.12 and 3.14.

Pilot tests drive the app in this test's process (its own venv): keys switch views, a pattern is
typed, and the widgets are read: thread names and who burns CPU, the hot function, a watched call's
arguments (checked against the target's own rule: sku == "sku-{order_id % 5}"). Quitting leaves no
probe. Then one end-to-end run of the real `peeka tui PID` in tmux at a fixed size. Snapshots of every
view come from tests/targets/tui_steady_target.py (3.14), whose threads are parked where they stay.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import test_session
from conftest import Target, python_for
from pytest_textual_snapshot import SVGImageExtension
from test_session import Attached, probes_left

from peeka.attach import attach
from peeka.session import Session
from peeka.tui.app import PICK, PeekaApp
from peeka.tui.picker import PickerApp
from peeka.tui.views import memory as memory_view

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120), pytest.mark.timing]
attached = test_session.attached  # the real attach per version, shared fixture (a target per module)

SIZE = (160, 45)
CLIENT_ONLY = "3.14"  # the target of tests whose outcome the client alone decides (remote_exec: quick to attach)


def cells(table: Any) -> list[list[str]]:
    """A DataTable's rows as plain strings, top to bottom."""
    return [[str(getattr(c, "plain", c)) for c in table.get_row(key)] for key in table.rows]


def text_of(static: Any) -> str:
    content = static.content
    return str(getattr(content, "plain", content))


async def until(pilot: Any, check: Callable[[], Any], what: str, timeout: float = 30.0,
                status: str = "#status") -> Any:
    """Let the app run until ``check()`` is truthy (the views refresh every second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(0.1)
        got = check()
        if got:
            return got
    raise AssertionError(f"the TUI never showed {what} within {timeout:g}s; status: "
                         f"{text_of(pilot.app.query_one(status))!r}")


def agent_streams(attached: Attached) -> list[str]:
    """The agent's stream threads now (each running stream has one), asked over another connection."""
    with attached.client() as other:
        threads = other.request("thread", {"all": True, "max_frames": 1})["threads"]
    return [t["name"] for t in threads if t["name"].startswith("peeka-agent-stream-")]


def tracemalloc_on(attached: Attached) -> bool:
    with attached.client() as other:
        return bool(other.request("memory", {"types": 0})["tracemalloc"]["tracing"])


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
                # burner busy, napper not, in one refresh (on a loaded 2-core machine burner may get
                # little of some second: the next refresh comes within one)
                rows = {r[0]: r for r in cells(table)}
                burner, napper = rows.get("burner", ["", "…"])[1], rows.get("napper", ["", "…"])[1]
                return rows if "…" not in (burner, napper) and float(burner) > 5 > 2 > float(napper) else {}

            rows = await until(pilot, cpu_known, "burner busy and napper idle")
            assert {"MainThread", "burner", "orders", "napper"} <= set(rows)
            assert rows["napper"][3] == "yes" and rows["orders"][3] == "no"
            # The selected thread's stack: move to burner, its stack runs through crunch.
            names = [r[0] for r in cells(table)]
            table.move_cursor(row=names.index("burner"))
            stack = await until(pilot, lambda: "crunch" in text_of(app.query_one("#threads-stack"))
                                and text_of(app.query_one("#threads-stack")), "burner's stack")
            assert stack.startswith("burner") and "burner" in stack.split("crunch")[1]
            # b: the blocked threads as the target built them: stuck waits for HELD, which holder holds;
            # deadlock-a and deadlock-b wait for each other's lock (a cycle, in red).
            await pilot.press("b")
            blocked = app.query_one("#threads-blocked")
            rows = await until(pilot, lambda: {r[0]: r for r in cells(blocked)}, "the blocked threads")
            assert rows["stuck"][3] == "holder" and rows["stuck"][2] == "__main__.HELD (RLock)"
            assert rows["deadlock-a"][3] == "deadlock-b" and rows["deadlock-b"][3] == "deadlock-a"
            assert {rows["deadlock-a"][2], rows["deadlock-b"][2]} == {"__main__.LOCK_A (RLock)", "__main__.LOCK_B (RLock)"}
            cycle = text_of(app.query_one("#threads-blocked-info"))
            assert cycle.startswith("DEADLOCK ") and re.search(r"deadlock-(a|b) → deadlock-(a|b) → deadlock-\1", cycle)
            assert "holder" not in cycle and "stuck" not in cycle  # waiting is not a cycle
            await pilot.press("b")
            # The header costs the target no stream: its numbers come from /proc and cheap requests.
            assert session.streams() == [] and "sampler off" in text_of(app.query_one("#header"))
            # 2 Top: the hot function, live; its sampler runs while the view is shown, and costs show.
            await pilot.press("2")
            top = app.query_one("#top-table")
            first = await until(pilot, lambda: cells(top) and cells(top)[0][2] == "__main__.crunch", "crunch on top")
            assert first and float(cells(top)[0][0]) > 30
            assert [s.command for s in session.streams()] == ["top"]
            # The selected function's tree: burner's loop calls crunch.
            top.move_cursor(row=0)
            await until(pilot, lambda: "__main__.burner" in text_of(app.query_one("#top-tree")), "crunch's callers")
            # s sorts by total CPU: the rows' totals then run down.
            await pilot.press("s")
            totals = [float(r[1]) for r in cells(top)]
            assert totals == sorted(totals, reverse=True) and "sorted by total" in text_of(app.query_one("#status"))
            assert re.search(r"sampler \d+\.\d+% GIL", text_of(app.query_one("#header")))
            # p stops the sampler in the agent (its stream thread goes), p again starts a new one.
            await pilot.press("p")
            await until(pilot, lambda: not agent_streams(attached) and session.streams() == [], "the sampler stopped")
            assert "sampler off" in text_of(app.query_one("#header")) and cells(top)  # the table stays
            await pilot.press("p")
            await until(pilot, lambda: len(agent_streams(attached)) == 1 and [s.command for s in session.streams()] == ["top"],
                        "the sampler started again")
            await until(pilot, lambda: re.search(r"sampler \d+\.\d+% GIL", text_of(app.query_one("#header"))), "its cost")
            # 3 Memory: the type census counts the target's 20000 Baskets: exactly when it counted every
            # object, else (a loaded machine: the census is sampled to fit its time) an estimate marked ≈.
            await pilot.press("3")
            await until(pilot, lambda: session.streams() == [], "the sampler stopped with the Top view")
            types = app.query_one("#memory-types")
            baskets = await until(pilot, lambda: [r for r in cells(types) if r[0] == "__main__.Basket"], "Basket")
            facts = text_of(app.query_one("#memory-facts"))
            if "census: all" in facts:
                assert baskets[0][1] == "20000", facts
            else:
                assert "(≈: estimates)" in facts and abs(int(baskets[0][1].lstrip("≈")) - 20000) <= 1000, (facts, baskets)
            rss_kib = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{attached.pid}/status").read_text()).group(1))
            shown = re.search(r"RSS ([\d.]+) MiB", facts)
            assert shown and abs(float(shown.group(1)) * 1024 - rss_kib) < 0.2 * rss_kib, (facts, rss_kib)
            # 5 Tasks: the three waiters parked on one Event make one group; the others their own.
            await pilot.press("5")
            tasks = app.query_one("#tasks-table")
            groups = await until(pilot, lambda: {r[1]: r for r in cells(tasks)}, "the task groups")
            assert groups["waiter-0, waiter-1, waiter-2"][0] == "3"
            assert groups["waiter-0, waiter-1, waiter-2"][3].startswith("event: Event at 0x")
            assert groups["waiter-0, waiter-1, waiter-2"][4] == "Event.wait ← _wait_gate"
            assert groups["consumer"][3].startswith("queue get:") and groups["ticker"][3].startswith("sleep:")
            assert "gather" in groups["Task-1"][3] and groups["Task-1"][5] == "loop"
            tasks.focus()
            tasks.move_cursor(row=[r[1] for r in cells(tasks)].index("consumer"))
            await until(pilot, lambda: "_consume" in text_of(app.query_one("#tasks-detail")), "consumer's stack")
            # / filters the current table; / again and an empty filter shows every row.
            await pilot.press("slash", *"tick")
            await until(pilot, lambda: [r[1] for r in cells(tasks)] == ["ticker"], "only ticker")
            await pilot.press("enter", "slash", "backspace", "backspace", "backspace", "backspace", "enter")
            assert len(cells(tasks)) == 4
            # 4 Watch: type a pattern; calls stream in; the selected call's arguments are shown.
            await pilot.press("4")
            # The pattern completes from the target's names (sm); → accepts.
            box = app.query_one("#watch-pattern")
            await pilot.press(*"__main__.place_o")
            await until(pilot, lambda: box._suggestion == "__main__.place_order", "the completion")
            await pilot.press("right", "enter")
            assert box.value == "__main__.place_order"
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
            # The header: what the watch's probe costs per call (the governor's calibration for watch,
            # asked with ping) times the calls it sees: place_order runs every 20 ms (50/s at most).
            def probe_cost() -> re.Match[str] | None:  # once two readings of the calls seen give a rate
                found = re.search(r"probes ([\d.]+) µs/call × (\d+)/s = ([\d.]+)%", text_of(app.query_one("#header")))
                return found if found and int(found.group(2)) > 0 else None

            probes = await until(pilot, probe_cost, "the probes' cost")
            with attached.client() as other:
                watch_cost = next(c for c in other.request("ping", {})["probe_costs"] if c["stream"] == "watch")
            assert 0 < watch_cost["base_ns"] + watch_cost["sampled_ns"] < 1e6, watch_cost
            assert float(probes.group(1)) == round((watch_cost["base_ns"] + watch_cost["sampled_ns"]) / 1000, 1)
            assert 0 < int(probes.group(2)) <= 55 and float(probes.group(3)) < 5, probes.group(0)
            # m: monitor's table over the same pattern: ~50 calls/s (one call every 20 ms, fewer under load).
            await pilot.press("m")
            monitor = app.query_one("#watch-monitor")
            rates = await until(pilot, lambda: [r for r in cells(monitor) if r[0] == "__main__.place_order"], "monitor's row")
            assert 3 < float(rates[0][1]) <= 55 and float(rates[0][4]) <= float(rates[0][5]) <= float(rates[0][6])
            # t: trace mode: each call's tree, with the logger call place_order makes below it.
            await pilot.press("t")
            await until(pilot, lambda: any(r[3] == "tree" for r in cells(calls)), "traced calls")
            traced = [r for r in cells(calls) if r[3] == "tree"][0]
            assert traced[1] == "__main__.place_order" and "logging.Logger.debug" in traced[5]
            assert sorted(probes_left(attached)) == ["__main__.place_order"]
            await pilot.press("t", "m")  # back to watch mode, monitor off
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


async def command(pilot: Any, line: str) -> None:
    """``:`` then a command line and Enter (the line set at once: typed key by key it costs seconds
    on a loaded machine, and the pattern box test types keys already)."""
    await pilot.press("colon", *line[:2])
    pilot.app.query_one("#command").value = line
    await pilot.press("enter")


def logger_level(attached: Attached, name: str) -> str:
    """A logger's level, asked over a separate connection."""
    with attached.client() as other:
        return str(other.request("logger", {"name": name})["loggers"][0]["level"])


@pytest.mark.parametrize("attached", [CLIENT_ONLY], indirect=True)
def test_logger_and_the_app_keys(attached: Attached, monkeypatch: pytest.MonkeyPatch) -> None:
    """3 Memory's mark and tracemalloc, 6 Logger against the target's known logger; the keys every view
    shares: p pauses, ? lists the keys, : runs the CLI's verbs into a panel. Quitting puts back the
    level the TUI set and stops the tracemalloc it started. (The TUI's side alone: one target
    version; the agent's memory and logger commands are tested on every version elsewhere.)"""
    assert logger_level(attached, "shop.orders") == "INFO"
    # The mark's growth is checked against exact counts: the census gets the time to count every
    # object on a loaded machine too (the sampled census is checked in test_census_sampled_to_its_budget).
    monkeypatch.setattr(memory_view, "CENSUS_BUDGET_S", 5.0)
    monkeypatch.setattr(memory_view, "MARK_MAX_SECONDS", 5.0)
    session = Session(attached.client())

    async def scenario() -> None:
        app = PeekaApp(session, first_view="memory")
        async with app.run_test(size=SIZE) as pilot:
            # m sets a mark: the Baskets do not change; the Crumbs grow (one every 10th order).
            types = app.query_one("#memory-types")
            await until(pilot, lambda: cells(types), "the census")
            await pilot.press("m")
            await until(pilot, lambda: "mark set" in text_of(app.query_one("#status")), "the mark")

            def grown() -> dict[str, list[str]]:
                rows = {r[0]: r for r in cells(types)}
                crumb = rows.get("__main__.Crumb")
                return rows if crumb and crumb[2] not in ("-", "0") else {}

            rows = await until(pilot, grown, "Crumbs grown since the mark", timeout=20)
            assert rows["__main__.Basket"][2] == "0" and int(rows["__main__.Crumb"][2].lstrip("+")) > 0
            with attached.client() as other:
                crumbs = int(other.request("inspect", {"expression": "len(__main__.CRUMBS)"})["value"]["repr"])
            assert abs(int(rows["__main__.Crumb"][1]) - crumbs) <= 15  # one more every ~0.2 s since the census
            assert "since mark: RSS" in text_of(app.query_one("#memory-facts"))
            # t starts tracemalloc (quitting stops it: the TUI started it); its sites show.
            await pilot.press("t")
            sites = app.query_one("#memory-sites")
            await until(pilot, lambda: cells(sites), "tracemalloc's sites")
            assert tracemalloc_on(attached)
            await pilot.press("6")
            # 6 Logger: the target's loggers with their levels.
            loggers = app.query_one("#logger-table")
            rows = await until(pilot, lambda: {r[0]: r for r in cells(loggers)}, "the loggers")
            assert rows["shop.orders"][1] == "INFO" and rows["root"][1] == "WARNING"
            loggers.move_cursor(row=[r[0] for r in cells(loggers)].index("shop.orders"))
            # Follow its records from DEBUG: only INFO ones come (every 10th order), its level is INFO.
            await pilot.press("f")
            records = app.query_one("#logger-records")
            await until(pilot, lambda: len(cells(records)) >= 2, "two followed records", timeout=20)
            assert {r[1] for r in cells(records)} == {"INFO"}
            assert all(int(r[3].split()[1]) % 10 == 0 for r in cells(records))
            # Set its level to DEBUG: asked, then confirmed; DEBUG records follow.
            await pilot.press("enter")
            await pilot.press(*"debug", "enter")
            assert "from INFO to DEBUG?" in text_of(app.screen.query_one("#level-question"))
            assert logger_level(attached, "shop.orders") == "INFO"  # nothing happens before the yes
            await pilot.press("y")
            await until(pilot, lambda: any(r[1] == "DEBUG" for r in cells(records)), "DEBUG records")
            assert logger_level(attached, "shop.orders") == "DEBUG"
            await until(pilot, lambda: {r[0]: r for r in cells(loggers)}["shop.orders"][1] == "DEBUG", "the new level")
            # v raises the lowest level followed: from then on only INFO and up.
            await pilot.press("v")
            await until(pilot, lambda: "from INFO" in text_of(app.query_one("#logger-info")), "following from INFO")
            # p pauses: the table stands still while records keep coming; p again catches up.
            await pilot.press("p")
            frozen = len(cells(records))
            await pilot.pause(1.0)
            assert len(cells(records)) == frozen and "paused" in text_of(app.query_one("#status"))
            await pilot.press("p")
            await until(pilot, lambda: len(cells(records)) > frozen, "the records after the pause")
            await pilot.press("f")  # following stops: its handler goes
            # ? lists every key, the views' own included.
            await pilot.press("question_mark")
            helptext = "\n".join(line.text for line in app.screen.query_one("#help").lines)
            for key in ("/", "p", ":", "?", "q / ctrl+c", "6 Logger", "follow the selected logger"):
                assert key in helptext, key
            await pilot.press("escape")
            # : runs the CLI's verbs: inspect, then watch -n 2 (two calls, then the stream ends).
            await command(pilot, "inspect __main__.BASKETS[7].n")
            log = app.query_one("#panel-log")
            await until(pilot, lambda: "int 7" in "\n".join(line.text for line in log.lines), "the inspected value")
            await pilot.press("escape")
            await command(pilot, "watch __main__.place_order -n 2")
            shown = await until(pilot, lambda: "ended: limit" in (t := "\n".join(line.text for line in log.lines)) and t,
                                "two watched calls")
            ids = [int(m) for m in re.findall(r"'order_id': (\d+), 'sku': 'sku-(?:\d)'}, 'result'", shown)]
            assert len(ids) == 2 and ids[1] > ids[0], shown
            # A bad command line: the CLI's own usage error in the status line.
            await pilot.press("escape")
            await command(pilot, "watch __main__.place_order -n 0")
            await until(pilot, lambda: "-n" in text_of(app.query_one("#status")), "the usage error")
            assert app.query_one("#status").has_class("error")
            await pilot.press("escape")
            # The header: the agent's CPU measured, the stream's events counted.
            header = text_of(app.query_one("#header"))
            assert re.search(r"agent threads \d+\.\d+% CPU", header) and re.search(r"streams \d+ events/s", header), header
            await pilot.press("q")
            await until(pilot, lambda: not app.is_running, "the app gone")

    asyncio.run(scenario())
    assert session.closed
    assert logger_level(attached, "shop.orders") == "INFO"  # put back on quit
    assert not tracemalloc_on(attached)  # the TUI started it: stopped on quit
    assert probes_left(attached) == []


SNAPSHOT_SIZE = (120, 36)


@pytest.fixture(scope="module")
def steady() -> Iterator[Attached]:
    """tests/targets/tui_steady_target.py on 3.14, attached: every thread parked but one burner."""
    tmp = Path(tempfile.mkdtemp(prefix="pk-"))  # short: a Unix socket path has ~100 bytes
    process = Target(python_for(CLIENT_ONLY), "tui_steady_target.py", env={"TMPDIR": str(tmp), "PYTHONDONTWRITEBYTECODE": "1"})
    try:
        client, report = attach(process.pid, timeout=30)
        client.close()
        yield Attached(process, CLIENT_ONLY, report.method)
    finally:
        process.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_snapshots_of_every_view(steady: Attached, snapshot: Any) -> None:
    """Each view, the blocked threads and the command panel as SVG screenshots at a fixed terminal size
    (tests/integration/__snapshots__/test_tui/; review a change with the SVGs' diff, accept it with
    --snapshot-update), all taken in one run of the app against the steady target. Steady mode
    (view.Volatile) shows what differs from run to run as ``~`` (CPU %, sizes, times, costs, sample
    counts, pids and native ids, addresses, the interpreter's line numbers); the names, stacks,
    counts, locks, tasks, loggers and the watched calls are the target's answers."""
    shot = snapshot.use_extension(SVGImageExtension)
    shown_dir = Path(tempfile.gettempdir()) / f"peeka-tui-snapshots-{os.getpid()}"  # a differing shot, to compare
    session = Session(steady.client())
    taken: dict[str, bool] = {}

    async def scenario() -> None:
        app = PeekaApp(session, steady=True)
        async with app.run_test(size=SNAPSHOT_SIZE) as pilot:

            async def take(name: str, ready: Callable[[], Any]) -> None:
                def steady_now() -> bool:
                    # The header's agent CPU is known (a first reading of a new agent thread has no rate).
                    header = text_of(app.query_one("#header"))
                    return bool(ready()) and "agent threads ~%" in header and "calibrating" not in header

                for _attempt in range(5):
                    await until(pilot, steady_now, f"the {name} snapshot's content")
                    await pilot.pause()
                    await pilot.wait_for_scheduled_animations()
                    await pilot.pause()
                    svg = app.export_screenshot(title="peeka")
                    if steady_now():  # still: nothing moved between the check and the shot
                        break
                taken[name] = shot(name=name) == svg
                if not taken[name]:
                    shown_dir.mkdir(exist_ok=True)
                    (shown_dir / f"{name}.svg").write_text(svg)

            def shows(selector: str, *texts: str) -> bool:
                shown = text_of(app.query_one(selector))
                return all(t in shown for t in texts)

            def threads_ready() -> bool:
                rows = {r[0]: r for r in cells(app.query_one("#threads-table"))}
                return (set(rows) >= {"MainThread", "burner", "clerk", "idler", "holder", "stuck", "loop"}
                        and all(r[1] == "~" for r in rows.values()) and shows("#header", f"via {steady.method}", "GC")
                        and shows("#threads-stack", "MainThread", "tui_steady_target.py"))

            await take("1-threads", threads_ready)
            await pilot.press("b")
            await take("1-threads-blocked", lambda: shows("#threads-blocked-info", "DEADLOCK")
                       and {r[0] for r in cells(app.query_one("#threads-blocked"))} >= {"stuck", "deadlock-a", "deadlock-b"})
            await pilot.press("b", "2")
            top = app.query_one("#top-table")
            await take("2-top", lambda: cells(top) and cells(top)[0][2] == "__main__.crunch"
                       and shows("#top-tree", "__main__.burner") and shows("#top-info", "~ CPU-weighted"))
            await pilot.press("3", "slash", *"__main__", "enter")
            await take("3-memory", lambda: [r[:2] for r in cells(app.query_one("#memory-types"))]
                       == [["__main__.Crate", "200000"], ["__main__.Basket", "20000"], ["__main__.Shelf", "3"]]
                       and shows("#memory-facts", "census: all"))
            await pilot.press("4", *"__main__.quote", "enter")
            await until(pilot, lambda: shows("#watch-info", "watching __main__.quote"), "the watch")
            assert probes_left(steady) == ["__main__.quote"]  # in place when the agent answered
            assert steady.process.proc.stdin is not None
            steady.process.proc.stdin.write("3\n")  # the clerk calls quote(7, "sku-2") three times
            steady.process.proc.stdin.flush()
            calls = app.query_one("#watch-table")
            await until(pilot, lambda: len(cells(calls)) == 3, "three calls")
            calls.focus()
            calls.move_cursor(row=0)
            # The header's costs come from the agent's own count of streams and probes (its refresh may lag the watch).
            await take("4-watch", lambda: shows("#watch-value", "'item': 7") and shows("#watch-info", "3 call(s)")
                       and shows("#header", "1 streams", "µs/call"))
            await pilot.press("5")
            await take("5-tasks", lambda: len(cells(app.query_one("#tasks-table"))) == 3
                       and shows("#tasks-detail", "task(s)"))
            await pilot.press("6")
            await take("6-logger", lambda: "shop.quotes" in [r[0] for r in cells(app.query_one("#logger-table"))])
            await command(pilot, "inspect __main__.BASKETS[3].n")
            await take("command-panel", lambda: "int 3" in "\n".join(line.text for line in app.query_one("#panel-log").lines)
                       and shows("#status", "answered"))
            await pilot.press("escape", "q")
            await until(pilot, lambda: not app.is_running, "the app gone")

    asyncio.run(scenario())
    assert session.closed
    assert probes_left(steady) == []
    assert taken and all(taken.values()), f"differ (this run's in {shown_dir}): {[n for n, same in taken.items() if not same]}"


def runnable_threads(pid: int, samples: int = 10) -> dict[str, int]:
    """How often each thread of ``pid`` was running or ready to run (state R in its /proc stat) over
    ``samples`` looks 0.1 s apart: the saturation's ground truth (the CPU it gets depends on what
    else the machine runs)."""
    seen: dict[str, int] = {}
    for _ in range(samples):
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                name = (task / "comm").read_text().strip()
                state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            seen[name] = seen.get(name, 0) + (state == "R")
        time.sleep(0.1)
    return seen


def test_saturated_target(spawn: Any) -> None:
    """The TUI against a target whose threads keep both cores busy (burner holding the GIL, two
    hashers outside it): views switch and fill, a watch starts and its calls arrive, quitting
    removes the probe. (One version: what is tested is the TUI's responsiveness.)"""
    tmp = tempfile.mkdtemp(prefix="pk-")  # short: a Unix socket path has ~100 bytes
    target = spawn(python_for(CLIENT_ONLY), "tui_target.py", "saturate", env={"TMPDIR": tmp, "PYTHONDONTWRITEBYTECODE": "1"})
    client, report = attach(target.pid, timeout=30)
    saturated = Attached(target, CLIENT_ONLY, report.method)
    session = Session(client)

    async def scenario() -> None:
        app = PeekaApp(session)
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one("#threads-table")
            await until(pilot, lambda: {"burner", "hasher-0", "hasher-1"} <= {r[0] for r in cells(table)}, "the threads")
            await pilot.press("2")
            top = app.query_one("#top-table")
            await until(pilot, lambda: "__main__.crunch" in [r[2] for r in cells(top)], "crunch in Top")
            await pilot.press("3")
            await until(pilot, lambda: "__main__.Basket" in [r[0] for r in cells(app.query_one("#memory-types"))], "the census")
            await pilot.press("4")
            app.query_one("#watch-pattern").value = "__main__.place_order"
            await pilot.press("enter")
            calls = app.query_one("#watch-table")
            await until(pilot, lambda: len(cells(calls)) >= 3, "three watched calls")
            assert all(r[1] == "__main__.place_order" for r in cells(calls))
            await pilot.press("escape", "escape", "1")
            await until(pilot, lambda: app.current == "threads" and cells(table), "the threads again")
            await pilot.press("q")
            await until(pilot, lambda: not app.is_running, "the app gone")

    try:
        # Two threads or more want a core at any time, on average (the hashers, and burner but while it
        # waits for the GIL): both cores of a 2-core machine.
        runnable = runnable_threads(target.pid)
        assert sum(runnable.get(name, 0) for name in ("hasher-0", "hasher-1", "burner")) >= 18, runnable
        asyncio.run(scenario())
        assert session.closed
        assert probes_left(saturated) == []
        assert target.alive()
    finally:
        session.close()
        target.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_stream_answers_once_its_probes_are_in(steady: Attached) -> None:
    """The agent answers a probe stream's start once its probes are installed: a call the target makes
    right after the answer is seen (tried five times, each on a fresh stream). With a budget the
    answer also waits for the calibration; the first call is still seen (a cold function keeps every call)."""
    assert steady.process.proc.stdin is not None
    with steady.client() as other:
        for attempt in range(5):
            args: dict[str, Any] = {"pattern": "__main__.quote", "limit": 1, "timeout": 10}
            if attempt % 2:
                args["overhead_budget"] = 5
            stream = other.stream("watch", args)
            start = next(stream)
            assert start.data["functions"] == ["__main__.quote"]
            steady.process.proc.stdin.write("1\n")  # the clerk calls quote(7, "sku-2") once, now
            steady.process.proc.stdin.flush()
            messages = list(stream)
            calls = [m.data for m in messages if isinstance(getattr(m, "data", None), dict)
                     and m.data.get("function") == "__main__.quote"]
            assert len(calls) == 1 and "'item': 7" in calls[0]["value"]["repr"], (attempt, messages)
    assert probes_left(steady) == []


def test_census_sampled_to_its_budget(steady: Attached) -> None:
    """The Memory view's census at each 1 s refresh (``sample``): a heap too big for the time is
    sampled, every k-th object counted k times, said so, with estimates near the target's exact counts
    (200000 Crates, 20000 Baskets, 3 Shelves); without ``sample`` every object is counted."""
    def counts(result: dict[str, Any]) -> dict[str, int]:
        return {t["type"]: t["count"] for t in result["types"]}

    with steady.client() as other:
        whole = other.request("memory", {"types": 20, "sort": "count", "max_seconds": 10})
        sampled = other.request("memory", {"types": 20, "sort": "count", "max_seconds": 0.01, "sample": True})
    assert whole["census"]["sampled_every"] == 1 and not whole["census"]["truncated"]
    assert counts(whole)["__main__.Crate"] == 200000 and counts(whole)["__main__.Basket"] == 20000
    census = sampled["census"]
    assert census["sampled_every"] > 1 and census["objects"] < census["objects_tracked"] / 2, census
    for name, truth in (("__main__.Crate", 200000), ("__main__.Basket", 20000)):
        assert abs(counts(sampled)[name] - truth) <= 0.05 * truth, (name, counts(sampled)[name], census)
    assert 0 < census["gil_hold_max_seconds"] <= census["seconds"] < whole["census"]["seconds"]


@pytest.mark.parametrize("attached", [CLIENT_ONLY], indirect=True)  # the client's behaviour: one version
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


class Terminal:
    """A real terminal: a tmux session of fixed size on a private server, running one command."""

    def __init__(self, tmp_path: Any) -> None:
        if shutil.which("tmux") is None:
            pytest.skip("tmux is not installed (scripts/setup.sh installs it)")
        self.name = f"peeka-tui-{os.getpid()}"
        self.env = {"TERM": "xterm-256color", "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
                    "TMPDIR": os.environ.get("TMPDIR", "/tmp")}
        self.tmux = ["tmux", "-S", f"{tmp_path}/tmux.sock"]

    def start(self, command: str) -> None:
        for _attempt in range(5):
            started = subprocess.run([*self.tmux, "new-session", "-d", "-s", self.name, "-x", "160", "-y", "45", command],
                                     env=self.env, capture_output=True, text=True)
            if started.returncode == 0:
                return
            time.sleep(0.3)  # a server whose last session just ended is still exiting: "server exited unexpectedly"
        raise AssertionError(f"tmux new-session failed: {started.stderr}")

    def pane(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.name], capture_output=True, text=True).stdout

    def wait(self, pattern: str, timeout: float = 40.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.pane()
            if re.search(pattern, shown):
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} never appeared; the pane:\n{self.pane()}")

    def keys(self, *k: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, *k], check=True)

    def tmux_run(self, *args: str) -> None:
        subprocess.run([*self.tmux, *args], check=True)

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


@pytest.mark.parametrize("attached", [CLIENT_ONLY], indirect=True)  # the client's behaviour: one version
def test_end_to_end_in_tmux(attached: Attached, tmp_path: Any) -> None:
    """The real `peeka tui PID` in a 160x45 tmux terminal: switch views, start a watch, quit; no probe is left."""
    term = Terminal(tmp_path)
    command = f"{sys.executable} -m peeka tui {attached.pid}; echo tui-exited-$?; sleep 30"
    term.start(command)
    try:
        screen = term.wait(r"burner\s+│?\s*\d+\.\d")
        assert f"pid {attached.pid}" in screen and "napper" in screen
        # The terminal resized under it: smaller, tiny, then back; the app redraws and keeps running.
        for width, height in ((100, 30), (40, 10), (160, 45)):
            term.tmux_run("resize-window", "-t", term.name, "-x", str(width), "-y", str(height))
            shown = term.wait(rf"pid {attached.pid}")
            assert max(len(line) for line in shown.splitlines()) <= width
        term.wait(r"burner\s+│?\s*\d+\.\d")
        term.keys("2")
        term.wait(r"__main__\.crunch")
        term.keys("4")
        term.wait(r"pattern, e\.g\.")
        term.keys("-l", "__main__.place_order")
        term.keys("Enter")
        screen = term.wait(r"'order_id': \d+")
        assert "__main__.place_order" in screen
        assert probes_left(attached) == ["__main__.place_order"]
        term.keys("Escape")  # stops the watch; then leave the pattern box for the table, where q quits
        term.wait(r"watch stopped")
        term.keys("Escape")  # apart from the q: ESC followed at once by q reads as alt+q in a terminal
        time.sleep(1.0)
        term.keys("q")
        term.wait(r"tui-exited-0")
        assert probes_left(attached) == []
        # Again, and this time the terminal goes away under a running watch (SIGHUP): no probe stays.
        term.tmux_run("kill-session", "-t", term.name)
        term.start(command)
        term.wait(r"napper")
        term.keys("4")
        term.wait(r"pattern, e\.g\.")
        term.keys("-l", "__main__.place_order")
        term.keys("Enter")
        term.wait(r"'order_id': \d+")
        assert probes_left(attached) == ["__main__.place_order"]
        term.tmux_run("kill-server")  # the pane's terminal closes: SIGHUP
        deadline = time.monotonic() + 15
        while probes_left(attached) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        term.close()
    assert probes_left(attached) == []
    assert attached.process.alive()


@pytest.mark.parametrize("attached", [CLIENT_ONLY], indirect=True)
def test_picker_in_tmux(attached: Attached, tmp_path: Any) -> None:
    """`peeka tui` without a PID: the picker, its filter, Enter attaches; o goes back to the picker;
    Esc there ends the command (exit status 0)."""
    term = Terminal(tmp_path)
    term.start(f"{sys.executable} -m peeka tui; echo tui-exited-$?; sleep 30")
    try:
        term.wait(rf"\b{attached.pid}\b.*tui_target\.py")
        time.sleep(3.0)  # the picker is drawn; let it settle before typing (a key sent sooner was lost in CI)
        term.keys("/")
        term.keys("-l", str(attached.pid))
        term.wait(rf"▊\s+{attached.pid}\s")  # the filter box shows the PID typed
        term.keys("Enter")

        def only_the_target() -> bool:
            pids = re.findall(r"(?m)^\s*(\d+)\s+\S+\s+3\.\d+", term.pane())
            return pids == [str(attached.pid)]

        deadline = time.monotonic() + 20
        while not only_the_target():  # Enter attaches to the selected row: never to another process
            assert time.monotonic() < deadline, term.pane()
            time.sleep(0.2)
        term.keys("Enter")
        screen = term.wait(rf"pid {attached.pid} .*via")
        assert "python 3.14" in screen
        term.wait(r"burner")
        term.keys("o")
        term.wait(r"Enter attaches to the selected process")
        term.keys("Escape")
        term.wait(r"tui-exited-0")
    finally:
        term.close()
    assert probes_left(attached) == []


def test_target_death_shows_in_the_status_line(spawn: Any, tmp_path: Any) -> None:
    """The target is killed while the TUI is open: the status line says the connection is lost, the
    app keeps running and quits cleanly (one version: this is the client's behaviour)."""
    tmp = tempfile.mkdtemp(prefix="pk-")  # short: a Unix socket path has ~100 bytes
    target = spawn(python_for("3.14"), "tui_target.py", env={"TMPDIR": tmp, "PYTHONDONTWRITEBYTECODE": "1"})
    client, _report = attach(target.pid, timeout=30)
    session = Session(client)

    async def pick() -> int | None:
        """`peeka tui` without a PID: the picker lists the target (as `peeka ps` does); the filter
        narrows the table to it; Enter returns its PID."""
        picker = PickerApp()
        async with picker.run_test(size=SIZE) as pilot:
            table = picker.query_one("#picker-table")
            await until(pilot, lambda: str(target.pid) in [r[0] for r in cells(table)], "the target in the list",
                        status="#picker-status")
            await pilot.press("slash", *str(target.pid), "enter")
            rows = await until(pilot, lambda: [r for r in cells(table) if r[0] == str(target.pid)] == cells(table)
                               and cells(table), "only the target", status="#picker-status")
            assert rows[0][2] == "3.14" and rows[0][3] == "yes" and "tui_target.py" in rows[0][5]
            await pilot.press("enter")
        return picker.return_value

    assert asyncio.run(pick()) == target.pid

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
            assert "connection to the agent lost" in text_of(status) and "o picks another process" in text_of(status)
            await until(pilot, lambda: "EXITED" in text_of(app.query_one("#header")), "the target's exit")
            await pilot.press("o")  # another process: the app ends asking for the picker
            await until(pilot, lambda: not app.is_running, "the app gone")
        assert app.return_value == PICK

    asyncio.run(scenario())
    assert session.closed
    shutil.rmtree(tmp, ignore_errors=True)
