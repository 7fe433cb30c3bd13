"""Profiles in the formats people open them in: pprof (``go tool pprof``, Pyroscope), speedscope and
collapsed stacks, built from one model (``Profile`` of ``Sample``s of ``Frame``s) on the client.

The pprof names load protobuf, so they are imported on first use: ``peeka top`` starts without it.
"""

from __future__ import annotations

from typing import Any

from .collapsed import to_collapsed
from .formats import FORMATS, OPEN_WITH, encode
from .model import NO_LABELS, Frame, Profile, Sample, from_top_record
from .speedscope import to_speedscope

_PPROF = ("THREAD_LABEL", "to_pprof", "to_profile_message")

__all__ = ["FORMATS", "NO_LABELS", "OPEN_WITH", "THREAD_LABEL", "Frame", "Profile", "Sample", "encode",
           "from_top_record", "to_collapsed", "to_pprof", "to_profile_message", "to_speedscope"]


def __getattr__(name: str) -> Any:
    if name in _PPROF:
        from . import pprof

        return getattr(pprof, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
