"""Shared harness: the Pythons on this machine, real target processes, and the CLI runner.

Targets are real scripts started under each interpreter; they print ``ready`` on stdout when set
up, and are always torn down terminate -> kill -> wait.

The suite runs in two phases (scripts/test.sh; README, "Testing"): ``--phase parallel`` runs the
tests marked ``parallel`` (a module's pytestmark, or one test) and not ``timing``, spread over
pytest-xdist workers; ``--phase serial`` runs every other test alone. Unmarked tests are serial,
so a new module is safe until someone has read its assertions.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TARGETS = Path(__file__).resolve().parent / "targets"
VERSIONS = ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14")
# Flask and its dependencies, pure Python, for targets of every version (scripts/setup.sh fills it).
TARGET_SITE = ROOT / ".peeka" / "target-site"
# uvicorn, Starlette, Django, gunicorn, pure Python, for the framework targets (scripts/setup.sh fills it).
TARGET_WEB = ROOT / ".peeka" / "target-web"


def target_site_env() -> dict[str, str]:
    """The environment a target needs to import Flask; skips when setup has not provided it."""
    if not (TARGET_SITE / ".complete").exists():
        pytest.skip(f"{TARGET_SITE} is missing: run scripts/setup.sh (it installs Flask for targets)")
    return {"PYTHONPATH": str(TARGET_SITE)}


def target_web_env() -> dict[str, str]:
    """The environment a web framework target needs; skips when setup has not provided it."""
    if not (TARGET_WEB / ".complete").exists():
        pytest.skip(f"{TARGET_WEB} is missing: run scripts/setup.sh (it installs the web frameworks for targets)")
    return {"PYTHONPATH": str(TARGET_WEB)}


def gevent_site(version: str, python: str) -> dict[str, str]:
    """The environment a target needs to import gevent on ``version`` (compiled: one site directory
    per version, scripts/setup.sh); skips when it is missing or a real import fails there."""
    return _green_site("gevent", "import gevent.pywsgi", version, python)


def eventlet_site(version: str, python: str) -> dict[str, str]:
    """The same for eventlet (its greenlet is compiled): a WSGI server must import and serve."""
    return _green_site("eventlet", "import eventlet; eventlet.monkey_patch(); import eventlet.wsgi", version, python)


def _green_site(package: str, probe_code: str, version: str, python: str) -> dict[str, str]:
    site = ROOT / ".peeka" / package / version
    if not (site / ".complete").exists():
        pytest.skip(f"{site} is missing: run scripts/setup.sh (it installs {package}'s wheels per version)")
    probe = subprocess.run([python, "-c", probe_code], env=dict(os.environ, PYTHONPATH=str(site)),
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"{package} does not import on Python {version}: {probe.stderr.strip()[-300:]}")
    return {"PYTHONPATH": str(site)}


def _pyenv_root() -> Path:
    try:
        return Path(subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))


def find_python(version: str) -> str | None:
    """An interpreter binary for ``version``, found by a real probe, or None."""
    candidates: list[Path | str] = []
    if version == "3.14":
        env = os.environ.get("PEEKA_PY314")
        if env:
            candidates.append(env)
        marker = ROOT / ".peeka" / "python314"
        if marker.exists() and marker.read_text().strip():
            candidates.append(marker.read_text().strip())
    versions = _pyenv_root() / "versions"
    if versions.is_dir():
        for d in sorted(versions.iterdir(), reverse=True):
            if d.name.startswith(version + "."):
                candidates.append(d / "bin" / f"python{version}")
    found = shutil.which(f"python{version}")
    if found:
        candidates.append(found)
    for c in candidates:
        try:
            out = subprocess.run([str(c), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == version:
            return str(c)
    return None


_PYTHONS: dict[str, str | None] = {}


def python_for(version: str) -> str:
    if version not in _PYTHONS:
        _PYTHONS[version] = find_python(version)
    path = _PYTHONS[version]
    if path is None:
        pytest.skip(f"no Python {version} interpreter found on this machine (probed pyenv, PATH, .peeka/python314)")
    return path


def borrowed_gdb(client_python: str) -> dict[str, str]:
    """The environment a CLI on ``client_python`` needs to attach with gdb: none, unless that Python
    cannot host its own gdb-for-pwndbg (the 3.14 here is a static build), when it borrows the one of
    this test run's venv through PEEKA_GDB (the machine's gdb 13 fails every call on CPUs with AMX)."""
    from peeka.attach import gdb_binary

    if gdb_binary._bundled(client_python) is not None or gdb_binary._bundled() is None:
        return {}
    return {"PEEKA_GDB": str(Path(sys.executable).with_name("gdb"))}


def agent_library(tmp: Path) -> Path:
    """peeka_agent importable by any interpreter, as it is in an attached target
    (for targets that start the agent themselves)."""
    lib = tmp / "lib"
    lib.mkdir()
    (lib / "peeka_agent").symlink_to(ROOT / "agent")
    return lib


class Target:
    """A real target process running one of tests/targets/*.py."""

    def __init__(self, python: str, script: str, *args: str, env: dict[str, str] | None = None,
                 wrap: list[str] | None = None, ready_timeout: float = 30.0,
                 python_flags: list[str] | None = None) -> None:
        full_env = dict(os.environ)
        full_env.pop("PYTHONPATH", None)
        full_env.update(env or {})
        cmd = [*(wrap or []), python, *(python_flags or []), "-u", str(TARGETS / script), *args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=full_env, text=True, start_new_session=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        deadline = time.monotonic() + ready_timeout
        while line and not line.startswith("ready"):
            if time.monotonic() > deadline:
                break
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("ready"):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""  # type: ignore[union-attr]
            self.stop()
            raise RuntimeError(f"target {script} did not get ready: {line!r} {err}")
        self.ready_line = line
        parts = line.split()
        # A wrapped target (unshare ...) reports its own pid after "ready".
        self.pid = int(parts[1]) if len(parts) > 1 and wrap else self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> str:
        """Terminate (then kill) the target; returns what it wrote to stderr. Safe to call twice."""
        if getattr(self, "_stderr", None) is not None:
            return self._stderr
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        err = self.proc.stderr.read() if self.proc.stderr else ""
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        self._stderr: str = err
        return err


def thread_count(pid: int) -> int:
    """The OS threads of ``pid`` now (its /proc status), a ground truth for the agent's own threads."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no Threads line")


PHASES = ("all", "parallel", "serial")
UNCLASSIFIED = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--phase", choices=PHASES, default="all",
                     help="parallel: only tests marked parallel and not timing (for pytest-xdist); serial: only "
                          "the others; all (the default): every test")


def runs_in_parallel(item: pytest.Item) -> bool:
    """Marked parallel (its module's pytestmark, or itself), and not timing: it may run beside other tests."""
    return item.get_closest_marker("parallel") is not None and item.get_closest_marker("timing") is None


def shared_group(item: pytest.Item) -> str | None:
    """What ties this test to others on one xdist worker: the module-, package- or session-scoped
    fixtures of the suite's own that it uses (a target per module and version, for one), with their
    parameters. Tests sharing one run on one worker, in collection order, so each such fixture is
    set up once and tests that build on an earlier one's state (test_audit.py) still follow it;
    every other test is scheduled on its own."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    params = getattr(getattr(item, "callspec", None), "params", {})
    shared = []
    for name in info.names_closure:
        defs = info.name2fixturedefs.get(name)
        # baseid "" is a plugin's fixture (anyio's, hypothesis'): not a target of ours.
        if defs and defs[-1].scope in ("module", "package", "session") and defs[-1].baseid:
            shared.append(f"{name}={params[name]}" if name in params else name)
    if not shared:
        return None
    return f"{item.path.name}:{','.join(sorted(shared))}"  # module names are unique (test_suite_layout.py)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    phase = config.getoption("--phase")
    config.stash[UNCLASSIFIED] = sorted({item.path.name for item in items if item.get_closest_marker("parallel") is None
                                         and item.get_closest_marker("timing") is None})
    if phase != "all":
        keep = [item for item in items if runs_in_parallel(item) == (phase == "parallel")]
        dropped = [item for item in items if runs_in_parallel(item) != (phase == "parallel")]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep
    if config.pluginmanager.hasplugin("xdist"):
        for item in items:
            group = shared_group(item)
            if group is not None:
                item.add_marker(pytest.mark.xdist_group(group))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    unclassified = config.stash.get(UNCLASSIFIED, [])
    if unclassified and config.getoption("--phase") != "parallel":
        terminalreporter.write_line(f"run serially, marked neither parallel nor timing (README, Testing): "
                                    f"{', '.join(unclassified)}", yellow=True)


@pytest.fixture
def spawn() -> Iterator:
    started: list[Target] = []

    def _spawn(python: str, script: str, *args: str, **kw: object) -> Target:
        t = Target(python, script, *args, **kw)  # type: ignore[arg-type]
        started.append(t)
        return t

    yield _spawn
    for t in started:
        t.stop()


def peeka_cli(*args: str, python: str | None = None, env: dict[str, str] | None = None,
              timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run the real ``peeka`` CLI in a subprocess (by default under this test's interpreter)."""
    # Rich fits tables to COLUMNS: a fixed width whatever runs the tests (pytest-xdist's workers have 80).
    full_env = dict(os.environ, COLUMNS="200")
    full_env.update(env or {})
    return subprocess.run([python or sys.executable, "-m", "peeka", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)
