"""What the search commands (sc, sm, source) share: the name-pattern argument, its options, footer
and location text."""

from __future__ import annotations

from typing import Annotated, Any

import typer

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
