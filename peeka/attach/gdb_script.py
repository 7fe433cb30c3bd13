"""Run a string of Python inside a live CPython from gdb, at a point where that is safe.

gdb runs this file with ``-x`` in its embedded Python (gdb 13: Python 3.11); it is never imported
by peeka itself. Parameters come as JSON on the pipe ``$PEEKA_GDB_PARAMS_FD`` names (built by
``gdb.py``: absolute addresses, the code, deadlines): gdb starts while the client still prepares
them, and nothing is attached before they arrive (no parameters: the client gave up; exit). Progress and results go to stdout as marker lines,
``PEEKA {"event": ...}``, which the client turns into a result or a diagnosis.

The recipe (see REFERENCE.md, "A safe-point gdb injection"):

1. attach (no symbols are loaded; the client computed every address from the ELF files);
2. queue a harmless pending call, ``Py_AddPendingCall(&PyCallable_Check, 0)``, so the main
   thread's eval loop soon enters its pending-call handler;
3. break on the true safe points (pending-call handlers, ``PyErr_CheckSignals``,
   ``PyEval_SaveThread``), continue, and stop ourselves by a deadline signal if none comes;
4. at a hit that holds the GIL with no exception set, copy the code onto the thread's stack
   below ``$sp`` (no malloc in the target), call ``PyRun_SimpleString`` there, restore ``$sp``;
5. no hit in time (main thread blocked in C): pick a thread blocked in a system call, outside the
   allocator and the GIL's own code, without the GIL, and run the code with
   ``PyGILState_Ensure``/``PyRun_SimpleString``/``PyGILState_Release``;
6. delete breakpoints and detach, whatever happened.

``mode: "naive"`` instead runs pyrasite's three calls on whichever thread gdb stopped, with the
code as a string literal (gdb mallocs it in the target): the baseline for the benchmark.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import gdb  # type: ignore[import-not-found,import-untyped,unused-ignore]  # gdb-only module

T0 = time.monotonic()


def _read_params() -> dict[str, Any]:
    fd = int(os.environ["PEEKA_GDB_PARAMS_FD"])
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    if not chunks:
        os._exit(0)  # cancelled before the client sent anything: nothing was touched
    return json.loads(b"".join(chunks))


P = _read_params()
PARAMS_AT = time.monotonic()
PID: int = P["pid"]
A: dict[str, int] = P.get("addrs", {})

RED_ZONE = 128  # x86-64 System V: the 128 bytes below $sp belong to the interrupted function
STACK_SCAN = 1024  # bytes above $sp searched for return addresses into malloc / the GIL's code
CALL_SIGNALS_STOP = "SIGSEGV SIGBUS SIGILL SIGFPE SIGABRT"  # our own calls faulting: unwind them


def emit(event: str, **fields: object) -> None:
    fields = {"event": event, "t": round(time.monotonic() - T0, 6), **fields}
    print("PEEKA " + json.dumps(fields), flush=True)


class Fatal(Exception):
    """Stop the injection; ``kind`` tells the client which error to raise."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def run(command: str) -> str:
    return gdb.execute(command, to_string=True) or ""


