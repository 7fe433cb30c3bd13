"""`peeka mcp` driven by the official MCP SDK's client over stdio, against real targets.

For each pair the server runs under one Python and the target under another (3.12 and 3.14, both
ways), over one target and one agent: the tool list, then thread, inspect, watch (bounded), top with
progress notifications, checked against what tests/targets/mcp_target.py does; a watch cancelled
mid-stream leaves no probe (asked through a second MCP client); a target killed mid-watch is a clear
tool error and the same server keeps serving; a change (a logger's level, an unsafe expression) is
refused by the agent for the default read-only server (and on its audit trail as front end mcp,
read-only, from the server's process) and made for one started with --allow-changes. `peeka mcp` under Python 3.9 (no MCP SDK there: it
needs 3.10+) fails with exit 5 naming the version.

The SDK installs on Python 3.10+ only, so the client side needs this test's interpreter to be 3.10+.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, TARGETS, Target, borrowed_gdb, peeka_cli, python_for, thread_count

if sys.version_info < (3, 10):
    pytest.skip(f"the MCP SDK's client needs Python 3.10+, this test runs on {sys.version.split()[0]}",
                allow_module_level=True)

import anyio  # noqa: E402
from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.parallel]

TOOLS = {"ps", "thread", "top", "memory", "inspect", "sc", "sm", "source", "tasks", "logger", "watch", "trace",
         "stack", "monitor", "tt", "reset", "detach"}
# The line of the target's main loop that calls scaled(n): where stack must place the caller.
CALL_LINE = 1 + (TARGETS / "mcp_target.py").read_text().splitlines().index("        scaled(n)")
NOTHING = "no_such_module_zz.nothing"  # reset with this pattern removes nothing and lists the probes left


def server_python(version: str) -> str:
    python = ROOT / (".venv" + version.replace(".", "")) / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no client venv for Python {version} ({python.parent.parent.name}): scripts/setup.sh makes one")
    return str(python)


@asynccontextmanager
async def mcp_session(python: str, *flags: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=python, args=["-m", "peeka", "mcp", *flags],
                                   env=dict(os.environ, **borrowed_gdb(python)))
    # Anything but the protocol on the server's stdout reaches the client as a transport exception.
    not_protocol: list[Exception] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            not_protocol.append(message)

    with tempfile.TemporaryFile("w+") as errlog:
        try:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write, message_handler=on_message) as session:
                    await session.initialize()
                    yield session
            assert not_protocol == [], not_protocol
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
    # The second client (cancellation checks, changes) is a server started with --allow-changes.
    async with mcp_session(server) as session, mcp_session(server, "--allow-changes") as second:
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

        # The other read-only tools, each on something the target defines.
        assert [c["name"] for c in (await call(session, "sc", pid=pid, pattern="__main__.Recipe"))["classes"]] \
            == ["__main__.Recipe"]
        methods = (await call(session, "sm", pid=pid, pattern="__main__.Recipe.*"))["functions"]
        assert [m["name"] for m in methods] == ["__main__.Recipe.bake"], methods
        source = (await call(session, "source", pid=pid, pattern="__main__.Recipe.bake"))["sources"][0]
        assert source["status"] == "matches" and "return minutes * 60" in "\n".join(source["lines"]), source
        assert (await call(session, "tasks", pid=pid))["count"] == 0  # no event loop in this target
        memory = await call(session, "memory", pid=pid, types=5)
        assert memory["process"]["rss_bytes"] > 0 and len(memory["types"]) == 5, memory["process"]
        loggers = {e["name"]: e for e in (await call(session, "logger", pid=pid))["loggers"]}
        assert loggers["mcp.target"]["level"] == "WARNING", loggers["mcp.target"]
        followed = await call(session, "logger", pid=pid, name="mcp.target", follow=True, limit=2)
        assert [(e["logger"], e["level"], e["message"]) for e in followed["events"]] == \
            [("mcp.target", "WARNING", "round done")] * 2, followed
        stacks = await call(session, "stack", pid=pid, pattern="__main__.scaled", limit=1)
        caller = stacks["events"][0]["stack"][1]
        assert (caller["function"], caller["line"]) == ("__main__.<module>", CALL_LINE), stacks["events"]
        traced = await call(session, "trace", pid=pid, pattern="__main__.scaled", limit=1)
        assert traced["events"][0]["tree"]["function"] == "__main__.scaled", traced["events"]
        monitored = await call(session, "monitor", pid=pid, pattern="__main__.scaled", cycle=0.3, limit=1)
        row = monitored["events"][0]["functions"][0]
        assert row["calls"] > 0 and row["failures"] == 0, row
        recorded = await call(session, "tt", pid=pid, pattern="__main__.scaled", limit=2)
        assert len(recorded["events"]) == 2 and recorded["end"]["reason"] == "limit", recorded
        records = (await call(session, "tt", pid=pid, list=True))["records"]
        shown = await call(session, "tt", pid=pid, show=records[-1]["index"])
        n = int(next(c for c in shown["params"]["children"] if c["key"] == "'n'")["value"]["repr"])
        assert shown["outcome"]["repr"] == str(2 * n), shown  # scaled(n) returned 2n

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

        # Read-only by default: a change is refused with the reason and the target keeps its level;
        # a server started with --allow-changes makes it, and reset puts the level back.
        level = "logging.root.manager.loggerDict['mcp.target'].level"
        for tool, arguments in (("logger", {"name": "mcp.target", "level": "DEBUG"}),
                                ("inspect", {"expression": "1", "unsafe": True})):
            refused = await session.call_tool(tool, {"pid": pid, **arguments})
            assert refused.is_error and refused.content[0].text.startswith(
                "read-only: start the server with --allow-changes to permit this"), refused.content
        assert (await call(session, "inspect", pid=pid, expression=level))["value"]["repr"] == "30"
        # Both refusals are on the agent's audit trail: front end mcp, read-only, from the server's process.
        trail = await anyio.to_thread.run_sync(lambda: peeka_cli("audit", str(pid), "--json"))
        refusals = [e for e in json.loads(trail.stdout)["entries"] if e["outcome"] == "refused"]
        assert [(e["command"], e["frontend"], e["read_only"]) for e in refusals] == \
            [("logger", "mcp", True), ("inspect", "mcp", True)], refusals
        server_cmdline = (Path("/proc") / str(refusals[0]["peer_pid"]) / "cmdline").read_bytes().split(b"\0")
        assert server_cmdline[1:3] == [b"-m", b"peeka"] and b"mcp" in server_cmdline, server_cmdline
        changed = await call(second, "logger", pid=pid, name="mcp.target", level="DEBUG")
        assert (changed["previous_level"], changed["level"]) == ("WARNING", "DEBUG"), changed
        assert (await call(session, "inspect", pid=pid, expression=level))["value"]["repr"] == "10"
        await call(second, "reset", pid=pid)
        assert (await call(session, "inspect", pid=pid, expression=level))["value"]["repr"] == "30"

        # The target dies mid-watch: a clear tool error, and the server serves the next call.
        # (Target.stop is synchronous: terminate, then wait up to 5 s; a SIGTERM ends this target at once.)
        async def kill_on_progress(done: float, total: float | None, message: str | None) -> None:
            dying.stop()  # the watch is running (its first progress came): the target goes

        assert (await call(session, "inspect", pid=dying.pid, expression="2 + 2"))["value"]["repr"] == "4"  # attached
        died = await session.call_tool("watch", {"pid": dying.pid, "pattern": "__main__.scaled",
                                                 "condition": "cost < 0", "timeout": 60},
                                       progress_callback=kill_on_progress)
        assert died.is_error, died.content
        assert died.content[0].text.startswith(f"process {dying.pid} exited during the watch call"), died.content
        assert died.structured_content["error"] == "agent-unavailable", died.structured_content  # type: ignore[index]
        assert (await call(session, "inspect", pid=pid, expression="1 + 1"))["value"]["repr"] == "2"
        assert await probes_left(session, pid) == []

        # detach: the agent's threads leave; the target's own three remain (main, spinner, sleeper).
        assert (await call(session, "detach", pid=pid))["detached"] is True
        with anyio.fail_after(10):
            while thread_count(pid) != 3:
                await anyio.sleep(0.05)


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


def test_mcp_over_streamable_http_needs_the_bearer_token() -> None:
    """--http: the SDK's streamable HTTP client with the token gets the tools and a call's answer; a
    request without it gets 401; a non-loopback address without a token is refused before serving."""
    import socket
    import subprocess

    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/mcp"
    server = subprocess.Popen([sys.executable, "-m", "peeka", "mcp", "--http", f"127.0.0.1:{port}"],
                              env=dict(os.environ, PEEKA_MCP_TOKEN="t0ken-for-this-test"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    async def talk() -> None:
        async with httpx2.AsyncClient(timeout=30) as bare:
            with anyio.fail_after(30):
                while True:  # until the server listens
                    try:
                        refused = await bare.post(url, json={})
                        break
                    except httpx2.TransportError:
                        await anyio.sleep(0.1)
            assert refused.status_code == 401, refused.text
        async with httpx2.AsyncClient(headers={"Authorization": "Bearer t0ken-for-this-test"}, timeout=30) as http:
            async with streamable_http_client(url, http_client=http) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    await session.initialize()
                    assert {t.name for t in (await session.list_tools()).tools} == TOOLS
                    listed = {p["pid"]: p for p in (await call(session, "ps"))["processes"]}
                    assert listed[os.getpid()]["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"  # this test's process

    try:
        anyio.run(talk)
    finally:
        server.terminate()
        out, err = server.communicate(timeout=10)
    assert out == "", out  # stdout stays the protocol's even when it is not used
    open_to_all = peeka_cli("mcp", "--http", f"0.0.0.0:{port}", env={"PEEKA_MCP_TOKEN": ""}, timeout=60)
    assert open_to_all.returncode == 2 and "needs a bearer token" in open_to_all.stderr, open_to_all.stderr
