"""Attach, ask, detach: the real CLI against real targets on every Python on this machine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT, TARGETS, VERSIONS, borrowed_gdb, peeka_cli, python_for, thread_count

from peeka.attach import gdb_binary
from peeka.attach.sched import BlockedWatch
from peeka.process import TargetProcess

pytestmark = [pytest.mark.integration, pytest.mark.parallel]

STATES = ("busy", "sleep", "blocked", "pause", "contention")


def _leftovers(pid: int) -> list[str]:
    root = f"/proc/{pid}/root/tmp"
    # Exactly this pid's names: other (dead) targets' leftovers may share its digits.
    return [n for n in os.listdir(root) if n in (f"peeka-{pid}", f"peeka_{pid}.sock") or n.startswith(f".peeka-{pid}-")]


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("version", VERSIONS)
def test_attach_thread_detach(spawn, version: str, state: str) -> None:
    target = spawn(python_for(version), "app.py", state)
    threads_before, fds_before = thread_count(target.pid), _fds(target.pid)

    out = peeka_cli("attach", str(target.pid), "--json")
    assert out.returncode == 0, out.stderr + out.stdout
    facts = json.loads(out.stdout)
    assert facts["python"].startswith(version + ".")
    assert facts["method"] in ("remote-exec", "gdb")
    if version == "3.14" and state in ("busy", "sleep", "contention"):
        assert facts["method"] == "remote-exec"
    if version == "3.14" and state in ("blocked", "pause") and gdb_binary.available():
        assert facts["method"] == "gdb"  # the main thread never runs the remote_exec request

    again = json.loads(peeka_cli("attach", str(target.pid), "--json").stdout)
    assert again["reused"] is True

    threads = peeka_cli("thread", str(target.pid), "--json")
    assert threads.returncode == 0, threads.stderr
    names = {t["name"] for t in json.loads(threads.stdout)["threads"]}
    assert "MainThread" in names

    # The first expression compiles the expression language inside the target (imported when needed).
    inspected = peeka_cli("inspect", str(target.pid), "sys.version_info[:2]", "--json")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["value"]["repr"] == "({}, {})".format(*version.split("."))

    out = peeka_cli("detach", str(target.pid), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["detached"] is True
    assert target.alive()
    if _leftovers(target.pid) == [f"peeka-{target.pid}"] and facts["method"] == "gdb" and version == "3.14":
        # The sys.remote_exec request sent first did not run during the attach (usually the gdb
        # stop makes the main thread run it): the agent left it a script that removes itself
        # when the main thread next runs Python (else CPython would print an error then).
        os.kill(target.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while _leftovers(target.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert _leftovers(target.pid) == []
    deadline = time.monotonic() + 5
    while thread_count(target.pid) != threads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert thread_count(target.pid) == threads_before
    assert _fds(target.pid) == fds_before
    assert target.stop() == "", "the target printed to stderr"


@pytest.mark.parametrize("version", ["3.9", "3.12", "3.13", "3.14"])
def test_cli_on_314_attaches_older_targets(spawn, version: str) -> None:
    # And a 3.14 target: then the CLI's own interpreter makes the sys.remote_exec call in-process.
    cli314 = ROOT / ".venv314" / "bin" / "python"
    if not cli314.exists():
        pytest.skip("no .venv314 (scripts/setup.sh creates it when a Python 3.14 is available)")
    target = spawn(python_for(version), "app.py", "sleep")
    env = borrowed_gdb(str(cli314))  # (that 3.14 is a static build: it cannot host the bundled gdb)
    out = peeka_cli("attach", str(target.pid), "--json", python=str(cli314), env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["method"] == ("remote-exec" if version == "3.14" else "gdb")
    out = peeka_cli("thread", str(target.pid), "--json", python=str(cli314), env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["threads"]
    assert peeka_cli("detach", str(target.pid), python=str(cli314), env=env).returncode == 0
    assert target.stop() == ""


def test_remote_debug_disabled_is_diagnosed(spawn) -> None:
    target = spawn(python_for("3.14"), "app.py", "busy", env={"PYTHON_DISABLE_REMOTE_DEBUG": "1"})
    out = peeka_cli("attach", str(target.pid), "--method", "remote-exec")
    assert out.returncode == 8, out.stderr
    assert "remote debugging" in out.stderr.lower() and "--method gdb" in out.stderr
    # auto falls back to gdb where it can, and says why it can't otherwise
    out = peeka_cli("attach", str(target.pid), "--json")
    if out.returncode == 0:
        assert json.loads(out.stdout)["method"] == "gdb"
        assert peeka_cli("detach", str(target.pid)).returncode == 0
    else:
        assert out.returncode in (9, 10, 11), out.stderr
    assert target.stop() == ""


@pytest.mark.parametrize("version", ["3.12", "3.14"])  # gdb; sys.remote_exec (the script copied to our side)
def test_target_in_private_mount_namespace(spawn, version: str) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare not available")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a mount namespace here: {probe.stderr.decode().strip()}")
    py = python_for(version)
    wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs tmpfs /tmp && exec "$0" "$@"']
    # The script must stay visible once the private /tmp covers the host's (a checkout may live there).
    outside = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else "/var/tmp"))
    shutil.copy(TARGETS / "app.py", outside / "app.py")
    try:
        target = spawn(py, str(outside / "app.py"), "sleep", wrap=wrap)
    finally:
        shutil.rmtree(outside, ignore_errors=True)  # the running target keeps its open file
    assert os.readlink(f"/proc/{target.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    out = peeka_cli("attach", str(target.pid), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["method"] == ("remote-exec" if version == "3.14" else "gdb")
    out = peeka_cli("thread", str(target.pid), "--json")
    assert out.returncode == 0, out.stderr
    sock = f"/proc/{target.pid}/root/tmp/peeka_{target.pid}.sock"
    assert os.path.exists(sock) and not os.path.exists(f"/tmp/peeka_{target.pid}.sock")
    assert peeka_cli("detach", str(target.pid)).returncode == 0
    assert os.listdir(f"/proc/{target.pid}/root/tmp") == []
    assert not os.path.exists(f"/tmp/peeka-{target.pid}")


def test_non_python_and_missing_pid_are_diagnosed() -> None:
    out = peeka_cli("thread", "999999")
    assert out.returncode == 3 and "no process with PID 999999" in out.stderr
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        out = peeka_cli("thread", str(sleeper.pid), "--json")
        assert out.returncode == 4
        assert json.loads(out.stdout)["error"] == "not-python"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_gdb_missing_is_diagnosed(spawn, tmp_path: Path) -> None:
    target = spawn(python_for("3.12"), "app.py", "sleep")
    # A PATH with everything but gdb.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for d in os.environ["PATH"].split(":"):
        if os.path.isdir(d):
            for name in os.listdir(d):
                if name != "gdb" and not (bindir / name).exists():
                    try:
                        (bindir / name).symlink_to(os.path.join(d, name))
                    except OSError:
                        pass
    out = peeka_cli("attach", str(target.pid), env={"PATH": str(bindir), "PEEKA_GDB": "gdb"})
    assert out.returncode == 9, out.stderr
    assert "PEEKA_GDB=gdb is not an executable gdb" in out.stderr
    # No gdb anywhere: the 3.14 client's static interpreter cannot host the bundled gdb either.
    cli314 = ROOT / ".venv314" / "bin" / "python"
    if cli314.exists():
        out = peeka_cli("attach", str(target.pid), "--method", "gdb", python=str(cli314), env={"PATH": str(bindir)})
        assert out.returncode == 9, out.stderr
        assert "gdb is not installed" in out.stderr and "apt-get install gdb" in out.stderr
    assert target.alive()


def _as_nobody() -> dict[str, object]:
    import pwd

    nobody = pwd.getpwnam("nobody")

    def demote() -> None:
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    return {"preexec_fn": demote}


def _nobody_python() -> list[str]:
    """A command line running this test's peeka as nobody (pyenv lives under /root, closed to others)."""
    import site
    import sys
    import sysconfig

    try:
        subprocess.run([sys.executable, "-c", "pass"], capture_output=True, cwd="/", check=True, **_as_nobody())  # type: ignore[call-overload]
        return [sys.executable]
    except (OSError, subprocess.CalledProcessError):
        pass
    system = shutil.which(f"python{sys.version_info[0]}.{sys.version_info[1]}", path="/usr/bin:/usr/local/bin")
    if system is None:
        pytest.skip("no interpreter that the user nobody may run (this one lives in a closed directory)")
    sites = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if os.path.isdir(p)]
    boot = f"import site; [site.addsitedir(p) for p in {sites!r}]; import runpy; runpy.run_module('peeka', run_name='__main__')"
    return [system, "-c", boot]


