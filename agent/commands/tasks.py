"""tasks: every running asyncio event loop, its tasks, their coroutine stacks and what each awaits.

args: ``limit`` (tasks per loop, default 2,000: a reply stays well below the frame limit),
``max_frames`` (per task, innermost kept, default 32), ``scan_gc`` (when nothing else finds a loop).

gevent: each hub is one more "loop" (``kind: "greenlets"``, ``loop``: its libev/libuv loop,
``hub_state``, ready = pending callbacks, scheduled = active watchers) whose tasks are its greenlets,
each waiting on a timer, an event, a queue, a lock, a socket (with its peer) or another greenlet
(greenlets.py).

Result: ``{"loops": [...], "count": tasks in all}``; a loop: id, type, thread, thread_id, running,
ready (callbacks queued), scheduled (timers), task_count, truncated, tasks; a task: name,
id, state (pending | running | cancelling | done), coroutine, frames (innermost first: file, line,
function, module), awaits (kind, what, details), awaited_by (names of the tasks waiting for it).

Loops are found where they can be read from another thread on every version 3.9-3.14: the loops of
the registered tasks (``_all_tasks`` to 3.11, ``_scheduled_tasks``/``_eager_tasks`` from 3.12), and,
from 3.13, the ``self`` of ``run_forever``/``_run_once`` frames in the threads' stacks (3.14 keeps
native tasks in per-thread lists only ``asyncio.all_tasks(loop)`` walks, so a loop is found through
its thread first). Only when both find nothing and ``scan_gc`` asks: a scan of the gc's objects.
Every shared collection is copied first, retried when a host thread changes it meanwhile.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .. import compat, greenlets, instrument, streams, values
from ..search import is_agent_module

# The target's own asyncio, looked up per request: the agent never imports it (a target that does
# not use asyncio must not find it in sys.modules after an attach).
asyncio: Any = None


def _bind_asyncio() -> Any:
    global asyncio
    asyncio = sys.modules.get("asyncio")
    return asyncio if asyncio is not None and hasattr(asyncio, "AbstractEventLoop") else None

DEFAULT_LIMIT = 2_000
DEFAULT_MAX_FRAMES = 32
_COPY_RETRIES = 20


def _copy(collection: Any) -> List[Any]:
    """A list of what a set/dict another thread may change holds now."""
    for _ in range(_COPY_RETRIES):
        try:
            return list(collection)
        except RuntimeError:  # changed size during iteration
            continue
    return []


def _registered_tasks() -> List[Any]:
    found: List[Any] = []
    module = sys.modules.get("asyncio.tasks")
    for attr in ("_all_tasks", "_scheduled_tasks", "_eager_tasks"):
        registry = getattr(module, attr, None)
        if registry is not None:
            found.extend(_copy(registry))
    return found


def _loop_codes() -> Any:
    base = sys.modules.get("asyncio.base_events")
    if base is None:
        return frozenset()
    cls = base.BaseEventLoop
    return frozenset(getattr(cls, name).__code__ for name in ("run_forever", "_run_once") if hasattr(cls, name))


def _loops_in_threads() -> Dict[int, Any]:
    """Loops running in some thread, keyed by id, from the ``self`` of their ``run_forever`` frame."""
    codes = _loop_codes()
    loops: Dict[int, Any] = {}
    for frame in list(compat.current_frames().values()):
        depth = 0
        while frame is not None and depth < 500:
            if frame.f_code in codes:
                try:
                    loop = frame.f_locals.get("self")
                except Exception:
                    loop = None
                if isinstance(loop, asyncio.AbstractEventLoop):
                    loops[id(loop)] = loop
                break
            frame = frame.f_back
            depth += 1
    return loops


def _loops_in_gc() -> Dict[int, Any]:
    _bind_asyncio()
    import gc

    return {id(o): o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and _running(o)}


def _running(loop: Any) -> bool:
    try:
        return bool(loop.is_running())
    except Exception:
        return False


def _loop_of(task: Any) -> Any:
    try:
        return task.get_loop()
    except Exception:
        return getattr(task, "_loop", None)


def find_loops(scan_gc: bool = False) -> Tuple[Dict[int, Any], List[Any]]:
    """``({id: loop}, registered tasks)``."""
    registered = _registered_tasks()
    loops: Dict[int, Any] = {}
    for task in registered:
        loop = _loop_of(task)
        if loop is not None:
            loops.setdefault(id(loop), loop)
    if sys.version_info >= (3, 13) or not loops:
        # Reading a running frame's locals from another thread is safe from 3.13 (PEP 667's
        # proxy); before, it writes a locals dict into that frame: only when the registries are empty.
        for key, loop in _loops_in_threads().items():
            loops.setdefault(key, loop)
    if not loops and scan_gc:
        loops = _loops_in_gc()
    return loops, registered


def tasks_of(loop: Any, registered: List[Any]) -> List[Any]:
    found = {id(t): t for t in registered if _loop_of(t) is loop}
    for _ in range(_COPY_RETRIES):
        try:
            found.update((id(t), t) for t in asyncio.all_tasks(loop))
            break
        except RuntimeError:  # a registry changed size while it was copied
            continue
    return [t for t in found.values() if not t.done()]


# ---------------------------------------------------------------- one task


def _frame_entry(frame: Any) -> Dict[str, Any]:
    code = frame.f_code
    try:
        module = frame.f_globals.get("__name__")
    except Exception:
        module = None
    return {
        "file": code.co_filename,
        "line": frame.f_lineno,
        "function": compat.qualname(code, frame.f_globals),
        "module": module if type(module) is str else None,
    }


def await_chain(coro: Any, limit: int = 500) -> Tuple[List[Any], Any]:
    """``(frames outermost first, the innermost awaitable that is not a coroutine or generator)``."""
    frames: List[Any] = []
    obj = coro
    while obj is not None and len(frames) < limit:
        frame = getattr(obj, "cr_frame", None)
        if frame is not None or hasattr(obj, "cr_await"):
            nxt = getattr(obj, "cr_await", None)
        elif hasattr(obj, "gi_frame"):
            frame, nxt = obj.gi_frame, getattr(obj, "gi_yieldfrom", None)
        elif hasattr(obj, "ag_frame"):
            frame, nxt = obj.ag_frame, getattr(obj, "ag_await", None)
        else:
            return frames, obj
        if frame is None:
            break  # finished, or not started yet
        frames.append(frame)
        obj = nxt
    return frames, None


def _name(obj: Any) -> str:
    try:
        if isinstance(obj, asyncio.Task):
            return str(obj.get_name())
    except Exception:
        pass
    return values.safe_repr(obj, 120)


def _peer(reader: Any) -> Optional[str]:
    transport = getattr(reader, "_transport", None)
    if transport is None:
        return None
    try:
        peer = transport.get_extra_info("peername")
    except Exception:
        return None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return "%s:%s" % (peer[0], peer[1])
    return None if peer is None else str(peer)


def _waiters(obj: Any, attr: str = "_waiters") -> Optional[int]:
    waiters = getattr(obj, attr, None)
    try:
        return len(waiters) if waiters is not None else 0
    except Exception:
        return None


def _describe_primitive(function: str, local: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """What an asyncio primitive's own frame is waiting for."""
    this = local.get("self")
    short = function.rsplit(".", 1)[-1]
    if function == "sleep":
        out: Dict[str, Any] = {"kind": "sleep", "what": "asyncio.sleep(%s)" % values.safe_repr(local.get("delay"), 40)}
        handle = local.get("h")
        loop = getattr(handle, "_loop", None)
        if handle is not None and loop is not None:
            try:
                out["wakes_in"] = round(handle.when() - loop.time(), 3)
            except Exception:
                pass
        return out
    if function in ("_wait", "wait") and local.get("fs") is not None:  # asyncio.wait
        pending = [f for f in _copy(local["fs"]) if not f.done()]
        return {"kind": "wait", "what": "asyncio.wait on %d" % len(pending), "children": [_name(f) for f in pending[:20]],
                "return_when": local.get("return_when")}
    if this is None:
        return None
    cls = type(this).__name__
    if cls == "TaskGroup" and short in ("__aexit__", "_aexit"):
        children = _copy(getattr(this, "_tasks", ()))
        return {"kind": "task group", "what": "TaskGroup of %d" % len(children),
                "children": [_name(t) for t in children[:20]]}
    if isinstance(this, asyncio.Lock) and short == "acquire":
        return {"kind": "lock", "what": "%s at 0x%x" % (cls, id(this)), "locked": this.locked(), "waiters": _waiters(this)}
    if isinstance(this, asyncio.Semaphore) and short == "acquire":
        return {"kind": "semaphore", "what": "%s at 0x%x" % (cls, id(this)), "value": getattr(this, "_value", None),
                "waiters": _waiters(this)}
    if isinstance(this, asyncio.Event) and short == "wait":
        return {"kind": "event", "what": "%s at 0x%x" % (cls, id(this)), "is_set": this.is_set(), "waiters": _waiters(this)}
    if isinstance(this, asyncio.Condition) and short == "wait":
        return {"kind": "condition", "what": "%s at 0x%x" % (cls, id(this)), "waiters": _waiters(this)}
    if isinstance(this, asyncio.Queue) and short in ("get", "put", "join"):
        return {"kind": "queue " + short, "what": "%s at 0x%x" % (cls, id(this)), "size": this.qsize(),
                "maxsize": this.maxsize, "getters": _waiters(this, "_getters"), "putters": _waiters(this, "_putters")}
    if isinstance(this, asyncio.StreamReader) and short in ("_wait_for_data", "read", "readline", "readuntil", "readexactly"):
        return {"kind": "stream read", "what": "StreamReader" + (" from %s" % _peer(this) if _peer(this) else ""),
                "buffered": len(getattr(this, "_buffer", b"")), "eof": this.at_eof()}
    if isinstance(this, asyncio.StreamWriter) and short in ("drain", "wait_closed"):
        return {"kind": "stream " + short, "what": "StreamWriter"}
    return None


