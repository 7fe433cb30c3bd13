"""The ``peeka`` command line: one module per verb under ``peeka/commands``, registered here.

Start-up imports only the command being run: ``peeka watch ...`` imports ``commands/watch.py`` and
nothing of the other verbs; ``peeka --help`` (or no known verb) lists every verb from the first
paragraph of its module's docstring, read from the file, without importing any command.
Only ``main`` turns a PeekaError into a message and an exit code.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from pathlib import Path

import typer

from .errors import PeekaError
from .options import Shared, parsed

# One name per capability end to end: CLI verb = agent command = peeka/commands/<verb>.py.
COMMANDS = (
    "ps", "attach", "thread", "sc", "sm", "inspect", "watch", "trace", "stack", "monitor", "tt", "reset", "detach", "export",
    "logger", "tasks", "source", "top", "memory", "tui", "mcp", "audit",
)
HELP = (
    "Live diagnostics for running Python processes: attach to a PID, no restart, no code change.\n\n"
    "Who can reach the agent: only your own processes' agents, or any as root (the socket is mode 0600 "
    "and the agent checks SO_PEERCRED: same uid or root). Expressions (inspect, watch, trace, stack, tt "
    "conditions, the export config's conditions) only read: names, attributes, items, literals, "
    "operators and comprehensions, calling len, str, sorted, typename... and read-only methods of "
    "builtin values; dunders, frames, code, globals and Peeka's own objects are refused; each "
    "evaluation is bounded (sizes, steps). --unsafe is the only way to run the app's code from an "
    "expression: such calls run with the app's full power. The export config never has it."
)
_COMMANDS_DIR = Path(__file__).resolve().parent / "commands"


def build_app(verb: str | None) -> typer.Typer:
    """The CLI with VERB's real command, or (no known verb) every verb listed for help."""
    app = typer.Typer(
        name="peeka",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # Plain help and usage errors: typer's rich formatting imports rich's markdown stack, which
        # cost more than everything else `peeka --help` does (measured in tests/bench_cli_startup.py).
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def peeka() -> None:
        # A group even with one verb registered: typer would otherwise run that verb as the whole CLI.
        pass

    if verb in COMMANDS:
        module = importlib.import_module(f".commands.{verb}", __package__)
        app.command(module.NAME, help=module.__doc__)(module.command)
        return app
    for name in COMMANDS:
        app.command(name, help=module_doc(name))(_listed_only)
    return app


def module_doc(name: str) -> str:
    """The docstring of commands/NAME.py, read from its source: every command module opens with one."""
    source = (_COMMANDS_DIR / f"{name}.py").read_text(encoding="utf-8")
    if not source.startswith('"""'):
        return ""
    return source[3:source.index('"""', 3)]


def _listed_only() -> None:  # pragma: no cover - only built when no known verb was given, so never invoked
    raise AssertionError("a listed verb is never run")


def _verb(args: list[str]) -> str | None:
    """The verb is the first word that is not an option (the top level takes no option values)."""
    return next((a for a in args if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        # Standalone: typer (whichever click it carries) reports usage errors itself and exits 2.
        build_app(_verb(args))(args=args, prog_name="peeka")
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
    from .render import console_err, escape

    console_err.print(f"[bold red]peeka: {escape(exc.message)}[/]", highlight=False)
    if exc.help:
        console_err.print(exc.help, highlight=False, markup=False)
    if trace:
        console_err.print(trace, highlight=False, markup=False)
