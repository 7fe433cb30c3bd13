"""Target for the probe-path tests: runs an app module's loop (``start()``, default probeshapes; the
escape corpus passes escapeapp) and starts the agent itself.

Prints "ready <socket>" once the agent listens; exits when its stdin closes.
"""

import importlib
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peeka_agent import runtime  # noqa: E402


def main():
    app = importlib.import_module(sys.argv[1] if len(sys.argv) > 1 else "probeshapes")
    stop = app.start()
    socket_path = os.path.join(tempfile.gettempdir(), f"peeka_{os.getpid()}.sock")
    runtime.start({"module": "peeka_agent", "socket_path": socket_path, "files_dir": None, "method": "in-process"})
    print("ready", socket_path, flush=True)
    sys.stdin.read()
    stop.set()


if __name__ == "__main__":
    main()
