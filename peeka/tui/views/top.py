"""2 Top: the hottest functions by self and total CPU, live, from the agent's ``top`` sampler (the
same stream as ``peeka top``). The stream runs only while the view is shown: sampling costs the
target, and the header counts that cost while it runs."""

from __future__ import annotations

from typing import Any

from textual.message import Message
from textual.widgets import DataTable, Static

from ...errors import PeekaError
from ...session import SessionStream, StreamEnd
from ..view import View as BaseView
from ..view import on_loop

INTERVAL_S = 1.0
ROWS = 40
COLUMNS = ("self %", "total %", "function", "where")


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
    DEFAULT_CSS = "#top-table { height: 1fr; } #top-info { height: 1; color: $text-muted; }"

    def __init__(self) -> None:
        super().__init__(id="view-top")
        self.stream: SessionStream | None = None

    def compose(self) -> Any:
        yield Static("starting the sampler…", id="top-info")
        table: DataTable[Any] = DataTable(id="top-table", cursor_type="row")
        table.add_columns(*COLUMNS)
        yield table

    def shown(self) -> None:
        self.query_one(DataTable).focus()
        if self.stream is None or not self.stream.running:
            self.run_worker(self._start, thread=True, exit_on_error=False)

    def hidden(self) -> None:
        self.stop()

    def stop(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.cancel()
        self.app.query_one("#header").forget("top")  # type: ignore[attr-defined]

    def _start(self) -> None:
        try:
            stream = self.session.start("top", {"interval": INTERVAL_S, "functions": ROWS},
                                        on_event=lambda data: self.post_message(Summary(data)),
                                        on_end=lambda end: self.post_message(Ended(end)))
        except PeekaError as exc:
            on_loop(self, self.app.show_error, exc)  # type: ignore[attr-defined]
            return
        on_loop(self, self._started, stream)

    def _started(self, stream: SessionStream) -> None:
        if self.app.current != "top":  # type: ignore[attr-defined]  # left while the sampler started
            stream.cancel()
            return
        self.stream = stream

    def on_summary(self, message: Summary) -> None:
        data = message.data
        if self.stream is None:
            return  # a summary in flight when the view was left
        self.app.query_one("#header").take(data, "top")  # type: ignore[attr-defined]
        cpu = (data.get("process") or {}).get("cpu_percent")
        self.query_one("#top-info", Static).update(
            f"{data['samples']:.0f} CPU-weighted samples over {data['interval_s']:.1f} s at {data['rate_hz']:.0f} Hz"
            f" ({data['weighting']}); {data['threads_sampled']} busy thread(s), {data['threads_idle']} idle;"
            f" process CPU {cpu if cpu is not None else '?'}%"
        )
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for f in data["functions"]:
            table.add_row(f"{f['self_percent']:5.1f}", f"{f['total_percent']:5.1f}", f["function"],
                          f"{f['file']}:{f['line']}", key=f["function"])
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))

    def on_ended(self, message: Ended) -> None:
        if message.end.reason != "cancelled":
            self.app.show_status(f"top ended: {message.end.reason}", error=True)  # type: ignore[attr-defined]
