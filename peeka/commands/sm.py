"""Search loaded functions and methods by qualified name (`myapp.*.get`, `*.User.save`) or -E regex."""

from __future__ import annotations

from ..render import console, emit_json, table
from ._common import Debug, Json, Method, Pid, Timeout, agent
from .sc import Detail, Limit, Pattern, Regex, footer, search_args, where

NAME = "sm"


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
    rows = result["functions"]
    if detail:
        columns = ["FUNCTION", "KIND", "SIGNATURE", "DEFINED AT"]
        cells = [[r["name"], r["kind"], r.get("signature") or "", where(r)] for r in rows]
    else:
        columns, cells = ["FUNCTION", "KIND"], [[r["name"], r["kind"]] for r in rows]
    if rows:
        console.print(table(None, columns, cells))
    console.print(footer(result, "function(s)"))
