"""The options every command shares, declared once, and the decorator that puts them on a command.

``@with_options()`` appends ``--json``, ``--debug`` and (unless ``attach=False``) ``--method`` and
``--attach-timeout`` to a command's own parameters; ``@with_options(probe=True)`` adds the probe options
(watch, trace, stack, monitor, tt). The command receives the parsed values as ``shared: Shared`` and
``probe: ProbeOptions``; ``cli.main`` reads the same parsed values (``parsed()``) when it reports an
error, never the raw argv. A new option for every probe command (or every command) is one entry in
``PROBE_OPTIONS`` (or ``SHARED_OPTIONS``) plus one field.

The decorator also hands typer a signature whose annotations are evaluated objects: typer reads
string annotations (``from __future__ import annotations``) only on 3.10+, so on 3.9 every
``Annotated`` option (short names, arguments) was lost.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, NamedTuple, Optional

import typer
from peeka_agent.protocol import (
    DEFAULT_LIMIT,
    DEFAULT_MAX_MATCH,
    DEFAULT_MAX_SIZE,
    DEFAULT_STREAM_BUDGET,
    MAX_DEPTH,
    MIN_MAX_SIZE,
)

Pid = Annotated[int, typer.Argument(help="PID of the target Python process (`peeka ps` lists them).")]
Pattern = Annotated[
    str, typer.Argument(help="Functions to probe: module.func, module.Class.method, wildcards (myapp.views.*).")
]
Regex = Annotated[bool, typer.Option("-E", "--regex", help="PATTERN is a regular expression.")]
Limit = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("-n", "--limit", min=1, help="End after this many events (calls, trees, reports)."),
]
StreamTimeout = Annotated[
    Optional[float],  # noqa: UP045 - evaluated at import, also on Python 3.9
    typer.Option("--timeout", min=0.0, help="End after this many seconds."),
]
Expand = Annotated[int, typer.Option("-x", "--expand", min=1, max=MAX_DEPTH, help="Expand values N levels (1: the repr only).")]
MaxSize = Annotated[int, typer.Option("--max-size", min=MIN_MAX_SIZE, help="Characters per rendered value.")]
Unsafe = Annotated[
    bool,
    typer.Option(
        "--unsafe",
        help="Let expressions call the app's functions (and any other function): they run with the app's full "
        "power. Without it expressions only read (see `peeka --help`).",
    ),
]


def render_args(depth: int, max_size: int = DEFAULT_MAX_SIZE) -> dict[str, int]:
    """How the agent renders values (watch, tt): -x and --max-size, the same on every command."""
    return {"depth": depth, "max_size": max_size}


# `peeka mcp`: a stream a tool call runs ends by itself (an assistant has no Ctrl-C), so a call that
# names no --timeout gets this one, and none may ask for more than the maximum.
MCP_STREAM_TIMEOUT = 10.0  # s
MCP_MAX_STREAM_TIMEOUT = 300.0  # s
MCP_TOP_WINDOW = 2.0  # s: the top tool samples one window and returns its one report

DEFAULT_METHOD = "auto"
DEFAULT_ATTACH_TIMEOUT = 10.0


class Shared(NamedTuple):
    """What every command's shared options parsed to."""

    json: bool = False
    debug: bool = False
    method: str = DEFAULT_METHOD
    attach_timeout: float = DEFAULT_ATTACH_TIMEOUT


class ProbeOptions(NamedTuple):
    """What the probe options of watch, trace, stack, monitor and tt parsed to."""

    regex: bool = False
    max_match: int = DEFAULT_MAX_MATCH
    limit: Optional[int] = DEFAULT_LIMIT  # noqa: UP045 - None: no limit (monitor's default)
    timeout: Optional[float] = None  # noqa: UP045
    condition: Optional[str] = None  # noqa: UP045
    unsafe: bool = False  # expressions may call the app's functions
    overhead_budget: float = DEFAULT_STREAM_BUDGET  # percent of the target's CPU; 0: no governor

    def args(self, pattern: str, **extra: Any) -> dict[str, Any]:
        """The agent's arguments for a probe over PATTERN; ``extra`` entries that are None are left out."""
        args: dict[str, Any] = {"pattern": pattern, "regex": self.regex, "max_match": self.max_match,
                                "timeout": self.timeout}
        if self.limit is not None:
            args["limit"] = self.limit
        if self.condition is not None:
            args["condition"] = self.condition
        if self.unsafe:
            args["unsafe"] = True
        if self.overhead_budget:
            args["overhead_budget"] = self.overhead_budget
        args.update({k: v for k, v in extra.items() if v is not None})
        return args


