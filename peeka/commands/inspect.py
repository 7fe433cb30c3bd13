"""Evaluate an expression in the target (`myapp.config.settings`, `len(myapp.cache._store)`) and show
the value as a tree; with --instances, show live instances of a class (EXPR then applies to each as `it`)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from peeka_agent.protocol import DEFAULT_DEPTH, DEFAULT_MAX_SIZE

from ..errors import UsageError
from ..options import Expand, MaxSize, Pid, Shared, Unsafe, render_args, with_options
from ..render import console, emit_json, value_tree
from ._common import agent

NAME = "inspect"


@with_options()
def command(
    pid: Pid,
    expression: Annotated[
        str,
        typer.Argument(
            help="Names resolve over the loaded modules: 'myapp.config.settings.timeout', "
            "'len(myapp.cache._store)'. Expressions only read: dunders, introspection and calls of the app's "
            "functions are refused (--unsafe allows calls)."
        ),
    ] = "",
    depth: Expand = DEFAULT_DEPTH,
    max_size: MaxSize = DEFAULT_MAX_SIZE,
    instances: Annotated[
        Optional[str],  # noqa: UP045 - typer evaluates this annotation, also on Python 3.9
        typer.Option(
            "--instances", help="Find live instances of this class (qualified name: myapp.models.User)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="Instances to show.")] = 10,
    unsafe: Unsafe = False,
    *,
    shared: Shared,
) -> None:
    if not expression and not instances:
        raise UsageError(
            "give an expression or --instances CLASS",
            f"For example: `peeka inspect {pid} myapp.config.settings` or "
            f"`peeka inspect {pid} --instances myapp.models.User`.",
        )
    args: dict[str, Any] = {"expression": expression, **render_args(depth, max_size)}
    if instances:
        args.update(instances=instances, limit=limit)
    if unsafe:
        args["unsafe"] = True
    with agent(pid, shared) as client:
        result = client.request(NAME, args)
    if shared.json:
        emit_json(result)
        return
    if not instances:
        console.print(value_tree(f"[bold]{_escape(result['expression'])}[/]", result["value"]))
        return
    console.print(
        f"[bold]{result['total']}[/] live instance(s) of [cyan]{_escape(result['class'])}[/]"
        + (f", showing {result['count']} (--limit raises it)" if result["truncated"] else "")
    )
    for item in result["instances"]:
        label = f"[bold]{item['id']}[/]" + (
            "" if result["expression"] == "it" else f" {_escape(result['expression'])}"
        )
        if "error" in item:
            console.print(f"{label}: [red]{_escape(item['error'])}[/]")
        else:
            console.print(value_tree(label, item["value"]))


def _escape(text: str) -> str:
    from ..render import escape

    return escape(text)
