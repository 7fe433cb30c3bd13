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


# --------------------------------------------------------------------------- qualified names
# 3.11+ code objects carry co_qualname; on 3.9/3.10 a method's code says only ``__init__``. Its
# function object knows (``__qualname__``), so the function is found among the module's functions
# and the classes defined there, by the identity of its code object. Nothing of the app's runs:
# values are told apart by their exact type, attributes read from a type's own __dict__, and
# (static/class) methods and properties unwrapped only when they are the builtin kinds.
_QUALNAMES: Dict[int, Any] = {}  # id(code) -> (code, qualname): the code is held, so its id stays its own
_QUALNAMES_MAX = 4096
_FUNCTION = type(lambda: None)
_MODULE = type(sys)


def _functions_of(member: Any) -> Iterator[Any]:
    kind = type(member)
    if kind is _FUNCTION:
        yield member
    elif kind is staticmethod or kind is classmethod:
        yield member.__func__
    elif kind is property:
        for accessor in (member.fget, member.fset, member.fdel):
            if type(accessor) is _FUNCTION:
                yield accessor


def _find_qualname(code: Any, namespace: Dict[str, Any]) -> Optional[str]:
    classes = []
    for value in list(namespace.values()):
        for func in _functions_of(value):
            if func.__code__ is code:
                return func.__qualname__
        if type in type(value).__mro__:
            classes.append(value)
    seen = 0
    while classes and seen < 2000:  # classes and the classes nested in them, a bounded walk
        cls = classes.pop()
        seen += 1
        for member in list(type.__dict__["__dict__"].__get__(cls).values()):
            for func in _functions_of(member):
                if func.__code__ is code:
                    return func.__qualname__
            if type in type(member).__mro__:
                classes.append(member)
    return None


if sys.version_info >= (3, 11):
    def qualname(code: Any, namespace: Optional[Dict[str, Any]] = None) -> str:
        """The code's qualified name (``Class.method``): 3.11+ has it on the code object."""
        return code.co_qualname  # type: ignore[no-any-return]
else:
    def qualname(code: Any, namespace: Optional[Dict[str, Any]] = None) -> str:
        """The code's qualified name (``Class.method``), found in ``namespace`` (its function's
        module globals) on 3.9/3.10; ``co_name`` when it is not there (nested functions, code
        whose function is gone) or no namespace is given."""
        known = _QUALNAMES.get(id(code))
        if known is not None and known[0] is code:
            return known[1]  # type: ignore[no-any-return]
        if type(namespace) is not dict:
            return code.co_name  # type: ignore[no-any-return]
        try:
            name = _find_qualname(code, namespace) or code.co_name
        except Exception:
            name = code.co_name
        if len(_QUALNAMES) >= _QUALNAMES_MAX:
            _QUALNAMES.clear()
        _QUALNAMES[id(code)] = (code, name)
        return name  # type: ignore[no-any-return]


def module_namespace(name: Optional[str]) -> Optional[Dict[str, Any]]:
    """The globals of the loaded module ``name`` (a real module object), else None."""
    module = sys.modules.get(name) if type(name) is str else None
    if module is None or _MODULE not in type(module).__mro__:
        return None
    namespace = _MODULE.__dict__["__dict__"].__get__(module)
    return namespace if type(namespace) is dict else None
