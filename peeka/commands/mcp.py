"""Serve Peeka's commands as MCP tools over stdio for AI assistants (Claude Desktop, VS Code, ...):
read-only unless started with --allow-changes."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..errors import UnsupportedVersion
from ..options import with_options

NAME = "mcp"
# The official MCP SDK (pinned in pyproject) installs on Python 3.10 and later only.
MIN_PYTHON = (3, 10)


@with_options(attach=False, json=False)
def command(
    allow_changes: Annotated[
        bool,
        typer.Option("--allow-changes", help="Let tool calls change targets: logger levels, tt replay, --unsafe "
                                             "expressions, tracemalloc start. Off: the agent refuses them."),
    ] = False,
) -> None:
    if sys.version_info < MIN_PYTHON:
        running = f"{sys.version_info[0]}.{sys.version_info[1]}"
        raise UnsupportedVersion(
            f"peeka mcp needs Python 3.10 or later (the MCP SDK's minimum); this peeka runs on Python {running}",
            "Install peeka under Python 3.10+ for `peeka mcp` (e.g. `pipx install --python python3.12 peeka`); "
            "its targets may still run any Python 3.9-3.14.",
        )
    from ..mcp.server import serve_stdio

    serve_stdio(allow_changes)
