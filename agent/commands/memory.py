"""memory: how big the process is, what the garbage collector does, which object types fill it,
what grew over a few seconds, and (on demand) tracemalloc's allocation sites.

args: ``types`` (rows of the type census, default 20; 0 skips the census), ``sort`` ("size", the
default, or "count": how types are ranked, and with ``diff`` how growth is), ``max_objects`` (census
cap, default 2,000,000), ``max_seconds`` (census time cap, default 2), ``sample`` (bool: fit the census
into ``max_seconds`` by counting every k-th object k times instead of stopping early: estimates, said
so in ``census``), ``diff`` (s: census now and
again after that long, report what grew), ``tracemalloc`` ("start" | "top" | "diff" | "stop"),
``frames`` (tracemalloc start: traceback depth, default 1), ``limit`` (tracemalloc rows, default 20).

Result (bytes and seconds; None where /proc or a number is missing):
  process    {rss_bytes, vms_bytes, peak_rss_bytes, uss_bytes, pss_bytes, swap_bytes}
  gc         {enabled, counts [3], thresholds [3], frozen, generations: [{collections, collected,
              uncollectable}]}
  types      [{type ("module.qualname"), count, size_bytes}] by ``sort``: objects the GC tracks
             (containers and instances; ints and strings inside them are not tracked), shallow
             sys.getsizeof sizes
  containers [{type, id, len, size_bytes, name}]: the largest lists/dicts/sets/deques, ``name`` the
             ``module.NAME`` holding one when a module's global does
  census     {objects (visited), objects_tracked, truncated (a cap was hit), seconds, sampled_every
             (1: every object counted; k: every k-th after the first PROBE_OBJECTS, each counted k
             times: counts and sizes are estimates), gil_hold_max_seconds (the longest stretch the
             census held the GIL without a pause for the host's threads, gc.get_objects included)}
  tracemalloc {tracing, started_by_peeka, traced_bytes, peak_bytes}
With ``diff``: ``diff_s``, ``growth`` {rss_bytes, uss_bytes, vms_bytes deltas}, ``types`` rows gain
``count_delta`` and ``size_delta_bytes`` (only types that grew, most first by ``sort``) and ``containers`` those
that grew: ``len_before``, ``len`` and ``len_delta``.
tracemalloc top/diff: ``{tracemalloc: {...}, sites: [{file, line, size_bytes, count, size_delta_bytes?,
count_delta?}], since (epoch s of the baseline, diff only)}``; start/stop: ``{tracemalloc: {...}}``.
Peeka stops tracemalloc (on ``stop`` and on detach) only when Peeka started it.
"""

from __future__ import annotations

import collections
import gc
import heapq
import itertools
import math
import sys
import time
from typing import Any, Dict, Iterable, List, Tuple

from .. import compat, locks, origins, procfs
from ..streams import CommandError, float_arg, int_arg, on_detach

_CONTAINERS = frozenset((list, dict, set, collections.deque))  # exact types: no subclass __len__ runs
_STATE = "memory.tracemalloc"
_CHECK_EVERY = 20_000  # objects between looks at the clock (and a GIL release for the host)
PROBE_OBJECTS = 2_000  # a sampled census counts these all, and times them to choose its stride
SEGMENT = 5_000  # visits between two choices of a sampled census's stride
MIN_VISITS = 20_000  # a sampled census visits at least this many more (whatever the clock says): estimates stay close


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Dict[str, Any]:
    action = args.get("tracemalloc")
    if action is not None:
        return _tracemalloc(agent, action, args)
    rows = int_arg(args, "types", 20, 0, 100_000)
    order = args.get("sort", "size")
    if order not in ("size", "count"):
        raise CommandError("sort must be size or count, got %r" % (order,))
    max_objects = int_arg(args, "max_objects", 2_000_000, 1, 10**9)
    max_seconds = float_arg(args, "max_seconds", 2.0, 0.01) or 2.0
    sample = bool(args.get("sample", False))
    diff = float_arg(args, "diff", None, 0.1)
    if diff is not None and diff > 3600:
        raise CommandError("diff must be at most 3600 seconds, got %g" % diff)
    result: Dict[str, Any] = {"process": procfs.memory(), "gc": gc_facts()}
    if diff is None:
        if rows:
            counts, sizes, largest, facts = census(max_objects, max_seconds, sample)
            result["types"] = _type_rows(counts, sizes, {}, {}, order)[:rows]
            result["containers"] = _name_containers([dict(c) for c in largest])
            result["census"] = facts
    else:
        counts, sizes, largest, _facts = census(max_objects, max_seconds)
        compat.original("time", "sleep")(diff)  # in this client's reader thread (real sleep, also under gevent)
        after_counts, after_sizes, after_largest, facts = census(max_objects, max_seconds)
        after = procfs.memory()
        rows_all = _type_rows(after_counts, after_sizes, counts, sizes, order)
        grew = [r for r in rows_all if r["count_delta"] > 0 or r["size_delta_bytes"] > 0]
        if order == "size":
            grew.sort(key=lambda r: (-r["size_delta_bytes"], -r["count_delta"]))
        else:
            grew.sort(key=lambda r: (-r["count_delta"], -r["size_delta_bytes"]))
        result.update(
            diff_s=diff, process=after, census=facts, types=grew[: rows or 20],
            growth={k: _delta(after.get(k), result["process"].get(k)) for k in ("rss_bytes", "uss_bytes", "vms_bytes")},
            containers=_name_containers(_grown(largest, after_largest)),
        )
    result["tracemalloc"] = _tracemalloc_facts(agent)
    return result


