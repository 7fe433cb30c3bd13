"""gdb injection against real targets on every Python here: it runs, the target survives.

Each target (tests/targets/gdb_target.py) is a real process in one state (busy loop, sleep loop,
blocked main thread, signal.pause, GIL contention); after an injection it must still answer a
SIGUSR1 "ping" from its main thread, keep its heartbeat going and have printed nothing on stderr.
Errors are provoked for real: a PID that exited, a non-Python process, no gdb on PATH, a gdb that
cannot make calls on this CPU.
"""

from __future__ import annotations

import ctypes
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from conftest import TARGETS, VERSIONS, python_for

from peeka.attach import gdb as gdb_inject
from peeka.attach import gdb_binary
from peeka.attach.gdb import GdbInjection, inject_with_gdb
from peeka.errors import (
    PTRACE_HELP,
    AttachFailed,
    AttachTimeout,
    GdbMissing,
    NoSuchProcess,
    NotPython,
    PtraceRefused,
    SymbolsMissing,
)
from peeka.process import TargetProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ptrace injection is Linux-only"),
    pytest.mark.parallel,
]

STATES = ("busy", "sleep", "event", "pause", "contention")
SCRIPT = TARGETS / "gdb_target.py"


class GdbTarget:
    """One gdb_target.py process; stderr goes to a file so it can be checked while it runs."""

    def __init__(self, python: str, state: str, workdir: Path) -> None:
        self.workdir = workdir
        self.stderr_path = workdir / "stderr"
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(
                [python, "-u", str(SCRIPT), state, str(workdir)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("ready"):
            self.kill()
            raise RuntimeError(f"target {state} did not get ready: {line!r} {self.stderr()}")
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def ping(self, timeout: float = 10.0) -> bool:
        """Does the main thread still run its Python SIGUSR1 handler (which appends to pong)?

        First a plain ``kill``, as a user would send it. Then, if the handler has not run within a
        second, SIGUSR1 again to the main thread itself, once a second: CPython loses the wake-up
        of a signal that reaches the main thread while it is on its way back to sleep in
        ``Thread.join`` or ``Event.wait`` (after its last look at pending signals, before the futex
        wait: its C handler only sets a flag), and the Python handler runs only when the thread
        next wakes, which in these targets is never. Measured on this machine without Peeka (no
        ptrace, the signal sent to the main thread of a GIL contention target): 1 of 200 pings on
        3.14, 1 of 150 on 3.9; the next signal ran the handler every time. A main thread that still
        runs its handlers answers the second signal at once; one an injection broke never does.
        """
        pong = self.workdir / "pong"
        before = pong.read_text().count("\n") if pong.exists() else 0
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        resend = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if pong.exists() and pong.read_text().count("\n") > before:
                return True
            if time.monotonic() >= resend:
                signal_thread(self.pid, self.pid, signal.SIGUSR1)
                resend += 1.0
            time.sleep(0.01)
        return False

    def heartbeat_moves(self, timeout: float = 5.0) -> bool:
        beat = self.workdir / "heartbeat"
        first = beat.read_text() if beat.exists() else ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.02)
            if beat.exists() and beat.read_text() not in ("", first):
                return True
        return False

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[[str, str], GdbTarget]]:
    started: list[GdbTarget] = []

    def _launch(version: str, state: str) -> GdbTarget:
        workdir = tmp_path / f"{version}-{state}-{len(started)}"
        workdir.mkdir()
        target = GdbTarget(python_for(version), state, workdir)
        started.append(target)
        return target

    yield _launch
    for target in started:
        target.kill()


def marker_code(path: Path) -> str:
    # Runs in the target's __main__: bind nothing there.
    return (
        "def _peeka_test_mark():\n"
        "    import os, threading\n"
        f"    with open({str(path)!r}, 'w') as f:\n"
        "        f.write('%d %s' % (os.getpid(), threading.current_thread().name))\n"
        "_peeka_test_mark()\n"
        "del _peeka_test_mark\n"
    )


def require_symbols(target: GdbTarget, version: str) -> None:
    """Skip when this interpreter lacks the symbols the injection needs (a real probe)."""
    proc = TargetProcess(target.pid)
    try:
        gdb_inject.symbol_params(proc, proc.require_python())
    except SymbolsMissing as exc:
        pytest.skip(f"Python {version}: {exc.message}")


def signal_thread(pid: int, tid: int, signum: int) -> None:
    """tgkill(2): a signal for one thread of another process (Python has only os.kill)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.tgkill(pid, tid, signum) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def signal_state(pid: int) -> str:
    """Each thread's kernel state and signal masks: what a lost ping looked like, for the record."""
    rows = []
    for tid in sorted(os.listdir(f"/proc/{pid}/task")):
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines())
            wchan = Path(f"/proc/{pid}/task/{tid}/wchan").read_text()
        except OSError:
            continue
        rows.append(f"{tid} {fields['State'].strip()} wchan={wchan} " + " ".join(
            f"{k}={fields[k].strip()}" for k in ("SigPnd", "ShdPnd", "SigBlk", "SigCgt")))
    return "; ".join(rows)


def assert_signal_handler_runs(target: GdbTarget) -> None:
    if not target.ping():
        assert target.alive() and target.stderr() == ""
        raise AssertionError(f"the target's main thread no longer runs its signal handler: {signal_state(target.pid)}")