def _describe_future(fut: Any) -> Dict[str, Any]:
    if isinstance(fut, asyncio.Task):
        return {"kind": "task", "what": _name(fut), "task_id": id(fut)}
    children = getattr(fut, "_children", None)
    if children is not None:  # gather's _GatheringFuture
        kids = list(children)
        return {"kind": "gather", "what": "gather of %d" % len(kids),
                "children": [_name(k) for k in kids[:20]], "pending": sum(1 for k in kids if not k.done())}
    return {"kind": "future", "what": values.safe_repr(fut, 200)}


def describe_awaits(task: Any, frames: List[Any], leaf: Any, running: bool) -> Dict[str, Any]:
    if running:
        return {"kind": "running", "what": "running now (its loop's current task)"}
    fut = getattr(task, "_fut_waiter", None)
    for frame in reversed(frames):  # innermost first: the asyncio primitive it waits in
        module = frame.f_globals.get("__name__", "")
        if type(module) is not str or not module.startswith("asyncio."):
            break
        try:
            local = dict(frame.f_locals)  # a suspended coroutine's frame: nobody runs it now
        except Exception:
            continue
        found = _describe_primitive(getattr(frame.f_code, "co_qualname", frame.f_code.co_name), local)
        if found is not None:
            return found
    if fut is not None:
        return _describe_future(fut)
    if leaf is not None:
        return {"kind": "awaitable", "what": values.safe_repr(leaf, 200)}
    return {"kind": "scheduled", "what": "ready to run: waiting for its turn on the loop"}


