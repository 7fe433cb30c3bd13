"""The MCP tools: one per CLI verb, read from that verb's own command (no second copy of it).

A tool's input schema is the command's parameters (``peeka.options`` and the command module
declare each once: name, type, default, bounds, help), its arguments the CLI's options in snake_case
(``--max-frames`` -> ``max_frames``), and a call runs the CLI command itself with ``--json``, so the
structured result is exactly what ``peeka VERB ... --json`` prints. Command modules are found by name
through ``peeka.cli`` (as the CLI finds them), never imported here. Nothing here needs the MCP SDK.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any, NamedTuple

from ..cli import build_app, module_doc
from ..errors import UsageError
from ..options import MCP_MAX_STREAM_TIMEOUT, MCP_STREAM_TIMEOUT, MCP_TOP_WINDOW

# Every call is --json; --debug would put a traceback into the result.
_ALWAYS_LEFT_OUT = ("json", "debug")


class ToolSpec(NamedTuple):
    verb: str
    observes_only: bool  # MCP's readOnlyHint: the call changes nothing in the target (probes come off at its end)
    streams: str = ""  # "": one answer; "always"; or the argument that makes it a stream (logger follow, tt pattern)
    defaults: dict[str, Any] = {}  # the tool's own defaults where the CLI's would not end (top's window)
    left_out: tuple[str, ...] = ()  # CLI options a tool does not offer (top --record writes a file on this host)
    result_key: str = ""  # the CLI prints a JSON list: the structured result is {result_key: list}


TOOLS: dict[str, ToolSpec] = {spec.verb: spec for spec in (
    ToolSpec("ps", True, result_key="processes"),
    ToolSpec("thread", True),
    ToolSpec("top", True, streams="always", defaults={"interval": MCP_TOP_WINDOW, "limit": 1},
             left_out=("record", "output", "format")),
    ToolSpec("memory", False),  # --tracemalloc start/stop changes the target
    ToolSpec("inspect", True),
    ToolSpec("sc", True),
    ToolSpec("sm", True),
    ToolSpec("source", True),
    ToolSpec("tasks", True),
    ToolSpec("logger", False, streams="follow"),  # --level changes a logger
    ToolSpec("watch", True, streams="always"),
    ToolSpec("trace", True, streams="always"),
    ToolSpec("stack", True, streams="always"),
    ToolSpec("monitor", True, streams="always"),
    ToolSpec("tt", False, streams="pattern"),  # --replay calls the function again
    ToolSpec("reset", False),
    ToolSpec("detach", False),
)}


class Param(NamedTuple):
    """One CLI parameter as a tool argument."""

    argument: str  # the tool's argument name (snake_case of the long option)
    python: str  # the command function's parameter name
    option: str  # "--max-frames"; "" for a positional argument
    schema: dict[str, Any]
    required: bool


_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string", Path: "string"}


def _base_type(annotation: Any) -> tuple[Any, Any]:
    """(python type, typer's OptionInfo/ArgumentInfo) of an ``Annotated[...]`` parameter."""
    base, info = typing.get_args(annotation)[:2]
    inner = [a for a in typing.get_args(base) if a is not type(None)]
    return (inner[0] if inner else base), info


def params(verb: str) -> list[Param]:
    """The tool arguments of VERB: every parameter its CLI command takes, in order."""
    spec = TOOLS[verb]
    group = build_app(verb)
    command = group.registered_commands[0].callback
    declared = {p.name: p for p in _click_params(verb)}
    found = []
    for parameter in inspect.signature(command).parameters.values():  # type: ignore[arg-type]
        if parameter.name in _ALWAYS_LEFT_OUT or parameter.name in spec.left_out:
            continue
        python_type, info = _base_type(parameter.annotation)
        click_param = declared[parameter.name]
        longs = [o for o in click_param.opts if o.startswith("--")]
        option = longs[0] if longs else ""
        argument = option[2:].replace("-", "_") if option else parameter.name
        schema: dict[str, Any] = {"type": _JSON_TYPES.get(python_type, "string")}
        help_text = getattr(info, "help", None) or ""
        if option:
            help_text += f" (CLI: {' / '.join(click_param.opts)})"
        if getattr(info, "min", None) is not None:
            schema["minimum"] = info.min
        if getattr(info, "max", None) is not None:
            schema["maximum"] = info.max
        default = spec.defaults.get(argument, parameter.default)
        if argument == "timeout" and spec.streams:
            default = MCP_STREAM_TIMEOUT
            schema["maximum"] = MCP_MAX_STREAM_TIMEOUT
            help_text += (f" Default here {MCP_STREAM_TIMEOUT:g} s, at most {MCP_MAX_STREAM_TIMEOUT:g} s: "
                          "the events collected until then are returned.")
        if default is not None and default is not inspect.Parameter.empty:
            schema["default"] = default
        schema["description"] = help_text.strip()
        found.append(Param(argument, parameter.name, option, schema, required=bool(click_param.required)))
    return found


def _click_params(verb: str) -> list[Any]:
    import typer.main

    return list(typer.main.get_command(build_app(verb)).commands[verb].params)  # type: ignore[attr-defined]


def description(verb: str) -> str:
    text = " ".join(module_doc(verb).split())
    spec = TOOLS[verb]
    if spec.streams == "always":
        text += (" Runs until `limit` events or `timeout` seconds (whichever first) and returns what it "
                 "collected: {start, events, end}; the agent removes its probes at the end, also when the "
                 "call is cancelled.")
    elif spec.streams:
        text += f" With `{spec.streams}` it streams until `limit` or `timeout` and returns {{start, events, end}}."
    return text


def input_schema(verb: str) -> dict[str, Any]:
    found = params(verb)
    return {
        "type": "object",
        "properties": {p.argument: p.schema for p in found},
        "required": [p.argument for p in found if p.required],
        "additionalProperties": False,
    }


class Invocation(NamedTuple):
    """A tool call as the CLI command line that runs it."""

    argv: list[str]
    streams: bool
    timeout: float  # s: the stream's bound (0: one answer)


def invocation(verb: str, arguments: dict[str, Any]) -> Invocation:
    """The argv of ``peeka VERB ... --json`` for a tool call; UsageError names a bad argument."""
    spec = TOOLS[verb]
    found = {p.argument: p for p in params(verb)}
    unknown = sorted(set(arguments) - set(found))
    if unknown:
        raise UsageError(f"{verb} has no argument {', '.join(unknown)}",
                         f"Its arguments: {', '.join(found)}.")
    # The CLI's own defaults apply to what the call leaves out, except where the tool's differ.
    values = {**spec.defaults, **{k: v for k, v in arguments.items() if v is not None}}
    streams = spec.streams == "always" or bool(spec.streams and values.get(spec.streams))
    if streams:
        values.setdefault("timeout", MCP_STREAM_TIMEOUT)
        if not isinstance(values["timeout"], (int, float)) or not 0 < values["timeout"] <= MCP_MAX_STREAM_TIMEOUT:
            raise UsageError(f"timeout must be above 0 and at most {MCP_MAX_STREAM_TIMEOUT:g} s, "
                             f"got {values['timeout']!r}", "A tool call returns what it collected by then.")
    elif "timeout" in values:
        raise UsageError(f"timeout bounds a stream: {verb} streams only with {spec.streams}", "")
    options: list[str] = []
    positional: list[str] = []
    for name, param in found.items():
        if name not in values:
            if param.required:
                raise UsageError(f"{verb} needs the argument {name}", param.schema["description"])
            continue
        value = values[name]
        if param.schema["type"] == "boolean":
            if not isinstance(value, bool):
                raise UsageError(f"{name} is true or false, not {value!r}", "")
            if value:
                options.append(param.option)
            continue
        if param.option:
            options += [param.option, str(value)]
        else:
            positional.append(str(value))
    # "--" ends the options: an expression or pattern that starts with "-" stays a positional.
    argv = [verb, *options, "--json", "--", *positional]
    return Invocation(argv, streams, float(values.get("timeout") or 0) if streams else 0.0)
