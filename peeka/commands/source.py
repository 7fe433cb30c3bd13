"""The live source of functions and classes (`myapp.views.index`, `*.User`, -E regex) with file and line,
marked when the file on disk no longer matches the code that runs (and what differs).
"""

from __future__ import annotations

from typing import Any

from ..options import Pid, Shared, with_options
from ..render import console, escape
from ._common import ask
from ._search import Limit, Pattern, Regex, footer

NAME = "source"

STATUS_STYLE = {
    "matches": "[green]matches the file on disk[/]",
    "moved": "[yellow]MOVED on disk: same code, other lines[/]",
    "changed": "[bold red]STALE: the file on disk differs from the code that runs[/]",
    "missing": "[bold red]the file is gone[/]",
    "no-source": "[dim]no source[/]",
    "unknown": "[yellow]not verified[/]",
}


def show_source(entry: dict[str, Any]) -> None:
    where = f"{entry['file']}:{entry['line']}" if entry.get("file") else ""
    console.print(f"[bold]{escape(entry['name'])}[/] [dim]{entry['kind']}  {escape(where)}[/]  "
                  + STATUS_STYLE.get(entry["status"], entry["status"]))
    for reason in entry.get("why") or ():
        console.print(f"  [yellow]- {escape(reason)}[/]")
    lines = entry.get("lines")
    if lines:
        start = entry.get("disk_line") or entry.get("line") or 1
        if entry["status"] in ("changed", "moved"):
            console.print(f"  [dim]text below is the file as it is now, from line {start}[/]")
        from rich.syntax import Syntax

        console.print(Syntax("\n".join(lines), "python", line_numbers=True, start_line=start, word_wrap=True))


@with_options()
def command(
    pid: Pid,
    pattern: Pattern,
    regex: Regex = False,
    limit: Limit = 10,
    *,
    shared: Shared,
) -> None:
    result = ask(pid, NAME, {"pattern": pattern, "regex": regex, "limit": limit}, shared)
    if result is None:
        return
    for entry in result["sources"]:
        show_source(entry)
    console.print(footer({**result, "functions": result["sources"]}, "function(s) and class(es)"))
