"""The unpatched primitives the agent runs on.

A host may have monkeypatched ``socket``/``threading`` (gevent, eventlet): the agent must still get
real OS threads and blocking sockets, or it would hang on a hub that the host never runs.
"""

from __future__ import annotations

import gc
import itertools
import operator
import sys
from typing import Any, Callable, Dict, Iterator, Optional

_CALL = operator.methodcaller("__call__")
# CPython 3.11 (gh-106883, fixed in 3.11.9): sys._current_frames() makes frame objects while it
# holds the interpreter's thread-list lock; such an allocation can start a garbage collection, and
# a collection that frees a threading.local (or runs a finalizer that lets the GIL go) needs that
# lock too: the whole process hangs (seen here: a 500-thread 3.11 target froze for good when an
# export started). CPython's fix pauses the collector around the call; the agent does the same.
# 3.9/3.10 make no object there that the collector tracks; 3.12+ collects only at the eval breaker.
_PAUSE_GC = sys.version_info[:2] == (3, 11)


def frames_lazily() -> Iterator[Any]:
    """An iterator that, once consumed, has called ``sys._current_frames()`` and yielded its dict,
    all in C calls with no bytecode between them: on 3.11 the collector is paused first and
    enabled again (only if it was) when the iterator is exhausted, and no other thread runs
    meanwhile, so none sees it paused. Exhaust it (``current_frames`` does)."""
    if not _PAUSE_GC:
        return map(_CALL, (sys._current_frames,))
    was, results = itertools.tee(map(_CALL, (gc.isenabled, gc.disable, sys._current_frames)))
    back = filter(None, map(_CALL, itertools.compress((gc.enable,), was)))  # yields nothing (None is left out)
    return itertools.chain(itertools.islice(results, 2, None), back)


def current_frames() -> Dict[int, Any]:
    """``sys._current_frames()``, safe from the 3.11 hang above."""
    if not _PAUSE_GC:
        return sys._current_frames()
    (frames,) = frames_lazily()  # one instruction unpacks it: the whole run of C calls
    return frames


def original(module: str, name: str) -> Any:
    """The attribute as it was before gevent or eventlet patched it."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        try:
            return monkey.get_original(module, name)
        except Exception:
            pass
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None:
        try:
            return getattr(patcher.original(module), name)
        except Exception:
            pass
    __import__(module)
    return getattr(sys.modules[module], name)


def threading_is_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        try:
            if monkey.is_module_patched("threading"):
                return True
        except Exception:
            pass
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None:
        try:
            return bool(patcher.is_monkey_patched("thread"))
        except Exception:
            pass
    return False


def spawn(target: Callable[..., Any], name: str, *args: Any) -> Any:
    """Start a daemon OS thread named ``name``; returns a handle with ``join(timeout)``."""
    if not threading_is_patched():
        import threading

        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        return thread
    return _RawThread(target, name, args)


class _RawThread:
    """A real OS thread started behind a patched ``threading`` module's back."""

    def __init__(self, target: Callable[..., Any], name: str, args: tuple) -> None:
        self.name = name
        lock_type = original("_thread", "allocate_lock")
        self._done = lock_type()
        self._done.acquire()
        start = original("_thread", "start_new_thread")

        def run() -> None:
            try:
                target(*args)
            finally:
                self._done.release()

        start(run, ())

    def join(self, timeout: float = -1) -> None:
        if self._done.acquire(True, timeout):
            self._done.release()


def lock() -> Any:
    """A real lock (``_thread.allocate_lock`` as it was before any monkeypatching)."""
    return original("_thread", "allocate_lock")()


def rlock() -> Any:
    """A real reentrant lock."""
    return original("_thread", "RLock")()


class Event:
    """``threading.Event`` on a real lock: a patched Event blocks on a gevent hub nobody runs.

    The lock is held while the event is clear; ``wait`` passes when it can take it (and hands it
    straight back, so every waiter passes).
    """

    def __init__(self) -> None:
        self._lock = lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        if not self._set:
            self._set = True
            try:
                self._lock.release()
            except RuntimeError:
                pass  # a concurrent set() released it first

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: Optional[float] = None) -> bool:
        if self._set:
            return True
        if self._lock.acquire(True, -1 if timeout is None else max(0.0, timeout)):
            self._lock.release()
        return self._set


def socket_module() -> Any:
    """A namespace with the real ``socket`` constructor and constants."""
    import socket

    class _Namespace:
        pass

    ns = _Namespace()
    ns.__dict__.update({k: getattr(socket, k) for k in dir(socket) if k.isupper()})
    ns.socket = original("socket", "socket")  # type: ignore[attr-defined]
    ns.error = OSError  # type: ignore[attr-defined]
    return ns
