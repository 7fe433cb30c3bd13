"""gevent's greenlets and eventlet's greenthreads the way ``tasks`` shows asyncio's tasks: each hub
as a loop, its greenlets as tasks (state, stack innermost first, what each waits on).

Nothing is imported: a target that never loaded ``greenlet`` gets nothing. Greenlets (and eventlet's
hubs, which are not greenlets but own one) are found with one pass over the gc's objects (neither
library keeps a registry; gevent's own ``gevent.util`` does the same), and only a suspended
greenlet's frames are read (nobody runs them); a running one's are its thread's. gevent's waits are
mostly compiled code (Event, Queue, Semaphore: no Python frame), so what a greenlet waits on is read
off the line it is suspended at: the objects that line loads (locks.py). eventlet's are Python down
to its hub's ``switch``: the innermost frame whose ``self`` is an Event, a Queue, a Semaphore or a
green socket names the wait.
"""

from __future__ import annotations

import gc
import sys
from typing import Any, Dict, List, Optional

from . import compat, instrument, locks, threadids, values


def _kind_of(obj: Any) -> Optional[str]:
    """What waiting on ``obj`` means, from its class's module and name (no gevent import)."""
    cls = type(obj)
    module, name = getattr(cls, "__module__", "") or "", cls.__name__
    if not module.startswith(("gevent", "eventlet")) and "socket" not in module:
        return None
    if "socket" in name.lower() or module.endswith("socket"):
        return "socket"
    if "Event" in name or "AsyncResult" in name:
        return "event"
    if "Queue" in name or "Channel" in name:
        return "queue"
    if "Semaphore" in name or "Lock" in name:
        return "lock"
    if "Greenlet" in name or name == "GreenThread":
        return "greenlet"
    return None


def _peer(sock: Any) -> Optional[str]:
    try:
        peer = sock.getpeername()
    except Exception:
        return None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return "%s:%s" % (peer[0], peer[1])
    return str(peer) if peer else None


def _describe_socket(sock: Any, method: str) -> Dict[str, Any]:
    peer = _peer(sock)
    if method in ("accept", "_accept"):
        try:
            here = sock.getsockname()
        except Exception:
            here = None
        return {"kind": "socket accept", "what": "accept on %s" % (":".join(map(str, here)) if isinstance(here, tuple) else here)}
    kind = "socket write" if method.startswith("send") or method == "sendall" else "socket read"
    return {"kind": kind, "what": "socket %s%s" % (method, " from %s" % peer if peer else ""), "peer": peer}


def describe_wait(frames: List[Any], eventlet: bool = False) -> Dict[str, Any]:
    """What a suspended greenlet waits on, from its innermost frames (outermost first in ``frames``)."""
    inner = frames[-1]
    code = inner.f_code
    module = inner.f_globals.get("__name__", "")
    function = code.co_name
    if eventlet:
        found = _eventlet_wait(frames)
        if found is not None:
            return found
    if module == "gevent.hub" and function == "sleep":
        seconds = inner.f_locals.get("seconds")
        return {"kind": "timer", "what": "gevent.sleep(%s)" % values.safe_repr(seconds, 40)}
    self = inner.f_locals.get("self") if code.co_argcount else None
    if type(module) is str and module.startswith("gevent.") and self is not None and _kind_of(self) == "socket":
        return _describe_socket(self, function)
    try:
        loaded = locks.loaded_names(inner)
    except Exception:
        loaded = []
    for name, value in reversed(loaded):  # the last object the line loads is what it calls on
        kind = _kind_of(value)
        if kind is None:
            continue
        if kind == "socket":
            return _describe_socket(value, name.rsplit(".", 1)[-1])
        return _describe_object(kind, value)
    return {"kind": "switch", "what": "switched out in %s, line %d" % (compat.qualname(code, inner.f_globals), inner.f_lineno)}


