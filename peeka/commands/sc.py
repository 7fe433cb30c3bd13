"""Search loaded classes by qualified name: wildcards (`myapp.models.*`, `*.User`) or -E regex."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..render import console, emit_json, table
from ._common import Debug, Json, Method, Pid, Timeout, agent

NAME = "sc"

Pattern = Annotated[
    str,
    typer.Argument(
        help="Qualified name with wildcards (* spans dots): 'myapp.models.*', '*.User'; "
        "a plain name matches exactly or as a dotted suffix."
    ),
]
Detail = Annotated[bool, typer.Option("-d", "--detail", help="Add where each one is defined, and more.")]
Regex = Annotated[bool, typer.Option("-E", "--regex", help="PATTERN is a regular expression (searched).")]
Limit = Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="Show at most N matches.")]


def search_args(pattern: str, detail: bool, regex: bool, limit: int) -> dict[str, Any]:
    return {"pattern": pattern, "detail": detail, "regex": regex, "limit": limit}


def footer(result: dict[str, Any], what: str) -> str:
    shown = len(result.get("classes") or result.get("functions") or [])
    if result["truncated"]:
        return f"[dim]{result['count']} {what} match; showing the first {shown} (--limit raises it)[/]"
    return f"[dim]{result['count']} {what} match[/]"


def where(entry: dict[str, Any]) -> str:
    if not entry.get("file"):
        return ""
    return f"{entry['file']}:{entry['line']}" if entry.get("line") else str(entry["file"])


def command(
    pid: Pid,
    pattern: Pattern,
    detail: Detail = False,
    regex: Regex = False,
    limit: Limit = 100,
    method: Method = "auto",
    timeout: Timeout = 10.0,
    json: Json = False,
    debug: Debug = False,
) -> None:
    with agent(pid, method, timeout, quiet=json) as client:
        result = client.request(NAME, search_args(pattern, detail, regex, limit))
    if json:
        emit_json(result)
        return
    rows = result["classes"]
    if detail:
        columns = ["CLASS", "BASES", "MRO", "METHODS", "DEFINED AT"]
        cells = [
            [r["name"], ", ".join(r.get("bases") or []), r.get("mro_length"), r.get("methods"), where(r)]
            for r in rows
        ]
    else:
        columns, cells = ["CLASS"], [[r["name"]] for r in rows]
    if rows:
        console.print(table(None, columns, cells))
    console.print(footer(result, "class(es)"))