def _state(task: Any, running: bool) -> str:
    if task.done():
        return "cancelled" if task.cancelled() else "done"
    if running:
        return "running"
    cancelling = getattr(task, "cancelling", None)
    if cancelling is not None and cancelling():
        return "cancelling"
    return "pending"


def _running_frames(coro: Any, thread_id: Optional[int]) -> List[Any]:
    """A running task's frames, outermost first: its thread's stack down from the coroutine's frame
    (a running coroutine does not say what it awaits: the stack does)."""
    top = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
    frame = compat.current_frames().get(thread_id) if thread_id is not None else None
    stack: List[Any] = []
    while frame is not None and len(stack) < 500:
        stack.append(frame)
        if frame is top:
            return stack[::-1]
        frame = frame.f_back
    return [top] if top is not None else []


def describe_task(task: Any, max_frames: int, thread_id: Optional[int] = None) -> Dict[str, Any]:
    _bind_asyncio()
    coro = task.get_coro()
    running = bool(getattr(coro, "cr_running", False) or getattr(coro, "gi_running", False))
    if running:
        frames, leaf = _running_frames(coro, thread_id), None
    else:
        frames, leaf = await_chain(coro)
    entries = [_frame_entry(f) for f in reversed(frames)]
    entry = {
        "name": _name(task),
        "id": id(task),
        "state": _state(task, running),
        "coroutine": getattr(coro, "__qualname__", values.type_name(type(coro))),
        "frames": entries[:max_frames],
        "frames_omitted": max(0, len(entries) - max_frames),
        "awaits": describe_awaits(task, frames, leaf, running),
    }
    return entry


