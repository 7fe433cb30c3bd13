"""Which gdb to run, and whether it can call functions in a process on this machine.

Order: ``$PEEKA_GDB`` (a gdb binary, or the ``gdb`` wrapper of a gdb-for-pwndbg in another
environment, for a client whose own Python cannot host it); the gdb bundled with the ``gdb-for-pwndbg`` wheel (a current gdb that
peeka's own environment installs); the ``gdb`` on PATH. Each candidate is probed once per machine
(cached): gdb attaches to a throwaway ``sleep`` and calls ``getpid()`` there. The probe exists
because a gdb can attach fine and still fail every inferior call: gdb 13 (Debian 12's) cannot
restore a thread's registers on CPUs whose XSAVE area is larger than it knows (AMX, Sapphire
Rapids and later: "Couldn't write extended state status"), and a failed call leaves the
interrupted thread with a corrupted system call. Finding that out on the user's process is too late.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GdbMissing

PROBE_TIMEOUT = 20.0
UNKNOWN = "unknown"
SYSTEM_PYTHON_PACKAGE = Path("/usr/share/gdb/python/gdb")


@dataclass(frozen=True)
class Gdb:
    path: str
    python_package: Path  # gdb's own ``gdb`` Python package, copied into a lean data directory
    env: dict[str, str] = field(default_factory=dict)  # what the binary needs to start
    origin: str = "PATH"

    def environment(self) -> dict[str, str]:
        """The environment to run it in: ours without Python's variables, plus its own."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DEBUGINFOD"))}
        env["PYTHONNOUSERSITE"] = "1"
        env.update(self.env)
        return env


_BUNDLED_PATHS = """
import json, sys, sysconfig
from pathlib import Path
try:
    import gdb_for_pwndbg
except ImportError:
    print("null"); raise SystemExit
package_dir = Path(gdb_for_pwndbg.__file__).resolve().parent
home = sys.base_prefix if sys.base_prefix == sys.base_exec_prefix else sys.base_prefix + ":" + sys.base_exec_prefix
print(json.dumps({"binary": str(package_dir / "_vendor" / "bin" / "gdb"),
                  "python_package": str(package_dir.parent / "gdb"),
                  "libdir": sysconfig.get_config_var("LIBDIR") or "",
                  "soname": sysconfig.get_config_var("INSTSONAME") or "", "home": home}))
"""


