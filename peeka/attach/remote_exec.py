"""Attach through ``sys.remote_exec`` (PEP 768), for targets on Python 3.14+.

The call must come from an interpreter of the target's own minor version: the CLI's own when it
is one (called in-process), else the target's own executable (``/proc/PID/exe``), started by
``RemoteExec`` before the agent files are shipped so that its start-up (6 ms idle, 15-20 ms on a
loaded machine) overlaps the shipping; it then waits for the script path on stdin. The script
path is checked in the caller's filesystem and opened in the target's, so for a target in another
mount namespace we put a copy at the same path on our side for as long as the call takes.
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
    PeekaError,
    PermissionDenied,
    PtraceRefused,
    RemoteDebugDisabled,
)
from ..process import TargetProcess

_CALL = "import sys; sys.remote_exec(int(sys.argv[1]), sys.stdin.readline().rstrip('\\n'))"


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


class RemoteExec:
    """One ``sys.remote_exec`` request: ``start`` it, then ``send`` the script path (or ``cancel``).

    ``send`` returns once the request is written; the script runs later, when the target's main
    thread next runs Python code. Callers poll for its effect.
    """

    def __init__(self, target: TargetProcess) -> None:
        self.target = target
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> RemoteExec:
        target = self.target
        if target.remote_debug_disabled:
            raise RemoteDebugDisabled(
                f"process {target.pid} was started with remote debugging disabled "
                "(PYTHON_DISABLE_REMOTE_DEBUG or -X disable-remote-debug)",
                "Use `--method gdb`, or restart the target without that setting.",
            )
        interpreter = caller_interpreter(target)
        if interpreter == sys.executable and getattr(sys, "is_remote_debug_enabled", lambda: False)():
            return self  # our own interpreter makes the call: nothing to start
        try:
            self.proc = subprocess.Popen(
                [interpreter, "-I", "-S", "-c", _CALL, str(target.pid)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        except PermissionError as exc:
            # /proc/PID/exe of a non-dumpable process is closed to a caller without CAP_SYS_PTRACE,
            # and so is the process itself.
            raise PtraceRefused(f"cannot run the interpreter of process {target.pid} ({exc.filename}): "
                                f"{exc.strerror}", PTRACE_HELP) from None
        return self

    def send(self, launch_path: str, timeout: float = 5.0) -> None:
        """Ask the target to run ``launch_path`` (a path in its namespace) at its next eval-breaker check."""
        target = self.target
        local_copy = None
        if not target.same_mount_namespace and not os.path.exists(launch_path):
            local_copy = Path(launch_path)
            local_copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(target.host_path(launch_path), local_copy)
        try:
            error = self._call(launch_path, timeout)
        except BaseException:
            self.cancel()
            raise
        finally:
            if local_copy is not None:
                local_copy.unlink(missing_ok=True)
                try:
                    local_copy.parent.rmdir()
                except OSError:
                    pass
        if error is not None:
            raise _diagnose(target, error)

    def cancel(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.communicate()

    def _call(self, launch_path: str, timeout: float) -> str | None:
        """None on success, else the error text (the caller's stderr, or the exception in-process)."""
        if self.proc is None:
            try:
                sys.remote_exec(self.target.pid, launch_path)  # type: ignore[attr-defined,unused-ignore]
            except Exception as exc:  # noqa: BLE001 - every failure is diagnosed below
                return f"{type(exc).__name__}: {exc}"
            return None
        try:
            _, stderr = self.proc.communicate(launch_path + "\n", timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cancel()
            raise AttachTimeout(f"sys.remote_exec on {self.target.pid} did not return within {timeout:g}s",
                                "") from None
        if self.proc.returncode == 0:
            return None
        return stderr.strip() or f"exit code {self.proc.returncode}"


def _diagnose(target: TargetProcess, error: str) -> PeekaError:
    lines = error.splitlines()
    last = lines[-1] if lines else error
    if "Remote debugging is not enabled" in error:
        return RemoteDebugDisabled(
            f"process {target.pid} refuses remote debugging: {last}",
            "The target runs with PYTHON_DISABLE_REMOTE_DEBUG or -X disable-remote-debug, or was built "
            "--without-remote-debug. Use `--method gdb`, or restart it without that setting.",
        )
    if "PermissionError" in error or "Operation not permitted" in error:
        if os.geteuid() not in (0, target.uid):
            return PermissionDenied(f"not allowed to attach to process {target.pid}: {last}",
                                    f"Run as the target's user ({target.user}) or root.")
        return PtraceRefused(f"sys.remote_exec on {target.pid} was refused: {last}", PTRACE_HELP)
    return AttachFailed(f"sys.remote_exec on {target.pid} failed: {last}", "\n".join(lines[-10:]))