def inject_and_check(target: GdbTarget, state: str, name: str = "marker") -> GdbInjection:
    marker = target.workdir / name
    result = inject_with_gdb(TargetProcess(target.pid), marker_code(marker), timeout=10)
    assert result.return_code == 0, result
    pid, _, thread = marker.read_text().partition(" ")
    assert int(pid) == target.pid and thread, marker.read_text()
    assert result.where.startswith(("safe-point:", "fallback-thread:")), result.where
    assert target.alive(), "the target died"
    # gdb's detach leaves every thread flagged "signal pending" until it runs again, and the kernel
    # routes a process-directed signal around such a thread: the main thread must have run again
    # before the injection returns, or a `kill` right after it misses the main thread (gdb.settle).
    assert result.settled is not False, "the main thread did not run within gdb.SETTLE after the detach"
    return result


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("version", VERSIONS)
def test_inject_runs_code_and_target_survives(
    launch: Callable[[str, str], GdbTarget], version: str, state: str
) -> None:
    target = launch(version, state)
    require_symbols(target, version)
    result = inject_and_check(target, state)
    assert result.stopped < result.elapsed
    assert_signal_handler_runs(target)
    if state in ("busy", "contention"):
        assert target.heartbeat_moves(), "the target stopped making progress"
    assert target.alive()
    assert target.stderr() == ""


@pytest.mark.parametrize("version", VERSIONS)
def test_twenty_back_to_back(launch: Callable[[str, str], GdbTarget], version: str) -> None:
    # Contention: five threads, GIL hand-offs all the time, every kind of stop point in play.
    target = launch(version, "contention")
    require_symbols(target, version)
    places = set()
    for i in range(20):
        places.add(inject_and_check(target, "contention", f"marker-{i}").where.split(":")[0])
    assert_signal_handler_runs(target)
    assert target.heartbeat_moves()
    assert target.stderr() == ""


def test_gil_held_in_native_code_gives_up_harmlessly(launch: Callable[[str, str], GdbTarget]) -> None:
    target = launch("3.12", "gilheld")
    with pytest.raises(AttachTimeout, match="holds the GIL"):
        inject_with_gdb(TargetProcess(target.pid), "pass", timeout=10)
    assert target.alive()
    assert target.ping()
    assert target.stderr() == ""


def test_stopped_target_is_refused(launch: Callable[[str, str], GdbTarget]) -> None:
    target = launch("3.12", "sleep")
    os.kill(target.pid, signal.SIGSTOP)
    try:
        time.sleep(0.05)
        with pytest.raises(AttachFailed, match="stopped") as info:
            inject_with_gdb(TargetProcess(target.pid), "pass")
        assert "kill -CONT" in info.value.help
    finally:
        os.kill(target.pid, signal.SIGCONT)
    assert target.ping()


def test_no_such_process(launch: Callable[[str, str], GdbTarget]) -> None:
    target = launch("3.12", "sleep")
    proc = TargetProcess(target.pid)
    proc.require_python()
    target.kill()
    with pytest.raises(NoSuchProcess):
        inject_with_gdb(proc, "pass")
    with pytest.raises(NoSuchProcess):
        TargetProcess(target.pid)


def test_not_python() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(NotPython):
            inject_with_gdb(TargetProcess(sleeper.pid), "pass")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_gdb_missing(
    launch: Callable[[str, str], GdbTarget], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = launch("3.12", "sleep")
    monkeypatch.setenv("PATH", str(tmp_path))  # a directory without gdb
    monkeypatch.setenv("PEEKA_GDB", "gdb")  # and not the bundled one either
    with pytest.raises(GdbMissing) as info:
        inject_with_gdb(TargetProcess(target.pid), "pass")
    assert "PEEKA_GDB" in info.value.message
    assert target.alive()


def test_a_gdb_that_cannot_call_is_refused_before_touching_the_target(
    launch: Callable[[str, str], GdbTarget], monkeypatch: pytest.MonkeyPatch
) -> None:
    system = shutil.which("gdb")
    if system is None:
        pytest.skip("no gdb on PATH to compare with the bundled one")
    error = gdb_binary.probe(gdb_binary._from_path(system, "PATH"))
    target = launch("3.12", "sleep")
    monkeypatch.setenv("PEEKA_GDB", system)
    if error is None:  # this machine's gdb works: it must then inject as well
        assert inject_with_gdb(TargetProcess(target.pid), "pass").return_code == 0
    else:  # e.g. gdb 13 on an AMX CPU: refused with the fix, the target never touched
        with pytest.raises(GdbMissing, match="inferior call failed") as info:
            inject_with_gdb(TargetProcess(target.pid), "pass")
        assert "gdb-for-pwndbg" in info.value.help
    assert target.alive() and target.ping()
    assert target.stderr() == ""


def test_missing_symbols_are_named(
    launch: Callable[[str, str], GdbTarget], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = launch("3.12", "sleep")
    monkeypatch.setattr(gdb_inject, "REQUIRED", (*gdb_inject.REQUIRED, "Py_NoSuchFunction"))
    proc = TargetProcess(target.pid)
    with pytest.raises(SymbolsMissing, match="Py_NoSuchFunction") as info:
        inject_with_gdb(proc, "pass")
    assert proc.python_binary in info.value.message


def test_ptrace_refusal_is_diagnosed(launch: Callable[[str, str], GdbTarget]) -> None:
    # gdb's own words when the kernel says EPERM (Yama, no CAP_SYS_PTRACE): as root here we can
    # not provoke it, so feed the script's marker line to the client's parser.
    target = TargetProcess(launch("3.12", "sleep").pid)
    events = [{"event": "error", "kind": "ptrace", "message": "ptrace: Operation not permitted."}]
    error = gdb_inject._error(target, events, "")
    assert isinstance(error, PtraceRefused) and error.help == PTRACE_HELP
    error = gdb_inject._error(target, [], "ptrace: Operation not permitted.\n")
    assert isinstance(error, PtraceRefused)
