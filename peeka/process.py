"""Facts about a target process, read from /proc without touching the process.

Paths inside the target (its temp dir, its socket) are given in the target's own mount namespace;
``host_path`` turns them into paths we can open, through ``/proc/PID/root``.
"""

from __future__ import annotations

import os
import pwd
import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .errors import (
    PTRACE_HELP,
    NoSuchProcess,
    NotPython,
    PeekaError,
    PermissionDenied,
    PtraceRefused,
    UnsupportedVersion,
)

SUPPORTED = ((3, 9), (3, 14))
_LIBPYTHON = re.compile(r"libpython(\d+)\.(\d+)[a-z]*\.so")
_EXE_VERSION = re.compile(r"python(\d+)\.(\d+)")


@dataclass
class Mapping:
    start: int
    end: int
    perms: str
    offset: int
    path: str


@dataclass
class TargetProcess:
    pid: int
    proc: Path = field(init=False)

    def __post_init__(self) -> None:
        self.proc = Path("/proc") / str(self.pid)
        if self.pid <= 0 or not self.proc.is_dir():
            raise NoSuchProcess(
                f"no process with PID {self.pid}",
                "Check the PID with `peeka ps` (Python processes visible to you) or `ps aux`.",
            )

    # -- identity
    @cached_property
    def status(self) -> dict[str, str]:
        try:
            text = (self.proc / "status").read_text()
        except FileNotFoundError:
            raise NoSuchProcess(f"process {self.pid} exited", "") from None
        out = {}
        for line in text.splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
        return out

    @property
    def uid(self) -> int:
        return int(self.status["Uid"].split()[1])  # effective uid

    @property
    def gid(self) -> int:
        return int(self.status["Gid"].split()[1])

    @property
    def user(self) -> str:
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return str(self.uid)

    @property
    def state(self) -> str:
        return self.status.get("State", "?").split()[0]

    @property
    def ns_pid(self) -> int:
        """The target's PID as it sees itself (differs inside a PID namespace)."""
        nspid = self.status.get("NSpid", "").split()
        return int(nspid[-1]) if nspid else self.pid

    @cached_property
    def cmdline(self) -> list[str]:
        try:
            raw = (self.proc / "cmdline").read_bytes()
        except OSError:
            return []
        return [a.decode(errors="replace") for a in raw.split(b"\0") if a]

    @cached_property
    def environ(self) -> dict[str, str]:
        try:
            raw = (self.proc / "environ").read_bytes()
        except PermissionError:
            raise self.permission_error("read its environment") from None
        except OSError:
            return {}
        env = {}
        for item in raw.split(b"\0"):
            key, sep, value = item.partition(b"=")
            if sep:
                env[key.decode(errors="replace")] = value.decode(errors="replace")
        return env

    @cached_property
    def exe(self) -> str:
        try:
            return os.readlink(self.proc / "exe")
        except PermissionError:
            raise self.permission_error("read its executable") from None
        except OSError:
            return ""

    @cached_property
    def maps(self) -> list[Mapping]:
        try:
            text = (self.proc / "maps").read_text()
        except PermissionError:
            raise self.permission_error("read its memory map") from None
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            parts = line.split(None, 5)
            if len(parts) < 5:
                continue
            start, end = (int(x, 16) for x in parts[0].split("-"))
            path = parts[5] if len(parts) > 5 else ""
            out.append(Mapping(start, end, parts[1], int(parts[2], 16), path))
        return out

    def permission_error(self, what: str) -> PeekaError:
        me = os.geteuid()
        if me == self.uid:
            # Same user and still refused: the kernel's ptrace access check said no (a
            # non-dumpable process, or root without CAP_SYS_PTRACE, or Yama).
            return PtraceRefused(f"cannot {what} of process {self.pid}: the kernel refuses ptrace access "
                                 "(the process may be non-dumpable, or CAP_SYS_PTRACE is missing)", PTRACE_HELP)
        return PermissionDenied(
            f"cannot {what} of process {self.pid} (owned by {self.user}, you are uid {me})",
            f"Run peeka as the target's user (`sudo -u {self.user} peeka ...`) or as root.",
        )

    # -- Python
    @cached_property
    def python_version(self) -> tuple[int, int] | None:
        """Major/minor of the interpreter in the target, or None when it is no CPython."""
        try:
            for m in self.maps:
                hit = _LIBPYTHON.search(os.path.basename(m.path))
                if hit:
                    return int(hit.group(1)), int(hit.group(2))
            exe = self.exe
        except (PermissionDenied, PtraceRefused):
            # Another user's process: only its command line is readable.
            exe = self.cmdline[0] if self.cmdline else ""
        hit = _EXE_VERSION.search(os.path.basename(exe.replace(" (deleted)", "")))
        if hit:
            return int(hit.group(1)), int(hit.group(2))
        return None

    @property
    def python_binary(self) -> str:
        """The file (executable or libpython) that holds the interpreter's symbols."""
        for m in self.maps:
            if _LIBPYTHON.search(os.path.basename(m.path)):
                return m.path
        return self.exe

    def require_python(self) -> tuple[int, int]:
        version = self.python_version
        if version is None:
            raise NotPython(
                f"process {self.pid} ({self.exe or '?'}) is not a CPython interpreter",
                "Peeka attaches to CPython 3.9-3.14 processes; `peeka ps` lists them.",
            )
        if not (SUPPORTED[0] <= version <= SUPPORTED[1]):
            raise UnsupportedVersion(
                f"process {self.pid} runs Python {version[0]}.{version[1]}; Peeka supports 3.9 to 3.14",
                "Upgrade the target's interpreter, or use py-spy for read-only stacks of older versions.",
            )
        return version

    # -- paths in the target's filesystem
    def host_path(self, target_path: str) -> str:
        """A path in the target's mount namespace, as we can reach it."""
        if self.same_mount_namespace:
            return target_path
        return str(self.proc / "root") + target_path

    @cached_property
    def same_mount_namespace(self) -> bool:
        try:
            return os.readlink(self.proc / "ns" / "mnt") == os.readlink("/proc/self/ns/mnt")
        except OSError:
            return True

    @cached_property
    def tmpdir(self) -> str:
        """The target's temp dir in its own namespace, as ``tempfile.gettempdir()`` there picks it."""
        try:
            env = self.environ
        except (PermissionDenied, PtraceRefused):
            env = {}
        for key in ("TMPDIR", "TEMP", "TMP"):
            value = env.get(key)
            if value and os.path.isabs(value) and os.path.isdir(self.host_path(value)):
                return value.rstrip("/") or "/"
        return "/tmp"

    @property
    def socket_path(self) -> str:
        """Where the target's agent listens, in the target's namespace."""
        return f"{self.tmpdir}/peeka_{self.ns_pid}.sock"

    @property
    def files_dir(self) -> str:
        """Where the agent's files live while attached, in the target's namespace."""
        return f"{self.tmpdir}/peeka-{self.ns_pid}"

    @property
    def remote_debug_disabled(self) -> bool:
        if self.environ.get("PYTHON_DISABLE_REMOTE_DEBUG"):
            return True
        args = self.cmdline
        for i, arg in enumerate(args):
            if arg == "-X" and i + 1 < len(args) and args[i + 1] == "disable-remote-debug":
                return True
            if arg == "-Xdisable-remote-debug":
                return True
        return False

    def agent_socket_exists(self) -> bool:
        """Whether a file is at the agent's socket path (a live agent's, or one a killed process left)."""
        try:
            return os.path.exists(self.host_path(self.socket_path))
        except OSError:
            return False

    def agent_socket_current(self) -> bool:
        """Whether an agent socket of *this* process is there: one made before the process started
        was left by a killed process whose pid this one reuses (its agent never removed it)."""
        try:
            made = os.stat(self.host_path(self.socket_path)).st_mtime
        except OSError:
            return False
        started = self.started_at()
        # The start is known to a clock tick, the boot time to ~10 ms: a tenth of a second's slack.
        return started is None or made >= started - 0.1

    def started_at(self) -> float | None:
        """When the process started, in seconds since the epoch (/proc/PID/stat's start after boot;
        the boot from /proc/uptime, not /proc/stat's btime, which is whole seconds)."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            ticks = int(stat[stat.rindex(")") + 2:].split()[19])  # field 22, starttime
            with open("/proc/uptime", "rb") as f:
                boot = time.time() - float(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return boot + ticks / os.sysconf("SC_CLK_TCK")


def python_processes() -> list[TargetProcess]:
    """Every CPython process visible in /proc (any version; callers say which they support)."""
    out = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            target = TargetProcess(int(entry))
            if target.python_version is not None:
                out.append(target)
        except Exception:
            continue
    return sorted(out, key=lambda t: t.pid)
