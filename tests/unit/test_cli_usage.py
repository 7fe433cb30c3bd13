"""The CLI's own usage errors: a message and exit code 2, never a traceback (whatever click typer carries)."""

from __future__ import annotations

import pytest
from conftest import peeka_cli

pytestmark = pytest.mark.parallel


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["watch"], "Missing argument"),
        (["watch", "1", "x", "--bogus"], "No such option: --bogus"),
        (["nosuch"], "No such command 'nosuch'"),
        (["thread", "not-a-pid"], "Invalid value for 'pid'"),
        (["watch", "1", "x", "-x", "9"], "-x"),
        (["top", "1", "--record", "1", "--output", "x", "--format", "svg"], "collapsed, pprof, speedscope"),
        (["top", "1", "--format", "pprof"], "--format is the format of --record's --output"),
    ],
)
def test_usage_errors_exit_2_without_traceback(args: list[str], fragment: str) -> None:
    out = peeka_cli(*args)
    assert out.returncode == 2, out.stdout + out.stderr
    assert fragment in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_help_lists_every_command() -> None:
    from peeka.cli import COMMANDS

    out = peeka_cli("--help", env={"COLUMNS": "200"})
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout, name


def test_listed_help_is_each_module_docstring() -> None:
    """`peeka --help` reads each verb's docstring from its file; it must be the module's own."""
    import importlib

    from peeka.cli import COMMANDS, module_doc

    for name in COMMANDS:
        assert module_doc(name) == importlib.import_module(f"peeka.commands.{name}").__doc__, name


def test_start_up_imports_only_the_verb_run() -> None:
    """Lazy start-up: `peeka --help` imports no command module and no rich; a verb imports its own only."""
    import subprocess
    import sys

    probe = ("import sys; from peeka.cli import build_app; build_app(sys.argv[1] or None); "
             "print(sorted(m for m in sys.modules if m.startswith('peeka.commands.') or m == 'rich'))")
    listed = subprocess.run([sys.executable, "-c", probe, ""], capture_output=True, text=True, check=True)
    assert listed.stdout.strip() == "[]"
    one = subprocess.run([sys.executable, "-c", probe, "sm"], capture_output=True, text=True, check=True)
    loaded = eval(one.stdout)  # noqa: S307 - our own probe's printed list
    assert "peeka.commands.sm" in loaded
    assert not [m for m in loaded if m.rsplit(".", 1)[-1] in {"sc", "watch", "source", "thread"}], loaded
