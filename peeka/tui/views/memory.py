"""3 Memory: RSS/USS/PSS/VMS and peak with RSS and USS charted over time, the garbage collector's
counts and collections, and the object types that fill the heap, from the agent's ``memory``
command while shown: the process facts and the GC every second, the type census every third time
(it walks the GC's objects holding the GIL, so it is capped in time, and never runs while the view
is hidden).

``m`` sets a mark: a census of every type (not only the rows shown) and RSS/USS then; from then on
each type shows what it grew by since the mark, and the facts the RSS/USS growth. ``s`` ranks the
types by count or by size. ``t`` starts tracemalloc (then its top allocation sites by file:line are
shown and refreshed) and stops it again; a tracemalloc the TUI started is stopped when it quits
(the session's undo), one the application started is left alone.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable, Static

from ..header import size, sparkline
from ..view import PollingView, Row, table

TYPES = 200  # rows of the census shown (sorting them costs the agent next to nothing)
MARK_TYPES = 5000  # types in the mark's census: every type a heap holds, in practice
CENSUS_MAX_SECONDS = 0.5
CENSUS_EVERY = 3  # polls: the census holds the GIL (up to CENSUS_MAX_SECONDS), the facts cost next to nothing
CHART_POINTS = 60
SITES = 15
COLUMNS = ("type", "count", "since mark", "shallow size", "size since mark")
SITE_COLUMNS = ("allocated at", "size", "blocks")
SORTS = ("count", "size")
UNDO_KEY = "memory:tracemalloc"


class Mark(NamedTuple):
    types: dict[str, tuple[int, int]]  # type -> (count, shallow bytes)
    complete: bool  # every type was in the census: a type missing from it had none
    rss: int | None
    uss: int | None


def signed(n: float, unit: str = "") -> str:
    return f"{'+' if n > 0 else ''}{n:,.0f}{unit}"


def signed_size(n: float) -> str:
    return ("+" if n > 0 else "-" if n < 0 else "") + size(abs(n))


class View(PollingView):
    TITLE = "Memory"
    REFRESH_S = 1.0  # process facts and GC; the census every CENSUS_EVERY polls
    KEYS = (("m", "set a mark: growth of every type, RSS and USS since then"), ("s", "rank types by count / size"),
            ("t", "start / stop tracemalloc (its top allocation sites are shown while it runs)"))
    BINDINGS = [Binding("m", "mark", "mark"), Binding("s", "sort", "sort"), Binding("t", "tracemalloc", "tracemalloc")]
    DEFAULT_CSS = """
    #memory-facts { height: 6; }
    #memory-types { height: 1fr; }
    #memory-sites { height: 1fr; display: none; border-top: solid $accent; }
    #view-memory.tracing #memory-sites { display: block; }
    """

    def __init__(self) -> None:
        super().__init__(id="view-memory")
        self.rss: deque[float] = deque(maxlen=CHART_POINTS)
        self.uss: deque[float] = deque(maxlen=CHART_POINTS)
        self.mark: Mark | None = None
        self.sort = "count"
        self.tracemalloc: dict[str, Any] = {}
        self.polls = 0
        self.census: dict[str, Any] = {}

    def compose(self) -> Any:
        yield Static("asking the agent…", id="memory-facts")
        yield table("memory-types", COLUMNS)
        yield table("memory-sites", SITE_COLUMNS)

    def poll(self) -> None:
        census = self.polls % CENSUS_EVERY == 0
        self.polls += 1
        self.ask("memory", {"types": TYPES if census else 0, "sort": self.sort, "max_seconds": CENSUS_MAX_SECONDS},
                 self.show if census else self.show_facts)
        if self.has_class("tracing"):
            self.ask("memory", {"tracemalloc": "top", "limit": SITES}, self.show_sites)

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.status(f"object types ranked by {self.sort}")
        self.poll()

    def action_mark(self) -> None:
        self.status("setting a mark: a census of every type…")

        def marked(result: dict[str, Any]) -> None:
            types = {t["type"]: (t["count"], t["size_bytes"]) for t in result.get("types") or []}
            census = result.get("census") or {}
            p = result["process"]
            self.mark = Mark(types, len(types) < MARK_TYPES and not census.get("truncated"),
                             p.get("rss_bytes"), p.get("uss_bytes"))
            self.status(f"mark set: {len(types)} types, RSS {size(p.get('rss_bytes'))}; m sets it again")
            self.show(result)

        self.ask("memory", {"types": MARK_TYPES, "sort": self.sort, "max_seconds": CENSUS_MAX_SECONDS}, marked)

    def action_tracemalloc(self) -> None:
        tracing = bool(self.tracemalloc.get("tracing"))
        if tracing and not self.tracemalloc.get("started_by_peeka"):
            self.status("tracemalloc was started by the application: the TUI leaves it on", error=True)
            return

        def done(result: dict[str, Any]) -> None:
            facts = result["tracemalloc"]
            self.tracemalloc = facts
            if facts.get("tracing"):
                if facts.get("started_by_peeka"):
                    self.session.undo_on_close(UNDO_KEY, "memory", {"tracemalloc": "stop"})
                self.add_class("tracing")
                self.status("tracemalloc started" + (" (stopped when the TUI quits)" if facts.get("started_by_peeka")
                                                     else " (the application's: left on)"))
            else:
                self.session.drop_undo(UNDO_KEY)
                self.remove_class("tracing")
                self.status("tracemalloc stopped")
            self.poll()

        self.ask("memory", {"tracemalloc": "stop" if tracing else "start"}, done)

    def show(self, result: dict[str, Any]) -> None:
        """A census: the types, and the facts."""
        self.census = result.get("census") or {}
        self.show_facts(result)
        self.show_types(result)

    def show_facts(self, result: dict[str, Any]) -> None:
        p = result["process"]
        gc = result["gc"]
        census = self.census
        self.tracemalloc = result.get("tracemalloc") or self.tracemalloc
        self.set_class(bool(self.tracemalloc.get("tracing")), "tracing")
        if p.get("rss_bytes") is not None:
            self.rss.append(float(p["rss_bytes"]))
        if p.get("uss_bytes") is not None:
            self.uss.append(float(p["uss_bytes"]))
        mark = self.mark
        since = ""
        if mark is not None and mark.rss is not None and p.get("rss_bytes") is not None:
            since = f"  since mark: RSS {signed_size(p['rss_bytes'] - mark.rss)}"
            if mark.uss is not None and p.get("uss_bytes") is not None:
                since += f", USS {signed_size(p['uss_bytes'] - mark.uss)}"
        tm = self.tracemalloc
        lines = [
            Text.assemble(("RSS ", "dim"), size(p.get("rss_bytes")), ("  USS ", "dim"), size(p.get("uss_bytes")),
                          ("  PSS ", "dim"), size(p.get("pss_bytes")), ("  VMS ", "dim"), size(p.get("vms_bytes")),
                          ("  peak RSS ", "dim"), size(p.get("peak_rss_bytes")), ("  swap ", "dim"), size(p.get("swap_bytes")),
                          (since, "bold")),
            Text.assemble(("RSS ", "dim"), (sparkline(list(self.rss)), "green"),
                          (f"  {size(min(self.rss, default=None))} … {size(max(self.rss, default=None))}", "dim")),
            Text.assemble(("USS ", "dim"), (sparkline(list(self.uss)), "cyan"),
                          (f"  {size(min(self.uss, default=None))} … {size(max(self.uss, default=None))}"
                           f"  (every {self.REFRESH_S:g} s while shown; the census every {CENSUS_EVERY * self.REFRESH_S:g} s)", "dim")),
            Text.assemble(("GC ", "dim"), "enabled" if gc["enabled"] else "DISABLED",
                          ("  counts ", "dim"), "/".join(map(str, gc["counts"])),
                          ("  thresholds ", "dim"), "/".join(map(str, gc["thresholds"])),
                          ("  collections ", "dim"), "/".join(str(g["collections"]) for g in gc["generations"]),
                          ("  uncollectable ", "dim"), "/".join(str(g["uncollectable"]) for g in gc["generations"])),
            Text.assemble((f"census: {census.get('objects', '?')} GC-tracked objects in {census.get('seconds', 0):.3f} s"
                           + (" (capped: partial)" if census.get("truncated") else "") + f"; ranked by {self.sort}", "dim"),
                          ("  tracemalloc ", "dim"),
                          (f"on: {size(tm.get('traced_bytes'))} traced, peak {size(tm.get('peak_bytes'))}"
                           if tm.get("tracing") else "off (t starts it)")),
        ]
        self.query_one("#memory-facts", Static).update(Text("\n").join(lines))

    def show_types(self, result: dict[str, Any]) -> None:
        mark = self.mark
        rows = []
        for t in (result.get("types") or [])[:TYPES]:
            grew_count = grew_size = "-"
            if mark is not None:
                before = mark.types.get(t["type"])
                if before is None and mark.complete:
                    before = (0, 0)
                if before is not None:
                    grew_count, grew_size = signed(t["count"] - before[0]), signed_size(t["size_bytes"] - before[1])
                else:
                    grew_count = grew_size = "?"
            rows.append(Row(t["type"], (t["type"], str(t["count"]), grew_count, size(t["size_bytes"]), grew_size)))
        self.fill(self.query_one("#memory-types", DataTable), rows)

    def show_sites(self, result: dict[str, Any]) -> None:
        self.fill(self.query_one("#memory-sites", DataTable), [
            Row(f"{s['file']}:{s['line']}", (f"{s['file']}:{s['line']}", size(s["size_bytes"]), str(s["count"])))
            for s in result.get("sites") or []])
