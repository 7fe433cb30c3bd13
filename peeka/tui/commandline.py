"""The ``:`` command line: the CLI's own verbs and options, run over the TUI's session.

``watch mod.f -n 5``, ``inspect 'mod.CONFIG'``, ``sm 'shop.*'``, ``thread -b``, ``memory --sort count``...
The words are parsed by the CLI's real command (``peeka.cli.build_app``: the same options, short
letters, defaults, bounds and usage errors as ``peeka VERB PID ...``), with the attached PID put in
first; ``to_request`` then turns the parsed values into the agent's arguments the way each verb's
command does. Verbs that need their own terminal (``top``, ``export``, ``tt``) or are about other
processes (``ps``, ``attach``, ``detach``, ``tui``) are refused with a pointer to the CLI.
"""

from __future__ import annotations

import shlex
from typing import Any, NamedTuple

import typer

from ..commands._search import search_args
from ..errors import UsageError
from ..options import PROBE_OPTIONS, ProbeOptions, render_args

STREAMS = ("watch", "trace", "stack", "monitor")
REQUESTS = ("inspect", "sc", "sm", "thread", "tasks", "logger", "memory", "ping", "reset", "source")
NOT_HERE = ("top", "export", "tt", "ps", "attach", "detach", "tui")


class Command(NamedTuple):
    verb: str  # the agent's command (= the CLI's verb)
    args: dict[str, Any]
    stream: bool
    text: str  # as typed


def parse(text: str, pid: int) -> Command:
    """The request a typed command line makes; UsageError naming what was wrong."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"cannot split the command line: {exc}", "Close the quote.") from None
    if not words:
        raise UsageError("empty command line", f"Type a verb: {', '.join(STREAMS + REQUESTS)}.")
    verb, rest = words[0], words[1:]
    if "--help" in rest or "-h" in rest:  # click would print the help to the terminal the TUI draws on
        raise UsageError("no help on the TUI's command line", f"`peeka {verb} --help` in a shell lists the options.")
    if verb in NOT_HERE:
        raise UsageError(f"`{verb}` is not available on the TUI's command line",
                         "Top and the others have their own view (number keys); run the CLI in another terminal for the rest.")
    if verb not in STREAMS + REQUESTS:
        raise UsageError(f"unknown verb {verb!r}", f"The command line accepts: {', '.join(STREAMS + REQUESTS)}.")
    if verb == "logger" and ("-f" in rest or "--follow" in rest):
        raise UsageError("logger --follow runs in the Logger view", "Press 6, select a logger and press f.")
    from ..cli import build_app  # the CLI's command for this verb only (it imports that one module)

    group = typer.main.get_command(build_app(verb))
    command = group.commands[verb]  # type: ignore[attr-defined]
    try:
        ctx = command.make_context(verb, [str(pid), *rest])
    except Exception as exc:  # click's (typer vendors its own copy): a usage error, or --help's exit
        if not hasattr(exc, "format_message"):
            raise UsageError(f"`{verb}` takes options, not --help here", f"`peeka {verb} --help` lists them.") from None
        raise UsageError(f"{verb}: {exc.format_message()}", f"`peeka {verb} --help` lists its options.") from None
    return Command(verb, to_request(verb, ctx.params), verb in STREAMS, text)


def to_request(verb: str, p: dict[str, Any]) -> dict[str, Any]:
    """The agent's arguments from the CLI's parsed values, as each verb's command builds them."""
    if verb in STREAMS:
        probe = ProbeOptions(**{o.name: p[o.name] for o in PROBE_OPTIONS if o.name in p})
        if verb == "watch":
            at = [name for name, flag in (("enter", "before"), ("success", "success"), ("exception", "exception"),
                                          ("finish", "finish")) if p.get(flag)]
            return probe.args(p["pattern"], expression=p.get("expression"), at=at or ["finish"],
                              **render_args(p["depth"], p["max_size"]))
        if verb == "trace":
            return probe.args(p["pattern"], min_cost=p.get("min_cost"), depth=p.get("depth"), all=p.get("all_calls"))
        if verb == "monitor":
            return probe.args(p["pattern"], cycle=p.get("cycle"))
        return probe.args(p["pattern"])
    if verb == "inspect":
        if not p.get("expression") and not p.get("instances"):
            raise UsageError("give an expression or --instances CLASS", "For example: `inspect myapp.config.settings`.")
        args: dict[str, Any] = {"expression": p.get("expression") or "", **render_args(p["depth"], p["max_size"])}
        if p.get("instances"):
            args.update(instances=p["instances"], limit=p["limit"])
        if p.get("unsafe"):
            args["unsafe"] = True
        return args
    if verb in ("sc", "sm", "source"):
        if verb == "source":
            return {"pattern": p["pattern"], "regex": p.get("regex", False), "limit": p["limit"]}
        return search_args(p["pattern"], p.get("detail", False), p.get("regex", False), p["limit"])
    if verb == "thread":
        blocked = bool(p.get("blocked"))
        interval = p.get("interval")
        if interval is None:
            interval = 0 if p.get("thread_id") is not None or blocked else 200
        args = {"all": p.get("all_threads", False), "depth": p.get("depth", 0), "max_frames": p.get("max_frames"),
                "max_size": p.get("max_size"), "interval_ms": interval, "blocked": blocked}
        if p.get("thread_id") is not None:
            args["thread_id"] = p["thread_id"]
        if p.get("busiest") is not None:
            args["top"] = p["busiest"]
        return {k: v for k, v in args.items() if v is not None}
    if verb == "memory":
        if p.get("tracemalloc"):
            raise UsageError("tracemalloc runs in the Memory view", "Press 3, then t (start/stop) and T (top).")
        args = {"types": p.get("types", 20), "sort": p.get("sort", "size")}
        if p.get("diff") is not None:
            args["diff"] = p["diff"]
        return args
    if verb == "logger":
        if p.get("level") is not None:
            raise UsageError("levels are set in the Logger view", "Press 6, select the logger and press Enter "
                             "(the TUI puts the level back when it quits).")
        return {"name": p.get("name")} if p.get("name") else {}
    if verb == "tasks":
        return {"limit": p.get("limit"), "max_frames": p.get("max_frames"), "scan_gc": p.get("scan_gc", False)}
    if verb == "reset":
        return {"pattern": p.get("pattern"), "regex": p.get("regex", False)}
    return {}
