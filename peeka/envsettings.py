"""Positive numbers read from environment variables, one wording for every bad value.

Used by the attach step (the agent's connection limits, ``PEEKA_AGENT_*``) and by the sidecar's
span queue (``OTEL_BSP_*``): an unset or empty variable keeps the default, anything that is not a
positive number of the expected kind is a UsageError naming the variable and its default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from .errors import UsageError

Number = TypeVar("Number", int, float)


def positive_number(environ: Mapping[str, str], name: str, default: Number) -> Number:
    """``environ[name]`` as a number of ``default``'s type (int: a whole number), above 0; unset: ``default``."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    kind = type(default)
    what = "a whole number" if kind is int else "a number"
    try:
        value = kind(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not {what}", f"Set {name} to {what} above 0 (default {default}).") from None
    if value <= 0:
        raise UsageError(f"{name}={raw!r} must be above 0", f"Set {name} to {what} above 0 (default {default}).")
    return value
