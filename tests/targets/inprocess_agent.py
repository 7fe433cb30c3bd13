"""Start Peeka's agent inside this target (no attach needed), as an attached one would run."""

import os
import tempfile


def start():
    from peeka_agent import runtime

    socket_path = os.path.join(tempfile.gettempdir(), f"peeka_{os.getpid()}.sock")
    runtime.start({"module": "peeka_agent", "socket_path": socket_path, "files_dir": None, "method": "in-process"})
