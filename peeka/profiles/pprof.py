"""pprof's profile.proto (``perftools.profiles.Profile``), gzip-compressed, as ``go tool pprof``,
Pyroscope and Grafana read it.

The schema is built here with protobuf's descriptor API from the field numbers pprof publishes in
profile.proto, into a private descriptor pool (so it never clashes with another copy of the schema
a process may have loaded), and messages are encoded by the protobuf library itself.
"""

from __future__ import annotations

import functools
import gzip
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from .model import Frame, Profile

PACKAGE = "perftools.profiles"
THREAD_LABEL = "thread_name"

_F = descriptor_pb2.FieldDescriptorProto
_INT64, _UINT64, _STRING, _BOOL, _MESSAGE = _F.TYPE_INT64, _F.TYPE_UINT64, _F.TYPE_STRING, _F.TYPE_BOOL, _F.TYPE_MESSAGE
_ONE, _MANY = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED

# message -> (field, number, type, repeated, message type): profile.proto's published numbers.
_SCHEMA: dict[str, list[tuple[str, int, int, bool, str]]] = {
    "Profile": [
        ("sample_type", 1, _MESSAGE, True, "ValueType"), ("sample", 2, _MESSAGE, True, "Sample"),
        ("mapping", 3, _MESSAGE, True, "Mapping"), ("location", 4, _MESSAGE, True, "Location"),
        ("function", 5, _MESSAGE, True, "Function"), ("string_table", 6, _STRING, True, ""),
        ("drop_frames", 7, _INT64, False, ""), ("keep_frames", 8, _INT64, False, ""),
        ("time_nanos", 9, _INT64, False, ""), ("duration_nanos", 10, _INT64, False, ""),
        ("period_type", 11, _MESSAGE, False, "ValueType"), ("period", 12, _INT64, False, ""),
        ("comment", 13, _INT64, True, ""), ("default_sample_type", 14, _INT64, False, ""),
    ],
    "ValueType": [("type", 1, _INT64, False, ""), ("unit", 2, _INT64, False, "")],
    "Sample": [("location_id", 1, _UINT64, True, ""), ("value", 2, _INT64, True, ""),
               ("label", 3, _MESSAGE, True, "Label")],
    "Label": [("key", 1, _INT64, False, ""), ("str", 2, _INT64, False, ""), ("num", 3, _INT64, False, ""),
              ("num_unit", 4, _INT64, False, "")],
    "Mapping": [
        ("id", 1, _UINT64, False, ""), ("memory_start", 2, _UINT64, False, ""), ("memory_limit", 3, _UINT64, False, ""),
        ("file_offset", 4, _UINT64, False, ""), ("filename", 5, _INT64, False, ""), ("build_id", 6, _INT64, False, ""),
        ("has_functions", 7, _BOOL, False, ""), ("has_filenames", 8, _BOOL, False, ""),
        ("has_line_numbers", 9, _BOOL, False, ""), ("has_inline_frames", 10, _BOOL, False, ""),
    ],
    "Location": [("id", 1, _UINT64, False, ""), ("mapping_id", 2, _UINT64, False, ""), ("address", 3, _UINT64, False, ""),
                 ("line", 4, _MESSAGE, True, "Line"), ("is_folded", 5, _BOOL, False, "")],
    "Line": [("function_id", 1, _UINT64, False, ""), ("line", 2, _INT64, False, "")],
    "Function": [("id", 1, _UINT64, False, ""), ("name", 2, _INT64, False, ""), ("system_name", 3, _INT64, False, ""),
                 ("filename", 4, _INT64, False, ""), ("start_line", 5, _INT64, False, "")],
}


