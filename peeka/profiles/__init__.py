"""Profiles in the formats people open them in: pprof (``go tool pprof``, Pyroscope), speedscope and
collapsed stacks, built from one model (``Profile`` of ``Sample``s of ``Frame``s) on the client."""

from .collapsed import to_collapsed
from .model import NO_LABELS, Frame, Profile, Sample, from_top_record
from .pprof import THREAD_LABEL, to_pprof, to_profile_message
from .speedscope import to_speedscope

__all__ = ["NO_LABELS", "THREAD_LABEL", "Frame", "Profile", "Sample", "from_top_record", "to_collapsed", "to_pprof",
           "to_profile_message", "to_speedscope"]
