"""The profile builders (peeka/profiles/) read back by readers that owe nothing to them: pprof's own
profile.proto compiled by protoc, ``go tool pprof``, and speedscope's published schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from profile_readers import PprofView, decode_pprof, go_pprof, validate_speedscope

from peeka.profiles import Frame, Profile, Sample, to_collapsed, to_pprof, to_speedscope

pytestmark = pytest.mark.parallel

HOT = Frame("shop.checkout.price", "/srv/shop/checkout.py", 40, 47)
LOOP = Frame("shop.checkout.run", "/srv/shop/checkout.py", 60, 66)
WAIT = Frame("selectors.EpollSelector.select", "/usr/lib/python3.11/selectors.py", 451, 469)
MAIN = Frame("__main__.main", "/srv/shop/main.py", 5, 9)
PERIOD = 10_000_000  # 100 Hz


def _profile(**changes: object) -> Profile:
    samples = [
        Sample("worker-1", (HOT, LOOP, MAIN), count=90, cpu_ns=880_000_000),
        Sample("worker-1", (HOT._replace(line=48), LOOP, MAIN), count=5, cpu_ns=50_000_000,
               labels={"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}),
        Sample("MainThread", (WAIT, MAIN), count=100, cpu_ns=0),  # a wait: wall-clock samples, no CPU
    ]
    return Profile(samples, start_ns=1_764_000_000_123_000_000, duration_ns=1_000_000_000, period_ns=PERIOD,
                   cpu=True, comments=("peeka test",))._replace(**changes)


def test_pprof_by_the_official_schema_and_go_tool_pprof(tmp_path: Path) -> None:
    data = to_pprof(_profile())
    assert data[:2] == b"\x1f\x8b"  # gzip
    view = PprofView(decode_pprof(data))
    assert view.sample_types == [("samples", "count"), ("wall", "nanoseconds"), ("cpu", "nanoseconds")]
    assert view.default_type == "cpu" and view.period_type == ("cpu", "nanoseconds")
    assert view.message.period == PERIOD
    assert view.message.time_nanos == 1_764_000_000_123_000_000 and view.message.duration_nanos == 1_000_000_000
    assert view.comments == ["peeka test"]
    # Functions carry file and def line; locations the line the frame was at (two lines of HOT).
    assert sorted(view.functions.values()) == sorted({(f.function, f.file, f.start_line) for f in (HOT, LOOP, WAIT, MAIN)})
    stacks = {tuple(frame[3] for frame in stack): (values, labels) for stack, values, labels in view.samples}
    assert stacks[(47, 66, 9)] == ({"samples": 90, "wall": 900_000_000, "cpu": 880_000_000}, {"thread_name": "worker-1"})
    assert stacks[(48, 66, 9)][1] == {"thread_name": "worker-1", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                                      "span_id": "00f067aa0ba902b7"}
    # The wait is in the wall-clock samples and not in CPU: the sample types say which is which.
    assert stacks[(469, 9)] == ({"samples": 100, "wall": 1_000_000_000, "cpu": 0}, {"thread_name": "MainThread"})
    assert view.self_share("cpu", HOT.function) == 1.0
    assert view.self_share("samples", WAIT.function) == pytest.approx(100 / 195)

    path = tmp_path / "p.pb.gz"
    path.write_bytes(data)
    raw = go_pprof(path, "-raw")
    assert "samples/count wall/nanoseconds cpu/nanoseconds[dflt]" in raw
    assert "90  900000000  880000000" in raw and "thread_name:[worker-1]" in raw and "span_id:[00f067aa0ba902b7]" in raw
    assert f"{HOT.function} {HOT.file}:47 s=40" in raw
    top = go_pprof(path, "-top", "-nodecount=3")
    assert "Type: cpu" in top and top.split("cum%", 1)[1].split()[5] == HOT.function  # first row: the hot function


def test_pprof_wall_only_and_cpu_only() -> None:
    wall = PprofView(decode_pprof(to_pprof(_profile(cpu=False))))
    assert wall.sample_types == [("samples", "count"), ("wall", "nanoseconds")]
    assert wall.default_type == "samples" and wall.period_type == ("wall", "nanoseconds")
    cpu = PprofView(decode_pprof(to_pprof(_profile(counted=False))))
    assert cpu.sample_types == [("cpu", "nanoseconds")]
    assert len(cpu.samples) == 2  # the wait used no CPU: no sample
    with pytest.raises(ValueError):
        to_pprof(_profile(cpu=False, counted=False))


def test_speedscope_by_its_published_schema() -> None:
    document = to_speedscope(_profile(), name="shop")
    validate_speedscope(json.loads(json.dumps(document)))
    frames = document["shared"]["frames"]
    names = [f["name"] for f in frames]
    assert len(names) == len(set(names)) == 3  # HOT at two lines is one frame; the wait used no CPU
    assert {"name": HOT.function, "file": HOT.file, "line": HOT.start_line} in frames
    (worker,) = document["profiles"]
    assert worker["unit"] == "nanoseconds" and worker["name"] == "thread worker-1 (CPU time)"
    assert worker["endValue"] == sum(worker["weights"]) == 930_000_000
    assert [names[i] for i in worker["samples"][0]] == [MAIN.function, LOOP.function, HOT.function]  # outermost first

    wall = to_speedscope(_profile(cpu=False))
    validate_speedscope(wall)
    assert {p["name"]: (p["unit"], p["endValue"]) for p in wall["profiles"]} == {
        "thread MainThread (wall-clock samples)": ("none", 100), "thread worker-1 (wall-clock samples)": ("none", 95)}


def test_collapsed() -> None:
    stack = f"thread worker-1;{MAIN.function};{LOOP.function};{HOT.function}"
    assert to_collapsed(_profile()) == f"{stack} 93\n"  # CPU in periods, both lines of HOT merged
    assert to_collapsed(_profile(cpu=False)).splitlines() == [
        f"thread MainThread;{MAIN.function};{WAIT.function} 100", f"{stack} 95"]
    odd = Profile([Sample("t;1", (Frame("a;b"),), count=1)], 0, 0, PERIOD, cpu=False)
    assert to_collapsed(odd) == "thread t:1;a:b 1\n"
