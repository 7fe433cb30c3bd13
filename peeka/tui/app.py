"""The TUI app: header, the current view, a status line; number keys switch views; ``q`` quits.

App-wide keys: ``/`` filters the current view's tables, ``p`` pauses every view (what is shown
stays; Top's sampler stops in the agent; watch and log streams keep collecting), ``?`` lists every
key, ``:`` opens a command line taking the CLI's verbs (commandline.py) with results in a panel
(Esc closes it and stops its stream), ``o`` leaves this process for the process picker (offered
when the target died or the agent went).

On quit (``q``, Ctrl-C, SIGHUP when the terminal closes, SIGTERM) the session is closed: every stream
the TUI started is cancelled, what it changed is put back (logger levels, tracemalloc it started:
the session's undo requests), and the agent confirms it, so nothing of the TUI is left in the
target. The agent itself stays: other peeka users may be attached to it, and taking it out under
them would cut their streams (`peeka detach PID` removes it). A broken connection (the target died,
the agent was detached elsewhere) shows in the status line; the app keeps running until the user
quits or picks another process.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib
import os
import signal
from typing import Any, NamedTuple

from rich.json import JSON
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import ContentSwitcher, Footer, Input, RichLog, Static

from ..errors import PeekaError
from ..render import value_tree
from ..session import Session, SessionStream, StreamEnd
from .commandline import Command, parse
from .header import ProcessHeader
from .view import View, Volatile, on_loop

PICK = "pick"  # what run() returns when the user asked for another process


class ViewEntry(NamedTuple):
    key: str  # the number key that shows it
    module: str  # peeka/tui/views/<module>.py, holding a View class


# A view is one module under views/ and one entry here.
VIEWS = (
    ViewEntry("1", "threads"),
    ViewEntry("2", "top"),
    ViewEntry("3", "memory"),
    ViewEntry("4", "watch"),
    ViewEntry("5", "tasks"),
    ViewEntry("6", "logger"),
)


class Broken(Message):
    def __init__(self, error: PeekaError) -> None:
        super().__init__()
        self.error = error


class PanelEvent(Message):
    def __init__(self, data: Any, generation: int) -> None:
        super().__init__()
        self.data = data
        self.generation = generation


class PanelEnded(Message):
    def __init__(self, end: StreamEnd, generation: int) -> None:
        super().__init__()
        self.end = end
        self.generation = generation


class LineInput(Input):
    """The filter and command lines: Escape closes them."""

    BINDINGS = [Binding("escape", "close_line", "close", show=False)]

    def action_close_line(self) -> None:
        self.app.close_line(self)  # type: ignore[attr-defined]


class Panel(Vertical):
    """The command line's results; Escape closes it (and stops its stream)."""

    BINDINGS = [Binding("escape", "app.close_panel", "close panel")]
    DEFAULT_CSS = """
    Panel { height: 45%; border-top: thick $accent; display: none; }
    Panel.open { display: block; }
    #panel-title { height: 1; background: $panel; }
    #panel-log { height: 1fr; }
    """


class HelpScreen(ModalScreen[None]):
    """Every key: the app's and each view's."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > RichLog { width: 90; height: 80%; border: thick $accent; background: $surface; }
    """
    BINDINGS = [Binding("escape", "dismiss", "close"), Binding("question_mark", "dismiss", "close"),
                Binding("q", "dismiss", "close")]

    def __init__(self, lines: list[Text]) -> None:
        super().__init__()
        self.lines = lines

    def compose(self) -> ComposeResult:
        log = RichLog(id="help", wrap=True)
        yield log

    def on_mount(self) -> None:
        log = self.query_one(RichLog)
        for line in self.lines:
            log.write(line)
        log.focus()


APP_KEYS = (
    ("1-6", "switch view: " + ", ".join(f"{v.key} {v.module}" for v in VIEWS)),
    ("/", "filter the current view's tables (Enter keeps it, Esc in the box closes it; empty clears)"),
    ("p", "pause / resume every view (shown data stays; Top's sampler stops; watch and log streams keep collecting)"),
    (":", "command line: the CLI's verbs (watch mod.f -n 5, inspect expr, sm 'pkg.*', thread -b, ...)"),
    ("esc", "close the command panel (stops its stream)"),
    ("o", "attach to another process (the process picker)"),
    ("?", "this list"),
    ("q / ctrl+c", "quit: removes every probe, stream and level the TUI set; the agent stays"),
)


