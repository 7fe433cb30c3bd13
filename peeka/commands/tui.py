"""A live dashboard in the terminal over one connection: threads, top, memory, watch by number key; q quits
and removes what the TUI installed (the agent stays for other users: `peeka detach PID` removes it)."""

from __future__ import annotations

from ..attach import attach
from ..options import Pid, Shared, with_options

NAME = "tui"


@with_options(json=False)
def command(pid: Pid, *, shared: Shared) -> None:
    # Textual is imported only by this verb: every other command starts without it.
    from ..session import Session
    from ..tui.app import PeekaApp

    client, _report = attach(pid, method=shared.method, timeout=shared.attach_timeout)
    session = Session(client)
    try:
        PeekaApp(session).run()
    finally:
        session.close()  # also after Ctrl-C, SIGHUP/SIGTERM or a crash: no probe of ours is left
