"""A stack sampler over ``sys._current_frames()`` and the arithmetic of its profiles.

The sampler runs in an agent thread and holds the GIL while it samples, so the hot path does the
least it can: walk each thread's frames into a tuple of code objects and count that tuple in a
dict. Names, filtering, self/total shares and collapsed stacks are made later, once per report,
from those counts (``label_stacks``, ``summarize``, ``collapsed``), which are pure functions.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

RawStacks = Dict[Tuple[int, Tuple[Any, ...]], int]  # (thread ident, code objects innermost first) -> samples
Labelled = Dict[Tuple[str, Tuple[str, ...]], float]  # (thread name, labels innermost first) -> weighted samples


_RESUMABLE = 0x20 | 0x80 | 0x200  # CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR


class Sampler:
    def __init__(self) -> None:
        self.stacks: RawStacks = {}
        self.ticks = 0
        self.busy_seconds = 0.0  # time spent sampling (GIL held): the sampler's own cost
        self.skip: FrozenSet[int] = frozenset()
        # ident -> (innermost frame, key): a frame still running has the same callers as when it was
        # last walked, so a thread parked in the same frame (waiting, sleeping) costs one lookup.
        self._last: Dict[int, Tuple[Any, Tuple[int, Tuple[Any, ...]]]] = {}

    def sample(self) -> None:
        started = time.perf_counter()
        stacks = self.stacks
        skip = self.skip
        last = self._last
        for ident, frame in sys._current_frames().items():
            if ident in skip:
                continue
            seen = last.get(ident)
            if seen is not None and seen[0] is frame:
                key = seen[1]
            else:
                codes = []
                walk = frame
                while walk is not None:
                    codes.append(walk.f_code)
                    walk = walk.f_back
                key = (ident, tuple(codes))
                # A generator's frame can be resumed from another caller: never reuse its stack.
                if not frame.f_code.co_flags & _RESUMABLE:
                    last[ident] = (frame, key)
            stacks[key] = stacks.get(key, 0) + 1
        self.ticks += 1
        self.busy_seconds += time.perf_counter() - started

    def take(self) -> Tuple[RawStacks, int, float]:
        """The counts so far, and start afresh: ``(stacks, ticks, busy seconds)``."""
        taken = self.stacks, self.ticks, self.busy_seconds
        self.stacks, self.ticks, self.busy_seconds = {}, 0, 0.0
        self._last = {}  # let go of the frames: threads end, frames finish
        return taken


class Names:
    """Code object -> ``module.qualname``, and where it is defined; module found from the file."""

    def __init__(self) -> None:
        self._labels: Dict[Any, str] = {}
        self.where: Dict[str, Tuple[str, int]] = {}
        self._modules: Optional[Dict[str, str]] = None

    def label(self, code: Any) -> str:
        label = self._labels.get(code)
        if label is None:
            qualname = getattr(code, "co_qualname", code.co_name)
            module = self._module(code.co_filename)
            label = "%s.%s" % (module, qualname) if module else "%s (%s)" % (qualname, code.co_filename)
            self._labels[code] = label
            self.where[label] = (code.co_filename, code.co_firstlineno)
        return label

    def _module(self, filename: str) -> Optional[str]:
        if self._modules is None or filename not in self._modules:
            self._modules = {}
            for name, module in list(sys.modules.items()):
                path = getattr(module, "__file__", None)
                if isinstance(path, str):
                    self._modules.setdefault(path, name)
                    self._modules.setdefault(os.path.abspath(path), name)
            self._modules.setdefault(filename, "")  # unknown: do not rescan for it
        return self._modules.get(filename) or None


def label_stacks(raw: RawStacks, weights: Optional[Dict[int, float]], thread_names: Dict[int, str],
                 names: Names) -> Labelled:
    """Raw counts -> counts by thread name and labels, each thread's counts times its weight.

    ``weights`` None counts every sample as 1; otherwise a thread absent from it is left out.
    """
    out: Labelled = {}
    for (ident, codes), count in raw.items():
        weight = 1.0 if weights is None else weights.get(ident)
        if weight is None:
            continue
        key = (thread_names.get(ident, str(ident)), tuple(names.label(c) for c in codes))
        out[key] = out.get(key, 0) + count * weight
    return out


def merge(into: Labelled, more: Labelled) -> None:
    for key, count in more.items():
        into[key] = into.get(key, 0) + count


def summarize(stacks: Labelled, where: Dict[str, Tuple[str, int]], limit: int) -> Tuple[float, List[Dict[str, Any]]]:
    """``(samples, functions)``: each function's self samples (innermost frame) and total samples
    (anywhere on the stack, counted once per sample), as shares of all samples, by self then total."""
    own: Dict[str, float] = {}
    total: Dict[str, float] = {}
    samples = 0.0
    for (_thread, labels), count in stacks.items():
        samples += count
        if labels:
            own[labels[0]] = own.get(labels[0], 0) + count
        for label in set(labels):
            total[label] = total.get(label, 0) + count
    ranked = sorted(total, key=lambda f: (-own.get(f, 0), -total[f], f))[:limit]
    functions = []
    for label in ranked:
        file, line = where.get(label, (None, None))
        functions.append({
            "function": label, "file": file, "line": line,
            "self_samples": round(own.get(label, 0), 2), "total_samples": round(total[label], 2),
            "self_percent": round(100.0 * own.get(label, 0) / samples, 2) if samples else 0.0,
            "total_percent": round(100.0 * total[label] / samples, 2) if samples else 0.0,
        })
    return round(samples, 2), functions


def collapsed(stacks: Labelled) -> List[List[Any]]:
    """Brendan Gregg's collapsed format, as ``[line, count]`` pairs: ``thread NAME;outer;...;inner``.

    ``;`` inside a name would split a frame: it becomes ``:``. Weighted counts are rounded to whole
    samples (flamegraph.pl and speedscope want integers); stacks that round to 0 are left out.
    """
    merged: Dict[str, float] = {}
    for (thread, labels), count in stacks.items():
        frames = ["thread %s" % thread] + list(reversed(labels))
        line = ";".join(f.replace(";", ":") for f in frames)
        merged[line] = merged.get(line, 0) + count
    rounded = [[line, int(round(count))] for line, count in merged.items()]
    return sorted((pair for pair in rounded if pair[1] > 0), key=lambda pair: (-pair[1], pair[0]))
