"""3 Memory: RSS/USS/PSS/VMS and peak, the garbage collector's counts and collections, and the object
types that fill the heap (by count), from the agent's ``memory`` command every few seconds while
shown. The census walks the GC's objects holding the GIL, so it is capped in time and not run
while the view is hidden."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable, Static

from ..header import size
from ..view import PollingView

TYPES = 30
CENSUS_MAX_SECONDS = 0.5
COLUMNS = ("type", "count", "shallow size")


class View(PollingView):
    TITLE = "Memory"
    REFRESH_S = 3.0
    DEFAULT_CSS = "#memory-facts { height: 4; } #memory-types { height: 1fr; }"

    def __init__(self) -> None:
        super().__init__(id="view-memory")

    def compose(self) -> Any:
        yield Static("asking the agent…", id="memory-facts")
        table: DataTable[Any] = DataTable(id="memory-types", cursor_type="row")
        table.add_columns(*COLUMNS)
        yield table

    def poll(self) -> None:
        self.ask("memory", {"types": TYPES, "sort": "count", "max_seconds": CENSUS_MAX_SECONDS}, self.show)

    def show(self, result: dict[str, Any]) -> None:
        p = result["process"]
        gc = result["gc"]
        census = result.get("census") or {}
        lines = [
            Text.assemble(("RSS ", "dim"), size(p.get("rss_bytes")), ("  USS ", "dim"), size(p.get("uss_bytes")),
                          ("  PSS ", "dim"), size(p.get("pss_bytes")), ("  VMS ", "dim"), size(p.get("vms_bytes")),
                          ("  peak RSS ", "dim"), size(p.get("peak_rss_bytes")), ("  swap ", "dim"), size(p.get("swap_bytes"))),
            Text.assemble(("GC ", "dim"), "enabled" if gc["enabled"] else "DISABLED",
                          ("  counts ", "dim"), "/".join(map(str, gc["counts"])),
                          ("  thresholds ", "dim"), "/".join(map(str, gc["thresholds"])),
                          ("  collections ", "dim"), "/".join(str(g["collections"]) for g in gc["generations"]),
                          ("  uncollectable ", "dim"), "/".join(str(g["uncollectable"]) for g in gc["generations"])),
            Text(f"census: {census.get('objects', '?')} GC-tracked objects in {census.get('seconds', 0):.3f} s"
                 + (" (capped: partial)" if census.get("truncated") else ""), style="dim"),
        ]
        self.query_one("#memory-facts", Static).update(Text("\n").join(lines))
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for t in result.get("types") or []:
            table.add_row(t["type"], str(t["count"]), size(t["size_bytes"]), key=t["type"])
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))
