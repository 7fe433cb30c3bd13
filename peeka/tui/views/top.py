"""2 Top: the hottest functions by self and total CPU, live, from the agent's ``top`` sampler (the
same stream as ``peeka top``). The stream runs only while the view is shown: sampling costs the
target, and the header counts that cost while it runs.

``s`` sorts by self or total CPU. The selected function's tree is shown below: the call paths that
lead to it (caller → callee, collapsed: one line per distinct path, with its samples) and what it
calls, from the summaries' collapsed stacks over the last ``TREE_WINDOW`` summaries. ``p`` (the
app's pause) freezes the table and stops the sampler in the agent (the stream is cancelled: the
target pays nothing meanwhile); ``p`` again starts a new one."""

from __future__ import annotations

from collections import deque
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Static

from ...errors import PeekaError
from ...session import SessionStream, StreamEnd
from ..view import Row, on_loop, selected_key, table
from ..view import View as BaseView

INTERVAL_S = 1.0
ROWS = 40
COLUMNS = ("self %", "total %", "function", "where")
TREE_WINDOW = 10  # summaries whose stacks feed the selected function's tree
TREE_LINES = 12  # caller paths shown, most samples first
SORTS = ("self", "total")


class TreeNode:
    """Callees below a function: samples through each, children by name."""

    def __init__(self) -> None:
        self.samples = 0.0
        self.children: dict[str, TreeNode] = {}


def function_tree(stacks: list[list[Any]], function: str) -> tuple[dict[str, float], TreeNode]:
    """From collapsed stacks ("thread NAME;outer;...;inner", samples): the paths that lead to
    ``function`` (outer → ... → caller, samples) and the tree of what it calls (its first
    occurrence in a stack: a recursive function is counted once)."""
    callers: dict[str, float] = {}
    root = TreeNode()
    for line, samples in stacks:
        frames = str(line).split(";")[1:]
        if function not in frames:
            continue
        at = frames.index(function)
        path = " → ".join(frames[:at]) or "(thread entry)"
        callers[path] = callers.get(path, 0.0) + samples
        node = root
        node.samples += samples
        for callee in frames[at + 1:]:
            node = node.children.setdefault(callee, TreeNode())
            node.samples += samples
    return callers, root


class Summary(Message):
    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__()
        self.data = data


class Ended(Message):
    def __init__(self, end: StreamEnd) -> None:
        super().__init__()
        self.end = end


