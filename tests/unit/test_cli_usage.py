"""The CLI's own usage errors: a message and exit code 2, never a traceback (whatever click typer carries)."""

from __future__ import annotations

import pytest
from conftest import peeka_cli


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["watch"], "Missing argument"),
        (["watch", "1", "x", "--bogus"], "No such option: --bogus"),
        (["nosuch"], "No such command 'nosuch'"),
        (["thread", "not-a-pid"], "Invalid value for 'pid'"),
        (["watch", "1", "x", "-x", "9"], "-x"),
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
