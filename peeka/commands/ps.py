"""List the Python processes you can see, and how Peeka would attach to each."""

from __future__ import annotations

from ..attach.route import describe
from ..options import Shared, with_options
from ..process import python_processes
from ..render import console, emit_json, table

NAME = "ps"


@with_options(attach=False)
def command(*, shared: Shared) -> None:
    rows = []
    for target in python_processes():
        try:
            rows.append(describe(target))
        except Exception:
            continue  # exited while we looked
    if shared.json:
        emit_json(rows)
        return
    console.print(
        table(
            None,
            ["PID", "USER", "PYTHON", "AGENT", "ATTACH", "COMMAND"],
            [
                [r["pid"], r["user"], r["python"], {True: "yes", False: "-", None: "?"}[r["agent"]], r["method"],  # type: ignore[index]
                 str(r["command"])[:120]]
                for r in rows
            ],
        )
    )
