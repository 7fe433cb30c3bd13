"""The unpatched primitives the agent runs on.

A host may have monkeypatched ``socket``/``threading`` (gevent, eventlet): the agent must still get
real OS threads and blocking sockets, or it would hang on a hub that the host never runs.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional


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
