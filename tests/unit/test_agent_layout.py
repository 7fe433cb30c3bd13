"""The agent's layout, read from its imports: commands build on the framework and helper modules,
never on each other, and nothing below the command registry imports a command."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.parallel

AGENT = Path(__file__).resolve().parents[2] / "agent"
COMMANDS = {p.stem for p in (AGENT / "commands").glob("*.py") if p.stem != "__init__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(AGENT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> Iterator[str]:
    """Every module ``path`` imports (anywhere in it, lazy imports included), as ``agent.x.y``;
    ``from package import name`` yields ``package.name`` too, since the name may be a module."""
    package = _module_name(path) if path.stem == "__init__" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.replace("peeka_agent", "agent", 1)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = (node.module or "").replace("peeka_agent", "agent", 1)
            yield module
            for alias in node.names:
                yield module + "." + alias.name


def command_imports(path: Path) -> set[str]:
    return {name.split(".")[2] for name in imported_modules(path)
            if name.startswith("agent.commands.") and name.split(".")[2] in COMMANDS}


def test_commands_are_found() -> None:
    assert {"ping", "watch", "trace", "export", "sc", "sm", "thread", "top"} <= COMMANDS
    parsed = set(imported_modules(AGENT / "commands" / "export.py"))
    assert "agent.streams.CommandError" in parsed and "agent.costs" in parsed  # the parser resolves


def test_no_command_imports_another() -> None:
    found = {}
    for name in sorted(COMMANDS):
        others = command_imports(AGENT / "commands" / (name + ".py")) - {name}
        if others:
            found[name] = sorted(others)
    assert found == {}, "command modules importing other commands (move what they share to a helper module)"


def test_framework_and_helpers_import_no_command() -> None:
    found = {}
    for path in sorted(AGENT.glob("*.py")):
        commands = command_imports(path)
        # The registry package itself: only the server (runtime) dispatches through it.
        if path.stem != "runtime" and any(m == "agent.commands" for m in imported_modules(path)):
            commands.add("(the registry)")
        if commands:
            found[path.name] = sorted(commands)
    registry = command_imports(AGENT / "commands" / "__init__.py")
    assert found == {} and registry == set(), (found, registry)
