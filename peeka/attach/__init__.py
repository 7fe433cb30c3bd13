"""Attach: get an agent running inside a target and connect to it.

    attach(pid)   ->  an agent already there?  reuse it
                  ->  else ship the agent files into the target's filesystem (files.py)
                  ->  inject "run launch.py" with sys.remote_exec (3.14+, remote_exec.py)
                      or gdb at a safe point (3.9-3.13, or as the 3.14 fallback; gdb.py)
                  ->  poll for the agent's socket, then say hello

Every refusal is a PeekaError subclass with its own exit code and the fix in its help text.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import frontend
from ..client import AgentClient
from ..errors import AgentUnavailable, AttachFailed, AttachTimeout, PeekaError, PermissionDenied, UsageError
from ..process import TargetProcess
from . import files, gdb_binary
from .sched import BlockedWatch

METHODS = ("auto", "remote-exec", "gdb")
# How long a 3.14 target may take to reach its next eval-breaker check before we try gdb instead:
# a busy target answers in milliseconds, a main thread blocked in C never does. Should the
# request still run later, it finds the agent started (one bootstrap per shipped copy).
REMOTE_EXEC_WAIT = 0.5
# ...or less: a main thread that sleeps this long after the request without running once is
# blocked in C (a main thread sleeping between bursts of work runs again sooner).
BLOCKED_FOR = 0.15
POLL_FAST_FOR = 0.25  # seconds of 1 ms polling for the agent's socket, then 10 ms


class AgentMode(NamedTuple):
    """How an agent is started (``peeka attach`` options), fixed for its life: a running agent's mode
    is in its hello, and ``attach(..., mode=...)`` refuses an agent already running in another."""

    read_only: bool = False  # every client held to read-only
    audit_file: str | None = None  # the audit trail mirrored to this JSON-lines file (target's filesystem)
    audit_log: bool = False  # ... and to the target's logger peeka.audit

    @staticmethod
    def of_running(hello: Any) -> AgentMode:
        return AgentMode(bool(hello.read_only), hello.audit_file, bool(hello.audit_log))

    def describe(self) -> str:
        parts = ["read-only" if self.read_only else "read-write"]
        if self.audit_file:
            parts.append(f"audit file {self.audit_file}")
        if self.audit_log:
            parts.append("audit log peeka.audit")
        return ", ".join(parts)


class ClientRole(NamedTuple):
    """Who the attach's client is, for its requests (see peeka.client): None takes the running call's."""

    frontend: str | None = None
    read_only: bool | None = None


THE_CALLS_ROLE = ClientRole()  # the running peeka.frontend call's front end and read-only setting
ORDINARY = AgentMode()  # an agent that is not read-only and mirrors its trail nowhere


@dataclass
class AttachReport:
    pid: int
    method: str
    reused: bool
    seconds: float
    detail: str = ""


def check_access(target: TargetProcess) -> None:
    me = os.geteuid()
    if me != 0 and me != target.uid:
        raise PermissionDenied(
            f"process {target.pid} belongs to {target.user}; you are uid {me}",
            f"Run peeka as that user (`sudo -u {target.user} peeka ...`) or as root.",
        )
    if target.state in ("T", "t"):
        raise AttachFailed(
            f"process {target.pid} is stopped (state {target.state}); it cannot run the agent",
            f"Resume it (`kill -CONT {target.pid}`) or detach the debugger that holds it, then retry.",
        )
    if target.state == "Z":
        raise AttachFailed(f"process {target.pid} is a zombie", "It has exited; nothing to attach to.")


def try_connect(target: TargetProcess, timeout: float = 10.0, role: ClientRole = THE_CALLS_ROLE) -> AgentClient | None:
    if not target.agent_socket_exists():
        return None
    try:
        return AgentClient(target, timeout=timeout, frontend=role.frontend, read_only=role.read_only).open()
    except AgentUnavailable:
        return None


def _wait_for_agent(
    target: TargetProcess, deadline: float, timeout: float, final: float, blocked: BlockedWatch | None = None,
    role: ClientRole = THE_CALLS_ROLE,
) -> AgentClient | None:
    """Poll for the agent until ``deadline``; once the injected script is seen to run, until ``final``;
    with ``blocked``, give up as soon as it says the script cannot run (the main thread never wakes).

    Every millisecond at first (a stat and a failed open: nothing to the target), as an agent
    usually serves within 20-60 ms and a doubling delay made us notice it up to 30 ms late;
    every 10 ms once it is slow.
    """
    fast_until = time.monotonic() + POLL_FAST_FOR
    while True:
        client = try_connect(target, timeout, role)
        if client is not None:
            return client
        error = files.boot_error(target)
        if error is not None:
            files.remove(target)
            raise AttachFailed(
                f"the agent failed to start inside process {target.pid}",
                "The target is unharmed. Its error:\n" + error.strip(),
            )
        if blocked is not None and blocked() and not files.boot_started(target):
            return None
        if time.monotonic() >= deadline:
            if deadline < final and files.boot_started(target):
                deadline = final  # loading (slow when the target's threads hog the GIL): keep waiting
                continue
            return None
        time.sleep(0.001 if time.monotonic() < fast_until else 0.01)


def choose_method(target: TargetProcess, method: str, version: tuple[int, int]) -> list[str]:
    if method not in METHODS:
        raise UsageError(f"unknown attach method {method!r}", f"Use one of: {', '.join(METHODS)}.")
    if method == "remote-exec" and version < (3, 14):
        raise UsageError(
            f"--method remote-exec needs a Python 3.14+ target; process {target.pid} runs {version[0]}.{version[1]}",
            "Use `--method gdb` or `--method auto`.",
        )
    if method != "auto":
        return [method]
    if version >= (3, 14) and not target.remote_debug_disabled:
        return ["remote-exec", "gdb"]
    return ["gdb"]


def attach(pid: int, method: str = "auto", timeout: float = 10.0, role: ClientRole = THE_CALLS_ROLE,
           mode: AgentMode | None = None) -> tuple[AgentClient, AttachReport]:
    """An open client to PID's agent, attaching first when none runs there. ``mode``: the agent's
    (default: an ordinary agent); given explicitly, an agent already running in another mode is an
    error, as the mode is fixed for an agent's life (detach, then attach again)."""
    started = time.monotonic()
    target = TargetProcess(pid)
    version = target.require_python()
    client = try_connect(target, timeout, role)
    if client is not None:
        if mode is not None and mode.of_running(client.hello) != mode:
            running = mode.of_running(client.hello)
            client.close()
            raise UsageError(
                f"the agent in {pid} already runs {running.describe()}; you asked for {mode.describe()}",
                f"An agent's mode is set when it attaches: `peeka detach {pid}`, then attach again with the "
                "options you want (other clients' probes go with the detach).")
        return client, AttachReport(pid, "existing", True, time.monotonic() - started)
    check_access(target)
    candidates = choose_method(target, method, version)
    deadline = started + timeout
    errors: list[PeekaError] = []
    for i, name in enumerate(candidates):
        try:
            # After a sys.remote_exec request that did not run, it may still run later.
            pending = "remote-exec" in candidates[:i]
            detail = _inject(target, name, max(0.5, deadline - time.monotonic()), pending, mode or ORDINARY,
                             role.frontend or frontend.current().frontend)
        except PeekaError as exc:
            errors.append(exc)
            if i + 1 < len(candidates) and _can_fall_back(name):
                continue
            files.remove(target)
            raise
        last = i + 1 == len(candidates)
        wait_until = deadline if last else min(deadline, time.monotonic() + REMOTE_EXEC_WAIT)
        watch = None if last else BlockedWatch(target, BLOCKED_FOR)
        client = _wait_for_agent(target, wait_until, timeout, deadline, watch, role)
        if client is not None:
            return client, AttachReport(pid, name, False, time.monotonic() - started, detail)
        errors.append(AttachTimeout(f"{name}: the agent did not come up", ""))
    # A 3.14 remote_exec request may still run later, when the main thread wakes; leave the files
    # for it so it finds its script (the agent then starts and removes them on detach).
    if "remote-exec" not in candidates:
        files.remove(target)
    raise AttachTimeout(
        f"no agent came up in process {pid} within {timeout:g}s ({'; '.join(e.message for e in errors)})",
        "The target may be stopped in C code that never returns to Python. Retry with a longer "
        "`--attach-timeout`, or `--method gdb`; `peeka ps` shows which method applies.",
    )


