"""Memory of the target: RSS/VMS/USS, GC counts and thresholds, the object types that fill it;
--diff S what grew over S seconds; --tracemalloc start|top|diff|stop allocation sites by file:line."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ..errors import UsageError
from ..options import Pid, Shared, with_options
from ..render import console, table
from ._common import ask

NAME = "memory"
ACTIONS = ("start", "top", "diff", "stop")


def _mib(value: Any, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value / 1048576:+.2f} MiB" if signed else f"{value / 1048576:.2f} MiB"


@with_options()
def command(
    pid: Pid,
    diff: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--diff", min=0.1, max=3600, help="Census now and after S seconds: what grew."),
    ] = None,
    tracemalloc: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--tracemalloc", help="start | top | diff | stop: allocation sites by file:line."),
    ] = None,
    types: Annotated[int, typer.Option("--types", min=0, help="Object types listed (0: no census).")] = 20,
    sort: Annotated[str, typer.Option("--sort", help="Rank object types by size or count.")] = "size",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Allocation sites listed (tracemalloc).")] = 20,
    frames: Annotated[int, typer.Option("--frames", min=1, max=100, help="tracemalloc start: frames kept.")] = 1,
    *,
    shared: Shared,
) -> None:
    if tracemalloc is not None and tracemalloc not in ACTIONS:
        raise UsageError(f"--tracemalloc must be one of {', '.join(ACTIONS)}, got {tracemalloc!r}",
                         "Start tracing, look, then stop: --tracemalloc start, top or diff, stop.")
    if tracemalloc is not None and diff is not None:
        raise UsageError("--diff and --tracemalloc go separately",
                         "--diff S compares object types over S seconds; --tracemalloc diff compares allocation sites.")
    if sort not in ("size", "count"):
        raise UsageError(f"--sort must be size or count, got {sort!r}", "")
    args: dict[str, Any] = {"types": types, "sort": sort}
    if tracemalloc is not None:
        args.update(tracemalloc=tracemalloc, limit=limit, frames=frames)
    elif diff is not None:
        args["diff"] = diff
    # The answer comes after the diff's wait and two censuses (each capped at 2 s by the agent).
    result = ask(pid, NAME, args, shared, extra_timeout=(diff or 0) + 5)
    if result is None:
        return
    if tracemalloc is not None:
        render_tracemalloc(result, tracemalloc)
    else:
        render(result)


def render(result: dict[str, Any]) -> None:
    proc, gc = result["process"], result["gc"]
    growth = result.get("growth") or {}
    line = "  ".join(f"{label} {_mib(proc.get(key))}" + (f" ({_mib(growth[key], True)})" if key in growth else "")
                     for label, key in (("rss", "rss_bytes"), ("uss", "uss_bytes"), ("vms", "vms_bytes"),
                                        ("peak rss", "peak_rss_bytes"), ("swap", "swap_bytes")))
    console.print(f"[bold]{line}[/]")
    gens = "  ".join(f"gen{i}: {g['collections']} collections, {g['collected']} collected, "
                     f"{g['uncollectable']} uncollectable" for i, g in enumerate(gc["generations"]))
    console.print(f"gc {'on' if gc['enabled'] else 'OFF'}  counts {gc['counts']}  thresholds {gc['thresholds']}"
                  f"  frozen {gc['frozen']}\n{gens}")
    census = result.get("census")
    if census is None:
        return
    if "diff_s" in result:
        title = f"grew over {result['diff_s']:g} s"
        console.print(table(title, ["type", "count", "+count", "size", "+size"],
                            [[t["type"], t["count"], f"{t['count_delta']:+d}", _mib(t["size_bytes"]),
                              _mib(t["size_delta_bytes"], True)] for t in result["types"]]))
        console.print(table("containers that grew", ["type", "name", "len", "+len", "id"],
                            [[c["type"], c["name"] or "", c["len"], f"{c['len_delta']:+d}", hex(c["id"])]
                             for c in result["containers"]]))
    else:
        console.print(table("object types (tracked by the GC, shallow sizes)", ["type", "count", "size"],
                            [[t["type"], t["count"], _mib(t["size_bytes"])] for t in result["types"]]))
        console.print(table("largest containers", ["type", "name", "len", "size", "id"],
                            [[c["type"], c["name"] or "", c["len"], _mib(c["size_bytes"]), hex(c["id"])]
                             for c in result["containers"][:10]]))
    cut = " (cut short: a cap was hit)" if census["truncated"] else ""
    console.print(f"[dim]census of {census['objects']} objects in {census['seconds'] * 1000:.0f} ms{cut}[/]")


def render_tracemalloc(result: dict[str, Any], action: str) -> None:
    facts = result["tracemalloc"]
    if action in ("start", "stop"):
        state = "tracing" if facts["tracing"] else "not tracing"
        owner = " (started by peeka; `--tracemalloc stop` or detach stops it)" if facts["started_by_peeka"] else ""
        console.print(f"tracemalloc {state}{owner}")
        return
    console.print(f"traced {_mib(facts['traced_bytes'])}, peak {_mib(facts['peak_bytes'])}")
    if action == "top":
        rows = [[f"{s['file']}:{s['line']}", _mib(s["size_bytes"]), s["count"]] for s in result["sites"]]
        console.print(table("top allocation sites", ["where", "size", "blocks"], rows))
    else:
        rows = [[f"{s['file']}:{s['line']}", _mib(s["size_delta_bytes"], True), f"{s['count_delta']:+d}",
                 _mib(s["size_bytes"])] for s in result["sites"]]
        console.print(table("allocations since the last start/diff", ["where", "+size", "+blocks", "size"], rows))
