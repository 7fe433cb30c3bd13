"""thread: every thread of the target with its Python stack, optionally with each frame's locals.

Args: ``thread_id`` (ident or native id; all threads when absent), ``all`` (include the agent's own
threads, hidden by default), ``depth`` (0 = no locals, 1-4 = locals rendered to that depth),
``max_frames`` (per thread, innermost kept), ``max_size`` (per local value, default 512).

Result: ``{"threads": [...], "count": n, "agent_threads_hidden": k}``; each thread has ident,
native_id, name, daemon, alive, is_main, is_agent, state, cpu_seconds, cpu_percent (see below;
None off Linux), ``frames`` and
``frames_omitted``. Frames run **innermost first** (index 0 is the code running now, like a Java
stack dump): file, line, function, module, and when depth > 0 ``locals`` (name -> value node, see
values.py), ``locals_omitted`` (more than 50) or ``locals_error``.
Threads that run no Python code right now are listed with no frames.

Busy threads: ``interval_ms`` (0-60000) measures each thread's CPU over that interval (from its
CPU clock, threadids.py, to the nanosecond; /proc/self/task/TID/stat where there is none; matched
by native id) before the stacks are taken; ``top`` (N > 0) keeps
the N busiest (by cpu_percent, or by cpu_seconds without an interval), busiest first.
Every thread then also has ``state`` (the kernel's: R running, S sleeping, D disk wait, ...; None
when unknown) and ``cpu_percent`` (100 = one core busy for the whole interval; None without an
interval). The result adds ``interval_s`` (measured, None without an interval) and
``native_threads``: OS threads not matched to a Python thread (C libraries' threads, threads started
with ``_thread``), each ``{native_id, name, state, cpu_seconds, cpu_percent}``.

Blocked threads: ``blocked`` (bool) adds ``blocked``, one entry per thread waiting in a lock or a
threading primitive (see locks.py): ``{ident, native_id, name, kind, name_of_object, lock, holder,
at}`` where kind is lock/condition/event/semaphore/barrier/join, ``lock`` is ``{id, type, locked,
owner, count, global_name}`` (owner and count known for an RLock), ``holder`` is
``{ident, native_id, name, inferred, at, acquired_in}`` or None, and ``at``/``acquired_in`` are
``{file, line, function}``. An RLock names its owner (inferred false); a plain Lock records none,
so its holder is inferred (locks.infer_holder): the one other thread, not waiting for it, with
it in a frame's locals, else the one naming it as a global (None when that is not one thread).
And ``deadlocks``: each a cycle of threads, every one waiting for a lock the next one holds,
``{threads: [names], inferred (some holder was inferred), edges: [{ident, name, waits_for (lock
facts + name_of_object), held_by, held_by_name, inferred, at}]}``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from .. import compat, locks, origins, procfs, threadids, values
from ..streams import CommandError, int_arg

DEFAULT_MAX_FRAMES = 64
MAX_FRAMES = 1000
MAX_LOCALS = 50  # per frame
LOCALS_MAX_SIZE = 512  # per value by default: a stack of 64 frames adds up
TOTAL_LOCALS_BUDGET = 4 << 20  # characters of locals per reply, over all threads

MAX_INTERVAL_MS = 60_000


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Dict[str, Any]:
    thread_id = args.get("thread_id")
    if thread_id is not None and type(thread_id) is not int:
        raise CommandError(
            "thread_id must be an integer (a thread's ident or native id), got %r" % (thread_id,)
        )
    include_agent = bool(args.get("all", False))
    depth = int_arg(args, "depth", 0, 0, values.MAX_DEPTH)
    max_frames = int_arg(args, "max_frames", DEFAULT_MAX_FRAMES, 1, MAX_FRAMES)
    max_size = int_arg(args, "max_size", LOCALS_MAX_SIZE, values.MIN_MAX_SIZE, values.MAX_MAX_SIZE)
    interval_ms = int_arg(args, "interval_ms", 0, 0, MAX_INTERVAL_MS)
    busiest = int_arg(args, "top", 0, 0, 100_000)
    blocked = bool(args.get("blocked", False))

    # The interval is slept here, in this client's reader thread: the host's threads run on.
    before = procfs.all_task_stats() if interval_ms else {}
    # CPU to the nanosecond from each thread's CPU clock (threadids), where /proc counts 10 ms ticks:
    # over a 200 ms interval a tick is 5% of a core.
    clocks_before = _clock_readings(before) if interval_ms else {}
    started = time.monotonic()
    if interval_ms:
        compat.original("time", "sleep")(interval_ms / 1000.0)  # the real one, also under gevent
    after = procfs.all_task_stats()
    clocks_after = _clock_readings(after)
    elapsed = time.monotonic() - started if interval_ms else None

    def cpu_of(native_id: Optional[int]) -> Tuple[Optional[str], Optional[float], Optional[float]]:
        stat = after.get(native_id) if native_id is not None else None
        if stat is None:
            return None, None, None
        seconds = clocks_after.get(native_id, stat.cpu_seconds)
        percent = None
        if elapsed and native_id in clocks_before and native_id in clocks_after:
            percent = round(max(0.0, clocks_after[native_id] - clocks_before[native_id]) / elapsed * 100, 1)
        elif elapsed and native_id in before:
            percent = round(max(0.0, stat.cpu_seconds - before[native_id].cpu_seconds) / elapsed * 100, 1)
        return stat.state, round(seconds, 3), percent

    frames = compat.current_frames()
    by_ident: Dict[int, Any] = {}
    for t in threading.enumerate():
        ident = t.ident
        if ident is not None:
            by_ident[ident] = t
    if compat.threading_is_patched():
        # gevent/eventlet: threading's records are greenlets (their idents are not OS threads'); this
        # lists OS threads, `tasks` the greenlets.
        by_ident = {i: t for i, t in by_ident.items() if i in frames}
    main = threadids.main_ident()
    # The OS's word for which thread is which: a _thread thread has no Thread object, and a
    # threading imported first off the main thread recorded the wrong main thread.
    os_ids = threadids.native_ids()
    idents = list(by_ident)
    idents.extend(i for i in frames if i not in by_ident)  # threads started with _thread

    budget = [TOTAL_LOCALS_BUDGET]
    out: List[Dict[str, Any]] = []
    hidden = 0
    python_native_ids = set()
    agent_idents = set()
    for ident in idents:
        t = by_ident.get(ident)
        native_id = os_ids.get(ident) or (getattr(t, "native_id", None) if t is not None else None)
        name = t.name if t is not None else None
        if ident == main:
            name = "MainThread" if t is None or t is threading._main_thread else name  # type: ignore[attr-defined]
            native_id = os.getpid() if sys.platform.startswith("linux") else native_id
        elif t is not None and t is threading._main_thread:  # type: ignore[attr-defined]
            name = "%s (not the main thread: it imported threading first)" % name
        python_native_ids.add(native_id)
        frame = frames.get(ident)
        agent_thread = origins.is_agent_thread(name, frame)
        if agent_thread:
            agent_idents.add(ident)
        if thread_id is not None and thread_id not in (ident, native_id):
            continue
        if agent_thread and not include_agent and thread_id is None:
            hidden += 1
            continue
        state, cpu_seconds, cpu_percent = cpu_of(native_id)
        stack, omitted = _stack(frame, max_frames, depth, max_size, budget)
        out.append(
            {
                "ident": ident,
                "native_id": native_id,
                "name": name if name is not None else "(started outside threading)",
                "daemon": t.daemon if t is not None else None,
                "alive": t.is_alive() if t is not None else True,
                "is_main": ident == main,
                "is_agent": agent_thread,
                "state": state,
                "cpu_seconds": cpu_seconds,
                "cpu_percent": cpu_percent,
                "frames": stack,
                "frames_omitted": omitted,
            }
        )
    if thread_id is not None and not out:
        del frames
        raise CommandError(
            "no thread with ident or native id %d; `peeka thread PID` lists the threads" % thread_id
        )
    result: Dict[str, Any] = {"agent_threads_hidden": hidden, "interval_s": round(elapsed, 4) if elapsed else None}
    if blocked:
        waiting = {i: f for i, f in frames.items() if i not in agent_idents}
        result.update(_blocked(waiting, by_ident, after))
    del frames
    if busiest:
        out.sort(key=lambda th: -((th["cpu_percent"] if elapsed else th["cpu_seconds"]) or 0.0))
        out = out[:busiest]
    else:
        out.sort(key=lambda th: (not th["is_main"], th["is_agent"], str(th["name"])))
    result["threads"] = out
    result["count"] = len(out)
    result["native_threads"] = [
        dict(zip(("native_id", "name", "state", "cpu_seconds", "cpu_percent"), (tid, stat.name) + cpu_of(tid)))
        for tid, stat in sorted(after.items())
        if tid not in python_native_ids and thread_id is None
    ]
    return result


def _clock_readings(stats: Dict[int, Any]) -> Dict[int, float]:
    """native id -> CPU seconds on its clock, for the threads /proc listed (those that still run)."""
    out = {}
    for tid in stats:
        used = threadids.cpu_ns(threadids.cpu_clock(tid))
        if used is not None:
            out[tid] = used / 1e9
    return out


def _blocked(frames: Dict[int, Any], by_ident: Dict[int, Any], stats: Dict[int, Any]) -> Dict[str, Any]:
    """Threads waiting in locks and threading primitives, who holds the locks, and lock cycles."""

    def who(ident: int) -> Dict[str, Any]:
        t = by_ident.get(ident)
        return {"ident": ident, "native_id": getattr(t, "native_id", None),
                "name": t.name if t is not None else "(started outside threading)"}

    def holder(ident: int, lock: Any, inferred: bool) -> Dict[str, Any]:
        frame = frames.get(ident)
        return dict(who(ident), inferred=inferred, at=locks.where(frame) if frame is not None else None,
                    acquired_in=locks.holding_frame(frame, lock) if frame is not None else None)

    entries: List[Dict[str, Any]] = []
    objects: Dict[int, Any] = {}  # waiter ident -> the lock it waits for
    for ident, frame in frames.items():
        found = locks.waiting_on(ident, frame)
        if found is None:
            continue
        stat = stats.get(who(ident)["native_id"])
        if found["kind"] == "lock" and stat is not None and stat.state == "R":
            continue  # running: it is taking the lock right now, not waiting for it
        lock_object = found.pop("object", None)
        entry = dict(who(ident), kind=found["kind"], name_of_object=found.get("name"), at=found["at"],
                     lock=found.get("lock"), holder=None)
        if lock_object is not None:
            objects[ident] = lock_object
            if entry["lock"]["owner"] is not None:
                entry["holder"] = holder(entry["lock"]["owner"], lock_object, False)
        entries.append(entry)
    for entry in entries:
        lock_object = objects.get(entry["ident"])
        if lock_object is None or entry["holder"] is not None:
            continue
        # A plain Lock records no owner: infer it from which other thread refers to it (marked so).
        waiters = {i for i, o in objects.items() if o is lock_object}
        inferred = locks.infer_holder(frames, lock_object, waiters)
        if inferred is not None:
            entry["holder"] = holder(inferred, lock_object, True)
    names = locks.global_names(list(objects.values()))
    for entry in entries:
        if entry["lock"] is not None:
            entry["lock"]["global_name"] = names.get(entry["lock"]["id"])
    by_waiter = {e["ident"]: e for e in entries if e["kind"] == "lock" and e["holder"] is not None}
    deadlocks = []
    for cycle in locks.cycles({i: e["holder"]["ident"] for i, e in by_waiter.items()}):
        edges = [{"ident": i, "name": by_waiter[i]["name"],
                  "waits_for": dict(by_waiter[i]["lock"], name_of_object=by_waiter[i]["name_of_object"]),
                  "held_by": by_waiter[i]["holder"]["ident"], "held_by_name": by_waiter[i]["holder"]["name"],
                  "inferred": by_waiter[i]["holder"]["inferred"], "at": by_waiter[i]["at"]} for i in cycle]
        deadlocks.append({"threads": [e["name"] for e in edges], "edges": edges,
                          "inferred": any(e["inferred"] for e in edges)})
    return {"blocked": entries, "deadlocks": deadlocks}


def _stack(frame: Any, max_frames: int, depth: int, max_size: int, budget: List[int]) -> Any:
    stack: List[Dict[str, Any]] = []
    omitted = 0
    while frame is not None:
        if len(stack) >= max_frames:
            omitted += 1
            frame = frame.f_back
            continue
        code = frame.f_code
        entry: Dict[str, Any] = {
            "file": code.co_filename,
            "line": frame.f_lineno,
            "function": compat.qualname(code, frame.f_globals),
            "module": _module_of(frame),
        }
        if depth > 0:
            _add_locals(entry, frame, depth, max_size, budget)
        stack.append(entry)
        frame = frame.f_back
    return stack, omitted


def _module_of(frame: Any) -> Optional[str]:
    try:
        name = frame.f_globals.get("__name__")
    except Exception:
        return None
    return name if type(name) is str else None


def _add_locals(entry: Dict[str, Any], frame: Any, depth: int, max_size: int, budget: List[int]) -> None:
    if budget[0] <= 0:
        entry["locals_error"] = "this reply's budget for locals is spent; ask for one thread or a lower -x"
        return
    try:
        # A snapshot: on 3.13+ f_locals is a live proxy, before that a dict CPython refreshes.
        items = list(frame.f_locals.items())
    except Exception as exc:
        entry["locals_error"] = "locals unavailable: %s" % type(exc).__name__
        return
    if frame.f_code.co_name == "<module>":
        # A module's top level: its locals are its globals, __name__, __builtins__ and all.
        items = [(k, v) for k, v in items if not (type(k) is str and k.startswith("__") and k.endswith("__"))]
    rendered: Dict[str, Any] = {}
    for key, value in items[:MAX_LOCALS]:
        node = values.render(value, depth=depth, max_size=max_size)
        budget[0] -= _weight(node)
        rendered[str(key)] = node
    entry["locals"] = rendered
    if len(items) > MAX_LOCALS:
        entry["locals_omitted"] = len(items) - MAX_LOCALS


def _weight(node: Dict[str, Any]) -> int:
    total = len(node.get("repr", "")) + 32
    for child in node.get("children", ()):
        total += len(child["key"]) + _weight(child["value"])
    return total
