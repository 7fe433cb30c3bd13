"""The agent's code objects, compiled once per interpreter build by that interpreter itself.

Compiling the agent's modules inside the target holds the GIL for the whole compile (the boot
modules, ``inspect``'s, ``thread``'s: tens of ms each), so the host stalls and the answer waits.
Instead the target's own executable (``/proc/PID/exe``: the same build, so the same bytecode)
compiles every module once, in a child process of the client; the result is cached in
``$XDG_CACHE_HOME/peeka/code`` under a key made of that executable's identity and the sources'
hash, and shipped beside launch.py as ``code.bin``: the interpreter's magic number, then a
marshalled ``{module key: marshalled code}``. Inside the target the loader uses an entry only
when the magic number is its own, and compiles the source otherwise.

A cache miss never slows the attach: the compiling child is left to run on its own (it writes
the cache entry itself, atomically) and this attach ships the sources alone, as before.

Anything that goes wrong here (a target in another mount namespace whose executable does not run
here, a cache we did not write) only means the target compiles the sources, as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

from ..process import TargetProcess

FILE = "code.bin"  # beside launch.py in the files directory
# Runs in the target's executable (no site, no user paths: -I -S): argv = the sources as a JSON
# file (removed once read), the cache entry to write (through a temporary file and a rename).
_COMPILE = (
    "import sys, os, json, marshal, importlib.util\n"
    "with open(sys.argv[1], 'rb') as f:\n"
    "    sources = json.loads(f.read())\n"
    "os.unlink(sys.argv[1])\n"
    "table = {key: marshal.dumps(compile(text, '<peeka agent>/%s.py' % key, 'exec'))\n"
    "         for key, text in sources.items()}\n"
    "tmp = sys.argv[2] + '.%d' % os.getpid()\n"
    "fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)\n"
    "with os.fdopen(fd, 'wb') as out:\n"
    "    out.write(importlib.util.MAGIC_NUMBER + marshal.dumps(table))\n"
    "os.replace(tmp, sys.argv[2])\n"
)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "peeka" / "code"


def code_for(target: TargetProcess, sources: dict[str, str]) -> bytes | None:
    """code.bin for these sources in this target from the cache; None when there is none yet
    (a child then makes it for the next attach) or it cannot be made here."""
    if not target.same_mount_namespace:
        return None  # its executable may need libraries that exist only in its own filesystem
    exe = f"/proc/{target.pid}/exe"
    try:
        st = os.stat(exe)
    except OSError:
        return None
    digest = hashlib.sha256()
    digest.update(f"{os.path.realpath(exe)}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    for key in sorted(sources):
        digest.update(b"\0" + key.encode() + b"\0" + sources[key].encode())
    path = cache_dir() / (digest.hexdigest()[:32] + ".bin")
    cached = _read_own(path)
    if cached is None:
        _make(exe, sources, path)
    return cached


def _read_own(path: Path) -> bytes | None:
    """The file's bytes if it is ours and nobody else could have written it."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return None
            return f.read()
    except OSError:
        return None


# Children still compiling: kept so that they are reaped (not collected while running).
MAKING: list[subprocess.Popen[bytes]] = []


def _make(exe: str, sources: dict[str, str], path: Path) -> subprocess.Popen[bytes] | None:
    """Start the target's executable compiling ``sources`` into ``path``; not waited for."""
    MAKING[:] = [child for child in MAKING if child.poll() is None]
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, request = tempfile.mkstemp(dir=path.parent, prefix=".sources-")
        with os.fdopen(fd, "w") as f:
            json.dump(sources, f)
        child = subprocess.Popen([exe, "-I", "-S", "-c", _COMPILE, request, str(path)], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        MAKING.append(child)
        return child
    except OSError:
        return None
