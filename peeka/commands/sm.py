"""Search loaded functions and methods by qualified name (`myapp.*.get`, `*.User.save`) or -E regex."""

from __future__ import annotations

from peeka_agent import protocol

from ..options import Pid, Shared, with_options
from ..render import console, table
from ._common import ask
from ._search import Detail, Limit, Pattern, Regex, footer, search_args, where

NAME = "sm"


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
    rows = result["functions"]
    if detail:
        columns = ["FUNCTION", "KIND", "SIGNATURE", "DEFINED AT"]
        cells = [[r["name"], r["kind"], r.get("signature") or "", where(r)] for r in rows]
    else:
        columns, cells = ["FUNCTION", "KIND"], [[r["name"], r["kind"]] for r in rows]
    if rows:
        console.print(table(None, columns, cells))
    console.print(footer(result, "function(s)"))
