"""Textual is the TUI's dependency only: the agent (which runs inside targets, standard library only),
the exporter and every other CLI verb neither import it nor pay for it at start-up."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.parallel

ROOT = Path(__file__).resolve().parents[2]


def _imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_agent_and_exporters_never_import_textual() -> None:
    for folder in ("agent", "exporters"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            assert "textual" not in _imported_names(path), path


def test_core_modules_load_without_textual() -> None:
    """Every client module but the TUI's, and every other verb's command, loaded: textual stays out."""
    commands = sorted(p.stem for p in (ROOT / "peeka" / "commands").glob("*.py")
                      if p.stem not in ("__init__", "tui"))
    script = (
        "import importlib, sys\n"
        "for name in ['peeka.cli', 'peeka.client', 'peeka.session', 'peeka.attach', 'peeka.render',"
        " 'peeka_exporters.service', 'peeka_exporters.pipeline', 'peeka_agent.runtime']"
        f" + ['peeka.commands.' + c for c in {commands!r}]:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    # And the TUI's own command module imports textual only when it runs.
    lazy = subprocess.run([sys.executable, "-c", "import sys, peeka.commands.tui; print('textual' in sys.modules)"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert lazy.stdout.strip() == "False", lazy.stderr