def gc_facts() -> Dict[str, Any]:
    return {
        "enabled": gc.isenabled(),
        "counts": list(gc.get_count()),
        "thresholds": list(gc.get_threshold()),
        "frozen": gc.get_freeze_count() if hasattr(gc, "get_freeze_count") else None,
        "generations": [dict(s) for s in gc.get_stats()],
    }


def census(max_objects: int, max_seconds: float,
           sample: bool = False) -> Tuple[Dict[type, int], Dict[type, int], List[Dict[str, Any]], Dict[str, Any]]:
    """Counts and shallow sizes by type of the objects the GC tracks, and the 50 largest containers
    (among those visited). ``sample``: when counting every object would take longer than
    ``max_seconds`` (judged from the pace so far), count every k-th object k times (at least
    MIN_VISITS objects are visited, so a heap larger than the time allows still gets estimates)."""
    started = time.monotonic()
    walk = _Walk(started + max_seconds, max_objects, started)
    objects = gc.get_objects()
    total = len(objects)
    walk_started = time.monotonic()
    every = 1
    if not sample or total <= PROBE_OBJECTS:
        walk.visit(objects, 1)
    elif walk.visit(itertools.islice(objects, PROBE_OBJECTS), 1):
        # The rest in segments of SEGMENT visits, each with the stride that fits what is left of the
        # time at the pace so far (every object of a segment's stride counts ``every`` times: the
        # estimate stays unbiased when the stride changes). The visits bound the time: no deadline.
        walk.deadline = float("inf")
        position = PROBE_OBJECTS
        while position < total and not walk.truncated:
            now = time.monotonic()
            per_object = max(now - walk_started, 1e-9) / walk.visited
            affordable = max(0.8 * (started + max_seconds - now) / per_object, MIN_VISITS + PROBE_OBJECTS - walk.visited,
                             SEGMENT)
            every = max(every, math.ceil((total - position) / affordable))
            end = min(total, position + every * SEGMENT)
            walk.visit(itertools.islice(objects, position, end, every), every)
            walk.breathe()
            position = end
    del objects
    hold = max(walk.hold, time.monotonic() - walk.held_since)
    largest = [{"type": _type_name(type(o)), "id": i, "len": n, "size_bytes": sys.getsizeof(o), "object": o}
               for n, i, o in sorted(walk.heap, reverse=True)]
    facts = {"objects": walk.visited, "objects_tracked": total, "truncated": walk.truncated,
             "seconds": round(time.monotonic() - started, 4), "sampled_every": every,
             "gil_hold_max_seconds": round(hold, 4)}
    return walk.counts, walk.sizes, largest, facts


class _Walk:
    """A census's tallies, and its caps: objects visited and a deadline, checked (and the GIL given
    to the host's threads) every _CHECK_EVERY objects."""

    def __init__(self, deadline: float, max_objects: int, now: float) -> None:
        self.deadline = deadline
        self.max_objects = max_objects
        self.counts: Dict[type, int] = {}
        self.sizes: Dict[type, int] = {}
        self.heap: List[Tuple[int, int, Any]] = []
        self.visited = 0
        self.truncated = False
        self.held_since = now  # since the GIL was last handed over (gc.get_objects holds it too)
        self.hold = 0.0  # the longest such stretch

    def visit(self, objects: Iterable[Any], weight: int) -> bool:
        """Count ``objects``, each ``weight`` times; False when a cap stopped it."""
        counts, sizes, heap = self.counts, self.sizes, self.heap
        getsizeof = sys.getsizeof
        visited = self.visited
        for obj in objects:
            kind = type(obj)
            counts[kind] = counts.get(kind, 0) + weight
            try:
                sizes[kind] = sizes.get(kind, 0) + getsizeof(obj) * weight
            except Exception:
                pass
            if kind in _CONTAINERS:
                entry = (len(obj), id(obj), obj)
                if len(heap) < 50:
                    heapq.heappush(heap, entry)
                elif entry[0] > heap[0][0]:
                    heapq.heapreplace(heap, entry)
            visited += 1
            if visited % _CHECK_EVERY == 0:
                if visited >= self.max_objects or time.monotonic() > self.deadline:
                    self.truncated = True
                    break
                self.breathe()
        self.visited = visited
        return not self.truncated

    def breathe(self) -> None:
        """Hand the GIL to the host's threads for a moment (and note how long it was held)."""
        self.hold = max(self.hold, time.monotonic() - self.held_since)
        compat.original("time", "sleep")(0)  # the real one, also under gevent
        self.held_since = time.monotonic()


