"""Readers of profile files that owe nothing to Peeka's writers: pprof's own profile.proto compiled
by protoc, ``go tool pprof``, and speedscope's published file-format schema (scripts/setup.sh
installs all three: Debian's golang-github-google-pprof-dev, protobuf-compiler and golang-go, and
the schema from the npm package ``speedscope``). Each skips the test, saying why, when absent."""

from __future__ import annotations

import functools
import gzip
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROFILE_PROTO = Path("/usr/share/gocode/src/github.com/google/pprof/proto/profile.proto")
SPEEDSCOPE_SCHEMA = ROOT / ".peeka" / "speedscope" / "package" / "dist" / "release" / "file-format-schema.json"


@functools.cache
def _official_profile_class() -> Any:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    protoc = shutil.which("protoc")
    if protoc is None or not PROFILE_PROTO.exists():
        pytest.skip(f"protoc or {PROFILE_PROTO} is missing: run scripts/setup.sh (Debian's protobuf-compiler and "
                    "golang-github-google-pprof-dev)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile.desc"
        subprocess.run([protoc, f"-I{PROFILE_PROTO.parent}", f"--descriptor_set_out={out}", PROFILE_PROTO.name],
                       check=True, capture_output=True, timeout=60)
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    descriptor = pool.FindMessageTypeByName("perftools.profiles.Profile")
    get = getattr(message_factory, "GetMessageClass", None)
    return get(descriptor) if get else message_factory.MessageFactory(pool).GetPrototype(descriptor)


def decode_pprof(data: bytes) -> Any:
    """A ``.pb.gz`` file decoded with pprof's own profile.proto (compiled by protoc)."""
    message = _official_profile_class()()
    message.ParseFromString(gzip.decompress(data))
    return message


class PprofView:
    """A decoded profile with its string table applied: what a reader of the file sees."""

    def __init__(self, message: Any) -> None:
        s = list(message.string_table)
        self.message = message
        self.sample_types = [(s[t.type], s[t.unit]) for t in message.sample_type]
        self.default_type = s[message.default_sample_type]
        self.period_type = (s[message.period_type.type], s[message.period_type.unit])
        self.functions = {f.id: (s[f.name], s[f.filename], f.start_line) for f in message.function}
        self.locations = {loc.id: [(self.functions[line.function_id], line.line) for line in loc.line]
                          for loc in message.location}
        self.comments = [s[i] for i in message.comment]
        self.samples = []  # (stack innermost first [(name, file, start_line, line)], {type: value}, {label: str})
        for sample in message.sample:
            stack = [(fn[0], fn[1], fn[2], line) for loc in sample.location_id for fn, line in self.locations[loc]]
            values = {kind: value for (kind, _unit), value in zip(self.sample_types, sample.value)}
            labels = {s[label.key]: s[label.str] for label in sample.label}
            self.samples.append((stack, values, labels))

    def self_share(self, kind: str, function: str) -> float:
        """The share of ``kind`` whose innermost frame is ``function``."""
        total = sum(values.get(kind, 0) for _stack, values, _labels in self.samples)
        own = sum(values.get(kind, 0) for stack, values, _labels in self.samples if stack and stack[0][0] == function)
        return own / total if total else 0.0


def go_pprof(path: Path, *args: str) -> str:
    """``go tool pprof ARGS FILE``'s output (Debian's golang-go carries the pprof tool)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is missing: run scripts/setup.sh (Debian's golang-go, whose `go tool pprof` reads the file)")
    env = dict(os.environ, HOME=os.environ.get("HOME") or tempfile.gettempdir(), GOFLAGS="-mod=mod", GOTOOLCHAIN="local")
    done = subprocess.run([go, "tool", "pprof", *args, str(path)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def validate_speedscope(document: Any) -> None:
    """Raises jsonschema's ValidationError unless ``document`` is a speedscope file by its schema."""
    import jsonschema

    if not SPEEDSCOPE_SCHEMA.exists():
        pytest.skip(f"{SPEEDSCOPE_SCHEMA} is missing: run scripts/setup.sh (it unpacks the npm package speedscope)")
    schema = json.loads(SPEEDSCOPE_SCHEMA.read_text())
    # The schema's root is a $ref to FileFormat.File among its definitions.
    jsonschema.validate(document, schema, cls=jsonschema.Draft7Validator)