def _describe_object(kind: str, value: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {"kind": kind, "what": "%s at 0x%x" % (values.type_name(type(value)), id(value))}
    if kind == "event":
        is_set = getattr(value, "is_set", None) or getattr(value, "ready", None)  # eventlet's Event: ready()
        out["is_set"] = bool(is_set()) if callable(is_set) else None
    elif kind == "queue":
        out["size"] = getattr(value, "qsize", lambda: None)()
    elif kind == "lock":
        locked = getattr(value, "locked", None)
        out["locked"] = bool(locked()) if callable(locked) else None
    return out


def _self_of(frame: Any) -> Any:
    code = frame.f_code
    if not code.co_argcount or code.co_varnames[0] != "self":
        return None
    return frame.f_locals.get("self")


def _eventlet_wait(frames: List[Any]) -> Optional[Dict[str, Any]]:
    """eventlet's waits are Python down to its hub's switch: the innermost frame that is a sleep, or
    a method of an Event, a Queue, a Semaphore, a green socket, another greenthread, names it."""
    for at in range(len(frames) - 1, max(-1, len(frames) - 16), -1):
        frame = frames[at]
        if frame.f_globals.get("__name__") == "eventlet.greenthread" and frame.f_code.co_name == "sleep":
            seconds = frame.f_locals.get("seconds")
            return {"kind": "timer", "what": "eventlet.sleep(%s)" % values.safe_repr(seconds, 40)}
        self = _self_of(frame)
        kind = _kind_of(self) if self is not None else None
        if kind is None:
            continue
        if kind == "socket":
            # The outermost of the socket's own frames names the operation (recv_into, not _trampoline).
            while at > 0 and _self_of(frames[at - 1]) is self:
                at -= 1
            return _describe_socket(self, frames[at].f_code.co_name)
        return _describe_object(kind, self)
    return None


def _frames_of(glet: Any, running_frame: Any) -> List[Any]:
    """Outermost first."""
    frame = glet.gr_frame if running_frame is None else running_frame
    out: List[Any] = []
    while frame is not None and len(out) < 500:
        out.append(frame)
        frame = frame.f_back
    return out[::-1]


def _entry(glet: Any, running_frame: Any, max_frames: int, eventlet: bool) -> Dict[str, Any]:
    frames = _frames_of(glet, running_frame)
    entries = [_frame_entry(f) for f in reversed(frames)]
    running = running_frame is not None
    started = bool(glet) or glet.gr_frame is not None or running
    name = getattr(glet, "name", None)
    if not isinstance(name, str):
        name = "%s at 0x%x" % (values.type_name(type(glet)), id(glet))
    return {
        "name": name, "id": id(glet),
        "state": "running" if running else ("pending" if started else "not started"),
        "coroutine": _function_of(glet, frames),
        "frames": entries[:max_frames], "frames_omitted": max(0, len(entries) - max_frames),
        "awaits": {"kind": "running", "what": "running now (its hub's current greenlet)"} if running
        else describe_wait(frames, eventlet) if frames
        else {"kind": "switch", "what": "suspended in compiled code (no Python frame)"} if started
        else {"kind": "not started", "what": "spawned, waiting for its first turn"},
        "awaited_by": [],
    }


def _function_of(glet: Any, frames: List[Any]) -> Optional[str]:
    """What the greenlet runs: gevent keeps it as ``_run``; eventlet's GreenThread.main has it as an
    argument (``function``) in its outermost frame."""
    if frames and frames[0].f_code.co_name == "main":
        function = frames[0].f_locals.get("function")
        if function is not None:
            return getattr(function, "__qualname__", None) or values.type_name(type(function))
    return getattr(getattr(glet, "_run", None) or getattr(glet, "run", None), "__qualname__", None)


def _frame_entry(frame: Any) -> Dict[str, Any]:
    code = frame.f_code
    module = frame.f_globals.get("__name__")
    return {"file": code.co_filename, "line": frame.f_lineno, "function": compat.qualname(code, frame.f_globals),
            "module": module if type(module) is str else None}


def _running_frame(glet: Any, thread_frames: Dict[int, Any], running: Dict[int, int]) -> Any:
    """The frame a greenlet runs in now, if it is some thread's current greenlet."""
    if glet.gr_frame is not None or not glet or glet.dead:
        return None
    ident = running.get(id(glet))
    if ident is None:
        ident = getattr(getattr(glet, "parent", None), "thread_ident", None) or getattr(glet, "thread_ident", None)
    return thread_frames.get(ident) if ident is not None else None


def _running_by_thread(thread_frames: Dict[int, Any]) -> Dict[int, int]:
    """id(object) -> thread ident, for the ``self`` of each thread's outermost frame: a greenlet's
    stack starts at its own run method (gevent's Greenlet.run, eventlet's GreenThread.main; an
    eventlet hub's greenlet at BaseHub.run, whose ``self`` is the hub), so this says which
    greenlet, or which eventlet hub, each thread runs now."""
    out: Dict[int, int] = {}
    for ident, frame in thread_frames.items():
        depth = 0
        while frame.f_back is not None and depth < 10_000:
            frame = frame.f_back
            depth += 1
        try:
            self = _self_of(frame)
        except Exception:
            self = None
        if self is not None:
            out[id(self)] = ident
    return out


def _thread_name(ident: Any) -> Optional[str]:
    # Under monkey-patching threading's records are keyed by greenlet: the OS's word first.
    if type(ident) is not int:
        return None
    return "MainThread" if ident == threadids.main_ident() else instrument.thread_name(ident)


class _Hub:
    """A hub as ``tasks`` shows it: gevent's Hub is a greenlet; eventlet's hub owns one (``greenlet``)."""

    def __init__(self, hub: Any, glet: Any, eventlet: bool) -> None:
        self.hub = hub
        self.glet = glet
        self.eventlet = eventlet
        self.members: List[Any] = []


def hubs(limit: int, max_frames: int) -> List[Dict[str, Any]]:
    """One entry per gevent or eventlet hub, shaped like ``tasks``' loops; [] when greenlet is not loaded."""
    greenlet_module = sys.modules.get("greenlet")
    gtype = getattr(greenlet_module, "greenlet", None)
    gevent_hub = getattr(sys.modules.get("gevent.hub"), "Hub", None)
    eventlet_hub = getattr(sys.modules.get("eventlet.hubs.hub"), "BaseHub", None)
    if gtype is None or (gevent_hub is None and eventlet_hub is None):
        return []
    found = []
    by_glet: Dict[int, _Hub] = {}  # id(the hub's greenlet) -> the hub
    for obj in gc.get_objects():
        if isinstance(obj, gtype):
            if gevent_hub is not None and isinstance(obj, gevent_hub):
                by_glet.setdefault(id(obj), _Hub(obj, obj, False))
            else:
                found.append(obj)
        elif eventlet_hub is not None and isinstance(obj, eventlet_hub):
            glet = getattr(obj, "greenlet", None)
            if isinstance(glet, gtype):
                by_glet[id(glet)] = _Hub(obj, glet, True)
    thread_frames = compat.current_frames()
    running = _running_by_thread(thread_frames)
    for glet in found:
        if glet.dead or id(glet) in by_glet:
            continue
        parent = getattr(glet, "parent", None)
        if parent is None or id(parent) not in by_glet:
            continue  # a thread's main greenlet: shown by `thread`
        by_glet[id(parent)].members.append(glet)
    out = []
    for entry in by_glet.values():
        hub, members = entry.hub, entry.members
        ident = _hub_thread(entry, running)
        described = []
        for glet in sorted(members, key=lambda g: str(getattr(g, "name", "")))[:limit]:
            try:
                described.append(_entry(glet, _running_frame(glet, thread_frames, running), max_frames, entry.eventlet))
            except Exception as exc:  # a greenlet switching under us: say so, keep the rest
                described.append({"name": repr(glet)[:80], "id": id(glet), "state": "unknown", "frames": [],
                                  "awaits": {"kind": "unknown", "what": "peeka could not read it: %s" % exc},
                                  "awaited_by": []})
        hub_glet = entry.glet
        in_loop = (hub_glet.gr_frame is not None or id(hub) in running
                   or _running_frame(hub_glet, thread_frames, running) is not None)
        if entry.eventlet:
            loop: Any = getattr(hub, "poll", None) or hub
            ready: Any = _size(getattr(hub, "next_timers", None))
            listening = getattr(hub, "listeners", None)
            scheduled: Any = _size(getattr(hub, "timers", None))
            if isinstance(listening, dict) and scheduled is not None:
                scheduled += sum(_size(fds) or 0 for fds in listening.values())
        else:
            loop = getattr(hub, "loop", None)
            ready, scheduled = getattr(loop, "pendingcnt", None), getattr(loop, "activecnt", None)
        out.append({
            "kind": "greenlets", "id": id(hub), "type": values.type_name(type(hub)),
            "loop": values.safe_repr(loop, 200),
            "hub_state": "running its loop" if in_loop else "not started",
            "thread": _thread_name(ident), "thread_id": ident,
            "running": bool(hub_glet) and not hub_glet.dead,
            "ready": ready, "scheduled": scheduled,
            "task_count": len(members), "truncated": len(members) > limit, "tasks": described,
        })
    return out


def _hub_thread(entry: _Hub, running: Dict[int, int]) -> Optional[int]:
    """The thread a hub serves: gevent's Hub says; otherwise the thread running the hub's loop or
    one of its greenlets now; else, when its loop's parent greenlet sits in a module's top-level
    code (the main greenlet of the main thread, suspended in the script), the main thread."""
    ident = getattr(entry.hub, "thread_ident", None)
    if ident is not None:
        return ident
    for obj in [entry.hub, entry.glet] + entry.members:
        if id(obj) in running:
            return running[id(obj)]
    frame = getattr(getattr(entry.glet, "parent", None), "gr_frame", None)
    depth = 0
    while frame is not None and frame.f_back is not None and depth < 10_000:
        frame = frame.f_back
        depth += 1
    if frame is not None and frame.f_code.co_name == "<module>":
        return threadids.main_ident()
    return None


def _size(collection: Any) -> Optional[int]:
    try:
        return len(collection) if collection is not None else None
    except Exception:
        return None
