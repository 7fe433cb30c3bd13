"""Target for test_agent_manners: CPython 3.11's sys._current_frames() hang (gh-106883).

    python current_frames_gc.py AGENT_DIR raw|agent

Fifty threads wait (their frames have no frame objects yet); a threading.local waits in garbage
cycles; the collector's threshold is set so that a collection starts while sys._current_frames()
makes the frame objects, holding the thread-list lock that freeing the threading.local needs. On
3.11 before 3.11.9 ``raw`` hangs for good; ``agent`` lists through the agent's compat.current_frames
and threadids.native_ids, prints "listed N M", and exits.
"""

import gc
import importlib
import importlib.util
import sys
import threading
import time


class Holder:
    pass


def garbage():
    """Cyclic garbage whose freeing needs the thread-list lock, the next collection due soon."""
    gc.set_threshold(30)
    gc.collect()
    for _ in range(3):
        holder = Holder()
        holder.local = threading.local()
        holder.me = holder
        del holder


def main():
    agent, mode = sys.argv[1], sys.argv[2]
    spec = importlib.util.spec_from_file_location("pk_agent", agent + "/__init__.py", submodule_search_locations=[agent])
    package = importlib.util.module_from_spec(spec)
    sys.modules["pk_agent"] = package
    spec.loader.exec_module(package)
    compat = importlib.import_module("pk_agent.compat")
    threadids = importlib.import_module("pk_agent.threadids")
    stop = threading.Event()
    for _ in range(50):
        threading.Thread(target=stop.wait, daemon=True).start()
    time.sleep(0.2)
    garbage()
    if mode == "raw":
        frames = sys._current_frames()
        print("listed", len(frames), flush=True)
        return
    frames = compat.current_frames()
    garbage()
    native = threadids.native_ids()
    print("listed", len(frames), len(native), "gc", gc.isenabled(), flush=True)


if __name__ == "__main__":
    main()
