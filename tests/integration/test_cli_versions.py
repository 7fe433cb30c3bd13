"""The CLI itself on every supported Python (3.9-3.14): each client venv scripts/setup.sh made runs a
real watch with short options and an EXPR against one real target, and shows --json and --debug.

One target and one agent serve every version (attached once), so each version costs a few CLI
start-ups. A version whose client venv is missing is skipped with where it comes from.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest
from conftest import ROOT, VERSIONS, Target, peeka_cli

from peeka.cli import COMMANDS

pytestmark = pytest.mark.parallel

CLIENTS = {v: ROOT / (".venv" + v.replace(".", "")) / "bin" / "python" for v in VERSIONS}
OWN = f"{sys.version_info[0]}.{sys.version_info[1]}"
CLIENTS[OWN] = ROOT / ".venv" / "bin" / "python"


def client_for(version: str) -> str:
    python = CLIENTS[version]
    if not python.exists():
        pytest.skip(f"no client venv for Python {version} ({python.parent.parent.name}): scripts/setup.sh makes one "
                    "per Python the machine has")
    return str(python)


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    t = Target(sys.executable, "cli_versions_target.py")
    try:
        out = peeka_cli("attach", str(t.pid), "--json")
        assert out.returncode == 0, out.stderr
        yield t
    finally:
        peeka_cli("detach", str(t.pid))
        t.stop()


@pytest.mark.parametrize("version", VERSIONS)
def test_cli_watch_with_short_options_and_expr(target: Target, version: str) -> None:
    python = client_for(version)
    # Short options (-n, -c, -x, -m) and the EXPR argument: lost on 3.9 before the options were evaluated.
    out = peeka_cli("watch", str(target.pid), "__main__.scaled", "params['n'] * 100 + result",
                    "-n", "1", "-c", "params['n'] == 7", "-x", "1", "-m", "5", "--json", python=python)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line.get("type") for line in (lines[0], lines[-1])] == ["start", "end"], lines
    events = lines[1:-1]
    assert len(events) == 1 and lines[-1]["reason"] == "limit", lines
    # The target's ground truth: scaled(7) returns 14, so the expression is 714.
    assert "714" in json.dumps(events[0]["value"]), events[0]
    assert target.alive()

    # A bad condition is the user's error (exit 2, named) on every client; the agent keeps serving.
    bad = peeka_cli("watch", str(target.pid), "__main__.scaled", "-n", "1", "-c", "open('/etc/passwd')",
                    python=python)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_cli_json_and_debug_on_errors(version: str) -> None:
    python = client_for(version)
    gone = "999999999"  # above pid_max: no such process
    debug = peeka_cli("inspect", gone, "1", "--debug", python=python)
    assert debug.returncode == 3 and "Traceback (most recent call last)" in debug.stderr, debug.stderr
    as_json = json.loads(peeka_cli("inspect", gone, "1", "--json", python=python).stdout)
    assert as_json["exit_code"] == 3 and "traceback" not in as_json, as_json
    as_json = json.loads(peeka_cli("inspect", gone, "1", "--json", "--debug", python=python).stdout)
    assert "Traceback" in as_json["traceback"], as_json
    # The lazy start-up's verb list, read from the command modules' files, on every version.
    listed = peeka_cli("--help", python=python)
    assert listed.returncode == 0 and all(f"  {name} " in listed.stdout for name in COMMANDS), listed.stdout
