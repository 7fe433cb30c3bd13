"""The ``peeka`` command line: one module per verb under ``peeka/commands``, registered here.

Only ``main`` turns a PeekaError into a message and an exit code.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback

import typer

from .errors import PeekaError
from .options import Shared, parsed

# One name per capability end to end: CLI verb = agent command = peeka/commands/<verb>.py.
COMMANDS = (
    "ps", "attach", "thread", "sc", "sm", "inspect", "watch", "trace", "stack", "monitor", "tt", "reset", "detach", "export",
    "logger", "tasks", "source", "top", "memory",
)

app = typer.Typer(
    name="peeka",
    help="Live diagnostics for running Python processes: attach to a PID, no restart, no code change.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for _name in COMMANDS:
    _module = importlib.import_module(f".commands.{_name}", __package__)
    app.command(_module.NAME, help=_module.__doc__)(_module.command)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        # Standalone: typer (whichever click it carries) reports usage errors itself and exits 2.
        app(args=args, prog_name="peeka")
    except PeekaError as exc:
        _report(exc, parsed())
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)


def _report(exc: PeekaError, shared: Shared) -> None:
    """The error, as the command's parsed --json and --debug ask: with --debug also the traceback
    (the agent's for a failed command, else the client's own)."""
    trace = ""
    if shared.debug:
        trace = getattr(exc, "traceback", "") or "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if shared.json:
        document = exc.to_dict()
        if trace:
            document["traceback"] = trace
        print(json.dumps(document))
        return
    from .render import console_err

    console_err.print(f"[bold red]peeka: {exc.message}[/]", highlight=False)
    if exc.help:
        console_err.print(exc.help, highlight=False, markup=False)
    if trace:
        console_err.print(trace, highlight=False, markup=False)