def schema() -> descriptor_pb2.FileDescriptorProto:
    """profile.proto as a descriptor (proto3: repeated numbers are packed, as pprof's are)."""
    file = descriptor_pb2.FileDescriptorProto(name="peeka/profiles/profile.proto", package=PACKAGE, syntax="proto3")
    for name, fields in _SCHEMA.items():
        message = file.message_type.add(name=name)
        for field, number, kind, repeated, type_name in fields:
            message.field.add(name=field, number=number, type=kind, label=_MANY if repeated else _ONE,
                              type_name=f".{PACKAGE}.{type_name}" if type_name else None)
    return file


@functools.cache
def message_class(name: str = "Profile") -> Any:
    """The generated class of one message of the schema (``Profile``, ``Sample``, ...)."""
    pool = _pool()
    descriptor = pool.FindMessageTypeByName(f"{PACKAGE}.{name}")
    get = getattr(message_factory, "GetMessageClass", None)
    if get is not None:
        return get(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)  # protobuf < 4.22


@functools.cache
def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(schema())
    return pool


class _Strings:
    """pprof's string table: index 0 is the empty string."""

    def __init__(self) -> None:
        self.table = [""]
        self.index = {"": 0}

    def __call__(self, text: str) -> int:
        found = self.index.get(text)
        if found is None:
            found = self.index[text] = len(self.table)
            self.table.append(text)
        return found


def to_profile_message(profile: Profile) -> Any:
    """The ``perftools.profiles.Profile`` message (not yet serialized)."""
    if not (profile.cpu or profile.counted):
        raise ValueError("a profile measures CPU time, samples, or both")
    message = message_class()()
    strings = _Strings()
    # Sample types, in the order of each sample's values: wall-clock samples (and the wall time they
    # stand for) only where counted, CPU time only where measured; CPU is the default view.
    kinds = []
    if profile.counted:
        kinds += [("samples", "count"), ("wall", "nanoseconds")]
    if profile.cpu:
        kinds.append(("cpu", "nanoseconds"))
    for kind, unit in kinds:
        message.sample_type.add(type=strings(kind), unit=strings(unit))
    message.default_sample_type = strings("cpu" if profile.cpu else "samples")
    message.period_type.type = strings("cpu" if profile.cpu else "wall")
    message.period_type.unit = strings("nanoseconds")
    message.period = profile.period_ns
    message.time_nanos = profile.start_ns
    message.duration_nanos = profile.duration_ns
    # One mapping standing for the interpreter: the frames are symbolized already.
    message.mapping.add(id=1, filename=strings("python"), has_functions=True, has_filenames=True,
                        has_line_numbers=True)
    functions: dict[tuple[str, str, int], int] = {}
    locations: dict[Frame, int] = {}
    thread_key = strings(THREAD_LABEL)
    for sample in profile.samples:
        ids = []
        for frame in sample.frames:  # innermost first, as pprof wants
            location = locations.get(frame)
            if location is None:
                function_key = (frame.function, frame.file, frame.start_line)
                function = functions.get(function_key)
                if function is None:
                    function = functions[function_key] = len(functions) + 1
                    name = strings(frame.function)
                    message.function.add(id=function, name=name, system_name=name, filename=strings(frame.file),
                                         start_line=frame.start_line)
                location = locations[frame] = len(locations) + 1
                message.location.add(id=location, mapping_id=1).line.add(function_id=function, line=frame.line)
            ids.append(location)
        values = []
        if profile.counted:
            values += [sample.count, sample.count * profile.period_ns]
        if profile.cpu:
            values.append(sample.cpu_ns)
        if not any(values):
            continue
        out = message.sample.add(location_id=ids, value=values)
        out.label.add(key=thread_key, str=strings(sample.thread))
        for key, value in sample.labels.items():
            out.label.add(key=strings(key), str=strings(value))
    message.comment.extend(strings(text) for text in profile.comments)
    message.string_table.extend(strings.table)
    return message


def to_pprof(profile: Profile) -> bytes:
    """The gzip-compressed serialized profile: a ``.pb.gz`` file's bytes."""
    return gzip.compress(to_profile_message(profile).SerializeToString(), compresslevel=6)
