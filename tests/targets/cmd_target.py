"""Target for the command tests: runs cmdapp and starts the agent itself (no gdb, no remote_exec).

The agent listens on $TMPDIR/peeka_<pid>.sock, where a client finds it for this PID. Prints
"ready <socket>" once it listens; exits when its stdin closes.
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cmdapp  # noqa: E402
from peeka_agent import runtime  # noqa: E402


def main():
    cmdapp.workers.start(2)
    socket_path = os.path.join(tempfile.gettempdir(), f"peeka_{os.getpid()}.sock")
    runtime.start(
        {"module": "peeka_agent", "socket_path": socket_path, "files_dir": None, "method": "in-process"}
    )
    greeting = "waiting for stdin to close"
    print("ready", socket_path, flush=True)
    sys.stdin.read()
    cmdapp.workers.stop()
    return greeting


if __name__ == "__main__":
    main()
