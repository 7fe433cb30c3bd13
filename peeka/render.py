"""Output: rich for people, JSON for programs (``--json`` on every command)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

console = Console(highlight=False, soft_wrap=True)
console_err = Console(stderr=True, highlight=False)


def emit_json(data: Any) -> None:
    """One JSON document (or one line of a JSON-lines stream) on stdout."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold", show_edge=False, pad_edge=False)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t


def value_tree(label: str, value: Any) -> Tree:
    """Render an agent value node ({type, repr, children?}) as a tree."""
    tree = Tree(label)
    _add_value(tree, value)
    return tree


def _add_value(tree: Tree, node: Any) -> None:
    if not isinstance(node, dict) or "type" not in node:
        tree.add(str(node))
        return
    head = f"[cyan]{node.get('type')}[/] {escape(node.get('repr', ''))}"
    if node.get("truncated"):
        head += " [dim](truncated)[/]"
    children = node.get("children")
    if not children:
        tree.add(head)
        return
    sub = tree.add(head)
    for child in children:
        key = child.get("key", "")
        branch = sub.add(f"[bold]{escape(str(key))}[/]") if key != "" else sub
        _add_value(branch, child.get("value"))


def escape(text: str) -> str:
    from rich.markup import escape as _escape

    return _escape(text)