def _can_fall_back(method: str) -> bool:
    return method == "remote-exec" and gdb_binary.available()


def _inject(target: TargetProcess, method: str, timeout: float, pending_remote_exec: bool = False,
            mode: AgentMode = ORDINARY, attached_by: str | None = None) -> str:
    """Ship the agent's files and have the target run them; returns how it was done."""
    if method == "remote-exec":
        from .remote_exec import RemoteExec

        request = RemoteExec(target).start()  # the caller interpreter starts up while we ship
        try:
            launch = files.ship(target, method, mode=mode._asdict(), attached_by=attached_by)
        except BaseException:
            request.cancel()
            raise
        request.send(launch, timeout=min(timeout, 10.0))
        return "sys.remote_exec"
    from .gdb import inject_with_gdb, start_gdb

    gdb = start_gdb(target)  # gdb loads (the longest step of a gdb attach) while we ship
    try:
        launch = files.ship(target, method, pending_remote_exec, mode._asdict(), attached_by)
    except BaseException:
        gdb.cancel()
        raise
    result = inject_with_gdb(target, files.injected_code(launch), timeout=timeout, started=gdb)
    return result.where


def detach(pid: int, timeout: float = 10.0) -> dict[str, object]:
    """Tell PID's agent to undo everything and go; clean up whatever it could not."""
    target = TargetProcess(pid)
    client = try_connect(target, timeout)
    if client is None:
        leftovers = target.agent_socket_exists() or (
            os.path.exists(target.host_path(target.files_dir)) and not files.only_pending_stub(target))
        files.remove(target)
        if target.agent_socket_exists():
            os.unlink(target.host_path(target.socket_path))
        return {"detached": False, "pid": pid, "reason": "no agent running", "cleaned_leftovers": leftovers}
    with client:
        result = client.request("detach")
    # The agent removed its socket and files; make sure, without racing its own cleanup for long.
    for _ in range(50):
        if not target.agent_socket_exists() and (not os.path.exists(target.host_path(target.files_dir))
                                                 or files.only_pending_stub(target)):
            break
        time.sleep(0.01)
    else:
        files.remove(target)
    return dict(result)
