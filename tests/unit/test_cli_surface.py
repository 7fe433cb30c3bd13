"""One CLI surface: the options every command shares behave the same on each, no option name is
taken twice on one command, and --json/--debug act on the parsed command line (the real CLI, run)."""

from __future__ import annotations

import json

import pytest
import typer
from conftest import peeka_cli

from peeka.cli import COMMANDS, build_app
from peeka.options import ATTACH_OPTIONS, PROBE_OPTIONS, SHARED_OPTIONS

pytestmark = pytest.mark.parallel

PROBE_COMMANDS = ("watch", "trace", "stack", "monitor", "tt")
NEVER_ATTACH = ("ps", "reset", "detach", "mcp", "audit")  # they list processes, act on an agent only if one runs, or serve
NO_PID = "2147483646"  # above any pid_max: no such process, so the error path runs without a target


def _options(verb: str) -> dict[str, typer.core.TyperOption]:
    command = typer.main.get_command(build_app(verb)).commands[verb]
    return {p.name: p for p in command.params if p.param_type_name == "option"}


def _described(option: typer.core.TyperOption) -> tuple[object, ...]:
    return (sorted(option.opts), option.default, option.help)


@pytest.mark.parametrize("verb", COMMANDS)
def test_no_option_name_is_taken_twice(verb: str) -> None:
    """Two options sharing a name on one command (monitor's -c was both --cycle and --condition):
    click silently gives the name to one of them."""
    names = [name for option in _options(verb).values() for name in option.opts + option.secondary_opts]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_shared_options_are_the_same_on_every_command() -> None:
    shared = [o.name for o in (*SHARED_OPTIONS, *ATTACH_OPTIONS)]
    first: dict[str, tuple[object, ...]] = {}
    for verb in COMMANDS:
        options = _options(verb)
        assert "debug" in options, verb
        if verb not in NEVER_ATTACH:
            assert {"method", "attach_timeout"} <= set(options), verb
        for name in shared:
            if name in options:
                assert _described(options[name]) == first.setdefault(name, _described(options[name])), (verb, name)


def test_probe_options_are_the_same_on_every_probe_command() -> None:
    first: dict[str, tuple[object, ...]] = {}
    for verb in PROBE_COMMANDS:
        options = _options(verb)
        for declared in PROBE_OPTIONS:
            option = options[declared.name]
            described = _described(option)[:1] + _described(option)[2:]  # -n's default differs (monitor: none)
            assert described == first.setdefault(declared.name, described), (verb, declared.name)


def test_value_rendering_options_mean_the_same_everywhere() -> None:
    for verb in COMMANDS:
        limit = _options(verb).get("limit")
        assert limit is None or sorted(limit.opts) == ["--limit", "-n"], verb
    for verb in ("inspect", "watch", "tt", "thread"):
        options = _options(verb)
        assert sorted(options["depth"].opts) == ["--expand", "-x"], verb
        assert options["max_size"].opts == ["--max-size"], verb


def test_a_short_letter_means_one_option_on_every_command() -> None:
    """-i was --interval on thread/top and --show on tt, -f --finish on watch and --follow on logger..."""
    meaning: dict[str, tuple[str, set[str]]] = {}
    for verb in COMMANDS:
        for option in _options(verb).values():
            names = option.opts + option.secondary_opts
            longs = {n for n in names if n.startswith("--")}  # thread's -n: --top, or --limit as elsewhere
            for short in (n for n in names if not n.startswith("--")):
                first = meaning.setdefault(short, (verb, longs))
                assert first[1] & longs, f"{short} is {sorted(first[1])} on {first[0]} but {sorted(longs)} on {verb}"


# Durations a user sets, by option name: seconds on every command that has one (thread's --interval
# was milliseconds while top's and export's were seconds).
DURATIONS = ("interval", "timeout", "attach_timeout", "cycle", "diff", "record", "forget_after")


def test_every_duration_option_is_in_seconds() -> None:
    seen = set()
    for verb in COMMANDS:
        for name, option in _options(verb).items():
            if name in DURATIONS:
                seen.add((verb, name))
                assert "seconds" in (option.help or "").lower(), (verb, name, option.help)
                default = option.default
                assert default is None or isinstance(default, float), (verb, name, default)
    assert {("thread", "interval"), ("top", "interval"), ("export", "interval")} <= seen


def test_thread_interval_is_seconds_on_the_wire_as_milliseconds() -> None:
    """The CLI's seconds become the protocol's interval_ms; the old milliseconds are refused with the range."""
    out = peeka_cli("thread", NO_PID, "-i", "300")
    assert out.returncode == 2 and "--interval" in out.stderr and "60" in out.stderr, out.stderr
    assert peeka_cli("thread", NO_PID, "-i", "0.3").returncode not in (0, 2)  # parsed; then no such process


def test_debug_prints_the_traceback_json_carries_it() -> None:
    plain = peeka_cli("thread", NO_PID)
    assert plain.returncode != 0 and "Traceback" not in plain.stderr and NO_PID in plain.stderr
    debug = peeka_cli("thread", NO_PID, "--debug")
    assert debug.returncode == plain.returncode
    assert "Traceback (most recent call last)" in debug.stderr and "peeka/attach" in debug.stderr
    document = json.loads(peeka_cli("thread", NO_PID, "--json", "--debug").stdout)
    assert NO_PID in document["message"] and "Traceback (most recent call last)" in document["traceback"]
    # Read from what was parsed, not from argv: "--json" as an expression's text is no --json.
    quoted = peeka_cli("inspect", NO_PID, "--", "--json")
    assert quoted.returncode == plain.returncode and NO_PID in quoted.stderr and not quoted.stdout.strip()


def test_monitor_points_a_number_given_as_condition_to_cycle() -> None:
    out = peeka_cli("monitor", NO_PID, "shop.*", "-c", "0.5")
    assert out.returncode == 2 and "--cycle 0.5" in out.stderr and "Traceback" not in out.stderr