# -- time the target spends stopped -----------------------------------------------------------
class StopClock:
    """Sums the intervals in which gdb holds the target stopped (attach .. continue, stop .. detach).

    Time inside our own inferior calls counts as stopped: the target's code makes no progress on
    that thread even though gdb lets its other threads run meanwhile.
    """

    def __init__(self) -> None:
        self.total = 0.0
        self.since: float | None = None
        self.waited = 0.0  # time the target ran freely while we waited for a safe point

    def stopped(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def running(self) -> None:
        if self.since is not None:
            self.total += time.monotonic() - self.since
            self.since = None

    def value(self) -> float:
        extra = time.monotonic() - self.since if self.since is not None else 0.0
        return self.total + extra


CLOCK = StopClock()


# -- the deadline signal ----------------------------------------------------------------------
class Deadline:
    """Stops a ``continue`` after ``seconds`` by sending SIGURG to the target's PID.

    A timer thread in gdb's Python (gdb releases the GIL while the target runs) signals the PID,
    not the process group (gdb's own interrupt would hit the group). SIGURG is ignored by default
    in the target, and gdb is told ``stop print nopass`` for it while waiting, ``nostop nopass``
    during our calls: a signal that stops gdb during an inferior call makes it abandon the call.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.armed = False
        self.fired = False
        self.timer: threading.Timer | None = None

    def arm(self, seconds: float) -> None:
        with self.lock:
            self.armed, self.fired = True, False
        self.timer = threading.Timer(max(seconds, 0.0), self._fire)
        self.timer.daemon = True
        self.timer.start()

    def _fire(self) -> None:
        with self.lock:
            if self.armed:
                self.armed, self.fired = False, True
                try:
                    os.kill(PID, signal.SIGURG)
                except OSError:
                    pass

    def cancel(self) -> None:
        # Under the lock: once this returns, no signal from this timer can still be sent.
        with self.lock:
            self.armed = False
        if self.timer is not None:
            self.timer.cancel()


DEADLINE = Deadline()


def waiting_signals() -> None:
    run("handle SIGURG stop print nopass")  # "noprint" would imply "nostop"


def calling_signals() -> None:
    run("handle SIGURG nostop noprint nopass")


# -- stops ------------------------------------------------------------------------------------
LAST_STOP: list[object] = []
EXITED: list[object] = []


def _on_stop(event: object) -> None:
    LAST_STOP.append(event)


def _on_exit(event: object) -> None:
    EXITED.append(event)


def resume() -> tuple[str, int | None]:
    """Continue until the next stop: ("breakpoint", number), ("deadline", None), ("signal", None)."""
    LAST_STOP.clear()
    CLOCK.running()
    started = time.monotonic()
    try:
        run("continue")
    finally:
        CLOCK.stopped()
        CLOCK.waited += time.monotonic() - started
    if EXITED or gdb.selected_inferior().pid == 0:
        raise Fatal("exited", f"process {PID} exited while gdb waited for a safe point")
    event = LAST_STOP[-1] if LAST_STOP else None
    if isinstance(event, gdb.BreakpointEvent):
        return "breakpoint", event.breakpoints[0].number
    if isinstance(event, gdb.SignalEvent) and event.stop_signal == "SIGURG":
        return "deadline", None
    return "signal", None


# -- inferior calls ---------------------------------------------------------------------------
def call_int(expr: str) -> int:
    return int(gdb.parse_and_eval(expr))


def fn(name: str, signature: str) -> str:
    """A cast function-pointer expression: gdb has no symbols, so every call names its types."""
    ret, _, args = signature.partition("|")
    return f"(({ret} (*)({args})) {A[name]:#x})"


def current_thread_id() -> int:
    return int(gdb.selected_thread().ptid[1])


def sp() -> int:
    """Frame 0's stack pointer, whichever frame gdb has selected."""
    return int(gdb.newest_frame().read_register("sp")) & 0xFFFFFFFFFFFFFFFF


def select_frame0() -> None:
    gdb.newest_frame().select()


def set_sp(value: int) -> bool:
    """Write frame 0's $sp; True when it reads back.

    Without unwind info gdb's idea of the outer frames is guesswork: after a register write (or an
    inferior call) it re-selects "the same" frame by id and may land on a bogus outer one, where
    ``$sp`` names something else entirely. So always select frame 0 right before writing, and
    read back through frame 0, never through ``$sp``.
    """
    select_frame0()
    run(f"set $sp = {value:#x}")
    select_frame0()
    return sp() == value


def on_stack(code: bytes) -> tuple[int, int, int]:
    """Copy ``code`` below $sp (past the red zone) and move $sp below it; returns (orig, new, addr)."""
    orig = sp()
    addr = (orig - RED_ZONE - 64 - len(code)) & ~0xF
    gdb.selected_inferior().write_memory(addr, code)
    new = (addr - 64) & ~0xF
    if not set_sp(new):
        # A function entry with a wrong $sp returns to garbage: put it back at any cost.
        if not set_sp(orig):
            raise Fatal("call-failed", f"could not restore the stack pointer to {orig:#x}")
        raise Fatal("call-failed", "could not move the stack pointer")
    return orig, new, addr


def restore_sp(orig: int, new: int, pc: int) -> None:
    """Put frame 0's $sp back after our calls, once sure frame 0 is where we left it."""
    now_sp, now_pc = sp(), gdb.newest_frame().pc()
    if now_sp != new or now_pc != pc:
        # Not the state we left: writing $sp now would corrupt it further; say so rather than guess.
        raise Fatal("call-failed", f"unexpected frame after the call (sp {now_sp:#x}, pc {now_pc:#x})")
    if not set_sp(orig):
        raise Fatal("call-failed", "could not restore the stack pointer")


def run_code_here(with_gil_state: bool) -> int:
    """PyRun_SimpleString(code) on the selected thread, the code on its own stack.

    ``with_gil_state``: wrap in PyGILState_Ensure/Release (for a thread that does not hold the
    GIL); otherwise the thread already holds it (a safe point).
    """
    code = P["code"].encode() + b"\0"
    pc = gdb.newest_frame().pc()
    orig, new, addr = on_stack(code)
    try:
        state = None
        if with_gil_state:
            state = call_int(f"{fn('PyGILState_Ensure', 'int|void')}()")
        try:
            rc = call_int(f"{fn('PyRun_SimpleString', 'int|const char *')}((const char *) {addr:#x})")
        finally:
            if state is not None:
                gdb.parse_and_eval(f"{fn('PyGILState_Release', 'void|int')}({state})")
    finally:
        restore_sp(orig, new, pc)
    return rc


# -- the safe-point path ----------------------------------------------------------------------
# System calls made by the allocator (lock waits, memory mapping) and by the GIL's code (futex
# waits on its condition variable and mutex), per architecture. A thread blocked in any other call
# (select, poll, nanosleep, read, pause, ...) is inside neither.
# Numbers: futex, futex_waitv, mmap, mprotect, munmap, brk, mremap, madvise, sched_yield.
ALLOCATOR_OR_LOCK_SYSCALLS = {
    "x86-64": {202, 449, 9, 10, 11, 12, 25, 28, 24},
    "aarch64": {98, 449, 222, 226, 215, 214, 216, 233, 124},
}


def arch() -> str:
    name = gdb.selected_inferior().architecture().name()
    return "x86-64" if "x86-64" in name else "aarch64" if "aarch64" in name else name


def syscall_number() -> int | None:
    """The system call the selected thread is blocked in (its pc right after one), else None."""
    pc = gdb.newest_frame().pc()
    try:
        if arch() == "x86-64":
            number = int(gdb.newest_frame().read_register("orig_rax"))
            before = bytes(gdb.selected_inferior().read_memory(pc - 2, 2))
            return number if before == b"\x0f\x05" and number >= 0 else None
        if arch() == "aarch64":
            if bytes(gdb.selected_inferior().read_memory(pc - 4, 4)) == b"\x01\x00\x00\xd4":
                return int(gdb.newest_frame().read_register("x8"))
    except gdb.error:
        return None
    return None


def nudge() -> None:
    """Queue a harmless pending call so the main thread's eval loop reaches its handler.

    Called on a thread that is not itself inside the pending-call code (it could hold the
    pending-calls lock there and the call would deadlock on it).
    """
    unsafe = P.get("nudge_unsafe", [])
    for thread in ordered_threads():
        thread.switch()
        pc = gdb.newest_frame().pc()
        hit = next((name for start, end, name in unsafe if start <= pc < end), None)
        if hit:
            emit("nudge-skip", thread=current_thread_id(), inside=hit)
            continue
        rc = call_int(
            f"{fn('Py_AddPendingCall', 'int|void *, void *')}((void *) {A['PyCallable_Check']:#x}, (void *) 0)"
        )
        emit("nudge", thread=current_thread_id(), rc=rc)
        return
    emit("nudge-skip", thread=None, inside="every thread")


def ordered_threads() -> list[Any]:
    """The main thread first (its LWP id is the PID), then the others by id."""
    threads = list(gdb.selected_inferior().threads())
    return sorted(threads, key=lambda t: (t.ptid[1] != PID, t.ptid[1]))


@contextlib.contextmanager
def this_thread_only() -> Iterator[None]:
    """Resume only the selected thread during a call: fewer threads to resume and stop again.

    Only for probes that take no lock (thread-local and global reads); anything else runs with
    scheduler-locking off, or it could wait forever on a lock a stopped thread holds.
    """
    run("set scheduler-locking on")
    try:
        yield
    finally:
        run("set scheduler-locking off")


def safe_point_ok() -> str | None:
    """None when the stopped thread may run Python code now, else the reason it may not."""
    with this_thread_only():
        return _safe_point_ok()


def _safe_point_ok() -> str | None:
    if call_int(f"{fn('PyGILState_Check', 'int|void')}()") != 1:
        return "no-gil"
    # Only now: on 3.12+ PyErr_Occurred dereferences the thread state, NULL without the GIL.
    if call_int(f"(long) {fn('PyErr_Occurred', 'void *|void')}()") != 0:
        return "exception-set"
    if "Py_IsFinalizing" in A and call_int(f"{fn('Py_IsFinalizing', 'int|void')}()") != 0:
        return "finalizing"
    return None


def wait_for_safe_point(bp_names: dict[int, str], wait: float) -> str | None:
    """Continue until a usable safe point; returns its name (code already run) or None on timeout."""
    breakpoints = [b for b in gdb.breakpoints() if b.number in bp_names]
    end = time.monotonic() + wait
    while True:
        remaining = end - time.monotonic()
        if remaining <= 0:
            return None
        for b in breakpoints:
            b.enabled = True
        waiting_signals()
        DEADLINE.arm(remaining)
        try:
            kind, number = resume()
        finally:
            DEADLINE.cancel()
            calling_signals()
        # No breakpoint may be inserted while we call into the target: a hit inside our own call
        # would leave gdb stopped in the middle of it.
        for b in breakpoints:
            b.enabled = False
        if kind == "deadline":
            emit("deadline", waited=round(CLOCK.waited, 6))
            return None
        if kind != "breakpoint" or number not in bp_names:
            emit("other-stop", kind=kind)
            continue
        name = bp_names[number]
        why = safe_point_ok()
        if why is not None:
            emit("skip", at=name, thread=current_thread_id(), reason=why)
            continue
        emit("hit", at=name, thread=current_thread_id())
        RESULT["rc"] = run_code_here(with_gil_state=False)
        RESULT["thread"] = current_thread_id()
        return name


# -- the fallback path ------------------------------------------------------------------------
class StackCheck:
    """Is a blocked thread inside forbidden code (malloc family, take_gil, ...)?

    gdb cannot unwind here (no symbols, and ``--readnever`` skips .eh_frame too), so the stack is
    read as words. Stale return addresses lie about in unused frame slots (a ``drop_gil`` return
    address left from the call just before ``select``, say), so only words up to the first
    address in the interpreter's own code count: those belong to the C library frames on top of
    the stack, and that first address is the live return into the interpreter function that
    entered the C library (``take_gil`` when waiting for the GIL). The allocator and the GIL only
    ever block in a few system calls; in any other one the thread is inside neither.
    """

    def __init__(self, forbidden: list[list[object]], interpreter: list[list[int]]) -> None:
        self.ranges = sorted((int(s), int(e), str(n)) for s, e, n in forbidden)  # type: ignore[call-overload]
        self.starts = [r[0] for r in self.ranges]
        self.interpreter = [(int(s), int(e)) for s, e in interpreter]

    def find(self, syscall: int) -> str | None:
        if syscall not in ALLOCATOR_OR_LOCK_SYSCALLS.get(arch(), ()):
            return None
        data = b""
        for size in (STACK_SCAN, 512, 256, 64):  # the stack may end closer than STACK_SCAN
            try:
                data = bytes(gdb.selected_inferior().read_memory(sp(), size))
                break
            except gdb.MemoryError:
                continue
        for i in range(0, len(data) - 7, 8):
            word = int.from_bytes(data[i : i + 8], "little")
            j = bisect.bisect_right(self.starts, word) - 1
            if j >= 0 and word < self.ranges[j][1]:
                return self.ranges[j][2]
            if any(start <= word < end for start, end in self.interpreter):
                return None
        return None


def fallback() -> str:
    """Run the code on a thread blocked in a system call that may safely take the GIL."""
    check = StackCheck(P.get("stack_forbidden", []), P.get("interpreter_text", []))
    candidates: list[int] = []
    holders: list[int] = []
    for thread in ordered_threads()[: P.get("max_threads", 64)]:
        thread.switch()
        select_frame0()
        tid = current_thread_id()
        syscall = syscall_number()
        if syscall is None:
            emit("reject", thread=tid, reason="running")
            continue
        inside = check.find(syscall)
        if inside:
            emit("reject", thread=tid, reason=f"near {inside}")
            continue
        with this_thread_only():
            tstate = call_int(f"(long) {fn('PyGILState_GetThisThreadState', 'void *|void')}()")
            holds_gil = tstate != 0 and call_int(f"{fn('PyGILState_Check', 'int|void')}()") == 1
        if tstate == 0:
            emit("reject", thread=tid, reason="no thread state")
            continue
        if holds_gil:
            # Blocked in C while holding the GIL: PyGILState_Ensure elsewhere would wait for it.
            holders.append(tid)
            emit("reject", thread=tid, reason="holds the GIL while blocked")
            continue
        candidates.append(tid)
    if holders:
        raise Fatal(
            "gil-held",
            f"thread {holders[0]} holds the GIL while blocked in a system call; "
            "no thread can run Python code until it returns",
        )
    if not candidates:
        raise Fatal("no-safe-point", "no thread is at a point where Python code can run safely")
    tid = candidates[0]
    for thread in gdb.selected_inferior().threads():
        if thread.ptid[1] == tid:
            thread.switch()
    emit("fallback", thread=tid)
    RESULT["rc"] = run_code_here(with_gil_state=True)
    RESULT["thread"] = tid
    return f"fallback-thread:{tid}"


# -- the naive recipe (benchmark baseline) ------------------------------------------------------
def naive() -> str:
    tid = current_thread_id()
    literal = c_literal(P["code"])  # gdb copies a string literal into the target with malloc
    state = call_int("((int (*)(void)) PyGILState_Ensure)()")
    RESULT["rc"] = call_int(f"((int (*)(const char *)) PyRun_SimpleString)({literal})")
    gdb.parse_and_eval(f"((void (*)(int)) PyGILState_Release)({state})")
    RESULT["thread"] = tid
    return f"naive-thread:{tid}"


def c_literal(text: str) -> str:
    out = []
    for byte in text.encode():
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\?' else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


# -- main -------------------------------------------------------------------------------------
RESULT: dict[str, object] = {}


def attach() -> None:
    CLOCK.stopped()  # from here on the target may be stopped (gdb stops each thread as it attaches)
    started = time.monotonic()
    try:
        run(f"attach {PID}")
    except gdb.error as exc:
        text = str(exc)
        if "Operation not permitted" in text or "EPERM" in text:
            raise Fatal("ptrace", text) from None
        if "No such process" in text or "ESRCH" in text:
            raise Fatal("exited", text) from None
        raise Fatal("attach", text) from None
    if gdb.selected_inferior().pid != PID:
        raise Fatal("attach", f"gdb did not attach to {PID}")
    emit(
        "attached",
        seconds=round(time.monotonic() - started, 6),
        threads=len(gdb.selected_inferior().threads()),
    )


def settings() -> None:
    for command in (
        "set pagination off",
        "set confirm off",
        "set width 0",
        "set height 0",
        "set print thread-events off",
        "set print inferior-events off",
        "set breakpoint pending off",
        "set unwindonsignal on",  # a fault inside our call: restore the thread, keep the target alive
        "set may-call-functions on",
    ):
        try:
            run(command)
        except gdb.error:
            pass


def signal_settings() -> None:
    # The target's own signals pass through without stopping gdb (each stop would abandon an
    # inferior call); faults still stop, so that unwindonsignal can undo a call that faults.
    run("handle all nostop noprint pass")
    run("handle SIGINT nostop noprint pass")
    run(f"handle {CALL_SIGNALS_STOP} stop print")
    calling_signals()
    # memray PR #966: scheduler-locking on deadlocks when a call needs a lock another thread holds.
    run("set scheduler-locking off")


def main() -> str:
    # CLOCK_MONOTONIC is system-wide: the client compares it with its own. T0: gdb's Python runs this
    # script; params: the client's parameters arrived (it started gdb before preparing them).
    emit("start", monotonic=T0, params=round(PARAMS_AT - T0, 6))
    settings()
    attach()
    signal_settings()
    if P.get("mode") == "naive":
        return naive()

    main_blocked = False
    for thread in ordered_threads()[:1]:
        thread.switch()
        main_blocked = syscall_number() is not None
    nudge()
    bp_names: dict[int, str] = {}
    for name, addr in P["safe_points"].items():
        bp = gdb.Breakpoint(f"*{int(addr):#x}", internal=True)
        bp.enabled = False
        bp_names[bp.number] = name
    # A main thread blocked in a system call will probably not reach a safe point soon: wait
    # briefly (threads releasing the GIL may still hit one), then use the fallback.
    wait = P["wait_blocked"] if main_blocked else P["wait_running"]
    wait = min(wait, max(0.0, P["deadline"] - time.monotonic()))
    emit("waiting", seconds=round(wait, 6), main_blocked=main_blocked, breakpoints=sorted(bp_names.values()))
    try:
        where = wait_for_safe_point(bp_names, wait)
    finally:
        for bp in gdb.breakpoints():
            if bp.number in bp_names:
                bp.delete()
    if where is not None:
        return f"safe-point:{where}"
    if time.monotonic() > P["deadline"]:
        raise Fatal("timeout", "the injection's deadline passed before a safe point was found")
    return fallback()


def main_thread_runs() -> int | None:
    """How many times the main thread has been on a CPU (schedstat's third field), None if unknown.

    Read while it is stopped; the client waits until the count moves after the detach (``gdb.settle``).
    """
    try:
        with open(f"/proc/{PID}/task/{PID}/schedstat") as f:
            return int(f.read().split()[2])
    except (OSError, IndexError, ValueError):
        return None


def cleanup() -> None:
    DEADLINE.cancel()
    for bp in gdb.breakpoints() or ():
        try:
            bp.delete()
        except (gdb.error, RuntimeError):
            pass
    inferior = gdb.selected_inferior()
    runs = None
    if inferior.pid:
        runs = main_thread_runs()
        try:
            run("detach")
        except gdb.error as exc:
            emit("error", kind="detach", message=str(exc))
    CLOCK.running()
    emit("detached", stopped=round(CLOCK.value(), 6), runs=runs)


def compile_data_dir() -> None:
    """Byte-compile gdb's private data directory once, with gdb's own Python (first run only)."""
    path = P.get("compile_data_dir")
    if path:
        import compileall

        compileall.compile_dir(path, quiet=1)


if __name__ == "__main__":
    gdb.events.stop.connect(_on_stop)
    gdb.events.exited.connect(_on_exit)
    try:
        where = main()
        cleanup()
        emit(
            "result",
            where=where,
            thread=RESULT.get("thread"),
            rc=RESULT.get("rc"),
            stopped=round(CLOCK.value(), 6),
            waited=round(CLOCK.waited, 6),
        )
    except Fatal as exc:
        cleanup()
        emit("error", kind=exc.kind, message=exc.message)
    except Exception as exc:  # a gdb.error from a call, or a bug here: report, never hang
        cleanup()
        emit(
            "error",
            kind="internal",
            message=f"{type(exc).__name__}: {exc}",
            trace=traceback.format_exc()[-2000:],
        )
    compile_data_dir()
    # Detached: nothing of gdb's is left in the target. Skip gdb's own teardown (10-15 ms).
    sys.stdout.flush()
    os._exit(0)
