"""Attach through ``sys.remote_exec`` (PEP 768), for targets on Python 3.14+.

The call must come from an interpreter of the target's own minor version, so we run the target's
own executable (``/proc/PID/exe``). The script path is checked in the caller's filesystem and
opened in the target's, so for a target in another mount namespace we put a copy at the same path
on our side for as long as the call takes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import (
    PTRACE_HELP,
    AttachFailed,
    AttachTimeout,
    PermissionDenied,
    PtraceRefused,
    RemoteDebugDisabled,
)
from ..process import TargetProcess

_CALL = "import sys; sys.remote_exec(int(sys.argv[1]), sys.argv[2])"


def caller_interpreter(target: TargetProcess) -> str:
    """An interpreter of the target's version that we can run here."""
    version = target.python_version
    if version is not None and sys.version_info[:2] == version:
        return sys.executable
    exe = f"/proc/{target.pid}/exe"
    if target.same_mount_namespace:
        return exe
    local = shutil.which(f"python{version[0]}.{version[1]}") if version else None
    return local or exe


def inject_with_remote_exec(target: TargetProcess, launch_path: str, timeout: float = 5.0) -> None:
    """Ask the target to run ``launch_path`` (a path in its namespace) at its next eval-breaker check.

    Returns once the request is written; the script runs later, when the main thread next runs
    Python code. Callers poll for its effect.
    """
    if target.remote_debug_disabled:
        raise RemoteDebugDisabled(
            f"process {target.pid} was started with remote debugging disabled "
            "(PYTHON_DISABLE_REMOTE_DEBUG or -X disable-remote-debug)",
            "Use `--method gdb`, or restart the target without that setting.",
        )
    local_copy = None
    if not target.same_mount_namespace and not os.path.exists(launch_path):
        local_copy = Path(launch_path)
        local_copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(target.host_path(launch_path), local_copy)
    try:
        proc = subprocess.run(
            [caller_interpreter(target), "-I", "-S", "-c", _CALL, str(target.pid), launch_path],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise AttachTimeout(f"sys.remote_exec on {target.pid} did not return within {timeout:g}s", "") from None
    except PermissionError as exc:
        # /proc/PID/exe of a non-dumpable process is closed to a caller without CAP_SYS_PTRACE,
        # and so is the process itself.
        raise PtraceRefused(f"cannot run the interpreter of process {target.pid} ({exc.filename}): {exc.strerror}",
                            PTRACE_HELP) from None
    finally:
        if local_copy is not None:
            local_copy.unlink(missing_ok=True)
            try:
                local_copy.parent.rmdir()
            except OSError:
                pass
    if proc.returncode == 0:
        return
    err = proc.stderr.strip().splitlines()
    last = err[-1] if err else f"exit code {proc.returncode}"
    if "Remote debugging is not enabled" in proc.stderr:
        raise RemoteDebugDisabled(
            f"process {target.pid} refuses remote debugging: {last}",
            "The target runs with PYTHON_DISABLE_REMOTE_DEBUG or -X disable-remote-debug, or was built "
            "--without-remote-debug. Use `--method gdb`, or restart it without that setting.",
        )
    if "PermissionError" in proc.stderr or "Operation not permitted" in proc.stderr:
        if os.geteuid() not in (0, target.uid):
            raise PermissionDenied(f"not allowed to attach to process {target.pid}: {last}",
                                   f"Run as the target's user ({target.user}) or root.")
        raise PtraceRefused(f"sys.remote_exec on {target.pid} was refused: {last}", PTRACE_HELP)
    raise AttachFailed(f"sys.remote_exec on {target.pid} failed: {last}", "\n".join(err[-10:]))