class View(BaseView):
    TITLE = "Top"
    KEYS = (("s", "sort by self / total CPU"), ("↑↓", "select a function: its callers and callees below"))
    BINDINGS = [Binding("s", "sort", "sort")]
    DEFAULT_CSS = """
    #top-table { height: 1fr; } #top-info { height: 1; color: $text-muted; }
    #top-tree { height: 1fr; border-top: solid $accent; overflow-y: auto; }
    """

    def __init__(self) -> None:
        super().__init__(id="view-top")
        self.stream: SessionStream | None = None
        self.sort = "self"
        self.functions: list[dict[str, Any]] = []
        self.stacks: deque[list[list[Any]]] = deque(maxlen=TREE_WINDOW)

    def compose(self) -> Any:
        yield Static("starting the sampler…", id="top-info")
        yield table("top-table", COLUMNS)
        yield Static("", id="top-tree")

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.status(f"Top sorted by {self.sort} CPU")
        self.show_functions()

    def show_functions(self) -> None:
        key = f"{self.sort}_percent"
        ordered = sorted(self.functions, key=lambda f: (-f[key], f["function"]))
        v = self.volatile
        self.fill(self.query_one("#top-table", DataTable), [
            Row(f["function"], (v(f"{f['self_percent']:5.1f}"), v(f"{f['total_percent']:5.1f}"), f["function"],
                                v.place(f["file"], f["line"]))) for f in ordered])
        self.show_tree()

    def selected(self) -> str | None:
        return selected_key(self.query_one("#top-table", DataTable))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_tree()

    def show_tree(self) -> None:
        function = self.selected()
        out = self.query_one("#top-tree", Static)
        if function is None:
            out.update("")
            return
        stacks = [entry for summary in self.stacks for entry in summary]
        callers, callees = function_tree(stacks, function)
        if not callers:
            out.update(Text(f"{function}: no stack through it in the last {len(self.stacks)} s", style="dim"))
            return
        v = self.volatile
        lines = [Text.assemble((function, "bold"), (f"  {v(f'{callees.samples:.1f}')} samples over the last "
                                                    f"{v(str(len(self.stacks)))} s", "dim")),
                 Text("  called through (outer → caller):", style="dim")]
        for path, samples in sorted(callers.items(), key=lambda kv: -kv[1])[:TREE_LINES]:
            lines.append(Text.assemble(f"  {v(f'{samples:7.1f}'):>7}  ", (path, "cyan")))
        lines.append(Text("  calls:", style="dim"))

        def add(node: TreeNode, depth: int) -> None:
            for name, child in sorted(node.children.items(), key=lambda kv: -kv[1].samples)[:TREE_LINES]:
                lines.append(Text.assemble(f"  {v(f'{child.samples:7.1f}'):>7}  " + "  " * depth + "└ ", name))
                if depth < 6:
                    add(child, depth + 1)

        add(callees, 0)
        if not callees.children:
            lines.append(Text("           (nothing sampled below it: its own code)", style="dim"))
        out.update(Text("\n").join(lines))

    def shown(self) -> None:
        self.query_one("#top-table", DataTable).focus()
        if self.live and (self.stream is None or not self.stream.running):
            self.run_worker(self._start, thread=True, exit_on_error=False)

    def paused(self) -> None:
        if self.stream is not None:
            self.stop()
            self.query_one("#top-info", Static).update("paused: the sampler is stopped in the agent; p starts it again")

    def resumed(self) -> None:
        self.refill()
        self.shown()

    def hidden(self) -> None:
        self.stop()

    def stop(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.cancel()
        self.app.query_one("#header").forget("top")  # type: ignore[attr-defined]

    def _start(self) -> None:
        try:
            stream = self.session.start("top", {"interval": INTERVAL_S, "functions": ROWS, "stacks": True},
                                        on_event=lambda data: self.post_message(Summary(data)),
                                        on_end=lambda end: self.post_message(Ended(end)))
        except PeekaError as exc:
            on_loop(self, self.app.show_error, exc)  # type: ignore[attr-defined]
            return
        on_loop(self, self._started, stream)

    def _started(self, stream: SessionStream) -> None:
        if self.app.current != "top" or not self.live:  # type: ignore[attr-defined]  # left or paused meanwhile
            stream.cancel()
            return
        self.stream = stream

    def on_summary(self, message: Summary) -> None:
        data = message.data
        if self.stream is None:
            return  # a summary in flight when the view was left
        self.app.query_one("#header").take(data, "top")  # type: ignore[attr-defined]
        if not self.live:
            return  # the last summary, in flight when the pause cancelled the stream
        cpu = (data.get("process") or {}).get("cpu_percent")
        v = self.volatile
        self.query_one("#top-info", Static).update(
            f"{v(format(data['samples'], '.0f'))} CPU-weighted samples over {v(format(data['interval_s'], '.1f'))} s"
            f" at {v(format(data['rate_hz'], '.0f'))} Hz ({data['weighting']}); {v(str(data['threads_sampled']))} busy"
            f" thread(s), {v(str(data['threads_idle']))} idle; process CPU {v(str(cpu if cpu is not None else '?'))}%"
        )
        self.functions = data["functions"]
        self.stacks.append(data.get("stacks") or [])
        self.show_functions()

    def on_ended(self, message: Ended) -> None:
        if message.end.reason != "cancelled":
            self.app.show_status(f"top ended: {message.end.reason}", error=True)  # type: ignore[attr-defined]
