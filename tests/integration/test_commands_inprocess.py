"""thread, sc, sm and inspect against a real target process whose agent started in-process.

The target (tests/targets/cmd_target.py) runs a small app and calls ``peeka_agent.runtime.start``
itself, so no attach method is needed; the client finds the socket from the target's PID and
TMPDIR like any other. One target per Python version (3.9-3.14, those this machine has) proves the
agent's code on every version; the tests of one module share it.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, VERSIONS, Target, agent_library, peeka_cli, python_for

from peeka.client import AgentClient
from peeka.errors import UsageError
from peeka.process import TargetProcess

pytestmark = [pytest.mark.integration, pytest.mark.parallel]

TARGET = ROOT / "tests" / "targets" / "cmd_target.py"
WORKERS_FILE = str(ROOT / "tests" / "targets" / "cmdapp" / "workers.py")
MODELS_FILE = str(ROOT / "tests" / "targets" / "cmdapp" / "models.py")
THIS_VERSION = "{}.{}".format(*sys.version_info[:2])


class CmdTarget:
    def __init__(self, process: Target, version: str) -> None:
        self.process = process
        self.version = version
        self.pid = process.pid

    def client(self) -> AgentClient:
        return AgentClient(TargetProcess(self.pid), timeout=10).open()


@pytest.fixture(scope="module", params=VERSIONS)
def target(request: pytest.FixtureRequest) -> Iterator[CmdTarget]:
    python = python_for(request.param)
    tmp = Path(tempfile.mkdtemp(prefix="pk-"))  # short: a Unix socket path has ~100 bytes
    try:
        env = {"TMPDIR": str(tmp), "PYTHONPATH": str(agent_library(tmp)), "PYTHONDONTWRITEBYTECODE": "1"}
        process = Target(python, TARGET.name, env=env)
        try:
            yield CmdTarget(process, request.param)
            assert process.alive(), "the target died while the commands ran"
        finally:
            process.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def client(target: CmdTarget) -> Iterator[AgentClient]:
    with target.client() as c:
        yield c


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in result["threads"]}


def child_keys(node: dict[str, Any]) -> list[str]:
    return [c["key"] for c in node.get("children", [])]


# ---------------------------------------------------------------- thread


def test_thread_lists_app_threads_with_stacks(client: AgentClient) -> None:
    result = client.request("thread")
    threads = by_name(result)
    assert {"MainThread", "cmdapp-worker-0", "cmdapp-worker-1"} <= set(threads)
    main = threads["MainThread"]
    assert main["is_main"] and not main["is_agent"]
    assert result["threads"][0] is not None and result["threads"][0]["name"] == "MainThread"
    assert any(f["function"] == "main" and f["file"] == str(TARGET) for f in main["frames"])
    worker = threads["cmdapp-worker-0"]
    assert worker["daemon"] is True and worker["alive"] is True
    assert isinstance(worker["native_id"], int)
    functions = [f["function"].rsplit(".", 1)[-1] for f in worker["frames"]]
    # innermost first: the Event.wait inside worker_loop comes before worker_loop itself
    assert functions.index("wait") < functions.index("worker_loop")
    frame = worker["frames"][functions.index("worker_loop")]
    assert frame["file"] == WORKERS_FILE and frame["module"] == "cmdapp.workers"
    assert "locals" not in frame


def test_thread_hides_agent_threads_unless_all(client: AgentClient) -> None:
    result = client.request("thread")
    assert result["agent_threads_hidden"] >= 2  # listener, this client's reader and writer
    assert not any(t["name"].startswith("peeka-agent") for t in result["threads"])
    everything = client.request("thread", {"all": True})
    agents = [t for t in everything["threads"] if t["is_agent"]]
    assert {t["name"] for t in agents} >= {"peeka-agent-listener"}
    # The app's threads are the same in both answers; the agent's may not be (a thread of an earlier
    # test's stream or client can end between the two requests: CI saw 3 hidden, then 2 agents).
    assert everything["count"] - len(agents) == result["count"] and len(agents) >= 2


def test_thread_outside_threading_is_listed(client: AgentClient) -> None:
    threads = client.request("thread")["threads"]
    raw = [t for t in threads if t["name"] == "(started outside threading)"]
    # No Thread object, but the OS can tell which thread it is: its native id, and its CPU.
    truth = client.request("inspect", {"expression": "cmdapp.workers.RAW_NATIVE_ID"})
    assert raw and truth["value"]["repr"] == f"[{raw[0]['native_id']}]", (raw, truth)
    assert raw[0]["cpu_seconds"] is not None
    assert any(f["function"] == "raw_loop" for f in raw[0]["frames"])


def test_thread_by_native_id_with_locals(client: AgentClient) -> None:
    worker = by_name(client.request("thread"))["cmdapp-worker-1"]
    result = client.request("thread", {"thread_id": worker["native_id"], "depth": 2})
    (only,) = result["threads"]
    assert only["ident"] == worker["ident"]
    frame = next(f for f in only["frames"] if f["function"] == "worker_loop")
    assert frame["locals"]["label"]["repr"] == "'job-1'"
    assert frame["locals"]["number"]["repr"] == "1"
    assert frame["locals"]["processed"]["type"] == "int"
    assert frame["locals"]["stop"]["type"] == "threading.Event"
    assert "_flag" in child_keys(frame["locals"]["stop"])  # -x 2 expands one level
    same = client.request("thread", {"thread_id": worker["ident"]})
    assert same["threads"][0]["native_id"] == worker["native_id"]


def test_thread_main_locals(client: AgentClient) -> None:
    main = by_name(client.request("thread", {"depth": 1}))["MainThread"]
    frame = next(f for f in main["frames"] if f["function"] == "main")
    assert frame["locals"]["greeting"]["repr"] == "'waiting for stdin to close'"
    assert "children" not in frame["locals"]["greeting"]


def test_thread_unknown_id_is_a_usage_error(client: AgentClient) -> None:
    with pytest.raises(UsageError, match="no thread with ident or native id 1"):
        client.request("thread", {"thread_id": 1})
    with pytest.raises(UsageError, match="depth"):
        client.request("thread", {"depth": 9})
    ping = client.request("ping")
    assert ping["pid"] > 0 and ping["probe_errors"] == 0  # Peeka's listeners raised on no observed call


# ---------------------------------------------------------------- sc / sm


def test_sc_patterns(client: AgentClient) -> None:
    result = client.request("sc", {"pattern": "cmdapp.models.*"})
    names = [c["name"] for c in result["classes"]]
    assert names == ["cmdapp.models.Admin", "cmdapp.models.BrokenRepr", "cmdapp.models.User"]
    assert result["count"] == 3 and result["truncated"] is False
    assert [c["name"] for c in client.request("sc", {"pattern": "*.Admin"})["classes"]] == [
        "cmdapp.models.Admin"
    ]
    assert client.request("sc", {"pattern": "cmdapp.config.Settings"})["count"] == 1


def test_sc_regex_and_limit(client: AgentClient) -> None:
    result = client.request("sc", {"pattern": r"^cmdapp\.(models|config)\.", "regex": True, "limit": 2})
    assert result["count"] == 4 and result["truncated"] is True and len(result["classes"]) == 2
    with pytest.raises(UsageError, match="invalid regular expression"):
        client.request("sc", {"pattern": "(", "regex": True})


def test_sc_detail(client: AgentClient) -> None:
    (admin,) = client.request("sc", {"pattern": "cmdapp.models.Admin", "detail": True})["classes"]
    assert admin["file"] == MODELS_FILE
    assert admin["line"] == Path(MODELS_FILE).read_text().splitlines().index("class Admin(User):") + 1
    assert admin["bases"] == ["cmdapp.models.User"]
    assert admin["mro_length"] == 3


def test_sc_skips_the_agent(client: AgentClient) -> None:
    names = [c["name"] for c in client.request("sc", {"pattern": "*peeka*", "limit": 1000})["classes"]]
    assert not [n for n in names if n.startswith(("peeka_agent", "_peeka"))]


def test_sm_patterns_and_detail(client: AgentClient) -> None:
    names = [f["name"] for f in client.request("sm", {"pattern": "cmdapp.*.get"})["functions"]]
    assert names == ["cmdapp.cache.get", "cmdapp.models.User.get"]
    functions = client.request("sm", {"pattern": "cmdapp.models.User.*", "detail": True})["functions"]
    kinds = {f["name"].rsplit(".", 1)[1]: f for f in functions}
    assert kinds["create"]["kind"] == "classmethod" and kinds["create"]["signature"] == "(cls, name)"
    assert kinds["display"]["kind"] == "property"
    assert kinds["__init__"]["signature"] == "(self, name, email)"
    assert kinds["get"]["file"] == MODELS_FILE and kinds["get"]["line"] == 7
    regex = client.request("sm", {"pattern": r"workers\.(start|stop)$", "regex": True})
    assert [f["name"] for f in regex["functions"]] == ["cmdapp.workers.start", "cmdapp.workers.stop"]


# ---------------------------------------------------------------- inspect


def test_inspect_expressions(client: AgentClient) -> None:
    assert (
        client.request("inspect", {"expression": "cmdapp.config.settings.timeout"})["value"]["repr"] == "30"
    )
    assert client.request("inspect", {"expression": "len(cmdapp.cache._store)"})["value"]["repr"] == "100"
    # the app's own functions run only with --unsafe
    assert client.request("inspect", {"expression": "cmdapp.cache.get('key-3')", "unsafe": True})["value"]["repr"] == "9"
    with pytest.raises(UsageError, match="calls of the app's functions need --unsafe"):
        client.request("inspect", {"expression": "cmdapp.cache.get('key-3')"})
    value = client.request("inspect", {"expression": "cmdapp.config.settings"})["value"]
    assert value["type"] == "cmdapp.config.Settings"
    assert child_keys(value) == ["timeout", "name", "endpoints"]
    deep = client.request("inspect", {"expression": "cmdapp.config.settings", "depth": 3})["value"]
    assert child_keys(deep["children"][2]["value"]) == ["'users'", "'health'"]
    flat = client.request("inspect", {"expression": "cmdapp.config.settings", "depth": 1})["value"]
    assert "children" not in flat


def test_inspect_bounds_and_broken_repr(client: AgentClient) -> None:
    store = client.request("inspect", {"expression": "cmdapp.cache._store", "max_size": 256})["value"]
    assert store["size"] == 100 and store["truncated"] is True
    broken = client.request("inspect", {"expression": "cmdapp.models.BROKEN"})["value"]
    assert broken["repr"] == "<repr failed: ValueError>"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("cmdapp.__dict__", "dunder"),
        ("cmdapp.models.USERS[0].__class__.__init__.__globals__", "dunder"),
        ("open('/etc/passwd')", "'open' is refused"),
        ("__import__('os')", "refused"),
        ("sys.modules['os'].system('true')", "refused"),
        ("cmdapp.nothing_here", "no attribute"),
        ("1 +", "invalid syntax"),
    ],
)
def test_inspect_refusals_keep_the_agent_serving(client: AgentClient, expression: str, message: str) -> None:
    with pytest.raises(UsageError, match="expression error: .*" + message):
        client.request("inspect", {"expression": expression})
    assert client.request("inspect", {"expression": "1 + 1"})["value"]["repr"] == "2"


def test_inspect_instances(client: AgentClient) -> None:
    result = client.request("inspect", {"instances": "cmdapp.models.User", "limit": 2})
    assert result["class"] == "cmdapp.models.User"
    assert result["total"] == 4  # three users and the admin (a subclass)
    assert result["count"] == 2 and result["truncated"] is True
    assert all(re.fullmatch(r"0x[0-9a-f]+", i["id"]) for i in result["instances"])
    assert "name" in child_keys(result["instances"][0]["value"])
    names = client.request(
        "inspect", {"instances": "cmdapp.models.User", "expression": "it.name", "limit": 10}
    )
    assert sorted(i["value"]["repr"] for i in names["instances"]) == ["'alice'", "'bob'", "'carol'", "'root'"]
    admins = client.request("inspect", {"instances": "Admin", "expression": "it.level"})
    assert [i["value"]["repr"] for i in admins["instances"]] == ["3"]
    with pytest.raises(UsageError, match="no loaded class"):
        client.request("inspect", {"instances": "cmdapp.models.Nope"})


# ---------------------------------------------------------------- the CLI, once (this interpreter's target)


@pytest.fixture
def own_target(target: CmdTarget) -> CmdTarget:
    if target.version != THIS_VERSION:
        pytest.skip("the CLI is checked once, against the target of its own Python version")
    return target


def test_cli_thread(own_target: CmdTarget) -> None:
    out = peeka_cli("thread", str(own_target.pid), "-x", "1")
    assert out.returncode == 0, out.stderr
    assert "cmdapp-worker-0" in out.stdout and "worker_loop" in out.stdout and "label = str" in out.stdout
    assert "attached" not in out.stderr  # the running agent was reused


def test_cli_json_and_errors(own_target: CmdTarget) -> None:
    out = peeka_cli("sc", str(own_target.pid), "cmdapp.models.*", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["count"] == 3
    out = peeka_cli("sm", str(own_target.pid), "cmdapp.*.get", "-d")
    assert out.returncode == 0 and "cmdapp.models.User.get" in out.stdout and "(self, field)" in out.stdout
    out = peeka_cli("inspect", str(own_target.pid), "cmdapp.config.settings")
    assert out.returncode == 0 and "timeout = int 30" in out.stdout
    # -x/--expand and --max-size mean on inspect what they mean on watch and tt
    out = peeka_cli("inspect", str(own_target.pid), "cmdapp.config.settings", "-x", "1", "--json")
    assert out.returncode == 0 and "children" not in json.loads(out.stdout)["value"]
    out = peeka_cli("inspect", str(own_target.pid), "cmdapp.config.settings", "--expand", "3", "--json")
    assert out.returncode == 0 and "children" in json.loads(out.stdout)["value"]
    out = peeka_cli("inspect", str(own_target.pid), "cmdapp.config.settings", "--max-size", "10")
    assert out.returncode == 2 and "--max-size" in out.stderr
    out = peeka_cli("inspect", str(own_target.pid), "open('/etc/passwd')", "--json")
    assert out.returncode == 2
    assert "'open' is refused" in json.loads(out.stdout)["message"]
    out = peeka_cli("inspect", str(own_target.pid), "--instances", "cmdapp.models.Admin")
    assert out.returncode == 0 and "1 live instance(s)" in out.stdout
