"""The escape corpus (tests/escape_corpus.py) through every path, against a real target per Python.

One target per version (tests/targets/probe_target.py running escapeapp.py); many expressions per
agent connection. Paths: inspect (interpreted), watch's condition (the compiled gate: in the
generated callbacks when it is the function's only listener, in the generic path beside others),
watch's EXPR (compiled, in the writer thread), tt --search over recorded calls, and the export
stream's conditions. Each expression must be refused or harmless: no marker file, the canary
variable, sys.path, the loaded modules, the app's settings/cache/defaultdict/generator/iterator
untouched, the interpreter's settings untouched, the host's heartbeat never stalled more than
100 ms beyond the stalls the same run saw before the corpus, the target alive and answering.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import escape_corpus
import pytest
from conftest import VERSIONS, Target, agent_library, peeka_cli, python_for
from peeka_agent import expressions, observe, protocol

from peeka.client import AgentClient
from peeka.errors import PeekaError
from peeka.process import TargetProcess

pytestmark = [pytest.mark.integration, pytest.mark.timing]
SOURCES = [source for _, source in escape_corpus.HOSTILE]
CHUNK = 110  # watch streams started at once on one connection
STALL_MARGIN = 0.1  # s beyond the run's own baseline stalls


class Escape:
    def __init__(self, target: Target, tmp: Path, markers: Path) -> None:
        self.target = target
        self.tmp = tmp
        self.markers = markers
        self.client = AgentClient(TargetProcess(target.pid), timeout=30).open()
        self.expected: dict[str, Any] = {}
        self.ids = itertools.count(1_000_000)  # our streams' ids, apart from the client's own requests
        self.baseline_stall = 0.0

    def state(self, since: float = 0.0) -> dict[str, Any]:
        out = self.client.request("inspect", {"expression": f"escapeapp.check_state({since!r})", "unsafe": True,
                                              "depth": 1, "max_size": 1 << 16})
        return json.loads(_literal(out["value"]))

    def check(self, path: str, since: float) -> None:
        """Nothing changed since the start; no stall beyond the baseline's during [since, now]."""
        found = list(self.markers.iterdir())
        assert not found, f"{path}: marker files appeared: {found}"
        state = self.state(since)
        stall = state.pop("max_stall")
        calls = state.pop("calls")
        expected = dict(self.expected)
        expected.pop("calls")
        assert state == expected, f"{path}: the target's state changed"
        assert calls > self.expected["calls"], f"{path}: the probed call stopped running"
        limit = 2 * self.baseline_stall + STALL_MARGIN  # a loaded machine stalls the loop too: relative to this run
        assert stall <= limit, f"{path}: the host loop stalled {stall * 1000:.0f} ms (limit {limit * 1000:.0f} ms)"
        assert self.target.alive()

    def streams(self, command: str, args_for: list[dict[str, Any]]) -> list[list[Any]]:
        """Many streams at once on this connection: each one's messages (response, events, end)."""
        out: list[list[Any]] = []
        for start in range(0, len(args_for), CHUNK):
            chunk = args_for[start:start + CHUNK]
            ids = {}
            for args in chunk:
                rid = next(self.ids)  # several streams at once on one connection: the protocol allows it
                ids[rid] = len(ids)
                self.client.send(protocol.Request(rid, command, args))
            messages: dict[int, list[Any]] = {rid: [] for rid in ids}
            open_ids = set(ids)
            deadline = time.monotonic() + 60
            while open_ids and time.monotonic() < deadline:
                message = self.client.receive()
                rid = getattr(message, "id", None)
                if rid not in messages:
                    continue
                messages[rid].append(message)
                if isinstance(message, protocol.End) or (isinstance(message, protocol.Response) and not message.ok):
                    open_ids.discard(rid)
            assert not open_ids, f"{len(open_ids)} streams never ended"
            out.extend(messages[rid] for rid in ids)
        return out


def _literal(node: dict[str, Any]) -> Any:
    import ast

    return ast.literal_eval(node["repr"])


@pytest.fixture(scope="module", params=VERSIONS)
def escape(request: pytest.FixtureRequest) -> Iterator[Escape]:
    python = python_for(request.param)
    tmp = Path(tempfile.mkdtemp(prefix="pk-"))
    markers = tmp / "markers"
    markers.mkdir()
    try:
        env = {"TMPDIR": str(tmp), "PYTHONPATH": str(agent_library(tmp)), "PYTHONDONTWRITEBYTECODE": "1",
               "ESCAPE_MARKER_DIR": str(markers), "PEEKA_CANARY": "intact"}
        target = Target(python, "probe_target.py", "escapeapp", env=env)
        try:
            e = Escape(target, tmp, markers)
            try:
                # The baseline: the stalls this machine gives the host loop under the same traffic with
                # harmless expressions (a loaded 2-core machine stalls it too), measured in this run.
                since = time.monotonic()
                benign = {"pattern": "escapeapp.handle", "limit": 1, "timeout": 0.3}
                e.streams("watch", [dict(benign, condition=f"params['user_id'] >= {i}") for i in range(30)])
                e.streams("watch", [dict(benign, expression=f"[x for x in range({i * 100})]") for i in range(30)])
                for i in range(20):
                    e.client.request("inspect", {"expression": f"len([x for x in range({i * 1000})])"})
                e.expected = e.state(since)
                e.baseline_stall = e.expected.pop("max_stall")
                yield e
            finally:
                e.client.close()
            assert target.alive(), "the target died"
        finally:
            assert target.stop() == "", "the target wrote to stderr"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_the_corpus_is_large_and_covers_every_category() -> None:
    assert len(SOURCES) >= 150
    assert all(len(sources) >= 15 for sources in escape_corpus.CATEGORIES.values())


