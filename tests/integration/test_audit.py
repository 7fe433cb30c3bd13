"""Read-only mode and the audit trail against a real target on every Python (tests/targets/audit_target.py).

One target per version, two agents in turn:
1. an ordinary agent attached with --audit-file and --audit-log: a read-only client (the MCP server's
   kind) is refused each change, with the MCP advice, and the target's log file shows the level never
   changed; a plain client makes the same change (the log file shows DEBUG lines) and reset restores it;
   the trail holds every request with this process's pid and uid and its front end, secrets redacted;
   `peeka audit --follow` streams new entries (3.9 and 3.14: the CLI runs under this test's Python
   whatever the target's); the file and the target's own logging hold the same entries;
2. after detach, `peeka attach --read-only`: a plain client (the CLI itself on 3.9/3.14) is refused
   each change (exit 17, the agent's advice), refusals are audited, and asking for another mode of the
   running agent is an error; with PEEKA_AGENT_MAX_CLIENTS=1 a second client at once is refused busy and
   that refusal is on the trail with its peer. The target outlives both detaches with an empty stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, VERSIONS, Target, peeka_cli, python_for
from test_logs_tasks_source import wait_for

from peeka.attach import AgentMode, ClientRole, attach, detach
from peeka.client import AgentClient
from peeka.errors import AgentBusy, ReadOnly, UsageError
from peeka.process import TargetProcess

pytestmark = [pytest.mark.integration, pytest.mark.parallel]

CLI_VERSIONS = ("3.9", "3.14")  # where the CLI's own runs (audit --follow, a refused CLI command) are checked
MCP_ADVICE = "read-only: start the server with --allow-changes to permit this"
AGENT_ADVICE = "the agent was attached with --read-only; detach and attach again without it"
CHANGES = [  # (command, args, what the refusal names)
    ("logger", {"name": "audit.target", "level": "DEBUG"}, "setting logger audit.target's level to DEBUG"),
    ("tt", {"action": "replay", "index": 1}, "tt --replay of record 1"),
    ("inspect", {"expression": "len('x')", "unsafe": True, "depth": 2, "max_size": 4096}, "--unsafe"),
    ("memory", {"tracemalloc": "start"}, "starting tracemalloc"),
    ("memory", {"tracemalloc": "stop"}, "stopping tracemalloc"),
]


class Case:
    def __init__(self, version: str, process: Target, workdir: Path) -> None:
        self.version = version
        self.process = process
        self.pid = process.pid
        self.log = workdir / "app.log"
        self.audit_file = workdir / "audit.jsonl"

    def debug_lines(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.startswith("DEBUG audit.target")]

    def client(self, frontend: str, read_only: bool) -> AgentClient:
        return AgentClient(TargetProcess(self.pid), frontend=frontend, read_only=read_only).open()


@pytest.fixture(scope="module", params=VERSIONS)
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    python = python_for(request.param)
    workdir = Path(tempfile.mkdtemp(prefix="pk-audit-"))
    process = Target(python, "audit_target.py", str(workdir / "app.log"))
    try:
        yield Case(request.param, process, workdir)
        assert process.alive(), "the target died"
    finally:
        detach(process.pid)
        err = process.stop()
    assert err == "", "the target wrote to stderr: " + err


def test_request_read_only_and_the_audit_trail(case: Case) -> None:
    client, _ = attach(case.pid, role=ClientRole("cli", False),
                       mode=AgentMode(audit_file=str(case.audit_file), audit_log=True))
    client.close()
    follower = None
    if case.version in CLI_VERSIONS:
        follower = subprocess.Popen([sys.executable, "-m", "peeka", "audit", str(case.pid), "--follow", "--json",
                                     "-n", str(len(CHANGES) + 3), "--timeout", "60"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        start = json.loads(follower.stdout.readline())  # type: ignore[union-attr]
        assert start["type"] == "start" and start["read_only"] is False and start["stats"]["file"] == str(case.audit_file)
    with pytest.raises(UsageError, match="audit log peeka.audit; you asked for read-write, audit file"):
        attach(case.pid, mode=AgentMode(audit_file=str(case.audit_file)))  # the same file, but no log
    with case.client("mcp", read_only=True) as mcp:
        for command, args, what in CHANGES:
            with pytest.raises(ReadOnly) as refused:
                mcp.request(command, args)
            assert refused.value.message == f"{MCP_ADVICE} (refused: {refused.value.refused})"
            assert what in refused.value.refused and refused.value.by == "request" and refused.value.exit_code == 17
        assert mcp.request("inspect", {"expression": "len('secret')", "depth": 2, "max_size": 4096})["value"]
    time.sleep(0.3)  # a few ticks at the level the target set: none of them DEBUG
    assert case.debug_lines() == [], "a refused level change reached the target"
    with case.client("tui", read_only=False) as plain:  # the same change from a client that may change
        assert plain.request("logger", {"name": "audit.target", "level": "DEBUG"})["level"] == "DEBUG"
        assert wait_for(case.debug_lines), "the allowed level change did not reach the target"
        plain.request("reset", {})
        settled = len(wait_for(case.debug_lines))
        time.sleep(0.3)
        assert len(case.debug_lines()) <= settled + 1, "reset did not restore the level"
        with pytest.raises(UsageError):  # no such name: an error, on the trail with its secrets hidden
            plain.request("inspect", {"expression": "request['password'] == 'hunter2'", "depth": 2, "max_size": 4096,
                                      "api_token": "t0ps3cr3t"})
        trail = plain.request("audit", {})
    entries = trail["entries"]
    mine = [e for e in entries if e["peer_pid"] == os.getpid()]
    assert all(e["peer_uid"] == os.getuid() for e in mine)
    assert [(e["frontend"], e["command"], e["outcome"]) for e in mine] == (
        [("mcp", c, "refused") for c, _, _ in CHANGES] + [("mcp", "inspect", "ok")]
        + [("tui", "logger", "ok"), ("tui", "reset", "ok"), ("tui", "inspect", "error")])
    assert all(e["read_only"] for e in mine[:len(CHANGES)]) and mine[0]["error_type"] == "ReadOnly"
    assert mine[0]["args"] == {"name": "audit.target", "level": "DEBUG"}
    secret = json.dumps(mine[-1])
    assert "hunter2" not in secret and "t0ps3cr3t" not in secret and mine[-1]["args"]["api_token"] == "[redacted]"
    if follower is not None:
        out, err = follower.communicate(timeout=60)
        streamed = [json.loads(line) for line in out.splitlines()]
        assert streamed[-1]["type"] == "end" and streamed[-1]["reason"] == "limit", err
        assert [e["seq"] for e in streamed[:-1]] == [e["seq"] for e in mine[:len(CHANGES) + 3]]
        assert streamed[0]["peer_pid"] == os.getpid() and streamed[0]["frontend"] == "mcp"
    # The file and the target's logging: the same entries, written by the agent's own thread.
    assert wait_for(lambda: len(case.audit_file.read_text().splitlines()) >= len(entries))
    in_file = [json.loads(line) for line in case.audit_file.read_text().splitlines()]
    assert in_file[:len(entries)] == entries
    logged = wait_for(lambda: [line.split(" ", 1) for line in case.log.read_text().splitlines() if " peeka.audit " in line][
        :len(entries)] if len(case.log.read_text().split(" peeka.audit ")) > len(entries) else None)
    assert [json.loads(text.split(" audit ", 1)[1]) for _, text in logged] == entries
    assert [level for level, _ in logged] == ["WARNING" if e["outcome"] == "refused" else "INFO" for e in entries]
    detach(case.pid)
    assert json.loads(case.audit_file.read_text().splitlines()[-1])["command"] == "detach"


def test_attach_read_only_holds_every_client(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    before = len(case.debug_lines())  # the first test's allowed change left some
    monkeypatch.setenv("PEEKA_AGENT_MAX_CLIENTS", "1")  # a second client at once is refused (and audited)
    if case.version in CLI_VERSIONS:
        out = peeka_cli("attach", str(case.pid), "--read-only", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["read_only"] is True
        refused = peeka_cli("logger", str(case.pid), "--name", "audit.target", "--level", "DEBUG")
        assert refused.returncode == 17, refused.stderr
        assert AGENT_ADVICE in " ".join(refused.stderr.split()), refused.stderr
    else:
        attach(case.pid, mode=AgentMode(read_only=True))[0].close()
    with case.client("cli", read_only=False) as plain:
        for command, args, what in CHANGES:
            with pytest.raises(ReadOnly) as caught:
                plain.request(command, args)
            assert caught.value.by == "agent" and AGENT_ADVICE in caught.value.message and what in caught.value.refused
        assert plain.request("thread", {})  # observing still works
        # The first agent's detach took the logger its audit log made (and its parent placeholder).
        made = plain.request("inspect", {"expression": "[n for n in logging.Logger.manager.loggerDict "
                                                       "if n.startswith('peeka')]", "depth": 2, "max_size": 4096})
        assert made["value"]["repr"] == "[]", made
        with pytest.raises(AgentBusy), case.client("cli", read_only=False) as second:
            second.request("thread", {})
        entries = plain.request("audit", {})["entries"]
    time.sleep(0.2)
    assert len(case.debug_lines()) == before, "a read-only agent let a level change through"
    refusals = [e for e in entries if e["outcome"] == "refused"]
    assert [e["command"] for e in refusals][-len(CHANGES) - 1:] == [c for c, _, _ in CHANGES] + ["thread"]
    assert all(e["frontend"] == "cli" and not e["read_only"] and e["error_type"] == "ReadOnly" for e in refusals[:-1])
    busy = refusals[-1]
    assert (busy["error_type"], busy["peer_pid"], busy["peer_uid"]) == ("TooManyClients", os.getpid(), os.getuid())
    with pytest.raises(UsageError, match="already runs read-only"):
        attach(case.pid, mode=AgentMode(read_only=False))
