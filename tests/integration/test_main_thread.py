"""The main thread is always known: named MainThread, native id = pid, with its CPU, on every Python
3.9-3.14, whether or not the target imported ``threading`` (issue 13, part 4).

Real targets (tests/targets/bare_main.py) never import threading, run under ``-I -S``, and block in
``signal.pause()`` (or spin); a second thread started with ``_thread`` must get its native id. Ground
truth is what the target prints about itself (``_thread.get_native_id()`` in each thread). Then the
boot script's repair of ``threading``'s record, run as the agent's loader runs it (off the main
thread, importing threading first), in a fresh interpreter of each version.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import ROOT, VERSIONS, Target, peeka_cli, python_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180), pytest.mark.parallel]


def _threads(pid: int, *extra: str) -> dict:
    out = peeka_cli("thread", str(pid), "--json", *extra, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


@pytest.mark.timing  # the main thread's CPU % (spinning > 8, sleeping < 5)
@pytest.mark.parametrize("version", VERSIONS)
def test_main_thread_named_with_its_native_id(version: str) -> None:
    python = python_for(version)
    # -S for both: a site-packages .pth (setuptools' _distutils_hack) may import threading.
    for mode, flags in (("pause", ["-I", "-S"]), ("spin", ["-S"])):
        target = Target(python, "bare_main.py", mode, python_flags=flags)
        try:
            _, pid, main_tid, worker_tid = target.ready_line.split()
            assert pid == main_tid
            result = _threads(target.pid, "-i", "0.3")
            threads = {t["native_id"]: t for t in result["threads"]}
            main = threads[int(pid)]
            assert main["name"] == "MainThread" and main["is_main"] is True, main
            assert main["cpu_seconds"] is not None and main["cpu_percent"] is not None, main
            if mode == "spin":
                # It computes: its CPU is its own, not lost (a 2-core machine under load 16 gave it 17%).
                assert main["cpu_percent"] > 8, main
                assert any(f["function"] == "spin" for f in main["frames"]), main["frames"]
            else:
                assert main["state"] in ("S", "D") and main["cpu_percent"] < 5, main
            worker = threads[int(worker_tid)]  # started with _thread: no Thread object, the OS names it
            assert worker["is_main"] is False and worker["cpu_seconds"] is not None, worker
            assert sum(t["is_main"] for t in result["threads"]) == 1
            assert not any(n["native_id"] in (int(pid), int(worker_tid)) for n in result["native_threads"])
            assert peeka_cli("detach", str(target.pid)).returncode == 0
            assert target.alive()
        finally:
            err = target.stop()
        assert "Traceback" not in err and "Exception" not in err, err


_REPAIR = r'''
import _thread, os, sys, time
assert "threading" not in sys.modules
exec(open(sys.argv[1]).read())
main_ident = _thread.get_ident()
done = _thread.allocate_lock(); done.acquire()
seen = {}
def loader():
    import threading
    seen["before"] = (threading._main_thread.ident, threading._main_thread.native_id)
    _peeka_put_main_thread_right(threading, {})
    seen["loader"] = _thread.get_ident()
    done.release()
_thread.start_new_thread(loader, ())
done.acquire()
time.sleep(0.1)  # the loader thread has ended
import threading
main = threading.main_thread()
assert threading.current_thread() is main, (threading.current_thread(), main)
assert main.ident == main_ident and main.native_id == os.getpid(), (main.ident, main.native_id, seen)
assert main.is_alive() and seen["loader"] not in threading._active
print("ok", seen["before"][1] != os.getpid())
'''


@pytest.mark.parametrize("version", VERSIONS)
def test_boot_puts_threading_main_record_right(version: str) -> None:
    python = python_for(version)
    out = subprocess.run([python, "-I", "-S", "-c", _REPAIR, str(ROOT / "agent" / "boot.py")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr == "", out.stdout + out.stderr
    # threading's own record was wrong before the repair (it names the importing thread).
    assert out.stdout.split() == ["ok", "True"], out.stdout
