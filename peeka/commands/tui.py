"""A live dashboard in the terminal over one connection: threads, top, memory, watch, tasks, logger by
number key; without a PID, a process picker first. q quits and removes what the TUI installed or
changed (the agent stays for other users: `peeka detach PID` removes it)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..attach import ClientRole, attach
from ..errors import PeekaError
from ..options import Shared, with_options

NAME = "tui"

OptionalPid = Annotated[
    Optional[int],  # noqa: UP045 - typer evaluates this annotation, also on Python 3.9
    typer.Argument(help="PID of the target Python process; without it, a process picker (`peeka ps`'s list)."),
]


@with_options(json=False)
def command(pid: OptionalPid = None, *, shared: Shared) -> None:
    # Textual is imported only by this verb: every other command starts without it.
    from ..session import Session
    from ..tui.app import PICK, PeekaApp
    from ..tui.picker import PickerApp

    message = ""
    while True:
        picked = pid is None
        if pid is None:
            pid = PickerApp(message).run()
            if pid is None:
                return
        try:
            client, _report = attach(pid, method=shared.method, timeout=shared.attach_timeout, role=ClientRole("tui"))
        except PeekaError as exc:
            if not picked:
                raise  # the PID given on the command line: the CLI reports it
            message, pid = f"cannot attach to {pid}: {exc.message}", None  # back to the picker, saying why
            continue
        session = Session(client)
        try:
            result = PeekaApp(session).run()
        finally:
            session.close()  # also after Ctrl-C, SIGHUP/SIGTERM or a crash: nothing of ours is left
        if result != PICK:
            return
        message, pid = "", None
