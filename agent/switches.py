"""Greenlet switches (gevent, eventlet), for what must know when a traced call's greenlet runs.

A profile function belongs to an OS thread, and every greenlet of that thread runs under it: a
traced call that switches out (``gevent.sleep``, a green socket's wait) would log the calls of the
greenlets that run meanwhile as its own. greenlet calls one trace function per OS thread at each
switch (``greenlet.settrace``), with the greenlet left and the one entered; ``watch`` registers
an object per traced greenlet, told ``switched_out()`` when it is left and ``switched_in()`` when
it runs again, so the profiler is off while other greenlets run, as it is while an awaiting
coroutine is suspended.

The hook is installed on a thread by the first registration there and taken off by the last
unregistration there (greenlet only lets a thread set its own). A registration dropped from
another thread (a stream stopped while its call was switched out) leaves the hook to take itself
off at that thread's next switch. It calls the trace function that was there before it, and a
previous one is put back only if nobody replaced ours meanwhile (else ours stays, passing through).
Nothing is imported: a target that never loaded ``greenlet`` has no switches to see.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional

from . import compat


class Hook:
    """One OS thread's greenlet trace function and what it watches there."""

    def __init__(self, module: Any, ident: int) -> None:
        self.module = module
        self.ident = ident
        self.watched: Dict[int, List[Any]] = {}  # id(greenlet) -> listeners (each has .greenlet)
        self.previous: Any = None
        self.installed = False

    def __call__(self, event: str, args: Any) -> Any:
        try:
            self._switch(event, args)
        except Exception:
            pass  # a greenlet trace function that raises would break the host's switch
        previous = self.previous
        if previous is not None:
            return previous(event, args)
        return None

    def _switch(self, event: str, args: Any) -> None:
        watched = self.watched
        if not watched:
            self.uninstall()
            return
        if event != "switch" and event != "throw":
            return
        origin, target = args
        left = watched.get(id(origin))
        if left is not None:
            for listener in list(left):
                if listener.greenlet is origin:
                    listener.switched_out()
        entered = watched.get(id(target))
        if entered is not None:
            for listener in list(entered):
                if listener.greenlet is target:
                    listener.switched_in()

    def install(self) -> bool:
        if self.installed:
            return True
        try:
            self.previous = self.module.settrace(self)
        except Exception:
            return False
        self.installed = True
        return True

    def uninstall(self) -> None:
        """On its own thread only. Puts the previous trace function back unless another replaced ours."""
        if not self.installed:
            return
        try:
            if self.module.gettrace() is self:
                self.module.settrace(self.previous)
                self.installed = False
                self.previous = None
                _HOOKS.pop(self.ident, None)
        except Exception:
            pass


_HOOKS: Dict[int, Hook] = {}  # OS thread ident -> its hook


def _os_ident() -> int:
    return _get_ident()


_get_ident = compat.original("_thread", "get_ident")


def current() -> Optional[Any]:
    """The greenlet running now, or None when greenlet is not loaded."""
    module = sys.modules.get("greenlet")
    getcurrent = getattr(module, "getcurrent", None)
    if getcurrent is None or getattr(module, "settrace", None) is None:
        return None
    try:
        return getcurrent()
    except Exception:
        return None


def watch(listener: Any) -> bool:
    """Tell ``listener`` (with ``.greenlet``, ``switched_out()``, ``switched_in()``) when its
    greenlet is switched out and in on this thread; False when greenlet cannot say."""
    module = sys.modules.get("greenlet")
    if module is None or listener.greenlet is None:
        return False
    ident = _os_ident()
    hook = _HOOKS.get(ident)
    if hook is None:
        hook = _HOOKS[ident] = Hook(module, ident)
    if not hook.install():
        return False
    hook.watched.setdefault(id(listener.greenlet), []).append(listener)
    return True


def unwatch(listener: Any, here: bool = True) -> None:
    """No more switches for ``listener``; ``here``: called on the thread that watched it (the hook
    comes off now when nothing else is watched there; otherwise at that thread's next switch)."""
    for hook in list(_HOOKS.values()):
        listeners = hook.watched.get(id(listener.greenlet))
        if listeners is None or listener not in listeners:
            continue
        listeners.remove(listener)
        if not listeners:
            hook.watched.pop(id(listener.greenlet), None)
        if here and not hook.watched and hook.ident == _os_ident():
            hook.uninstall()


def follow(listener: Any, registry: Dict[int, Any]) -> None:
    """Watch the greenlet running now for ``listener`` (sets ``listener.greenlet``, None when there
    is nothing to watch), noting it in ``registry`` (id -> listener) for ``drop``/``drop_all``."""
    listener.greenlet = current()
    if listener.greenlet is not None:
        if watch(listener):
            registry[id(listener)] = listener
        else:
            listener.greenlet = None


def drop(listener: Any, registry: Dict[int, Any]) -> None:
    """The listener's call ended (on its own thread): no more switches for it."""
    if listener.greenlet is not None:
        unwatch(listener)
        registry.pop(id(listener), None)
        listener.greenlet = None


def drop_all(registry: Dict[int, Any]) -> None:
    """A stream stopped (on the agent's thread): calls switched out now may never run again."""
    for listener in list(registry.values()):
        unwatch(listener, here=False)
    registry.clear()
