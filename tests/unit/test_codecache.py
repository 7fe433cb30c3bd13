"""The agent's code cache: made by the target's own executable, reused, and never trusted blindly."""

from __future__ import annotations

import importlib.util
import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest

from peeka.attach import codecache
from peeka.process import TargetProcess

pytestmark = pytest.mark.parallel


@pytest.fixture
def target():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield TargetProcess(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def made(target: TargetProcess, sources: dict[str, str]) -> bytes | None:
    """The first call misses and starts the compiling child; once it is done, the cache answers."""
    assert codecache.code_for(target, sources) is None
    for child in codecache.MAKING:
        assert child.wait(60) == 0
    return codecache.code_for(target, sources)


def test_code_is_made_by_the_target_interpreter_then_cached(target, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    sources = {"mod": "VALUE = 6 * 7\n", "commands/ping": "NAME = 'ping'\n"}
    code = made(target, sources)
    assert code is not None
    magic = importlib.util.MAGIC_NUMBER  # the target runs this very interpreter
    assert code.startswith(magic)
    table = marshal.loads(code[len(magic):])
    namespace: dict[str, object] = {}
    exec(marshal.loads(table["mod"]), namespace)
    assert namespace["VALUE"] == 42
    assert marshal.loads(table["commands/ping"]).co_filename == "<peeka agent>/commands/ping.py"
    (cached,) = (tmp_path / "peeka" / "code").iterdir()  # the sources' file is gone too
    assert cached.stat().st_mode & 0o077 == 0
    assert codecache.code_for(target, sources) == code  # read back
    assert made(target, {"mod": "VALUE = 1\n"}) != code  # other sources: another entry


def test_a_cache_file_others_could_write_is_ignored(target, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    sources = {"mod": "VALUE = 1\n"}
    code = made(target, sources)
    (cached,) = (tmp_path / "peeka" / "code").iterdir()
    cached.write_bytes(b"tampered")
    os.chmod(cached, 0o666)
    assert made(target, sources) == code  # not used: made again, the file replaced
