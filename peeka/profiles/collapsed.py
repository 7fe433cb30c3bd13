"""Brendan Gregg's collapsed stacks (flamegraph.pl, speedscope, Pyroscope's ingest): one
``thread NAME;outer;...;inner COUNT`` line per stack."""

from __future__ import annotations

from .model import Profile


def to_collapsed(profile: Profile) -> str:
    """Counts are whole samples, which flamegraph.pl wants: with CPU measured, the CPU time in
    sampling periods (a thread busy for the whole recording counts one per round), else the
    wall-clock samples. ``;`` inside a name would split a frame: it becomes ``:``. Stacks that
    round to 0 are left out; the heaviest come first."""
    merged: dict[str, float] = {}
    for sample in profile.samples:
        value = sample.cpu_ns / profile.period_ns if profile.cpu else sample.count
        if not value:
            continue
        frames = [f"thread {sample.thread}"] + [f.function for f in reversed(sample.frames)]
        line = ";".join(f.replace(";", ":") for f in frames)
        merged[line] = merged.get(line, 0.0) + value
    rounded = [(line, round(value)) for line, value in merged.items()]
    return "".join(f"{line} {count}\n" for line, count in sorted(rounded, key=lambda p: (-p[1], p[0])) if count > 0)