def _option(name: str, default: Any, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


SHARED_OPTIONS = (
    _option("json", False, Annotated[bool, typer.Option("--json", help="Print JSON (one document, or JSON lines for streams).")]),
    _option("debug", False, Annotated[bool, typer.Option("--debug", help="On failure, print the traceback (the agent's, or the client's).")]),  # noqa: E501
)
ATTACH_OPTIONS = (
    _option("method", DEFAULT_METHOD, Annotated[str, typer.Option("--method", help="How to attach when no agent runs yet: auto, remote-exec (3.14+) or gdb.")]),  # noqa: E501
    _option("attach_timeout", DEFAULT_ATTACH_TIMEOUT, Annotated[float, typer.Option("--attach-timeout", min=0.1, help="Seconds to wait for the agent to come up.")]),  # noqa: E501
)
PROBE_OPTIONS = (
    _option("condition", None, Annotated[Optional[str], typer.Option("--condition", "-c", help="Only calls where this expression is true, e.g. \"cost > 100\".")]),  # noqa: UP045,E501
    _option("unsafe", False, Unsafe),
    _option("limit", DEFAULT_LIMIT, Limit),
    _option("timeout", None, StreamTimeout),
    _option("regex", False, Regex),
    _option("max_match", DEFAULT_MAX_MATCH, Annotated[int, typer.Option("-m", "--max-match", min=1, help="Refuse when more functions than this match.")]),  # noqa: E501
    _option("overhead_budget", DEFAULT_STREAM_BUDGET, Annotated[float, typer.Option("--overhead-budget", min=0.0, max=100.0, metavar="PCT", help="Keep what the probes cost under PCT% of the target's CPU: hot functions get 1 call in N, or their probe is switched off part of the time (monitor: counts of the time on); what is skipped is counted and shown. 0 (default): off.")]),  # noqa: E501
)

_parsed = Shared()


def parsed() -> Shared:
    """The shared options of the command being run (defaults before one is parsed)."""
    return _parsed


def with_options(*, probe: bool = False, attach: bool = True, json: bool = True,
            limit: int | None = DEFAULT_LIMIT) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Put the shared options (and with ``probe`` the probe options) on a command function.

    The function declares only its own parameters, plus ``shared: Shared`` and/or
    ``probe: ProbeOptions`` when it wants them. ``attach=False``: a command that never attaches
    (no --method/--attach-timeout); ``json=False``: one with no JSON output (export); ``limit``:
    the probe command's default -n (None: no limit).
    """

    def wrap(func: Callable[..., None]) -> Callable[..., None]:
        # What inspect.signature(eval_str=True) does on 3.10+ (typing.get_type_hints would wrap a
        # None-default annotation in Optional on 3.9, hiding typer's Annotated metadata).
        own = [p.replace(annotation=eval(p.annotation, func.__globals__) if isinstance(p.annotation, str)  # noqa: S307
                         else p.annotation)
               for p in inspect.signature(func).parameters.values() if p.name not in ("shared", "probe")]
        wants = inspect.signature(func).parameters
        added = [o.replace(default=limit) if o.name == "limit" else o for o in PROBE_OPTIONS] if probe else []
        added += [o for o in SHARED_OPTIONS if json or o.name != "json"]
        added += list(ATTACH_OPTIONS) if attach else []

        @functools.wraps(func)
        def run(**kwargs: Any) -> None:
            global _parsed
            _parsed = Shared(**{o.name: kwargs.pop(o.name) for o in (*SHARED_OPTIONS, *ATTACH_OPTIONS) if o.name in kwargs})
            if probe:
                options = ProbeOptions(**{o.name: kwargs.pop(o.name) for o in PROBE_OPTIONS})
                if "probe" in wants:
                    kwargs["probe"] = options
            if "shared" in wants:
                kwargs["shared"] = _parsed
            func(**kwargs)

        params = own + added
        del run.__wrapped__  # typer must see the signature below, not the function's own
        run.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run

    return wrap
