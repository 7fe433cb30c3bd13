"""Run a string of Python inside a live CPython through gdb, at a safe point.

    inject_with_gdb(target, code)  ->  GdbInjection(where="safe-point:_Py_HandlePending", ...)

The client does everything that needs no ptrace: it checks the target, reads symbol addresses
from the ELF files (``elf.py``), prepares a lean gdb data directory, then runs gdb with
``gdb_script.py`` and turns the script's marker lines into a result or a ``PeekaError``.
The recipe itself, and why each step is there, is in ``gdb_script.py``.

``code`` runs with ``PyRun_SimpleString``, i.e. in ``__main__``'s namespace; an exception in it is
printed on the target's stderr and gives ``return_code == -1``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import (
    PTRACE_HELP,
    AttachFailed,
    AttachTimeout,
    GdbMissing,
    NoSuchProcess,
    PeekaError,
    PtraceRefused,
    SymbolsMissing,
    UsageError,
)
from ..process import TargetProcess
from . import elf
from .gdb_binary import Gdb, find_gdb
from .sched import main_thread_runs

SCRIPT = Path(__file__).with_name("gdb_script.py")
MAX_CODE = 16 * 1024  # copied onto a thread's stack; bigger code belongs in a file the code execs

# How long to wait for a safe point before the fallback: a running main thread reaches its
# pending-call handler within milliseconds unless it is deep in C code; a main thread blocked in
# a system call may never, so we only give other threads a short chance to release the GIL.
WAIT_BLOCKED = 0.02
WAIT_RUNNING = 2.0
# Time left after the internal deadline for the fallback calls and the detach; gdb is killed
# only this much plus GRACE after the deadline, as a last resort.
RESERVE = 1.0
GRACE = 5.0
# How long to wait after gdb's detach for the main thread to have run once (see settle()).
SETTLE = 0.2

REQUIRED = (
    "Py_AddPendingCall",
    "PyCallable_Check",
    "PyGILState_Check",
    "PyGILState_Ensure",
    "PyGILState_Release",
    "PyGILState_GetThisThreadState",
    "PyErr_Occurred",
    "PyRun_SimpleString",
)
OPTIONAL = ("Py_IsFinalizing", "_Py_IsFinalizing")
# Where a thread holds the GIL and the interpreter is consistent: the eval loop's pending-call
# handler, C code checking for signals, a thread about to release the GIL.
SAFE_POINTS_311 = ("make_pending_calls",)  # 3.9-3.11; from 3.12 it runs inside _Py_HandlePending
SAFE_POINTS = (
    "_Py_HandlePending",
    "Py_MakePendingCalls",
    "_PyEval_MakePendingCalls",
    "PyErr_CheckSignals",
    "PyEval_SaveThread",
)
# Return addresses into these near the top of a thread's stack rule it out for the fallback:
# it may hold an allocator lock or be half way through taking or dropping the GIL.
GIL_CODE = ("take_gil", "drop_gil", "PyEval_RestoreThread", "PyEval_AcquireThread", "PyEval_AcquireLock", "PyGILState_Ensure", "PyGILState_Release", "_PyEval_ReInitThreads")  # fmt: skip
PY_ALLOCATOR = re.compile(
    r"^(_?Py(Object|Mem)_(Raw)?(Malloc|Calloc|Realloc|Free)|_PyObject_(Malloc|Calloc|Realloc|Free)"
    r"|_PyMem_Raw(Malloc|Calloc|Realloc|Free)|pymalloc_\w+|new_arena|allocate_from_new_pool|_PyMem_DebugRaw\w+)$"
)
PENDING_CALL_CODE = re.compile(r"(?i)pending_?call")


@dataclass
class GdbInjection:
    pid: int
    where: str  # "safe-point:<function>", "fallback-thread:<tid>" or "naive-thread:<tid>"
    thread: int  # the thread (LWP id) that ran the code
    return_code: int  # PyRun_SimpleString's: 0, or -1 when the code raised (traceback on the target's stderr)
    elapsed: float  # end to end, seconds: this call, from checks to gdb's exit
    # Seconds gdb held the target stopped, measured inside gdb: from just before ``attach`` to the
    # detach, minus the time it let the target run while waiting for a safe point. Includes our
    # inferior calls (the code's own run time): the interrupted thread makes no progress meanwhile.
    stopped: float
    waited: float  # seconds the target ran freely while gdb waited for a safe point
    # The main thread ran again after the detach, so signals reach it as before (see settle());
    # None when the kernel keeps no schedstat to tell.
    settled: bool | None = None
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)


def inject_with_gdb(
    target: TargetProcess, code: str, timeout: float = 10.0, started: GdbProcess | None = None
) -> GdbInjection:
    """Run ``code`` in ``target`` at a safe point (or on a safely blocked thread), via gdb
    (``started``: a gdb from ``start_gdb``, which loaded meanwhile)."""
    return _inject(target, code, timeout, naive=False, started=started)


def inject_naive_gdb(target: TargetProcess, code: str, timeout: float = 10.0) -> GdbInjection:
    """pyrasite's recipe, for comparison only: Ensure/Run/Release on whichever thread gdb stopped.

    Unsafe by design (it can interrupt a thread inside malloc or the GC); used by the benchmark.
    """
    return _inject(target, code, timeout, naive=True)


class GdbProcess:
    """gdb started ahead of its work: it loads (its own start-up, then its Python's) while the
    client reads symbols and ships the agent, and waits for its parameters on a pipe before it
    touches the target. Until ``run`` sends them, ``cancel`` ends it harmlessly."""

    def __init__(self, target: TargetProcess, naive: bool = False) -> None:
        self.began = time.monotonic()
        self.gdb = find_gdb()
        self.data_dir, self.needs_compile = gdb_data_dir(self.gdb)
        env = self.gdb.environment()
        read_end, self._params = os.pipe()
        env["PEEKA_GDB_PARAMS_FD"] = str(read_end)
        try:
            # A session of its own: a Ctrl-C in the user's terminal must not reach gdb mid-call.
            self.proc = subprocess.Popen(
                gdb_command(self.gdb, self.data_dir, target, naive),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                text=True,
                start_new_session=True,
                pass_fds=(read_end,),
            )
        except BaseException:
            os.close(self._params)
            raise
        finally:
            os.close(read_end)

    def send(self, params: dict[str, Any]) -> None:
        """Hand gdb its parameters (it attaches once it has them)."""
        data = json.dumps(params).encode()
        try:
            with os.fdopen(self._params, "wb") as pipe:
                pipe.write(data)
        except BrokenPipeError:
            pass  # gdb died before reading them: its output says why
        self._params = -1

    def cancel(self) -> None:
        """End a gdb that has not been sent its parameters (it has not attached: nothing to undo)."""
        if self._params >= 0:
            os.close(self._params)
            self._params = -1
            self.proc.kill()
            self.proc.communicate()


def start_gdb(target: TargetProcess) -> GdbProcess:
    """A gdb for ``inject_with_gdb(..., started=)``, loading while the caller does other work."""
    return GdbProcess(target)


def _inject(target: TargetProcess, code: str, timeout: float, naive: bool,
            started: GdbProcess | None = None) -> GdbInjection:
    began = time.monotonic()
    process = started
    try:
        if len(code.encode()) + 1 > MAX_CODE:
            raise UsageError(
                f"the code to inject is {len(code.encode())} bytes; at most {MAX_CODE - 1} go through gdb",
                "Write it to a file and inject `exec(open(PATH).read())` instead.",
            )
        check_target(target)
        version = target.require_python()
        if process is None:
            process = GdbProcess(target, naive)  # loads while the symbols are read
        deadline = began + timeout
        params: dict[str, Any] = {
            "pid": target.pid,
            "code": code,
            "mode": "naive" if naive else "safe",
            "deadline": deadline - RESERVE,
            "wait_blocked": WAIT_BLOCKED,
            "wait_running": min(WAIT_RUNNING, timeout / 3),
        }
        if not naive:
            params.update(symbol_params(target, version))
        if process.needs_compile:
            params["compile_data_dir"] = str(process.data_dir)
    except BaseException:
        if process is not None:
            process.cancel()
        raise
    events, output = _run_gdb(process, params, timeout=max(0.5, deadline - time.monotonic()) + GRACE)
    runs = next((e.get("runs") for e in events if e["event"] == "detached"), None)
    settled = settle(target, runs) if runs is not None else None
    result = _result(target, events, output, began if started is None else started.began)
    result.settled = settled
    return result


def settle(target: TargetProcess, runs: int, limit: float = SETTLE) -> bool:
    """Wait (briefly) until the main thread has been on a CPU since gdb's detach; False if it has not.

    PTRACE_DETACH wakes each thread with TIF_SIGPENDING set, and until the main thread runs and
    clears it the kernel routes process-directed signals to other threads (``wants_signal()``).
    A ``kill`` sent then to a target whose main thread sleeps in ``Thread.join`` lands on a busy
    worker; CPython's C handler there only flags the main thread, which sleeps on, so the Python
    handler waits until something else wakes it. A bare ptrace attach/detach of such a target
    (no gdb, no inferior call) followed at once by ``kill`` left 60 of 200 pings unanswered;
    waiting for this, none. The wait is nothing on an idle machine, a few ms under load.
    """
    end = time.monotonic() + limit
    while True:
        if main_thread_runs(target) != runs:  # it ran, or it is gone (None): nothing to wait for
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.0005)


# -- checks -----------------------------------------------------------------------------------
def check_target(target: TargetProcess) -> None:
    """Refuse early, with the fix, what would make gdb fail or hang."""
    status = _fresh_status(target)
    state = status.get("State", "?").split()[0]
    if state in ("Z", "X"):
        raise NoSuchProcess(f"process {target.pid} has exited (state {state})", "")
    if state in ("T", "t"):
        raise AttachFailed(
            f"process {target.pid} is stopped (state {state}); it cannot run code now",
            f"Resume it (`kill -CONT {target.pid}`) or detach the debugger that holds it, then retry.",
        )
    tracer = int(status.get("TracerPid", "0") or 0)
    if tracer:
        raise PtraceRefused(
            f"process {target.pid} is already traced by process {tracer} ({_comm(tracer)})",
            "Only one debugger can attach at a time: stop that one (gdb, strace, py-spy --native...) and retry.",
        )
    reason = _yama_refusal()
    if reason:
        raise PtraceRefused(reason, PTRACE_HELP)


def _fresh_status(target: TargetProcess) -> dict[str, str]:
    # TargetProcess.status is cached; the process may have changed (or exited) since.
    try:
        text = (target.proc / "status").read_text()
    except OSError:
        raise NoSuchProcess(f"process {target.pid} exited", "") from None
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _has_cap_sys_ptrace() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << 19))
    return os.geteuid() == 0


def _yama_refusal() -> str | None:
    try:
        scope = int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text())
    except (OSError, ValueError):
        return None  # no Yama: plain uid/capability rules apply
    if scope >= 3:
        return "ptrace is disabled on this machine (kernel.yama.ptrace_scope = 3)"
    if scope >= 1 and not _has_cap_sys_ptrace():
        return f"ptrace needs CAP_SYS_PTRACE here (kernel.yama.ptrace_scope = {scope})"
    return None


# -- symbols ----------------------------------------------------------------------------------
def symbol_params(target: TargetProcess, version: tuple[int, int]) -> dict[str, Any]:
    """Absolute addresses the gdb script needs, from the target's ELF files and maps."""
    binary = target.python_binary
    try:
        py = elf.load(target, binary)
        libc = elf.load_libc(target)
    except (OSError, elf.ElfError) as exc:
        raise SymbolsMissing(
            f"cannot read the symbols of {binary}: {exc}",
            "Peeka reads the interpreter's ELF symbol tables; check the file is readable.",
        ) from None
    if py.elf.machine not in (62, 183):
        raise AttachFailed(f"{binary} is for an architecture peeka's gdb injection does not support", "")
    addrs = {name: py.address(name) for name in (*REQUIRED, *OPTIONAL)}
    missing = [name for name in REQUIRED if addrs[name] is None]
    if missing:
        raise SymbolsMissing(
            f"{binary} lacks symbols peeka needs: {', '.join(missing)}",
            "Use an interpreter built with its dynamic symbols (every python.org, pyenv, distro and "
            "conda build has them); a statically linked, fully stripped binary cannot be attached.",
        )
    if addrs["Py_IsFinalizing"] is None:  # renamed in 3.13; same meaning
        addrs["Py_IsFinalizing"] = addrs.pop("_Py_IsFinalizing")
    names = (SAFE_POINTS_311 if version < (3, 12) else ()) + SAFE_POINTS
    safe_points = {name: addr for name in names if (addr := py.address(name)) is not None}
    forbidden = (
        elf.ranges(libc, elf.MALLOC_FAMILY) + elf.ranges(py, GIL_CODE) + py.ranges_matching(PY_ALLOCATOR)
    )
    interpreter_text = [[m.start, m.end] for m in target.maps if m.path == binary and "x" in m.perms]
    return {
        "addrs": {k: v for k, v in addrs.items() if v is not None},
        "interpreter_text": interpreter_text,
        "safe_points": safe_points,
        "nudge_unsafe": py.ranges_matching(PENDING_CALL_CODE),
        "stack_forbidden": forbidden,
    }


# -- gdb --------------------------------------------------------------------------------------
def gdb_data_dir(gdb: Gdb) -> tuple[Path, bool]:
    """A private gdb data directory holding only ``python/gdb/*.py``; (path, needs byte-compiling).

    gdb's own data directory auto-loads its command/function/printer packages at start; without
    them gdb's Python starts faster. Keyed by gdb's binary, so an upgraded gdb gets a fresh copy.
    """
    source = gdb.python_package
    st = os.stat(gdb.path)
    key = hashlib.sha1(repr((gdb.path, st.st_size, st.st_mtime_ns, str(source))).encode()).hexdigest()[:16]
    final = elf.cache_dir() / "gdb-data" / key
    package = final / "python" / "gdb"
    if not package.is_dir():
        if not source.is_dir():
            return Path("/usr/share/gdb"), False  # unknown layout: gdb's default works, only slower
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.with_name(f".{key}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "python" / "gdb").mkdir(parents=True)
        for item in source.glob("*.py"):
            shutil.copy2(item, staging / "python" / "gdb" / item.name)
        try:
            os.rename(staging, final)
        except OSError:  # another peeka won the race
            shutil.rmtree(staging, ignore_errors=True)
    return final, not (package / "__pycache__").is_dir()


def gdb_command(gdb: Gdb, data_dir: Path, target: TargetProcess, naive: bool) -> list[str]:
    # gdb reads the target's libraries as local files (never over a remote protocol); a target in
    # another mount namespace has them under /proc/PID/root.
    sysroot = "" if target.same_mount_namespace else f"/proc/{target.pid}/root"
    early = [
        "set auto-load off",
        f"set sysroot {sysroot}",
        "set libthread-db-search-path",  # no libthread_db: LWPs come from /proc, which is enough
        "set debug-file-directory",  # gdb still reads libc's symbols: skip the hunt for its debug file
        "set debuginfod enabled off",
    ]
    if not naive:
        early.append("set auto-solib-add off")  # no symbols at all: the client sends addresses
    args = [gdb.path, "-nx", "--readnever", "-batch", f"--data-directory={data_dir}"]
    for command in early:
        args += ["-iex", command]
    return [*args, "-x", str(SCRIPT)]


def _run_gdb(process: GdbProcess, params: dict[str, Any], timeout: float) -> tuple[list[dict[str, Any]], str]:
    """Send gdb its parameters and wait for it to finish; its marker events and its whole output."""
    proc = process.proc
    process.send(params)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Last resort only: the script bounds every step itself, and killing gdb while it has
        # breakpoints inserted would kill the target with SIGTRAP.
        proc.send_signal(signal.SIGKILL)
        output, _ = proc.communicate()
        raise AttachTimeout(
            f"gdb did not finish within {timeout:.1f}s and was killed",
            f"Check that process {params['pid']} still runs. gdb's last output:\n{_tail(output)}",
        ) from None
    except BaseException:
        # Interrupted (Ctrl-C): let gdb finish its bounded work and detach cleanly first.
        try:
            proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    events = []
    for line in output.splitlines():
        if line.startswith("PEEKA {"):
            try:
                events.append(json.loads(line[6:]))
            except ValueError:
                continue
    return events, output


def _tail(output: str, lines: int = 15) -> str:
    kept = [line for line in output.splitlines() if not line.startswith("PEEKA ")]
    return "\n".join(kept[-lines:]) or "(no output)"


def _result(target: TargetProcess, events: list[dict[str, Any]], output: str, started: float) -> GdbInjection:
    for event in events:
        if event["event"] == "result":
            return GdbInjection(
                pid=target.pid,
                where=event["where"],
                thread=event["thread"],
                return_code=event["rc"],
                elapsed=time.monotonic() - started,
                stopped=event["stopped"],
                waited=event["waited"],
                events=events,
            )
    raise _error(target, events, output)


def _error(target: TargetProcess, events: list[dict[str, Any]], output: str) -> PeekaError:
    error = next((e for e in events if e["event"] == "error" and e.get("kind") != "detach"), None)
    pid = target.pid
    if error is None:
        if "Operation not permitted" in output:
            return PtraceRefused(f"ptrace refused attaching to process {pid}", PTRACE_HELP)
        if "Python scripting is not supported" in output:
            return GdbMissing(
                "this gdb was built without Python support",
                "Install a gdb with Python (Debian's `gdb` package has it).",
            )
        return AttachFailed(
            f"gdb failed before attaching to process {pid}", f"gdb's output:\n{_tail(output)}"
        )
    kind, message = error["kind"], error["message"]
    if kind == "ptrace":
        return PtraceRefused(f"ptrace refused attaching to process {pid}: {message}", PTRACE_HELP)
    if kind == "exited":
        return NoSuchProcess(f"process {pid} exited: {message}", "")
    if kind in ("timeout", "no-safe-point", "gil-held"):
        return AttachTimeout(
            f"could not run code in process {pid}: {message}",
            "The target was left running, unharmed. Its threads are busy in native code or hold the "
            "GIL while blocked; retry later or with a longer --attach-timeout.",
        )
    return AttachFailed(
        f"gdb could not run code in process {pid}: {message}", f"gdb's output:\n{_tail(output)}"
    )
