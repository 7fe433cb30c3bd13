"""thread: every thread of the target with its Python stack, optionally with each frame's locals.

Args: ``thread_id`` (ident or native id; all threads when absent), ``all`` (include the agent's own
threads, hidden by default), ``depth`` (0 = no locals, 1-4 = locals rendered to that depth),
``max_frames`` (per thread, innermost kept), ``max_size`` (per local value, default 512).

Result: ``{"threads": [...], "count": n, "agent_threads_hidden": k}``; each thread has ident,
native_id, name, daemon, alive, is_main, is_agent, cpu_seconds (Linux), ``frames`` and
``frames_omitted``. Frames run **innermost first** (index 0 is the code running now, like a Java
stack dump): file, line, function, module, and when depth > 0 ``locals`` (name -> value node, see
values.py), ``locals_omitted`` (more than 50) or ``locals_error``.
Threads that run no Python code right now are listed with no frames.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Dict, List, Optional

from .. import values
from . import CommandError

NAME = "thread"

DEFAULT_MAX_FRAMES = 64
MAX_FRAMES = 1000
MAX_LOCALS = 50  # per frame
LOCALS_MAX_SIZE = 512  # per value by default: a stack of 64 frames adds up
TOTAL_LOCALS_BUDGET = 4 << 20  # characters of locals per reply, over all threads

# Inside a target the agent's code is named "<peeka agent>/..." (boot.py loads it from memory).
_AGENT_DIR = os.path.dirname(os.path.dirname(__file__ if __file__.startswith("<") else os.path.abspath(__file__)))
_CLOCK_TICKS: Optional[int] = None


def _int_arg(args: Dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = args.get(key)
    if value is None:
        return default
    if type(value) is not int:
        raise CommandError("%s must be an integer, got %r" % (key, value))
    if not low <= value <= high:
        raise CommandError("%s must be between %d and %d, got %d" % (key, low, high, value))
    return value


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Dict[str, Any]:
    thread_id = args.get("thread_id")
    if thread_id is not None and type(thread_id) is not int:
        raise CommandError(
            "thread_id must be an integer (a thread's ident or native id), got %r" % (thread_id,)
        )
    include_agent = bool(args.get("all", False))
    depth = _int_arg(args, "depth", 0, 0, values.MAX_DEPTH)
    max_frames = _int_arg(args, "max_frames", DEFAULT_MAX_FRAMES, 1, MAX_FRAMES)
    max_size = _int_arg(args, "max_size", LOCALS_MAX_SIZE, values.MIN_MAX_SIZE, values.MAX_MAX_SIZE)

    frames = sys._current_frames()
    by_ident: Dict[int, Any] = {}
    for t in threading.enumerate():
        ident = t.ident
        if ident is not None:
            by_ident[ident] = t
    main = threading.main_thread().ident
    idents = list(by_ident)
    idents.extend(i for i in frames if i not in by_ident)  # threads started with _thread

    budget = [TOTAL_LOCALS_BUDGET]
    out: List[Dict[str, Any]] = []
    hidden = 0
    for ident in idents:
        t = by_ident.get(ident)
        native_id = getattr(t, "native_id", None) if t is not None else None
        if thread_id is not None and thread_id not in (ident, native_id):
            continue
        frame = frames.get(ident)
        name = t.name if t is not None else None
        is_agent = _is_agent(name, frame)
        if is_agent and not include_agent and thread_id is None:
            hidden += 1
            continue
        stack, omitted = _stack(frame, max_frames, depth, max_size, budget)
        out.append(
            {
                "ident": ident,
                "native_id": native_id,
                "name": name if name is not None else "(started outside threading)",
                "daemon": t.daemon if t is not None else None,
                "alive": t.is_alive() if t is not None else True,
                "is_main": ident == main,
                "is_agent": is_agent,
                "cpu_seconds": _cpu_seconds(native_id),
                "frames": stack,
                "frames_omitted": omitted,
            }
        )
    del frames
    if thread_id is not None and not out:
        raise CommandError(
            "no thread with ident or native id %d; `peeka thread PID` lists the threads" % thread_id
        )
    out.sort(key=lambda th: (not th["is_main"], th["is_agent"], str(th["name"])))
    return {"threads": out, "count": len(out), "agent_threads_hidden": hidden}


def _is_agent(name: Optional[str], frame: Any) -> bool:
    if name is not None and name.startswith("peeka-agent"):
        return True
    # Threads the agent started behind a patched threading module have no Thread object:
    # their outermost frame is agent code. (The innermost may be agent code in any thread: a probe.)
    outermost = None
    depth = 0
    while frame is not None and depth < 10_000:
        outermost = frame
        frame = frame.f_back
        depth += 1
    if outermost is None:
        return False
    return outermost.f_code.co_filename.startswith(_AGENT_DIR + os.sep)


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
            "function": getattr(code, "co_qualname", code.co_name),
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


def _cpu_seconds(native_id: Optional[int]) -> Optional[float]:
    """User + system CPU time of one thread, from /proc (None elsewhere)."""
    global _CLOCK_TICKS
    if native_id is None:
        return None
    try:
        with open("/proc/self/task/%d/stat" % native_id, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        if _CLOCK_TICKS is None:
            _CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
        return round((int(fields[11]) + int(fields[12])) / _CLOCK_TICKS, 3)
    except Exception:
        return None
