"""gevent's greenlets the way ``tasks`` shows asyncio's tasks: each hub as a loop, its greenlets as
tasks (state, stack innermost first, what each waits on).

Nothing is imported: a target that never loaded ``greenlet`` gets nothing. Greenlets are found with
one pass over the gc's objects (gevent keeps no registry; its own ``gevent.util`` does the same), and
only a suspended greenlet's frames are read (nobody runs them); a running one's are its thread's.
gevent's waits are mostly compiled code (Event, Queue, Semaphore: no Python frame), so what a
greenlet waits on is read off the line it is suspended at: the objects that line loads (locks.py).
"""

from __future__ import annotations

import gc
import sys
from typing import Any, Dict, List, Optional, Tuple

from . import instrument, locks, threadids, values


def _kind_of(obj: Any) -> Optional[str]:
    """What waiting on ``obj`` means, from its class's module and name (no gevent import)."""
    cls = type(obj)
    module, name = getattr(cls, "__module__", "") or "", cls.__name__
    if not module.startswith("gevent") and "socket" not in module:
        return None
    if "socket" in name.lower() or module.endswith("socket"):
        return "socket"
    if "Event" in name or "AsyncResult" in name:
        return "event"
    if "Queue" in name or "Channel" in name:
        return "queue"
    if "Semaphore" in name or "Lock" in name:
        return "lock"
    if "Greenlet" in name:
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


def describe_wait(frames: List[Any]) -> Dict[str, Any]:
    """What a suspended greenlet waits on, from its innermost frames (outermost first in ``frames``)."""
    inner = frames[-1]
    code = inner.f_code
    module = inner.f_globals.get("__name__", "")
    function = code.co_name
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
        method = name.rsplit(".", 1)[-1]
        if kind == "socket":
            return _describe_socket(value, method)
        out: Dict[str, Any] = {"kind": kind, "what": "%s at 0x%x" % (values.type_name(type(value)), id(value))}
        if kind == "event":
            out["is_set"] = bool(getattr(value, "is_set", lambda: None)())
        elif kind == "queue":
            out["size"] = getattr(value, "qsize", lambda: None)()
        elif kind == "lock":
            locked = getattr(value, "locked", None)
            out["locked"] = bool(locked()) if callable(locked) else None
        return out
    return {"kind": "switch", "what": "switched out in %s, line %d" % (getattr(code, "co_qualname", function), inner.f_lineno)}


def _frames_of(glet: Any, running_frame: Any) -> List[Any]:
    """Outermost first."""
    frame = glet.gr_frame if running_frame is None else running_frame
    out: List[Any] = []
    while frame is not None and len(out) < 500:
        out.append(frame)
        frame = frame.f_back
    return out[::-1]


def _entry(glet: Any, running_frame: Any, max_frames: int) -> Dict[str, Any]:
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
        "coroutine": getattr(getattr(glet, "_run", None) or getattr(glet, "run", None), "__qualname__", None),
        "frames": entries[:max_frames], "frames_omitted": max(0, len(entries) - max_frames),
        "awaits": {"kind": "running", "what": "running now (its hub's current greenlet)"} if running
        else describe_wait(frames) if frames
        else {"kind": "switch", "what": "suspended in compiled code (no Python frame)"} if started
        else {"kind": "not started", "what": "spawned, waiting for its first turn"},
        "awaited_by": [],
    }


def _frame_entry(frame: Any) -> Dict[str, Any]:
    code = frame.f_code
    module = frame.f_globals.get("__name__")
    return {"file": code.co_filename, "line": frame.f_lineno, "function": getattr(code, "co_qualname", code.co_name),
            "module": module if type(module) is str else None}


def _running_frame(glet: Any, thread_frames: Dict[int, Any]) -> Any:
    """The frame a greenlet runs in now, if it is some thread's current greenlet."""
    if glet.gr_frame is not None or not glet or glet.dead:
        return None
    ident = getattr(getattr(glet, "parent", None), "thread_ident", None) or getattr(glet, "thread_ident", None)
    return thread_frames.get(ident) if ident is not None else None


def _thread_name(ident: Any) -> Optional[str]:
    # Under monkey-patching threading's records are keyed by greenlet: the OS's word first.
    if type(ident) is not int:
        return None
    return "MainThread" if ident == threadids.main_ident() else instrument.thread_name(ident)


def hubs(limit: int, max_frames: int) -> List[Dict[str, Any]]:
    """One entry per gevent hub, shaped like ``tasks``' loops; [] when greenlet is not loaded."""
    greenlet_module = sys.modules.get("greenlet")
    gtype = getattr(greenlet_module, "greenlet", None)
    hub_module = sys.modules.get("gevent.hub")
    if gtype is None or hub_module is None:
        return []
    hub_type = getattr(hub_module, "Hub", None)
    found = [o for o in gc.get_objects() if isinstance(o, gtype)]
    thread_frames = sys._current_frames()
    by_hub: Dict[int, Tuple[Any, List[Any]]] = {}
    for glet in found:
        if hub_type is not None and isinstance(glet, hub_type):
            by_hub.setdefault(id(glet), (glet, []))
    for glet in found:
        if glet.dead or (hub_type is not None and isinstance(glet, hub_type)):
            continue
        parent = getattr(glet, "parent", None)
        if parent is None or id(parent) not in by_hub:
            continue  # a thread's main greenlet: shown by `thread`
        by_hub[id(parent)][1].append(glet)
    out = []
    for hub, members in by_hub.values():
        ident = getattr(hub, "thread_ident", None)
        described = []
        for glet in sorted(members, key=lambda g: str(getattr(g, "name", "")))[:limit]:
            try:
                described.append(_entry(glet, _running_frame(glet, thread_frames), max_frames))
            except Exception as exc:  # a greenlet switching under us: say so, keep the rest
                described.append({"name": repr(glet)[:80], "id": id(glet), "state": "unknown", "frames": [],
                                  "awaits": {"kind": "unknown", "what": "peeka could not read it: %s" % exc},
                                  "awaited_by": []})
        loop = getattr(hub, "loop", None)
        hub_frame = hub.gr_frame
        out.append({
            "kind": "greenlets", "id": id(hub), "type": values.type_name(type(hub)),
            "loop": values.safe_repr(loop, 200),
            "hub_state": "running its loop" if hub_frame is not None or _running_frame(hub, thread_frames) is not None
            else "not started",
            "thread": _thread_name(ident), "thread_id": ident,
            "running": bool(hub) and not hub.dead,
            "ready": getattr(loop, "pendingcnt", None), "scheduled": getattr(loop, "activecnt", None),
            "task_count": len(members), "truncated": len(members) > limit, "tasks": described,
        })
    return out
