"""Where code comes from: the agent, the standard library, installed packages.

``AGENT_DIR`` and ``is_agent_thread`` tell the agent's own code and threads from the host's
(thread, top, memory); ``library_prefixes`` the directories of the standard library and installed
packages (trace, export fold calls into them).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional, Tuple

# Inside a target the agent's code is named "<peeka agent>/..." (boot.py loads it from memory).
AGENT_DIR = os.path.dirname(__file__ if __file__.startswith("<") else os.path.abspath(__file__))


def is_agent_thread(name: Optional[str], frame: Any) -> bool:
    """Whether a thread (its name, its innermost frame) is one the agent started."""
    if name is not None and name.startswith("peeka-agent"):
        return True
    # Threads the agent started behind a patched threading module have no Thread object:
    # their outermost frame is agent code. (The innermost may be agent code in any thread: a probe.)
    outermost = None
    depth = 0
    while frame is not None and depth < 10_000:
        outermost = frame
        frame = frame.f_back
        depth += 1
    if outermost is None:
        return False
    return outermost.f_code.co_filename.startswith(AGENT_DIR + os.sep)


def library_prefixes() -> Tuple[str, ...]:
    """The standard library's and installed packages' directories, longest first."""
    import sysconfig  # only trace and export need it: keep it off the attach path

    paths = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            paths.add(os.path.realpath(sysconfig.get_paths()[key]))
        except Exception:
            pass
    for p in sys.path:
        if p.endswith(("site-packages", "dist-packages")):
            paths.add(os.path.realpath(p))
    return tuple(sorted(paths, key=len, reverse=True))