def test_inspect(escape: Escape) -> None:
    since = time.monotonic()
    refused = 0
    for source in SOURCES:
        try:
            escape.client.request("inspect", {"expression": source})
        except PeekaError as exc:
            refused += 1
            assert "expression error" in str(exc), (source, str(exc))
    escape.check("inspect", since)
    assert refused >= len(SOURCES) * 0.8  # most are refused outright; the rest are harmless reads


def test_watch_condition_compiled_gate(escape: Escape) -> None:
    since = time.monotonic()
    base = {"pattern": "escapeapp.handle", "limit": 1, "timeout": 0.2}
    for source, messages in zip(SOURCES, escape.streams("watch", [dict(base, condition=s) for s in SOURCES])):
        first = messages[0]
        assert isinstance(first, protocol.Response), (source, first)
        if first.ok:
            end = messages[-1]
            assert isinstance(end, protocol.End) and end.reason.split(";")[0] in ("limit", "timeout"), (source, end)
        else:
            assert first.error_type == "CommandError" and "refused" in first.error, (source, first.error)
    escape.check("watch --condition (beside other listeners)", since)
    # Alone on the function, the condition is compiled into the generated callbacks: a sample of each category.
    since = time.monotonic()
    for _, sources in escape_corpus.CATEGORIES.items():
        for source in sources[::12]:
            (messages,) = escape.streams("watch", [dict(base, condition=source, timeout=0.05)])
            assert isinstance(messages[0], protocol.Response)
    escape.check("watch --condition (alone: generated callbacks)", since)


def test_watch_expression(escape: Escape) -> None:
    since = time.monotonic()
    base = {"pattern": "escapeapp.handle", "limit": 1, "timeout": 5}
    for source, messages in zip(SOURCES, escape.streams("watch", [dict(base, expression=s) for s in SOURCES])):
        first = messages[0]
        if first.ok:
            events = [m.data for m in messages if isinstance(m, protocol.Event)]
            assert events and ("value" in events[0] or "error" in events[0]), (source, messages)
    escape.check("watch EXPR", since)


def test_tt_search(escape: Escape) -> None:
    (messages,) = escape.streams("tt", [{"action": "record", "pattern": "escapeapp.handle", "limit": 5,
                                         "timeout": 10}])
    assert isinstance(messages[-1], protocol.End)
    since = time.monotonic()
    for source in SOURCES:
        try:
            found = escape.client.request("tt", {"action": "search", "condition": source})
            assert found["searched"] >= 5
        except PeekaError as exc:
            assert "refused" in str(exc), (source, str(exc))
    escape.check("tt --search", since)
    escape.client.request("tt", {"action": "clear"})


def test_export_conditions(escape: Escape) -> None:
    accepted = []
    for source in SOURCES:
        try:
            observe.CallExpression(source, "condition")  # the export config is checked the same way
            accepted.append(source)
        except Exception:
            pass
    since = time.monotonic()
    rid = next(escape.ids)
    args = {"watch": [{"pattern": "escapeapp.handle", "condition": s} for s in accepted[:80]], "interval": 0.3,
            "max_match": 10}
    escape.client.send(protocol.Request(rid, "export", args))
    kinds = set()
    deadline = time.monotonic() + 30
    while "stats" not in kinds and time.monotonic() < deadline:
        message = escape.client.receive()
        if getattr(message, "id", None) == rid:
            assert not isinstance(message, (protocol.End, protocol.Response)) or getattr(message, "ok", True), message
            if isinstance(message, protocol.Event) and isinstance(message.data, dict):
                kinds.add(message.data.get("kind"))
    escape.client.send(protocol.Cancel(rid))
    assert "stats" in kinds
    escape.check("export conditions", since)
    assert accepted  # and the rest were refused by the same checker the export uses


def test_what_must_keep_working(escape: Escape) -> None:
    for source, expected in escape_corpus.WORKING:
        if "params" in source:
            (messages,) = escape.streams("watch", [{"pattern": "escapeapp.handle", "condition": source,
                                                    "expression": "params['user_id'] >= 0", "limit": 1,
                                                    "timeout": 10}])
            events = [m.data for m in messages if isinstance(m, protocol.Event)]
            assert _literal(events[0]["value"]) is expected, (source, events)
        else:
            assert _literal(escape.client.request("inspect", {"expression": source})["value"]) == expected, source


@pytest.mark.parametrize("escape", ["3.12"], indirect=True)  # the CLI's own runs, once: every agent got the corpus
def test_real_cli_runs(escape: Escape) -> None:
    env = {"TMPDIR": str(escape.tmp)}
    pid = str(escape.target.pid)
    out = peeka_cli("inspect", pid, f"os.system('touch {escape.markers}/cli')", env=env)
    assert out.returncode != 0 and "need --unsafe" in out.stdout + out.stderr
    out = peeka_cli("inspect", pid, "escapeapp.settings.timeout", env=env)
    assert out.returncode == 0 and "30" in out.stdout
    out = peeka_cli("inspect", pid, "escapeapp.check_state()", "--unsafe", env=env)
    assert out.returncode == 0 and "intact" in out.stdout
    out = peeka_cli("watch", pid, "escapeapp.handle", "--condition", "sys.modules.pop('os')", "-n", "1",
                    "--timeout", "2", env=env)  # refused when reached: reported, and the stream goes on
    assert "not a read-only method" in out.stdout + out.stderr
    assert not list(escape.markers.iterdir())


def test_expression_language_is_what_the_target_runs() -> None:
    # the checker here (the client's copy of the agent) is the agent's: same refusals
    with pytest.raises(expressions.ExpressionError):
        expressions.Expression("os.system('id')").evaluate()
    assert os.environ.get("PEEKA_CANARY") is None  # the canary lives only in the target
