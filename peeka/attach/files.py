"""Ship the agent's files into the target's filesystem, readable by the target's user.

Layout in the target's namespace (``TargetProcess.files_dir``)::

    <tmp>/peeka-<pid>/launch.py         boot.py plus the line that calls it with this target's config
    <tmp>/peeka-<pid>/sources.bin       the agent package's sources, marshalled (read by the loader
                                        thread: as a literal in launch.py they were parsed by the
                                        injected statement, on the interrupted thread, 10-50 ms)
    <tmp>/peeka-<pid>/code.bin          their code objects for this interpreter, when cached
    <tmp>/peeka-<pid>/boot-error.txt    only when loading failed inside the target

A target in another mount namespace (a container) is reached through ``/proc/PID/root``.
The agent removes the directory on detach; ``remove`` cleans up after a failed attach.
"""

from __future__ import annotations

import marshal
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import peeka_agent
from peeka_agent import protocol

from ..envsettings import positive_number
from ..errors import PermissionDenied
from ..process import TargetProcess
from . import codecache

AGENT_MODULE = "_peeka_agent"
SOURCES_FILE = "sources.bin"
# marshal's format 4 (Python 3.4+): what every supported target reads, whichever Python ships it.
MARSHAL_VERSION = 4
_AGENT_SOURCE = Path(peeka_agent.__file__).resolve().parent


def agent_sources() -> dict[str, str]:
    """The agent package's modules by path without ``.py`` (``commands/__init__``), boot excluded."""
    out = {}
    for path in sorted(_AGENT_SOURCE.rglob("*.py")):
        key = path.relative_to(_AGENT_SOURCE).with_suffix("").as_posix()
        if key != "boot":
            out[key] = path.read_text()
    return out


def agent_config(target: TargetProcess, method: str, pending_remote_exec: bool = False,
                 mode: dict[str, Any] | None = None, attached_by: str | None = None) -> dict[str, Any]:
    """``mode``: attach's AgentMode as a dict (read_only, audit_file, audit_log); ``attached_by``:
    the front end attaching (the agent reports it in its hello)."""
    limits = agent_limits()
    return {
        **(mode or {}),
        "attached_by": attached_by,
        "module": AGENT_MODULE,
        "sources": agent_sources(),
        "socket_path": target.socket_path,
        "files_dir": target.files_dir,
        "method": method,
        # gdb's fallback after a sys.remote_exec request that has not run yet (and may run later):
        # on detach the agent leaves a self-removing script where that request will look.
        "pending_remote_exec": pending_remote_exec,
        "limits": limits,
        # The boot's switch interval until the server listens: the one used while serving.
        "boot_switch_interval": limits.get("serve_switch_interval", protocol.SERVE_SWITCH_INTERVAL),
    }


def agent_limits() -> dict[str, float]:
    """The agent's connection limits that the attaching client's environment overrides."""
    return {key: positive_number(os.environ, env, float(default))
            for key, (env, default) in protocol.AGENT_LIMIT_SETTINGS.items() if os.environ.get(env, "").strip()}


def launch_source(config: dict[str, Any]) -> str:
    boot = (_AGENT_SOURCE / "boot.py").read_text()
    return f"{boot}\n_peeka_boot({config!r})\n"


def ship(target: TargetProcess, method: str, pending_remote_exec: bool = False,
         mode: dict[str, Any] | None = None, attached_by: str | None = None) -> str:
    """Write the agent into the target's filesystem; returns launch.py's path in the target's namespace."""
    config = agent_config(target, method, pending_remote_exec, mode, attached_by)
    final = Path(target.host_path(target.files_dir))
    parent = final.parent
    # Build beside the final place, then rename: two CLIs attaching at once never see half a copy.
    staging = Path(tempfile.mkdtemp(prefix=f".peeka-{target.ns_pid}-", dir=parent))
    try:
        sources = config.pop("sources")
        (staging / SOURCES_FILE).write_bytes(marshal.dumps(sources, MARSHAL_VERSION))
        config["sources_file"] = f"{target.files_dir}/{SOURCES_FILE}"
        code = codecache.code_for(target, sources)
        if code is not None:
            (staging / codecache.FILE).write_bytes(code)
            config["code_file"] = f"{target.files_dir}/{codecache.FILE}"
        (staging / "launch.py").write_text(launch_source(config))
        _chown_tree(staging, target.uid, target.gid)
        os.chmod(staging, 0o700)
        if final.exists():
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(staging, final)
        except OSError:
            # Another attach won the race with an identical copy; use theirs.
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return f"{target.files_dir}/launch.py"


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    if os.geteuid() != 0:
        return  # we are the target's user already (checked before shipping)
    try:
        for dirpath, _dirnames, filenames in os.walk(root):
            os.chown(dirpath, uid, gid)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), uid, gid)
    except PermissionError as exc:
        raise PermissionDenied(
            f"cannot hand the agent's files to the target's uid {uid}: {exc.strerror}",
            "Root without CAP_CHOWN (a container that dropped it) cannot give files to another user. "
            f"Run peeka as uid {uid} (with CAP_SYS_PTRACE where Yama requires it), or add CAP_CHOWN.",
        ) from None


def boot_error(target: TargetProcess) -> str | None:
    """What the agent's loader wrote when it failed inside the target, if anything."""
    path = Path(target.host_path(target.files_dir)) / "boot-error.txt"
    try:
        return path.read_text()
    except OSError:
        return None


def boot_started(target: TargetProcess) -> bool:
    """Whether the injected script has run in the target (boot.py leaves this mark)."""
    return (Path(target.host_path(target.files_dir)) / "started").exists()


def remove(target: TargetProcess) -> None:
    """Remove the agent's files, but never the script a pending sys.remote_exec request will run."""
    if not only_pending_stub(target):
        shutil.rmtree(target.host_path(target.files_dir), ignore_errors=True)


def only_pending_stub(target: TargetProcess) -> bool:
    """Whether all that is left is the self-removing script the agent leaves on detach for a
    sys.remote_exec request still pending in the target (see runtime.leave_pending_stub)."""
    from peeka_agent.protocol import PENDING_STUB_MARK

    folder = Path(target.host_path(target.files_dir))
    try:
        if os.listdir(folder) != ["launch.py"]:
            return False
        with open(folder / "launch.py") as script:
            return script.readline().rstrip("\n") == PENDING_STUB_MARK
    except OSError:
        return False


def injected_code(launch_path: str) -> str:
    """The one statement an injector runs in the target: execute launch.py in a fresh namespace.

    Uses only ``os`` (always imported) and binds no name in ``__main__``, where gdb's
    PyRun_SimpleString runs it; the file is closed before the code runs. It opens the file with
    ``posix.open``, ``os.open`` as it was before eventlet patched it (eventlet's gives the calling
    thread a hub of its own, with an epoll fd).
    """
    path = repr(launch_path)
    return (
        "try:\n"
        "    exec(compile((lambda os, fd: (os.read(fd, 1 << 22), os.close(fd))[0])"
        f"(__import__('os'), __import__('posix').open({path}, 0)), {path}, 'exec'), "
        "{'__name__': '__peeka_launch__'})\n"
        "except BaseException:\n"
        "    pass\n"
    )
