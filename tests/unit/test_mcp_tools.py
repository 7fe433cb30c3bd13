"""`peeka mcp`'s tools are read from the CLI commands: their schemas carry the CLI's own defaults and
bounds (peeka.options, agent/protocol.py), and a call becomes the CLI command line that runs it."""

from __future__ import annotations

import pytest
from peeka_agent import protocol

from peeka.cli import COMMANDS
from peeka.errors import UsageError
from peeka.mcp.tools import TOOLS, input_schema, invocation
from peeka.options import MCP_MAX_STREAM_TIMEOUT, MCP_STREAM_TIMEOUT, MCP_TOP_WINDOW

pytestmark = pytest.mark.parallel


def test_every_diagnostic_verb_is_a_tool() -> None:
    # attach is implicit in every tool; export, tui and mcp itself are front ends, not diagnostics.
    # audit (who asked the agent what) is the operator's record, not a diagnostic of the target.
    assert set(TOOLS) == set(COMMANDS) - {"attach", "export", "tui", "mcp", "audit"}


@pytest.mark.parametrize("verb", sorted(TOOLS))
def test_schemas_take_pid_and_leave_out_output_options(verb: str) -> None:
    schema = input_schema(verb)
    properties = schema["properties"]
    assert not {"json", "debug", "record", "output"} & set(properties)
    if verb != "ps":
        assert properties["pid"]["type"] == "integer" and "pid" in schema["required"]
    assert all(p["description"] for p in properties.values()), verb


def test_defaults_and_bounds_come_from_the_one_source() -> None:
    watch = input_schema("watch")["properties"]
    assert watch["limit"]["default"] == protocol.DEFAULT_LIMIT
    assert watch["max_match"]["default"] == protocol.DEFAULT_MAX_MATCH and watch["max_match"]["minimum"] == 1
    assert watch["expand"]["default"] == protocol.DEFAULT_DEPTH and watch["expand"]["maximum"] == protocol.MAX_DEPTH
    assert watch["timeout"]["default"] == MCP_STREAM_TIMEOUT and watch["timeout"]["maximum"] == MCP_MAX_STREAM_TIMEOUT
    assert "default" not in input_schema("monitor")["properties"]["limit"]  # monitor: no -n by default
    top = input_schema("top")["properties"]
    assert top["interval"]["default"] == MCP_TOP_WINDOW and top["limit"]["default"] == 1
    assert top["rate"]["maximum"] == protocol.MAX_TOP_RATE


def test_a_call_is_the_cli_command_line() -> None:
    how = invocation("watch", {"pid": 42, "pattern": "app.f", "expression": "-result", "limit": 3, "regex": True})
    # Options first, then "--": an expression starting with "-" stays the positional it is.
    assert how.argv == ["watch", "--limit", "3", "--timeout", str(MCP_STREAM_TIMEOUT), "--regex", "--json", "--",
                        "42", "app.f", "-result"]
    assert how.streams and how.timeout == MCP_STREAM_TIMEOUT
    plain = invocation("thread", {"pid": 42, "all": True, "max_frames": 5})
    assert plain.argv == ["thread", "--all", "--max-frames", "5", "--json", "--", "42"] and not plain.streams
    assert invocation("logger", {"pid": 1}).streams is False
    assert invocation("logger", {"pid": 1, "follow": True, "timeout": 2}).timeout == 2
    assert invocation("tt", {"pid": 1, "list": True}).streams is False
    assert invocation("tt", {"pid": 1, "pattern": "app.f"}).streams is True


@pytest.mark.parametrize(("verb", "arguments", "says"), [
    ("thread", {"pid": 1, "colour": "red"}, "thread has no argument colour"),
    ("watch", {"pid": 1}, "watch needs the argument pattern"),
    ("watch", {"pid": 1, "pattern": "f", "timeout": MCP_MAX_STREAM_TIMEOUT + 1}, "at most"),
    ("watch", {"pid": 1, "pattern": "f", "regex": "yes"}, "regex is true or false"),
    ("logger", {"pid": 1, "timeout": 3}, "streams only with follow"),
])
def test_bad_arguments_are_named(verb: str, arguments: dict[str, object], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        invocation(verb, arguments)

