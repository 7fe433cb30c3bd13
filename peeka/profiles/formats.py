"""The file formats by name, as ``--format`` takes them, each encoded to a file's bytes."""

from __future__ import annotations

import json

from .collapsed import to_collapsed
from .model import Profile
from .speedscope import to_speedscope

FORMATS = ("collapsed", "pprof", "speedscope")
# What opens each format, for the line the CLI prints after writing a file.
OPEN_WITH = {
    "collapsed": "flamegraph.pl FILE > out.svg, or open it in speedscope",
    "pprof": "go tool pprof -http=: FILE, or send it to Pyroscope",
    "speedscope": "open it at speedscope.app, or `speedscope FILE`",
}


def encode(profile: Profile, format: str, name: str = "peeka") -> bytes:
    """``profile`` as a file in ``format`` (one of FORMATS)."""
    if format == "pprof":
        from .pprof import to_pprof  # protobuf, loaded only for pprof

        return to_pprof(profile)
    if format == "speedscope":
        return json.dumps(to_speedscope(profile, name=name), separators=(",", ":")).encode()
    if format == "collapsed":
        return to_collapsed(profile).encode()
    raise ValueError(f"unknown profile format {format!r}: one of {', '.join(FORMATS)}")