def test_other_uid_is_refused(spawn) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another user")
    target = spawn(python_for("3.12"), "app.py", "sleep")
    import sys

    nobody_peeka = _nobody_python()
    if nobody_peeka == [sys.executable]:
        nobody_peeka = [sys.executable, "-m", "peeka"]
    # A client as nobody: attach refused with the fix.
    cmd = [*nobody_peeka, "attach", str(target.pid)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/", **_as_nobody())  # type: ignore[call-overload]
    assert out.returncode == 6, out.stderr
    assert "root" in out.stderr
    # Root attaches; nobody still can't talk to the agent, root can.
    assert peeka_cli("attach", str(target.pid)).returncode == 0
    cmd = [*nobody_peeka, "thread", str(target.pid)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/", **_as_nobody())  # type: ignore[call-overload]
    assert out.returncode == 6, out.stderr
    sock = f"/tmp/peeka_{target.pid}.sock"
    # Even with the socket's mode opened up, SO_PEERCRED keeps nobody out.
    os.chmod(sock, 0o777)
    probe = (
        "import socket, struct, json, sys\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        "n = struct.unpack('>I', s.recv(4))[0]; print(json.loads(s.recv(n))['error_type'])\n"
    )
    out = subprocess.run([nobody_peeka[0], "-c", probe, sock], capture_output=True, text=True, timeout=30,
                         cwd="/", **_as_nobody())  # type: ignore[call-overload]
    assert out.stdout.strip() == "PermissionDenied", out.stderr
    assert peeka_cli("thread", str(target.pid)).returncode == 0
    assert peeka_cli("detach", str(target.pid)).returncode == 0


@pytest.mark.parametrize("version", ["3.12", "3.14"])
def test_ptrace_refused_is_diagnosed(spawn, version: str) -> None:
    """For real: a client without CAP_SYS_PTRACE against a non-dumpable target of the same uid."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv (util-linux) to drop CAP_SYS_PTRACE from the client")
    target = spawn(python_for(version), "nondumpable.py")
    drop = [setpriv, "--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace"]
    out = subprocess.run([*drop, sys.executable, "-m", "peeka", "attach", str(target.pid), "--json"],
                         capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert out.returncode == 7, out.stdout + out.stderr
    error = json.loads(out.stdout)
    assert error["error"] == "ptrace-refused", error
    assert "CAP_SYS_PTRACE" in error["help"] and "SYS_PTRACE" in error["help"]
    assert target.alive()
    assert target.stop() == ""


@pytest.mark.timing  # a 0.15 s sleep window read from the kernel's scheduler counters
@pytest.mark.parametrize(("state", "blocked"), [("busy", False), ("sleep", False), ("blocked", True), ("pause", True)])
def test_blocked_watch_tells_a_main_thread_that_never_wakes(spawn, state: str, blocked: bool) -> None:
    # What lets auto attach give up on sys.remote_exec early: the kernel's view of the main
    # thread, which either runs now and then (busy, a sleep(0.1) loop) or never (Event().wait(),
    # pause()). The version does not matter.
    target = spawn(python_for("3.12"), "app.py", state)
    watch = BlockedWatch(TargetProcess(target.pid), 0.15)
    fired = False
    end = time.monotonic() + 0.6
    while not fired and time.monotonic() < end:
        fired = watch()
        time.sleep(0.005)
    assert fired is blocked
    assert target.stop() == ""


def test_pending_remote_exec_stub_removes_itself(spawn) -> None:
    """What detach leaves for a sys.remote_exec request still pending: run by that request, it
    removes itself and its directory, prints nothing and binds nothing in the target."""
    from peeka_agent.runtime import leave_pending_stub

    from peeka.process import TargetProcess

    python = python_for("3.14")
    target = spawn(python, "app.py", "busy")
    files_dir = TargetProcess(target.pid).files_dir
    for stale in _leftovers(target.pid):  # a dead process's, with this reused pid (no agent came to this one)
        path = os.path.join("/tmp", stale)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    leave_pending_stub(files_dir)
    assert _leftovers(target.pid) == [f"peeka-{target.pid}"]
    sent = subprocess.run([python, "-c", f"import sys; sys.remote_exec({target.pid}, {files_dir + '/launch.py'!r})"],
                          capture_output=True, text=True, timeout=30)
    assert sent.returncode == 0, sent.stderr
    deadline = time.monotonic() + 5
    while _leftovers(target.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _leftovers(target.pid) == []
    assert target.alive()
    assert target.stop() == "", "the target printed to stderr"


def test_a_killed_agents_socket_is_not_taken_for_a_new_process(spawn) -> None:
    """A process killed with its agent leaves ``peeka_<pid>.sock``; a new process that gets the same
    pid must not be listed as having an agent, and attaching to it must work. The state a reused pid
    meets is built for real: a killed target's leftover socket, moved to a younger process's path."""
    dead = spawn(python_for("3.14"), "app.py", "sleep")
    assert peeka_cli("attach", str(dead.pid), "--json").returncode == 0
    leftover = f"/tmp/peeka_{dead.pid}.sock"
    os.kill(dead.pid, signal.SIGKILL)
    dead.proc.wait(10)
    assert os.path.exists(leftover)  # nothing removed it: the agent died with its process
    time.sleep(1.2)  # the new process starts later than the socket was made, as a reused pid's would
    young = spawn(python_for("3.14"), "app.py", "sleep")
    path = f"/tmp/peeka_{young.pid}.sock"
    os.rename(leftover, path)
    try:
        listed = {p["pid"]: p for p in json.loads(peeka_cli("ps", "--json").stdout)}
        assert listed[young.pid]["agent"] is False, listed[young.pid]
        out = peeka_cli("attach", str(young.pid), "--json")
        assert out.returncode == 0 and json.loads(out.stdout)["reused"] is False, out.stderr + out.stdout
        listed = {p["pid"]: p for p in json.loads(peeka_cli("ps", "--json").stdout)}
        assert listed[young.pid]["agent"] is True
        assert peeka_cli("detach", str(young.pid), "--json").returncode == 0
        assert not os.path.exists(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)