class PeekaApp(App["str | None"]):
    TITLE = "peeka"
    CSS = """
    #status { height: 1; background: $panel; padding: 0 1; }
    #status.error { background: $error 40%; }
    ContentSwitcher { height: 1fr; }
    LineInput { display: none; height: 3; }
    LineInput.open { display: block; }
    """
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
        *(Binding(v.key, f"show('{v.module}')", v.module) for v in VIEWS),
        Binding("slash", "filter", "filter"),
        Binding("p", "pause", "pause"),
        Binding("colon", "command", "command"),
        Binding("question_mark", "help", "keys"),
        Binding("o", "pick", "other process", show=False),
    ]

    def __init__(self, session: Session, first_view: str = "threads", steady: bool = False) -> None:
        """``steady``: volatile cells as placeholders (view.Volatile), for the snapshot tests."""
        super().__init__()
        self.session = session
        argv = session.hello.argv
        self.volatile = Volatile(steady, os.path.dirname(argv[0]) if argv and os.path.isabs(argv[0]) else "")
        session.on_broken = lambda error: self.post_message(Broken(error))
        self.views = {v.module: importlib.import_module(f".views.{v.module}", __package__).View() for v in VIEWS}
        self.first_view = first_view
        self.current: str | None = None
        self.paused = False
        self.panel_stream: SessionStream | None = None
        self.panel_generation = 0

    def compose(self) -> Any:
        yield ProcessHeader()
        with ContentSwitcher():
            yield from self.views.values()
        with Panel(id="panel"):
            yield Static("", id="panel-title")
            yield RichLog(id="panel-log", wrap=True, max_lines=2000)
        yield LineInput(placeholder="filter: rows containing this text (Esc closes)", id="filter")
        yield LineInput(placeholder="command: watch mod.f -n 5 | inspect expr | sm 'pkg.*' | thread -b … (Esc closes)",
                        id="command")
        yield Static("", id="status")
        yield Footer()

    def on_mount(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                loop.add_signal_handler(sig, self.exit)
        except (RuntimeError, NotImplementedError, ValueError):
            pass  # not the main thread (tests) or no signals here: quit by key only
        self.action_show(self.first_view)
        self.show_status(f"attached to {self.volatile(str(self.session.hello.pid))}; number keys switch views, ? lists every key, "
                         "q quits (removes what the TUI installed; the agent stays)")

    @property
    def view(self) -> View:
        assert self.current is not None
        return self.views[self.current]  # type: ignore[no-any-return]

    def action_show(self, name: str) -> None:
        if name == self.current or name not in self.views:
            return
        if self.current is not None:
            self.views[self.current].hidden()
        self.current = name
        self.query_one(ContentSwitcher).current = self.views[name].id
        view: View = self.views[name]
        self.sub_title = view.TITLE + (" (paused)" if self.paused else "")
        view.shown()
        if view.filter_text:
            self.show_status(f"{view.TITLE}: filtered by {view.filter_text!r} (/ changes it)")

    def show_status(self, text: str, error: bool = False) -> None:
        status = self.query_one("#status", Static)
        status.set_class(error, "error")
        status.update(text)

    def show_error(self, error: PeekaError) -> None:
        if self.session.broken is not None:
            self.show_lost(self.session.broken)  # a request failed because of it: say what happened
            return
        self.show_status(f"{error.message}" + (f" — {error.help}" if error.help else ""), error=True)

    def on_broken(self, message: Broken) -> None:
        self.show_lost(message.error)

    def show_lost(self, error: PeekaError) -> None:
        self.show_status(f"connection to the agent lost: {error.message} (the target died or the agent "
                         "was detached); o picks another process, q quits", error=True)

    # ------------------------------------------------------------ filter, pause, help

    def action_filter(self) -> None:
        line = self.query_one("#filter", LineInput)
        line.value = self.view.filter_text
        line.cursor_position = len(line.value)
        line.add_class("open")
        line.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.view.set_filter(event.value)

    def close_line(self, line: Input) -> None:
        line.remove_class("open")
        self.view.shown()  # focus back to the view (its table or box)

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.sub_title = self.view.TITLE + (" (paused)" if self.paused else "")
        if self.paused:
            for view in self.views.values():
                view.paused()
            self.show_status("paused: views keep what they show, Top's sampler stops, watch and log streams keep "
                             "collecting; p resumes")
            return
        for name, view in self.views.items():
            if name == self.current:
                view.resumed()
            else:
                view.refill()
        self.show_status("resumed")

    def action_help(self) -> None:
        lines = [Text("keys everywhere", style="bold underline")]
        lines += [Text.assemble((f"  {k:<12}", "bold cyan"), d) for k, d in APP_KEYS]
        for entry in VIEWS:
            view = self.views[entry.module]
            keys = list(view.KEYS)
            if keys:
                lines.append(Text(f"{entry.key} {view.TITLE}", style="bold underline"))
                lines += [Text.assemble((f"  {k:<12}", "bold cyan"), d) for k, d in keys]
        self.push_screen(HelpScreen(lines))

    def action_pick(self) -> None:
        self.run_worker(self._leave(PICK), exit_on_error=False)

    # ------------------------------------------------------------ the command line and its panel

    def action_command(self) -> None:
        line = self.query_one("#command", LineInput)
        line.add_class("open")
        line.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            event.stop()
            self.close_line(event.input)
            return
        if event.input.id != "command":
            return
        event.stop()
        text = event.value.strip()
        if not text:
            self.close_line(event.input)
            return
        try:
            command = parse(text, self.session.hello.pid)
        except PeekaError as exc:
            self.show_error(exc)
            return
        event.input.value = ""
        event.input.remove_class("open")
        self.run_command(command)

    def run_command(self, command: Command) -> None:
        self.stop_panel_stream()
        generation = self.panel_generation
        panel = self.query_one(Panel)
        panel.add_class("open")
        log = self.query_one("#panel-log", RichLog)
        log.clear()
        self.query_one("#panel-title", Static).update(Text.assemble((f" :{command.text}", "bold"), ("  Esc closes", "dim")))
        log.focus()

        def work() -> None:
            try:
                if command.stream:
                    stream = self.session.start(command.verb, command.args,
                                                on_event=lambda data: self.post_message(PanelEvent(data, generation)),
                                                on_end=lambda end: self.post_message(PanelEnded(end, generation)))
                    on_loop(self, self._panel_started, stream, generation)
                else:
                    result = self.session.request(command.verb, command.args, timeout=self.session.timeout + 10)
                    on_loop(self, self._panel_result, command, result, generation)
            except PeekaError as exc:
                on_loop(self, self.show_error, exc)
                on_loop(self, self._panel_write, Text(f"{exc.message}\n{exc.help}", style="red"), generation)

        self.run_worker(work, thread=True, exit_on_error=False)

    def _panel_write(self, renderable: Any, generation: int) -> None:
        if generation == self.panel_generation:
            self.query_one("#panel-log", RichLog).write(renderable)

    def _panel_started(self, stream: SessionStream, generation: int) -> None:
        if generation != self.panel_generation:
            stream.cancel()
            return
        self.panel_stream = stream
        functions = (stream.start or {}).get("functions")
        what = f"on {', '.join(functions[:5])}" if functions else ""
        self._panel_write(Text(f"{stream.command} started {what}".strip(), style="dim"), generation)
        self.show_status(f":{stream.command} running; Esc in the panel stops it")

    def _panel_result(self, command: Command, result: Any, generation: int) -> None:
        if command.verb == "inspect" and isinstance(result, dict) and "value" in result:
            self._panel_write(value_tree(f"[bold]{result.get('expression', '')}[/]", result["value"]), generation)
        else:
            self._panel_write(JSON.from_data(result, default=str), generation)
        self.show_status(f":{command.verb} answered")

    def on_panel_event(self, message: PanelEvent) -> None:
        data = message.data
        if isinstance(data, dict) and "function" in data and "start_ns" in data:
            when = self.volatile(datetime.datetime.fromtimestamp(data["start_ns"] / 1e9).strftime("%H:%M:%S.%f")[:-3])
            cost = self.volatile(f"{data['cost_ms']:.3f} ms") if data.get("cost_ms") is not None else "-"
            head = f"[dim]{when}[/] [bold]{data['function']}[/] {data.get('location', '')} cost={cost}"
            if "value" in data:
                self._panel_write(value_tree(head, data["value"]), message.generation)
                return
        self._panel_write(JSON.from_data(data, default=str), message.generation)

    def on_panel_ended(self, message: PanelEnded) -> None:
        if message.generation == self.panel_generation and message.end.reason != "cancelled":
            self.panel_stream = None
            self._panel_write(Text(f"ended: {message.end.reason}", style="dim"), message.generation)

    def stop_panel_stream(self) -> None:
        self.panel_generation += 1
        stream, self.panel_stream = self.panel_stream, None
        if stream is not None:
            stream.cancel()

    def action_close_panel(self) -> None:
        stopped = self.panel_stream is not None
        self.stop_panel_stream()
        self.query_one(Panel).remove_class("open")
        self.view.shown()
        if stopped:
            self.show_status("command stopped (its probes removed)")

    # ------------------------------------------------------------ quitting

    async def _leave(self, result: str | None) -> None:
        # Off the event loop: close waits (bounded) for the agent to confirm the cancels and undos.
        await asyncio.get_running_loop().run_in_executor(None, self.session.close)
        self.exit(result)

    async def action_quit(self) -> None:
        await self._leave(None)
