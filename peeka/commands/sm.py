"""Search loaded functions and methods by qualified name (`myapp.*.get`, `*.User.save`) or -E regex."""

from __future__ import annotations

from ._search import Listing, search_command, where

NAME = "sm"

command = search_command(NAME, __doc__, Listing(
    key="functions",
    noun="function(s)",
    columns=("FUNCTION", "KIND"),
    row=lambda r: [r["name"], r["kind"]],
    detail_columns=("FUNCTION", "KIND", "SIGNATURE", "DEFINED AT"),
    detail_row=lambda r: [r["name"], r["kind"], r.get("signature") or "", where(r)],
))
