"""Search loaded classes by qualified name: wildcards (`myapp.models.*`, `*.User`) or -E regex."""

from __future__ import annotations

from ._search import Listing, search_command, where

NAME = "sc"

command = search_command(NAME, __doc__, Listing(
    key="classes",
    noun="class(es)",
    columns=("CLASS",),
    row=lambda r: [r["name"]],
    detail_columns=("CLASS", "BASES", "MRO", "METHODS", "DEFINED AT"),
    detail_row=lambda r: [r["name"], ", ".join(r.get("bases") or []), r.get("mro_length"), r.get("methods"), where(r)],
))
