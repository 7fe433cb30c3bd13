"""Serve Peeka's commands as MCP tools for AI assistants (Claude Desktop, VS Code, ...) over stdio, or
streamable HTTP with --http; read-only unless started with --allow-changes."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from ..errors import UnsupportedVersion, UsageError
from ..options import with_options

NAME = "mcp"
# The official MCP SDK (pinned in pyproject) installs on Python 3.10 and later only.
MIN_PYTHON = (3, 10)
# The bearer token --http requires off loopback (and checks wherever it is set); from the environment,
# so it is not on the command line for other users to read in `ps`.
TOKEN_ENV = "PEEKA_MCP_TOKEN"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@with_options(attach=False, json=False)
def command(
    allow_changes: Annotated[
        bool,
        typer.Option("--allow-changes", help="Let tool calls change targets: logger levels, tt replay, --unsafe "
                                             "expressions, tracemalloc start. Off: the agent refuses them."),
    ] = False,
    http: Annotated[
        Optional[str],  # noqa: UP045 - typer evaluates this annotation, also on Python 3.9
        typer.Option("--http", metavar="HOST:PORT",
                     help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio. Off loopback "
                          f"every request needs `Authorization: Bearer ${TOKEN_ENV}` (set {TOKEN_ENV})."),
    ] = None,
) -> None:
    if sys.version_info < MIN_PYTHON:
        running = f"{sys.version_info[0]}.{sys.version_info[1]}"
        raise UnsupportedVersion(
            f"peeka mcp needs Python 3.10 or later (the MCP SDK's minimum); this peeka runs on Python {running}",
            "Install peeka under Python 3.10+ for `peeka mcp` (e.g. `pipx install --python python3.12 peeka`); "
            "its targets may still run any Python 3.9-3.14.",
        )
    if http is None:
        from ..mcp.server import serve_stdio

        serve_stdio(allow_changes)
        return
    host, _, port = http.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise UsageError(f"--http takes HOST:PORT, got {http!r}", "For example --http 127.0.0.1:8765.")
    token = os.environ.get(TOKEN_ENV) or None
    if host not in LOOPBACK and token is None:
        raise UsageError(f"--http on {host} (not loopback) needs a bearer token",
                         f"Set {TOKEN_ENV} to a long random secret (e.g. `export {TOKEN_ENV}=$(openssl rand -hex 32)`); "
                         "clients then send `Authorization: Bearer <it>`.")
    from ..mcp.server import serve_http

    serve_http(host, int(port), allow_changes, token)
