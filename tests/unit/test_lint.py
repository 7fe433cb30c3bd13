"""ruff over the whole tree, with pyproject.toml's rules: CI fails on what a reviewer would flag."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.parallel


def test_ruff_is_clean() -> None:
    pytest.importorskip("ruff", reason="ruff is in the test extras")
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", str(ROOT)],
                         capture_output=True, text=True, cwd=str(ROOT), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
