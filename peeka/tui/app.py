"""The TUI app: header, the current view, a status line; number keys switch views; ``q`` quits.

On quit (``q``, Ctrl-C, SIGHUP when the terminal closes, SIGTERM) the session is closed: every stream
the TUI started is cancelled and the agent confirms it, so no probe or sampler of the TUI is left in
the target. The agent itself stays: other peeka users may be attached to it (`peeka detach PID`
removes it). A broken connection (the target died, the agent was detached elsewhere) shows in the
status line; the app keeps running until the user quits.
"""

from __future__ import annotations

import asyncio
import importlib
import signal
from typing import Any, NamedTuple

from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.widgets import ContentSwitcher, Footer, Static

from ..errors import PeekaError
from ..session import Session
from .header import ProcessHeader
from .view import View


class ViewEntry(NamedTuple):
    key: str  # the number key that shows it
    module: str  # peeka/tui/views/<module>.py, holding a View class


# A view is one module under views/ and one entry here.
VIEWS = (
    ViewEntry("1", "threads"),
    ViewEntry("2", "top"),
    ViewEntry("3", "memory"),
    ViewEntry("4", "watch"),
)


class Broken(Message):
    def __init__(self, error: PeekaError) -> None:
        super().__init__()
        self.error = error


class PeekaApp(App[None]):
    TITLE = "peeka"
    CSS = """
    #status { height: 1; background: $panel; padding: 0 1; }
    #status.error { background: $error 40%; }
    ContentSwitcher { height: 1fr; }
    """
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
        *(Binding(v.key, f"show('{v.module}')", v.module) for v in VIEWS),
    ]

    def __init__(self, session: Session, first_view: str = "threads") -> None:
        super().__init__()
        self.session = session
        session.on_broken = lambda error: self.post_message(Broken(error))
        self.views = {v.module: importlib.import_module(f".views.{v.module}", __package__).View() for v in VIEWS}
        self.first_view = first_view
        self.current: str | None = None

    def compose(self) -> Any:
        yield ProcessHeader()
        with ContentSwitcher():
            yield from self.views.values()
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
        self.show_status(f"attached to {self.session.hello.pid}; number keys switch views, q quits "
                         "(removes what the TUI installed; the agent stays)")

    def action_show(self, name: str) -> None:
        if name == self.current or name not in self.views:
            return
        if self.current is not None:
            self.views[self.current].hidden()
        self.current = name
        self.query_one(ContentSwitcher).current = self.views[name].id
        view: View = self.views[name]
        self.sub_title = view.TITLE
        view.shown()

    def show_status(self, text: str, error: bool = False) -> None:
        status = self.query_one("#status", Static)
        status.set_class(error, "error")
        status.update(text)

    def show_error(self, error: PeekaError) -> None:
        self.show_status(f"{error.message}" + (f" — {error.help}" if error.help else ""), error=True)

    def on_broken(self, message: Broken) -> None:
        self.show_status(f"connection to the agent lost: {message.error.message} (the target died or the agent "
                         "was detached); q quits", error=True)

    async def action_quit(self) -> None:
        # Off the event loop: close waits (bounded) for the agent to confirm the cancels.
        await asyncio.get_running_loop().run_in_executor(None, self.session.close)
        self.exit()
