"""What the search commands (sc, sm, source) share: the name-pattern argument, its options, footer
and location text, and the whole command of sc and sm (they differ only in what a match shows)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, NamedTuple

import typer
from peeka_agent import protocol

from ..options import Pid, Shared, with_options
from ..render import console, table
from ._common import ask

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


class Listing(NamedTuple):
    """How a search command shows its matches, plain and with --detail."""

    key: str  # the answer's list of matches: "classes"
    noun: str  # for the footer: "class(es)"
    columns: tuple[str, ...]
    row: Callable[[dict[str, Any]], list[Any]]
    detail_columns: tuple[str, ...]
    detail_row: Callable[[dict[str, Any]], list[Any]]


def search_command(name: str, doc: str | None, listing: Listing) -> Callable[..., None]:
    """The CLI command NAME: ask the agent's NAME for PATTERN's matches and show them as ``listing`` says."""

    @with_options()
    def command(
        pid: Pid,
        pattern: Pattern,
        detail: Detail = False,
        regex: Regex = False,
        limit: Limit = protocol.DEFAULT_SEARCH_LIMIT,
        *,
        shared: Shared,
    ) -> None:
        result = ask(pid, name, search_args(pattern, detail, regex, limit), shared)
        if result is None:
            return
        rows = result[listing.key]
        columns, row = (listing.detail_columns, listing.detail_row) if detail else (listing.columns, listing.row)
        if rows:
            console.print(table(None, list(columns), [row(r) for r in rows]))
        console.print(footer(result, listing.noun))

    command.__doc__ = doc
    return command