# ---------------------------------------------------------------- loops


def _natural(name: str) -> Tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def _thread_name(loop: Any) -> Tuple[Optional[int], Optional[str]]:
    ident = getattr(loop, "_thread_id", None)
    if type(ident) is not int:
        return None, None
    return ident, instrument.thread_name(ident)


def describe_loop(loop: Any, registered: List[Any], limit: int, max_frames: int) -> Dict[str, Any]:
    ident, thread = _thread_name(loop)
    named = sorted(((_name(t), t) for t in tasks_of(loop, registered)), key=lambda nt: _natural(nt[0]))
    waiting_for: Dict[int, List[str]] = {}  # task id -> the tasks awaiting it, over all tasks
    for name, task in named:
        awaited = getattr(task, "_fut_waiter", None)
        if isinstance(awaited, asyncio.Task):
            waiting_for.setdefault(id(awaited), []).append(name)
    described = []
    for name, task in named[:limit]:
        try:
            entry = describe_task(task, max_frames, ident)
        except Exception as exc:  # a task changing under us: say so, keep the rest
            entry = {"name": name, "id": id(task), "state": "unknown", "frames": [],
                     "awaits": {"kind": "unknown", "what": "peeka could not read it: %s" % exc}}
        entry["awaited_by"] = waiting_for.get(id(task), [])
        described.append(entry)
    return {
        "id": id(loop),
        "type": values.type_name(type(loop)),
        "thread": thread,
        "thread_id": ident,
        "running": _running(loop),
        "ready": _len(getattr(loop, "_ready", None)),
        "scheduled": _len(getattr(loop, "_scheduled", None)),
        "task_count": len(named),
        "truncated": len(named) > limit,
        "tasks": described,
    }


def _len(collection: Any) -> Optional[int]:
    try:
        return len(collection) if collection is not None else None
    except Exception:
        return None


def _shown(loop: Any) -> bool:
    """Not the agent's own, and not closed (a closed loop's pending tasks will never run again)."""
    try:
        closed = bool(loop.is_closed())
    except Exception:
        closed = False
    return not closed and not is_agent_module(type(loop).__module__)


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Dict[str, Any]:
    limit = streams.int_arg(args, "limit", DEFAULT_LIMIT, 1, 1_000_000)
    max_frames = streams.int_arg(args, "max_frames", DEFAULT_MAX_FRAMES, 1, 1000)
    # gevent's hubs and their greenlets, shaped like loops and tasks (kind "greenlets").
    hubs = greenlets.hubs(limit, max_frames)
    if _bind_asyncio() is None:
        return {"loops": hubs, "count": sum(h["task_count"] for h in hubs),
                "note": None if hubs else "asyncio is not imported in this process"}
    loops, registered = find_loops(bool(args.get("scan_gc")))
    out = [describe_loop(loop, registered, limit, max_frames) for loop in _ordered(loops.values())] + hubs
    result: Dict[str, Any] = {"loops": out, "count": sum(loop["task_count"] for loop in out)}
    if not out:
        result["note"] = ("no running event loop: none in the threads' stacks or the task registries"
                          + ("" if args.get("scan_gc") else "; a loop whose run_forever is not Python code (uvloop "
                             "on 3.14) is found with --scan-gc, which walks every object once (costly on big heaps)"))
    return result


def _ordered(loops: Iterable[Any]) -> List[Any]:
    return sorted((lp for lp in loops if _shown(lp)), key=lambda lp: (not _running(lp), str(_thread_name(lp)[1])))
