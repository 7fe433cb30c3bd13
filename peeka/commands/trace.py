"""Trace the call tree below a function, with each node's cost (only the traced thread pays)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..options import Pattern, Pid, ProbeOptions, Shared, with_options
from ..render import console, escape, new_tree, with_raised
from ._common import agent, run_stream

if TYPE_CHECKING:
    from rich.tree import Tree

NAME = "trace"


_WAITS = (("awaited_ms", "awaited"), ("suspended_ms", "suspended at yields"))  # answer key -> label shown


def _label(node: dict[str, Any]) -> str:
    """``[total, self ...]``: total is wall time from first start to final return (watch's cost);
    self the node's own running time; a generator's or coroutine's awaits and yields, and a
    greenlet's time switched out (awaited, at the call that switched), are shown apart, so a node's total = self + awaited + suspended + its children's (total - suspended)."""
    where = f" [dim]{escape(str(node['file']))}:{node['line']}[/]" if node.get("file") else ""
    parts = [f"{node['total_ms']:.3f} ms"]
    if node.get("count", 1) > 1:
        parts += [f"{node['count']}x", f"min {node['min_ms']:.3f}", f"max {node['max_ms']:.3f}"]
    if node.get("children") or node.get("awaited_ms") or node.get("suspended_ms"):
        parts.append(f"self {node.get('self_ms', node['total_ms']):.3f}")
    parts += [f"{label} {node[key]:.3f}" for key, label in _WAITS if node.get(key)]
    if node.get("resumes"):
        parts.append(f"{node['resumes']} resume{'s' if node['resumes'] > 1 else ''}")
    if node.get("switches"):  # its greenlet switched out here (other greenlets ran): the awaited time
        parts.append(f"{node['switches']} greenlet switch{'es' if node['switches'] > 1 else ''}")
    stats = "[" + ", ".join(parts) + "]"
    tags = []
    if node.get("c"):
        tags.append("C")
    if node.get("library"):
        tags.append("library, not expanded")
    if node.get("exceptions"):
        tags.append(f"[red]{node['exceptions']} exception(s)[/]")
    if node.get("hidden"):
        tags.append(f"{node['hidden']} below --min-cost hidden")
    suffix = f" [dim]({', '.join(tags)})[/]" if tags else ""
    return f"[yellow]{escape(stats)}[/] {escape(str(node['function']))}{where}{suffix}"


def _tasks(branch: Tree, node: dict[str, Any]) -> None:
    """Tasks the node awaited: they ran as the event loop's own steps, so their insides are not here."""
    for task in node.get("tasks", []):
        outcome = ", ".join(f"{task[k]} {k}" for k in ("done", "failed", "cancelled", "pending", "unknown") if task.get(k))
        branch.add(f"[cyan]task[/] {escape(str(task['function']))} x{task['count']} [dim]({outcome}; awaited "
                   f"{task['awaited_ms']:.3f} ms; runs in the event loop, not traced inside)[/]")


def _add(tree: Tree, node: dict[str, Any]) -> None:
    branch = tree.add(_label(node))
    for child in node.get("children", []):
        _add(branch, child)
    _tasks(branch, node)


def render_event(event: dict[str, Any]) -> None:
    if "error" in event:
        console.print(f"[bold]{escape(event['function'])}[/]\n  [red]{escape(event['error'])}[/]")
        return
    root = event["tree"]
    tree = new_tree(f"[dim]thread={escape(str(event['thread']))}[/] " + _label(root))
    for child in root.get("children", []):
        _add(tree, child)
    _tasks(tree, root)
    console.print(with_raised(tree, event))


@with_options(probe=True)
def command(
    pid: Pid,
    pattern: Pattern,
    min_cost: Annotated[Optional[float], typer.Option("--min-cost", min=0.0, help="Hide calls (and trees) cheaper than this many ms.")] = None,  # noqa: UP045,E501
    depth: Annotated[int, typer.Option("--depth", min=1, help="Levels of callees to record.")] = 32,
    all_calls: Annotated[bool, typer.Option("--all", help="Expand standard library and site-packages callees too.")] = False,  # noqa: E501
    *,
    shared: Shared,
    probe: ProbeOptions,
) -> None:
    args = probe.args(pattern, min_cost=min_cost, depth=depth, all=all_calls)
    with agent(pid, shared) as client:
        run_stream(client, NAME, args, shared.json, render_event, pid)
