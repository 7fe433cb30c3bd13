"""`peeka mcp` driven by the official MCP SDK's client over stdio, against real targets.

For each pair the server runs under one Python and the target under another (3.12 and 3.14, both
ways), over one target and one agent: the tool list, then thread, inspect, watch (bounded), top with
progress notifications, checked against what tests/targets/mcp_target.py does; a watch cancelled
mid-stream leaves no probe (asked through a second MCP client); a target killed mid-watch is a clear
tool error and the same server keeps serving. `peeka mcp` under Python 3.9 (no MCP SDK there: it
needs 3.10+) fails with exit 5 naming the version.

The SDK installs on Python 3.10+ only, so the client side needs this test's interpreter to be 3.10+.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from conftest import ROOT, Target, peeka_cli, python_for

if sys.version_info < (3, 10):
    pytest.skip(f"the MCP SDK's client needs Python 3.10+, this test runs on {sys.version.split()[0]}",
                allow_module_level=True)

import anyio  # noqa: E402
from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402

pytestmark = pytest.mark.integration

TOOLS = {"ps", "thread", "top", "memory", "inspect", "sc", "sm", "source", "tasks", "logger", "watch", "trace",
         "stack", "monitor", "tt", "reset", "detach"}
NOTHING = "no_such_module_zz.nothing"  # reset with this pattern removes nothing and lists the probes left


def server_python(version: str) -> str:
    python = ROOT / (".venv" + version.replace(".", "")) / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no client venv for Python {version} ({python.parent.parent.name}): scripts/setup.sh makes one")
    return str(python)


@asynccontextmanager
async def mcp_session(python: str, *flags: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=python, args=["-m", "peeka", "mcp", *flags],
                                   env=dict(os.environ))
    with tempfile.TemporaryFile("w+") as errlog:
        try:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    yield session
        except BaseException:
            errlog.seek(0)
            print("peeka mcp stderr:\n" + errlog.read(), file=sys.stderr)
            raise


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, (tool, result.content)
    assert result.content[0].text.startswith(f"{tool}: "), result.content  # the short summary
    return result.structured_content or {}


async def probes_left(session: ClientSession, pid: int) -> list[str]:
    return (await call(session, "reset", pid=pid, pattern=NOTHING))["remaining"]


async def scenario(server: str, target: Target, dying: Target) -> None:
    pid = target.pid
    async with mcp_session(server) as session, mcp_session(server) as second:
        listed = await session.list_tools()
        assert {t.name for t in listed.tools} == TOOLS
        watch_tool = next(t for t in listed.tools if t.name == "watch")
        props = watch_tool.input_schema["properties"]
        assert watch_tool.input_schema["required"] == ["pid", "pattern"]
        assert props["timeout"]["default"] == 10.0 and props["limit"]["default"] == 100, props
        assert props["max_match"]["minimum"] == 1 and "CLI: -m / --max-match" in props["max_match"]["description"]

        # thread: the sleeper waits in rest(), the spinner runs spin(): their innermost frames.
        threads = {t["name"]: t for t in (await call(session, "thread", pid=pid))["threads"]}
        sleeper = [f["function"] for f in threads["mcp-sleeper"]["frames"]]
        assert sleeper[0] == "Condition.wait" and sleeper[2].endswith("rest"), sleeper  # Event.wait between
        assert threads["mcp-spinner"]["frames"][0]["function"].endswith("spin"), threads["mcp-spinner"]
        assert threads["mcp-spinner"]["cpu_percent"] > threads["mcp-sleeper"]["cpu_percent"]

        # inspect: the target's CONFIG dict, read live.
        value = (await call(session, "inspect", pid=pid, expression="__main__.CONFIG['answer'] + 1"))["value"]
        assert value["repr"] == "43", value

        # watch, bounded by limit: scaled(n) returns 2n, so the expression is 1002n for n in 0..9.
        watched = await call(session, "watch", pid=pid, pattern="__main__.scaled",
                             expression="params['n'] * 1000 + result", limit=3)
        assert watched["end"]["reason"] == "limit" and len(watched["events"]) == 3, watched
        values = [int(e["value"]["repr"]) for e in watched["events"]]
        assert all(v % 1002 == 0 and 0 <= v < 10020 for v in values), values
        assert watched["start"]["functions"] == ["__main__.scaled"], watched["start"]

        # top over one window, with progress notifications while it samples: spin() is the hottest.
        progress: list[float] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append(done)

        top = await session.call_tool("top", {"pid": pid, "interval": 1.5}, progress_callback=on_progress)
        assert not top.is_error, top.content
        report = top.structured_content["events"][-1]  # type: ignore[index]
        assert report["functions"][0]["function"] == "__main__.spin", report["functions"][:3]
        assert progress and 0 < progress[0] <= 10.0, progress

        # Cancelled mid-watch: the probe is gone (asked through the second client's reset tool).
        seen = anyio.Event()

        async def first_progress(done: float, total: float | None, message: str | None) -> None:
            seen.set()

        async with anyio.create_task_group() as group:
            async def quiet_watch() -> None:
                await session.call_tool("watch", {"pid": pid, "pattern": "__main__.scaled", "condition": "cost < 0",
                                                  "timeout": 60}, progress_callback=first_progress)
            group.start_soon(quiet_watch)
            with anyio.fail_after(20):
                await seen.wait()
            assert await probes_left(second, pid) == ["__main__.scaled"]
            group.cancel_scope.cancel()
        with anyio.fail_after(10):
            while await probes_left(second, pid):
                await anyio.sleep(0.05)

        # The target dies mid-watch: a clear tool error, and the server serves the next call.
        async def kill_soon() -> None:
            await anyio.sleep(1.5)
            dying.stop()

        async with anyio.create_task_group() as group:
            group.start_soon(kill_soon)
            died = await session.call_tool("watch", {"pid": dying.pid, "pattern": "__main__.scaled",
                                                     "condition": "cost < 0", "timeout": 60})
        assert died.is_error, died.content
        assert f"agent in {dying.pid}" in died.content[0].text or "connection" in died.content[0].text, died.content
        assert died.structured_content["error"] == "agent-unavailable", died.structured_content  # type: ignore[index]
        assert (await call(session, "inspect", pid=pid, expression="1 + 1"))["value"]["repr"] == "2"
        assert await probes_left(session, pid) == []


@pytest.mark.parametrize(("server_version", "target_version"), [("3.12", "3.14"), ("3.14", "3.12")])
def test_mcp_server_drives_a_real_target(server_version: str, target_version: str) -> None:
    server = server_python(server_version)
    target_python = python_for(target_version)
    target = Target(target_python, "mcp_target.py")
    dying = Target(target_python, "mcp_target.py")
    try:
        anyio.run(scenario, server, target, dying)
        assert target.alive()
    finally:
        peeka_cli("detach", str(target.pid))
        target.stop()
        dying.stop()


def test_mcp_on_python_39_says_which_version_it_needs() -> None:
    python = ROOT / ".venv39" / "bin" / "python"
    if not python.exists():
        pytest.skip("no client venv for Python 3.9 (.venv39): scripts/setup.sh makes one")
    out = peeka_cli("mcp", python=str(python), timeout=60)
    assert out.returncode == 5, (out.returncode, out.stderr)
    assert "Python 3.10 or later" in out.stderr and "Python 3.9" in out.stderr, out.stderr
    assert out.stdout == ""
