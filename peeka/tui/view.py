"""What every view of the TUI builds on: the session, worker threads for requests, the status line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.containers import Vertical
from textual.widgets import DataTable

from ..errors import PeekaError
from ..session import Session


class View(Vertical):
    """One screenful, shown by its number key. ``shown``/``hidden`` start and stop what the view
    costs the target (timers, streams) while nobody looks at it; a view that keeps a stream on
    while hidden (watch) says so in its title."""

    TITLE = ""

    @property
    def session(self) -> Session:
        return self.app.session  # type: ignore[attr-defined,no-any-return]

    def shown(self) -> None:
        """Now on screen."""

    def hidden(self) -> None:
        """Now off screen."""

    def ask(self, command: str, args: dict[str, Any], then: Callable[[Any], None]) -> None:
        """Send a request from a worker thread (the event loop never waits on the target); ``then``
        runs on the event loop with the result. A refusal or a broken connection goes to the status line."""

        def work() -> None:
            try:
                result = self.session.request(command, args)
            except PeekaError as exc:
                on_loop(self, self.app.show_error, exc)  # type: ignore[attr-defined]
                return
            on_loop(self, then, result)

        self.run_worker(work, thread=True, group=f"ask-{command}", exit_on_error=False)


class PollingView(View):
    """A view that asks the agent every ``REFRESH_S`` seconds while shown (``poll``), and not at all
    while hidden."""

    REFRESH_S = 1.0
    timer: Any = None

    def poll(self) -> None:
        raise NotImplementedError

    def shown(self) -> None:
        self.query_one(DataTable).focus()
        self.poll()
        if self.timer is None:
            self.timer = self.set_interval(self.REFRESH_S, self.poll)
        else:
            self.timer.resume()

    def hidden(self) -> None:
        if self.timer is not None:
            self.timer.pause()


def on_loop(widget: Any, func: Callable[..., Any], *args: Any) -> None:
    """Run ``func(*args)`` on the app's event loop from a worker thread; nothing once the app is gone
    (a reply that arrives while the app quits is of no use)."""
    try:
        widget.app.call_from_thread(func, *args)
    except RuntimeError:
        pass  # the app stopped running meanwhile
