"""Output: rich for people, JSON for programs (``--json`` on every command).

rich is imported on first use, not with this module: a command's --help, a --json run or a usage
error prints nothing through it, and importing it cost more than the rest of such a run
(tests/bench_cli_startup.py).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from .frontend import current

if TYPE_CHECKING:
    from rich.table import Table
    from rich.tree import Tree


class LazyConsole:
    """A rich ``Console`` made with these options when first used; stands for it in every use."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    @property
    def real(self) -> Any:
        """The Console itself: what rich's own objects (Live, Progress) are given, since they use it
        as a context manager, and special methods are not looked up through ``__getattr__``."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


console: Any = LazyConsole(highlight=False, soft_wrap=True)
console_err: Any = LazyConsole(stderr=True, highlight=False)


def new_tree(label: str) -> Tree:
    """A rich Tree (rich imported only now)."""
    from rich.tree import Tree

    return Tree(label)


def emit_json(data: Any) -> None:
    """One JSON document (or one line of a JSON-lines stream) on stdout, or to the front end that runs
    the command (``peeka mcp``: the tool's result)."""
    sink = current().emit
    if sink is not None:
        sink(data)
        return
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: list[str], rows: list[list[Any]], markup: bool = False) -> Table:
    """Cells are plain text unless ``markup``: they hold the target's names (threads, functions,
    loggers, command lines), where ``[list]`` or ``[calls returned between samples]`` is text that
    rich would otherwise take for a style and drop. With ``markup`` the caller escapes what it shows."""
    from rich.table import Table

    t = Table(title=title, title_justify="left", header_style="bold", show_edge=False, pad_edge=False)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) if markup else escape(str(v)) for v in row))
    return t


def value_tree(label: str, value: Any) -> Tree:
    """Render an agent value node (agent/values.py: type, repr, truncated, size?, children?, omitted?)."""
    tree = new_tree(label)
    add_value(tree, value)
    return tree


def value_head(node: Any) -> str:
    """One line for a value node: type, size, repr, truncation mark."""
    if not isinstance(node, dict) or "type" not in node:
        return escape(str(node))
    head = f"[cyan]{escape(str(node.get('type')))}[/]"
    if node.get("size") is not None:
        head += f"[dim]({node['size']})[/]"
    head += f" {escape(str(node.get('repr', '')))}"
    if node.get("truncated"):
        head += " [dim](truncated)[/]"
    return head


def add_value(tree: Tree, node: Any, key: str = "") -> None:
    """Add one value node (and its children) under ``tree``, labelled ``key`` when given."""
    head = value_head(node)
    if key != "":
        head = f"[bold]{escape(key)}[/] = {head}"
    sub = tree.add(head)
    if not isinstance(node, dict):
        return
    for child in node.get("children") or ():
        add_value(sub, child.get("value"), str(child.get("key", "")))
    if node.get("omitted"):
        sub.add(f"[dim]... {node['omitted']} more[/]")


def with_raised(tree: Tree, event: dict[str, Any]) -> Tree:
    """A probe event's tree (stack, trace) ended with the exception the call raised, if any."""
    if event.get("exception"):
        tree.add(f"[red]raised {escape(event['exception'])}[/]")
    return tree


def escape(text: str) -> str:
    from rich.markup import escape as _escape

    return _escape(text)