def _bundled(python: str | None = None, origin: str = "gdb-for-pwndbg") -> Gdb | None:
    """The gdb inside the ``gdb-for-pwndbg`` wheel of this environment (or of ``python``'s), run
    directly rather than through its wrapper script: it embeds that interpreter's shared libpython."""
    if python is None:
        scope: dict[str, object] = {}
        try:
            with contextlib.redirect_stdout(io.StringIO()) as out:
                exec(_BUNDLED_PATHS, scope)  # noqa: S102 - our own constant: one code path for both cases
        except SystemExit:
            return None
        text = out.getvalue()
    else:
        try:
            text = subprocess.run([python, "-c", _BUNDLED_PATHS], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
    try:
        info = json.loads(text)
    except ValueError:
        return None
    if not info:
        return None
    binary, python_package = Path(info["binary"]), Path(info["python_package"])
    if not (binary.is_file() and (python_package / "__init__.py").is_file()):
        return None
    if not (info["libdir"] and info["soname"] and (Path(info["libdir"]) / info["soname"]).exists()):
        return None  # a static build of that interpreter has no libpython to embed
    return Gdb(str(binary), python_package, {"LD_LIBRARY_PATH": info["libdir"], "PYTHONHOME": info["home"]}, origin)


def _wrapper_python(path: str) -> str | None:
    """The interpreter behind a gdb-for-pwndbg wrapper script (``venv/bin/gdb``), if it is one."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if head.startswith(b"#!") and b"gdb_for_pwndbg" in head:
        return head[2:].split(b"\n", 1)[0].decode(errors="replace").strip()
    return None


def _from_path(path: str, origin: str) -> Gdb:
    resolved = Path(path).resolve()
    package = resolved.parent.parent / "share" / "gdb" / "python" / "gdb"
    return Gdb(str(resolved), package if package.is_dir() else SYSTEM_PYTHON_PACKAGE, {}, origin)


def candidates() -> list[Gdb]:
    explicit = os.environ.get("PEEKA_GDB")
    if explicit:
        found = shutil.which(explicit)
        if found is None:
            raise GdbMissing(f"PEEKA_GDB={explicit} is not an executable gdb", "Point PEEKA_GDB at a gdb binary, or unset it.")
        python = _wrapper_python(found)
        bundled = _bundled(python, "PEEKA_GDB") if python else None
        return [bundled or _from_path(found, "PEEKA_GDB")]
    found = [g for g in (_bundled(),) if g is not None]
    on_path = shutil.which("gdb")
    if on_path:
        found.append(_from_path(on_path, "PATH"))
    return found


def available() -> bool:
    """Is there any gdb at all (cheap: no probe)?"""
    try:
        return bool(candidates())
    except GdbMissing:
        return False


def find_gdb() -> Gdb:
    """The first gdb that can call functions in a process here, or a GdbMissing that says why none can."""
    found = candidates()
    if not found:
        raise GdbMissing(
            "gdb is not installed (no gdb-for-pwndbg in peeka's environment, none on PATH)",
            "Install one: `pip install gdb-for-pwndbg` beside peeka (Python 3.10+), or "
            "`apt-get install gdb` / `dnf install gdb` / `apk add gdb`.",
        )
    failures = []
    for gdb in found:
        error = probe(gdb)
        if error is None:
            return gdb
        failures.append(f"{gdb.path} ({gdb.origin}): {error}")
    fix = ("Install a newer gdb: `pip install gdb-for-pwndbg` in peeka's environment (Python 3.10+), or point "
           "PEEKA_GDB at gdb 14+.")
    if not os.environ.get("PEEKA_GDB") and _unhostable_bundle():
        failures.append("the gdb-for-pwndbg beside peeka cannot run: this Python has no shared libpython to embed "
                        "(a static build)")
        fix = ("Point PEEKA_GDB at the `gdb` wrapper of a gdb-for-pwndbg installed for a Python that has a shared "
               "libpython (any pyenv or python.org 3.10+ venv: `pip install gdb-for-pwndbg`, then "
               "PEEKA_GDB=VENV/bin/gdb), or at gdb 14+.")
    raise GdbMissing(
        "no usable gdb: each one failed to call a function in a test process on this machine: " + "; ".join(failures),
        "gdb 13 and older cannot restore registers on CPUs with a large XSAVE area (AMX). " + fix,
    )


def _unhostable_bundle() -> bool:
    """gdb-for-pwndbg is installed here, but this interpreter cannot host it (no shared libpython)."""
    import importlib.util

    try:
        return importlib.util.find_spec("gdb_for_pwndbg") is not None and _bundled() is None
    except (ImportError, ValueError):
        return False


def _probe_key(gdb: Gdb) -> str:
    st = os.stat(gdb.path)
    try:
        cpu = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        cpu = ""
    return hashlib.sha1(repr((gdb.path, st.st_size, st.st_mtime_ns, platform.release(), cpu)).encode()).hexdigest()[:16]


def probe(gdb: Gdb) -> str | None:
    """None when ``gdb`` attaches to a throwaway process and calls a function there; else why not.

    The verdict is cached per gdb binary, kernel and CPU: a probe costs about 0.3 s.
    """
    from .elf import cache_dir

    cache = cache_dir() / "gdb-probe" / _probe_key(gdb)
    try:
        return json.loads(cache.read_text())["error"]  # type: ignore[no-any-return]
    except (OSError, ValueError, KeyError):
        pass
    error = _run_probe(gdb)
    if error is not None and error != UNKNOWN:
        # Once more before a verdict: a busy machine can fail one try (a CI run's MCP test read
        # "no usable gdb" for a gdb that had passed before), and a wrong verdict is cached.
        error = _run_probe(gdb)
    if error == UNKNOWN:
        return None  # ptrace refused us even on our own child: let the real attach diagnose it
    if error is None or not error.startswith("transient:"):
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
            tmp.write_text(json.dumps({"error": error, "gdb": gdb.path, "time": time.time()}))
            os.replace(tmp, cache)
        except OSError:
            pass
    return error[len("transient:"):] if error and error.startswith("transient:") else error


def _asleep(pid: int, wait: float = 2.0) -> None:
    """Until ``pid`` sleeps (in its nanosleep, libc loaded: getpid() is there to call), at most ``wait`` s."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "S":
                return
        except (OSError, IndexError):
            return
        time.sleep(0.005)


def _run_probe(gdb: Gdb) -> str | None:
    sleeper = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # (a failed call breaks its sleep: it complains)
    try:
        _asleep(sleeper.pid)
        try:
            out = subprocess.run(
                [gdb.path, "-nx", "-batch", "-iex", "set auto-load off", "-iex", "set debuginfod enabled off",
                 "-p", str(sleeper.pid), "-ex", "print (int)getpid()", "-ex", "python print('PEEKA-PY-OK')"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=PROBE_TIMEOUT,
                env=gdb.environment(),
            )
        except subprocess.TimeoutExpired:
            return f"transient:timed out after {PROBE_TIMEOUT:.0f}s"
        except OSError as exc:
            return f"cannot run: {exc}"
        text = out.stdout + out.stderr
        if "Operation not permitted" in text:
            return UNKNOWN
        if f"= {sleeper.pid}" not in text:
            lines = [line for line in text.splitlines() if line.strip() and "auto-load" not in line.lower()]
            return "inferior call failed: " + (lines[-1] if lines else f"exit {out.returncode}, no output")
        if "PEEKA-PY-OK" not in text:
            return "this gdb has no working Python support"
        return None
    finally:
        sleeper.kill()
        sleeper.wait()
