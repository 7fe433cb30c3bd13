"""speedscope's JSON file format: frames shared by all profiles, one sampled profile per thread."""

from __future__ import annotations

from typing import Any

from .model import Frame, Profile

SCHEMA = "https://www.speedscope.app/file-format-schema.json"


def to_speedscope(profile: Profile, name: str = "peeka") -> dict[str, Any]:
    """With CPU measured, each thread's profile weighs its stacks in CPU nanoseconds (waits weigh
    nothing, so are left out); else in wall-clock samples (unit none). A frame is a function: its
    file and the line of its def, so a function's samples at different lines merge into one box."""
    frames: dict[Frame, int] = {}
    by_thread: dict[str, tuple[list[list[int]], list[int]]] = {}
    for sample in profile.samples:
        weight = sample.cpu_ns if profile.cpu else sample.count
        if weight <= 0:
            continue
        stack = []
        for frame in reversed(sample.frames):  # speedscope wants outermost first
            key = frame._replace(line=0)
            stack.append(frames.setdefault(key, len(frames)))
        stacks, weights = by_thread.setdefault(sample.thread, ([], []))
        stacks.append(stack)
        weights.append(weight)
    unit = "nanoseconds" if profile.cpu else "none"
    what = "CPU time" if profile.cpu else "wall-clock samples"
    profiles = [{"type": "sampled", "name": f"thread {thread} ({what})", "unit": unit, "startValue": 0,
                 "endValue": sum(weights), "samples": stacks, "weights": weights}
                for thread, (stacks, weights) in sorted(by_thread.items(), key=lambda kv: -sum(kv[1][1]))]
    shared = []
    for frame in frames:
        entry: dict[str, Any] = {"name": frame.function}
        if frame.file:
            entry["file"] = frame.file
        if frame.start_line:
            entry["line"] = frame.start_line
        shared.append(entry)
    return {"$schema": SCHEMA, "name": name, "exporter": "peeka", "activeProfileIndex": 0,
            "shared": {"frames": shared}, "profiles": profiles}