def _type_name(kind: type) -> str:
    module = getattr(kind, "__module__", None)
    name = getattr(kind, "__qualname__", kind.__name__)
    return name if module in (None, "builtins") else "%s.%s" % (module, name)


def _type_rows(counts: Dict[type, int], sizes: Dict[type, int], counts_before: Dict[type, int],
               sizes_before: Dict[type, int], order: str) -> List[Dict[str, Any]]:
    rows = []
    for kind, count in counts.items():
        row = {"type": _type_name(kind), "count": count, "size_bytes": sizes.get(kind, 0)}
        if counts_before or sizes_before:
            row["count_delta"] = count - counts_before.get(kind, 0)
            row["size_delta_bytes"] = row["size_bytes"] - sizes_before.get(kind, 0)
        rows.append(row)
    first, second = ("size_bytes", "count") if order == "size" else ("count", "size_bytes")
    rows.sort(key=lambda r: (-r[first], -r[second]))
    return rows


def _grown(before: List[Dict[str, Any]], after: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Containers among the largest both times (same id, same type) that got longer, or new ones."""
    old = {c["id"]: c for c in before}
    out = []
    for c in after:
        prior = old.get(c["id"])
        if prior is not None and prior["object"] is not c["object"]:
            prior = None  # a new object at a recycled address
        len_before = prior["len"] if prior is not None else None
        if len_before is None or c["len"] > len_before:
            out.append(dict(c, len_before=len_before, len_delta=c["len"] - (len_before or 0)))
    out.sort(key=lambda c: -c["len_delta"])
    return out[:20]


def _name_containers(containers: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    names = locks.global_names([c["object"] for c in containers])
    for c in containers:
        c["name"] = names.get(id(c.pop("object")))
    return containers


def _delta(after: Any, before: Any) -> Any:
    return None if after is None or before is None else after - before


# -- tracemalloc, on demand
def _tracemalloc_facts(agent: Any) -> Dict[str, Any]:
    import tracemalloc

    state = agent.state.get(_STATE) or {}
    tracing = tracemalloc.is_tracing()
    current, peak = tracemalloc.get_traced_memory() if tracing else (None, None)
    return {"tracing": tracing, "started_by_peeka": bool(state.get("started_by_peeka")) and tracing,
            "traced_bytes": current, "peak_bytes": peak, "frames": tracemalloc.get_traceback_limit()}


def _tracemalloc(agent: Any, action: Any, args: Dict[str, Any]) -> Dict[str, Any]:
    import tracemalloc

    state = agent.state.setdefault(_STATE, {})
    if action == "start":
        frames = int_arg(args, "frames", 1, 1, 100)
        if not tracemalloc.is_tracing():
            tracemalloc.start(frames)
            state.update(started_by_peeka=True, baseline=tracemalloc.take_snapshot(), since=time.time())
        elif "baseline" not in state:
            state.update(started_by_peeka=False, baseline=tracemalloc.take_snapshot(), since=time.time())
        return {"tracemalloc": _tracemalloc_facts(agent)}
    if action == "stop":
        if tracemalloc.is_tracing() and not state.get("started_by_peeka"):
            raise CommandError("tracemalloc was started by the application, not by peeka: it stays on")
        stop_tracemalloc(agent)
        return {"tracemalloc": _tracemalloc_facts(agent)}
    if action not in ("top", "diff"):
        raise CommandError("tracemalloc must be start, top, diff or stop, got %r" % (action,))
    if not tracemalloc.is_tracing():
        raise CommandError("tracemalloc is not tracing: start it first with `--tracemalloc start`")
    limit = int_arg(args, "limit", 20, 1, 10_000)
    snapshot = tracemalloc.take_snapshot().filter_traces((
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, origins.AGENT_DIR + "/*"),
    ))
    result: Dict[str, Any] = {"tracemalloc": _tracemalloc_facts(agent)}
    if action == "top":
        stats = snapshot.statistics("lineno")[:limit]
        result["sites"] = [_site(s.traceback, s.size, s.count) for s in stats]
        return result
    baseline = state.get("baseline")
    if baseline is None:
        baseline = tracemalloc.Snapshot([], tracemalloc.get_traceback_limit())
    result["since"] = state.get("since")
    diffs = snapshot.compare_to(baseline, "lineno")[:limit]
    result["sites"] = [dict(_site(d.traceback, d.size, d.count), size_delta_bytes=d.size_diff, count_delta=d.count_diff)
                       for d in diffs]
    state.update(baseline=snapshot, since=time.time())  # the next diff shows what came after this one
    return result


def _site(traceback: Any, size: int, count: int) -> Dict[str, Any]:
    frame = traceback[0]
    return {"file": frame.filename, "line": frame.lineno, "size_bytes": size, "count": count}


def stop_tracemalloc(agent: Any) -> None:
    import tracemalloc

    state = agent.state.pop(_STATE, None) or {}
    if state.get("started_by_peeka") and tracemalloc.is_tracing():
        tracemalloc.stop()


@on_detach
def cleanup(agent: Any) -> None:
    """Detach: tracemalloc off again when Peeka turned it on (the application's own stays on)."""
    stop_tracemalloc(agent)
