"""``peeka mcp``'s server, on the official MCP SDK's low-level ``Server`` (tools only).

A tool call runs the CLI command ``peeka VERB ... --json`` (``peeka.mcp.tools``) in a worker thread,
under a ``peeka.frontend.Call`` that collects the JSON documents it prints and the agent connections
it opens. A stream reports MCP progress (seconds elapsed of its timeout, events so far) while it
runs; a call the client cancels breaks its agent connections off, and the agent takes the stream's
probes off as for a CLI client that went away. Every failure of a call (bad argument, target gone,
agent refusal) is that call's tool error; the server keeps serving.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server

from .. import __version__
from ..cli import build_app
from ..errors import AgentUnavailable, PeekaError
from ..frontend import Call, running
from .summary import summarize
from .tools import TOOLS, ToolSpec, description, input_schema, invocation

PROGRESS_EVERY = 1.0  # s between progress notifications of a running stream

INSTRUCTIONS = (
    "Live diagnostics of running Python processes on this host: `ps` lists them; every other tool "
    "takes the target's `pid` and attaches on first use (no restart). Streams (watch, trace, stack, "
    "monitor, top, logger follow, tt record) end after `limit` events or `timeout` seconds and return "
    "what they collected. Expressions only read unless `unsafe` is given."
)


def _tool(spec: ToolSpec) -> types.Tool:
    return types.Tool(
        name=spec.verb,
        description=description(spec.verb),
        input_schema=input_schema(spec.verb),
        annotations=types.ToolAnnotations(
            read_only_hint=spec.observes_only, destructive_hint=False,
            idempotent_hint=spec.observes_only and not spec.streams, open_world_hint=False),
    )


def build(allow_changes: bool = False) -> Server[Any]:
    """The MCP server; read-only unless ``allow_changes`` (the agent then refuses changes)."""
    tools = [_tool(spec) for spec in TOOLS.values()]

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name not in TOOLS:
            return _error(f"no tool {params.name!r}", f"Tools: {', '.join(TOOLS)}.", {})
        return await _call(ctx, params.name, dict(params.arguments or {}), read_only=not allow_changes)

    mode = (" This server may change targets (started with --allow-changes)." if allow_changes else
            " This server is read-only: logger level changes, tt replay, unsafe expressions and tracemalloc "
            "start are refused.")
    return Server("peeka", version=__version__, instructions=INSTRUCTIONS + mode,
                  on_list_tools=list_tools, on_call_tool=call_tool)


async def _call(ctx: Any, verb: str, arguments: dict[str, Any], read_only: bool) -> types.CallToolResult:
    try:
        how = invocation(verb, arguments)
    except PeekaError as exc:
        return _error(exc.message, exc.help, exc.to_dict())
    documents: list[Any] = []
    # The documents exactly as the CLI prints them (its json.dumps, default=str), read back.
    call = Call("mcp", read_only, emit=lambda d: documents.append(json.loads(json.dumps(d, default=str))))

    def work() -> BaseException | None:
        with running(call):
            try:
                build_app(verb)(args=how.argv, prog_name="peeka", standalone_mode=False)
            except Exception as exc:  # the call's failure, returned: nothing may stop the server
                return exc
        return None

    started = time.monotonic()
    failure: BaseException | None = None
    try:
        async with anyio.create_task_group() as group:
            if how.streams:
                group.start_soon(_report_progress, ctx, started, how.timeout, documents)
            failure = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
            group.cancel_scope.cancel()
    except anyio.get_cancelled_exc_class():
        call.cancel()  # the worker's agent connection breaks: the agent removes the stream's probes
        raise
    if isinstance(failure, AgentUnavailable) and await _exits(arguments.get("pid")):
        # The connection broke because the target is gone: say that, not only how the socket ended.
        failure = AgentUnavailable(f"process {arguments['pid']} exited during the {verb} call ({failure.message})",
                                   "Nothing is left to clean up in it; `ps` lists the Python processes running now.")
    return _result(verb, TOOLS[verb], how.streams, documents, failure)


async def _exits(pid: Any, within: float = 0.5) -> bool:
    """Whether PID is gone or goes within a moment (its sockets close while it exits, a little before
    the kernel marks it exited)."""
    deadline = time.monotonic() + within
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        await anyio.sleep(0.02)
    return True


def _alive(pid: Any) -> bool:
    """Whether PID still runs; a zombie (exited, not yet reaped by its parent) does not."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            state = stat.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


async def _report_progress(ctx: Any, started: float, timeout: float, documents: list[Any]) -> None:
    while True:
        await anyio.sleep(PROGRESS_EVERY)
        events = max(0, len(documents) - 1)  # the first document is the stream's start
        await ctx.session.report_progress(min(time.monotonic() - started, timeout), timeout,
                                          f"{events} event(s) so far")


def _result(verb: str, spec: ToolSpec, streams: bool, documents: list[Any],
            failure: BaseException | None) -> types.CallToolResult:
    structured: dict[str, Any]
    if streams:
        start = documents[0] if documents and documents[0].get("type") == "start" else {}
        end = documents[-1] if len(documents) > 1 and documents[-1].get("type") == "end" else {}
        events = documents[1 if start else 0:len(documents) - 1 if end else len(documents)]
        structured = {"start": start, "events": events, "end": end}
    elif documents:
        structured = {spec.result_key: documents[0]} if spec.result_key else documents[0]
    else:
        structured = {}
    if failure is not None:
        if isinstance(failure, PeekaError):
            partial = {"partial": structured} if streams and structured["start"] else {}
            return _error(failure.message, failure.help, {**failure.to_dict(), **partial})
        if hasattr(failure, "format_message"):  # typer's usage errors: bad value for an option
            return _error(failure.format_message(), "", {"error": "usage", "exit_code": 2})
        print(f"peeka mcp: {verb} failed:\n" + "".join(traceback.format_exception(failure)), file=sys.stderr)
        return _error(f"{verb} failed inside peeka: {type(failure).__name__}: {failure}",
                      "This is a Peeka bug; the target is unharmed.", {"error": "internal"})
    return types.CallToolResult(content=[types.TextContent(type="text", text=summarize(verb, structured))],
                                structured_content=structured)


def _error(message: str, help: str, document: dict[str, Any]) -> types.CallToolResult:
    text = message + (f"\n{help}" if help else "")
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                structured_content=document, is_error=True)


def serve_stdio(allow_changes: bool) -> None:
    """Serve MCP over stdin/stdout until the client closes stdin. The SDK points fd 1 at stderr while
    it serves, so nothing but the protocol reaches stdout (child processes such as gdb included)."""
    from mcp.server.stdio import stdio_server

    server = build(allow_changes)

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(main)


def serve_http(host: str, port: int, allow_changes: bool, token: str | None) -> None:
    """Serve MCP over streamable HTTP at http://HOST:PORT/mcp. With ``token`` every HTTP request must
    carry ``Authorization: Bearer TOKEN`` (the caller requires one off loopback)."""
    import uvicorn

    app: Any = build(allow_changes).streamable_http_app(host=host)
    if token:
        app = _BearerOnly(app, token)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")).run()


class _BearerOnly:
    """ASGI: HTTP requests without the bearer token get 401 and never reach the MCP app."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        import hmac

        if scope["type"] == "http":
            given = dict(scope.get("headers") or ()).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):  # constant time: the token is not guessable by timing
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"www-authenticate", b"Bearer"), (b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"peeka mcp: bearer token required\n"})
                return
        await self.app(scope, receive, send)
