"""Search loaded classes by qualified name: wildcards (`myapp.models.*`, `*.User`) or -E regex."""

from __future__ import annotations

from peeka_agent import protocol

from ..options import Pid, Shared, with_options
from ..render import console, table
from ._common import ask
from ._search import Detail, Limit, Pattern, Regex, footer, search_args, where

NAME = "sc"


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
    result = ask(pid, NAME, search_args(pattern, detail, regex, limit), shared)
    if result is None:
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
