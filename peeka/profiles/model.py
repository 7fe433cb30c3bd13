"""The profile every output format is built from: stacks of frames with what was measured for each.

A sampled stack carries two measures that must not be confused (a profile of waits is not a CPU
profile): ``count``, how many times the sampler found the thread in that stack, waiting or not (a
wall-clock measure: ``count`` times the sampling period is wall time), and ``cpu_ns``, the CPU time
the thread used in it (from its own CPU clock, so a wait uses none). A profile says which of the
two it measured; each format then names them (pprof sample types, speedscope units).
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

NO_LABELS: Mapping[str, str] = types.MappingProxyType({})


class Frame(NamedTuple):
    """One function on a stack; ``line`` is the line it was at (0: not known)."""

    function: str  # "module.qualname", as top shows it
    file: str = ""
    start_line: int = 0  # the line of its def
    line: int = 0


class Sample(NamedTuple):
    """One distinct stack of one thread, with its totals over the profile."""

    thread: str
    frames: tuple[Frame, ...]  # innermost first
    count: int = 0  # wall-clock samples: times the sampler found the thread here
    cpu_ns: int = 0  # CPU nanoseconds the thread used here
    # More per-sample labels (pprof string labels), e.g. trace_id/span_id linking to a span.
    labels: Mapping[str, str] = NO_LABELS


class Profile(NamedTuple):
    """A recording: its samples, when it started and how long it ran, and what it measured."""

    samples: Sequence[Sample]
    start_ns: int  # epoch nanoseconds
    duration_ns: int
    period_ns: int  # between two sampling rounds: 1e9 / rate
    cpu: bool  # cpu_ns was measured (per-thread CPU clocks); False: a wall-clock profile only
    counted: bool = True  # count was measured (False: only cpu_ns is meaningful)
    comments: tuple[str, ...] = ()


def from_top_record(event: Mapping[str, Any]) -> Profile:
    """The profile of ``peeka top --record``: the agent's ``profile`` event (agent/commands/top.py)
    carries a shared frame table and stacks of indices into it."""
    table = [Frame(str(f[0]), str(f[1] or ""), int(f[2] or 0), int(f[3] or 0)) for f in event["frames"]]
    cpu = event.get("weighting") == "cpu"
    samples = [Sample(str(s["thread"]), tuple(table[i] for i in s["frames"]), int(s["samples"]),
                      int(s.get("cpu_ns") or 0))
               for s in event["stacks"]]
    duration_ns = int(float(event["duration_s"]) * 1e9)
    ticks = int(event["ticks"])
    # The period achieved (a loaded host delays the sampler), so samples times period is wall time.
    period_ns = duration_ns // ticks if ticks else int(1e9 / float(event["rate_hz"]))
    comments = [f"peeka top --record: {ticks} sampling rounds in {float(event['duration_s']):g} s "
                f"(asked {float(event['rate_hz']):g} Hz), weighting {event.get('weighting')}"]
    if event.get("apportioned_percent"):
        comments.append(f"{event['apportioned_percent']}% of the CPU time was shared out from calls that returned "
                        "between samples (like the calls caught running under the same caller)")
    return Profile(samples, int(float(event["time"]) * 1e9), duration_ns, period_ns, cpu, True, tuple(comments))
