"""3 Memory: RSS/USS/PSS/VMS and peak with RSS and USS charted over time, the garbage collector's
counts and collections, and the object types that fill the heap, from the agent's ``memory``
command every second while shown (never while hidden). The type census walks the GC's objects
holding the GIL (handing it over between chunks), so it is given CENSUS_BUDGET_S of each second:
a heap that takes longer is sampled (every k-th object counted k times, ``sample``), and the view
then marks its counts and sizes as estimates (≈) and says the stride; how long the census held the
GIL at most is shown with it.

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
CENSUS_BUDGET_S = 0.03  # of each second's refresh: the census's share of the 5% budget (the rest is the agent's reply)
STEADY_MAX_SECONDS = 10.0  # steady mode's census (tests only): whole, on a loaded machine too
MARK_MAX_SECONDS = 0.5  # a mark is one census the user asked for: it may take longer (then it is sampled too)
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
    estimated: bool = False  # the mark's census was sampled


def signed(n: float, unit: str = "") -> str:
    return f"{'+' if n > 0 else ''}{n:,.0f}{unit}"


def signed_size(n: float) -> str:
    return ("+" if n > 0 else "-" if n < 0 else "") + size(abs(n))


class View(PollingView):
    TITLE = "Memory"
    REFRESH_S = 1.0
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
        self.census: dict[str, Any] = {}

    def compose(self) -> Any:
        yield Static("asking the agent…", id="memory-facts")
        yield table("memory-types", COLUMNS)
        yield table("memory-sites", SITE_COLUMNS)

    def poll(self) -> None:
        self.ask("memory", {"types": TYPES, "sort": self.sort, **self.census_limits(CENSUS_BUDGET_S)}, self.show)
        if self.has_class("tracing"):
            self.ask("memory", {"tracemalloc": "top", "limit": SITES}, self.show_sites)

    def census_limits(self, seconds: float) -> dict[str, Any]:
        """The census's time, sampled to fit it; steady mode (snapshots) counts every object instead
        (up to STEADY_MAX_SECONDS): whether the clock samples, and how, is this machine's load."""
        if self.volatile.steady:
            return {"max_seconds": STEADY_MAX_SECONDS, "sample": False}
        return {"max_seconds": seconds, "sample": True}

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
            estimated = (census.get("sampled_every") or 1) > 1
            self.mark = Mark(types, len(types) < MARK_TYPES and not census.get("truncated") and not estimated,
                             p.get("rss_bytes"), p.get("uss_bytes"), estimated)
            self.status(f"mark set: {len(types)} types{' (estimated: sampled)' if estimated else ''}, "
                        f"RSS {size(p.get('rss_bytes'))}; m sets it again")
            self.show(result)

        self.ask("memory", {"types": MARK_TYPES, "sort": self.sort, **self.census_limits(MARK_MAX_SECONDS)}, marked)

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
        v = self.volatile
        self.tracemalloc = result.get("tracemalloc") or self.tracemalloc
        self.set_class(bool(self.tracemalloc.get("tracing")), "tracing")
        if p.get("rss_bytes") is not None:
            self.rss.append(float(p["rss_bytes"]))
        if p.get("uss_bytes") is not None:
            self.uss.append(float(p["uss_bytes"]))
        mark = self.mark
        since = ""
        if mark is not None and mark.rss is not None and p.get("rss_bytes") is not None:
            since = f"  since mark: RSS {v(signed_size(p['rss_bytes'] - mark.rss))}"
            if mark.uss is not None and p.get("uss_bytes") is not None:
                since += f", USS {v(signed_size(p['uss_bytes'] - mark.uss))}"
        tm = self.tracemalloc
        every = census.get("sampled_every") or 1
        if not census:
            counted = "census: none yet"
        elif every > 1:
            counted = (f"census: every {v(str(every))}th of {v(format(census.get('objects_tracked', 0), ','))} GC-tracked"
                       f" objects counted ×{v(str(every))} (≈: estimates) in {v(format(census.get('seconds', 0), '.3f'))} s")
        else:
            counted = (f"census: all {v(format(census.get('objects', 0), ','))} GC-tracked objects"
                       f" in {v(format(census.get('seconds', 0), '.3f'))} s")
        if census.get("gil_hold_max_seconds") is not None:
            counted += f", GIL held ≤ {v(format(census['gil_hold_max_seconds'] * 1000, '.1f'))} ms at a time"
        lines = [
            Text.assemble(("RSS ", "dim"), v(size(p.get("rss_bytes"))), ("  USS ", "dim"), v(size(p.get("uss_bytes"))),
                          ("  PSS ", "dim"), v(size(p.get("pss_bytes"))), ("  VMS ", "dim"), v(size(p.get("vms_bytes"))),
                          ("  peak RSS ", "dim"), v(size(p.get("peak_rss_bytes"))),
                          ("  swap ", "dim"), v(size(p.get("swap_bytes"))), (since, "bold")),
            Text.assemble(("RSS ", "dim"), (v(sparkline(list(self.rss))), "green"),
                          (f"  {v(size(min(self.rss, default=None)))} … {v(size(max(self.rss, default=None)))}", "dim")),
            Text.assemble(("USS ", "dim"), (v(sparkline(list(self.uss))), "cyan"),
                          (f"  {v(size(min(self.uss, default=None)))} … {v(size(max(self.uss, default=None)))}"
                           f"  (every {self.REFRESH_S:g} s while shown, the census included)", "dim")),
            Text.assemble(("GC ", "dim"), "enabled" if gc["enabled"] else "DISABLED",
                          ("  counts ", "dim"), v("/".join(map(str, gc["counts"]))),
                          ("  thresholds ", "dim"), "/".join(map(str, gc["thresholds"])),
                          ("  collections ", "dim"), v("/".join(str(g["collections"]) for g in gc["generations"])),
                          ("  uncollectable ", "dim"), "/".join(str(g["uncollectable"]) for g in gc["generations"])),
            Text.assemble((counted + (" (capped: partial)" if census.get("truncated") else "") + f"; ranked by {self.sort}",
                           "dim"),
                          ("  tracemalloc ", "dim"),
                          (f"on: {v(size(tm.get('traced_bytes')))} traced, peak {v(size(tm.get('peak_bytes')))}"
                           if tm.get("tracing") else "off (t starts it)")),
        ]
        self.query_one("#memory-facts", Static).update(Text("\n").join(lines))

    def show_types(self, result: dict[str, Any]) -> None:
        mark = self.mark
        about = "≈" if (self.census.get("sampled_every") or 1) > 1 else ""
        rows = []
        for t in (result.get("types") or [])[:TYPES]:
            grew_count = grew_size = "-"
            if mark is not None:
                before = mark.types.get(t["type"])
                if before is None and mark.complete:
                    before = (0, 0)
                if before is not None:
                    near = "≈" if about or mark.estimated else ""
                    grew_count = near + signed(t["count"] - before[0])
                    grew_size = near + signed_size(t["size_bytes"] - before[1])
                else:
                    grew_count = grew_size = "?"
            rows.append(Row(t["type"], (t["type"], about + str(t["count"]), grew_count, about + size(t["size_bytes"]),
                                        grew_size)))
        self.fill(self.query_one("#memory-types", DataTable), rows)

    def show_sites(self, result: dict[str, Any]) -> None:
        self.fill(self.query_one("#memory-sites", DataTable), [
            Row(f"{s['file']}:{s['line']}", (f"{s['file']}:{s['line']}", size(s["size_bytes"]), str(s["count"])))
            for s in result.get("sites") or []])
