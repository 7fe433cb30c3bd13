"""The pure parts of the runtime views: /proc parsing, profile arithmetic, lock analysis.

Lock analysis runs on real threads blocked on real locks in this process.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from peeka_agent import locks, procfs, sampling

pytestmark = pytest.mark.parallel

# A real /proc/PID/stat line whose command name has spaces and a ")" in it.
STAT = (b"4242 (my (odd) app) S 1 4242 4242 0 -1 4194560 2135 0 0 0 250 75 0 0 20 0 7 0 "
        b"86051 27176960 4470 18446744073709551615 1 1 0 0 0 0 0 16781312 16386 0 0 0 17 1 0 0 0 0 0")


def test_parse_stat() -> None:
    stat = procfs.parse_stat(STAT, 100)
    assert stat == ("my (odd) app", "S", 3.25, 7, 86051, 4470)
    assert (stat.cpu_seconds, stat.threads, stat.start_ticks, stat.rss_pages) == (3.25, 7, 86051, 4470)


def test_parse_stat_of_this_process() -> None:
    stat = procfs.process_stat()
    assert stat is not None and stat.state in "RSD" and stat.threads >= 1 and stat.cpu_seconds >= 0
    started = procfs.start_time()
    assert started is not None and time.time() - 3600 * 24 * 365 < started <= time.time()


def test_parse_kb_table() -> None:
    raw = b"Name:\tpython\nVmRSS:\t   1624 kB\nThreads:\t3\nPrivate_Dirty:       112 kB\nbad line\n"
    assert procfs.parse_kb_table(raw) == {"VmRSS": 1624 * 1024, "Private_Dirty": 112 * 1024}


def test_task_stats_read_with_the_gil_held_match_pythons_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every thread's stat read through libc with the GIL kept (ctypes.PyDLL) is the same as read
    through Python's files; without ctypes (a stripped build) the Python reads serve."""
    never = threading.Event()
    threads = [threading.Thread(target=never.wait, daemon=True) for _ in range(20)]
    for t in threads:
        t.start()
    try:
        assert procfs._held_reader() is not None
        ids = {t.native_id for t in threads}
        for _ in range(200):  # a thread just started may not be parked yet (state R)
            held = procfs.all_task_stats()
            if all(tid in held and held[tid].state == "S" for tid in ids):
                break
            time.sleep(0.01)
        monkeypatch.setattr(procfs, "_held", None)
        monkeypatch.setattr(procfs, "_held_failed", False)
        monkeypatch.setitem(sys.modules, "ctypes", None)  # import ctypes now fails
        plain = procfs.all_task_stats()
        assert procfs._held is None and procfs._held_failed
    finally:
        never.set()
    assert ids <= set(held) and ids <= set(plain)
    for tid in ids:  # parked threads: the same name and state both ways
        assert (held[tid].name, held[tid].state) == (plain[tid].name, plain[tid].state) == (held[tid].name, "S")



def test_memory_of_this_process() -> None:
    mem = procfs.memory()
    assert mem["rss_bytes"] and mem["uss_bytes"] and 0 < mem["uss_bytes"] <= mem["rss_bytes"]


def _code(name: str) -> Any:
    namespace: dict[str, Any] = {}
    exec(f"def {name}(): pass", {"__name__": "fake_mod"}, namespace)
    return namespace[name].__code__


def test_summarize_self_total_and_recursion() -> None:
    names = sampling.Names()
    leaf, mid, root = _code("leaf"), _code("mid"), _code("root")
    raw = {
        (1, (leaf, mid, root)): 6,
        (1, (mid, root)): 2,
        (2, (mid, mid, root)): 2,  # recursion counts once per sample in total
    }
    stacks = sampling.label_stacks(raw, 1.0, {1: "w1", 2: "w2"}, names)
    samples, functions = sampling.summarize(stacks, names.where, 10)
    rows = {f["function"].rsplit(" ", 1)[0]: f for f in functions}
    assert samples == 10
    assert [f["function"].split(" ")[0] for f in functions] == ["leaf", "mid", "root"]
    assert rows["leaf"]["self_percent"] == 60.0 and rows["leaf"]["total_percent"] == 60.0
    assert rows["mid"]["self_samples"] == 4 and rows["mid"]["total_samples"] == 10
    assert rows["root"]["self_samples"] == 0 and rows["root"]["total_percent"] == 100.0


def test_label_stacks_scales_and_marks_between_samples() -> None:
    names = sampling.Names()
    busy, caller = _code("busy"), _code("caller")
    raw = {(1, (busy, caller)): 2_000_000, (1, (sampling.BETWEEN, caller)): 1_000_000}
    stacks = sampling.label_stacks(raw, 100 / 1e9, {1: "a"}, names)  # CPU ns -> 100 Hz samples
    rounded = {labels: round(value, 6) for (_thread, labels), value in stacks.items()}
    assert rounded == {("busy (<string>)", "caller (<string>)"): 0.2,
                       ("caller (<string>) [calls returned between samples]", "caller (<string>)"): 0.1}


def test_weigh_shares_a_threads_cpu_among_its_running_samples() -> None:
    a, b, loop = _code("a"), _code("b"), _code("loop")
    behind = {(1, (a, loop)): 100, (1, (sampling.BETWEEN, loop)): 50}  # CPU found behind waits
    runs = {(1, (a, loop)): 3, (1, (b, loop)): 1, (2, (b,)): 2}  # samples that caught it running
    out = sampling.weigh(behind, runs, {1: 950, 2: 40, 3: 999})  # thread 3: never caught running
    assert out == {(1, (a, loop)): 100 + 600, (1, (b, loop)): 200, (1, (sampling.BETWEEN, loop)): 50,
                   (2, (b,)): 40}


def test_apportion_shares_unseen_cpu_like_the_caught_cpu() -> None:
    a, b, loop, other = _code("a"), _code("b"), _code("loop"), _code("other")
    between = sampling.BETWEEN
    raw = {(1, (a, loop)): 300, (1, (b, loop)): 100, (1, (between, loop)): 400,  # caught 3:1 under loop
           (1, (between, other, loop)): 30,  # no caught stack runs through `other`: stays unseen
           (2, (between, other)): 50,  # thread 2 never caught running: stays marked as unseen
           (3, (a,)): 7}
    out, shared = sampling.apportion(raw)
    assert shared == 400
    assert out == {(1, (a, loop)): 600, (1, (b, loop)): 200, (1, (between, other, loop)): 30,
                   (2, (between, other)): 50, (3, (a,)): 7}


def test_cpu_weighted_sampler_tells_computing_from_waiting() -> None:
    """Real threads: one computes, one sleeps in a loop, one waits on an Event; CPU clocks per thread."""
    from peeka_agent import threadids

    if not threadids.can_read_cpu_clocks():
        pytest.skip("no per-thread CPU clocks here (Linux only)")
    stop = threading.Event()

    def computing() -> None:
        while not stop.is_set():
            sum(i * i for i in range(2000))

    def sleeping() -> None:
        while not stop.is_set():
            time.sleep(0.002)

    threads = [threading.Thread(target=f, daemon=True) for f in (computing, sleeping, stop.wait)]
    for t in threads:
        t.start()
    time.sleep(0.05)  # each is in its loop or its wait
    sampler = sampling.Sampler()
    sampler.skip = frozenset({threading.get_ident()})
    ids = threadids.native_ids()
    sampler.use_clocks({t.ident: threadids.cpu_clock(ids[t.ident]) for t in threads})  # type: ignore[index]
    try:
        for _ in range(40):
            sampler.sample()
            time.sleep(0.005)
        cpu = sampler.thread_cpu  # complete once take() has read the clocks it put off (as top reads it)
        raw, ticks, _ = sampler.take()
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    computing_id, sleeping_id, waiting_id = (t.ident for t in threads)
    assert ticks == 40 and cpu[computing_id] > 20 * cpu.get(sleeping_id, 1)
    assert waiting_id not in cpu  # an Event.wait uses no CPU: never counted
    names = sampling.Names()
    stacks = sampling.label_stacks(raw, 1.0, {computing_id: "c", sleeping_id: "s"}, names)  # type: ignore[dict-item]
    sleeper = [labels for (thread, labels) in stacks if thread == "s"]
    # The sleeping thread's little CPU is never its sleep's: it ran between samples.
    assert all(labels[0].endswith("[calls returned between samples]") for labels in sleeper), sleeper


def test_collapsed_format() -> None:
    stacks = {("main", ("inner", "outer;odd")): 2.6, ("main", ("other", "outer;odd")): 0.3, ("t2", ("x",)): 1.0}
    assert sampling.collapsed(stacks) == [["thread main;outer:odd;inner", 3], ["thread t2;x", 1]]


def test_sampler_skips_and_counts() -> None:
    sampler = sampling.Sampler()
    sampler.skip = frozenset({threading.get_ident()})
    sampler.sample()
    sampler.sample()
    raw, ticks, busy = sampler.take()
    assert ticks == 2 and busy > 0
    assert all(ident != threading.get_ident() for ident, _ in raw)
    assert sampler.take()[1] == 0


def test_sampler_parked_thread_and_generator() -> None:
    """A parked thread's stack is reused while its frame runs; a suspended generator's never is."""
    parked = threading.Event()
    release = threading.Event()

    def park_here() -> None:
        parked.set()
        release.wait(5)

    def gen() -> Iterator[int]:
        while True:
            yield 1

    thread = threading.Thread(target=park_here, daemon=True)
    thread.start()
    parked.wait(5)
    sampler = sampling.Sampler()
    try:
        for _ in range(3):
            sampler.sample()
        raw, _, _ = sampler.take()
        names = sampling.Names()
        stacks = sampling.label_stacks(raw, 1.0, {thread.ident: "parked"}, names)  # type: ignore[dict-item]
        ((thread_name, labels), count), = ((k, v) for k, v in stacks.items() if k[0] == "parked")
        assert thread_name == "parked" and count == 3
        assert any(label.endswith("park_here") for label in labels)
    finally:
        release.set()
        thread.join(5)
    assert sampling._RESUMABLE & gen.__code__.co_flags


def test_sampler_lets_go_of_code_objects_no_longer_sampled() -> None:
    """A long export stream meets ever new code objects (code the host makes with exec or eval):
    the sampler's wait cache and Names keep what the last two reports sampled, not every code
    object ever seen, and let the rest go."""
    from peeka_agent import threadids

    if not threadids.can_read_cpu_clocks():
        pytest.skip("no per-thread CPU clocks here (Linux only)")
    sampler = sampling.Sampler()
    sampler.skip = frozenset({threading.get_ident()})
    names = sampling.Names()
    per_report, reports = 40, 4
    bound = 2 * (per_report + 10)  # two reports' code objects (and threading's own)
    first: list[Any] = []  # weak references to the first report's code objects
    for report in range(reports):
        gate = threading.Lock()
        gate.acquire()
        threads = []
        for n in range(per_report):
            # Each waits in its own code object (innermost, at a lock's acquire), then lets the next go.
            space: dict[str, Any] = {"gate": gate}
            name = f"f_{report}_{n}"
            exec(compile(f"def {name}():\n    gate.acquire(timeout=5)\n    gate.release()\n", f"<made {n}>", "exec"), space)
            if report == 0:
                first.append(weakref.ref(space[name].__code__))
            threads.append(threading.Thread(target=space.pop(name), daemon=True))
            threads[-1].start()
        del space
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(  # every one at its acquire
                getattr(sys._current_frames().get(t.ident), "f_code", None) is t._target.__code__ for t in threads):  # type: ignore[attr-defined]
            time.sleep(0.005)
        ids = threadids.native_ids()
        sampler.use_clocks({t.ident: threadids.cpu_clock(ids[t.ident]) for t in threads})  # type: ignore[index]
        sampler.caught = []
        sampler.sample()
        made = {names.label(codes[0]) for _ident, codes in map(sampler.stack, sampler.caught)} - {""}
        assert len({label for label in made if label.startswith(f"f_{report}_")}) == per_report, made
        sampler.take()
        assert sum(1 for _code, waits in sampler._waits_before.values() if waits) >= per_report
        names.forget()
        gate.release()
        for t in threads:
            t.join(5)
        assert len(names._labels) + len(names._before) <= bound
        assert len(names.where) <= bound
        assert len(sampler._waits) + len(sampler._waits_before) <= bound
    sampler.use_clocks({})  # the threads are gone
    gc.collect()  # frames of ended calls may wait in cycles
    assert all(ref() is None for ref in first), "the first report's code objects are still held"


def test_cycles() -> None:
    assert locks.cycles({1: 2, 2: 1, 3: 1}) == [[1, 2]]
    assert locks.cycles({5: 7, 7: 9, 9: 5}) == [[5, 7, 9]]
    assert locks.cycles({1: 2, 2: 3}) == []


def test_lock_facts() -> None:
    plain, reentrant = threading.Lock(), threading.RLock()
    assert locks.lock_facts(plain)["locked"] is False
    with reentrant, reentrant:
        facts = locks.lock_facts(reentrant)
        assert facts["type"] == "RLock" and facts["owner"] == threading.get_ident() and facts["count"] == 2
    assert locks.lock_facts(reentrant)["locked"] is False
    pure = threading._PyRLock()  # type: ignore[attr-defined]
    with pure:
        assert locks.lock_facts(pure)["owner"] == threading.get_ident()


class Holder:
    def __init__(self) -> None:
        self.guard = threading.RLock()


@pytest.fixture
def blocked_threads() -> Iterator[dict[str, Any]]:
    """Real threads blocked on a held RLock (an attribute chain), a held Lock (a local), a Condition."""
    holder = Holder()
    plain = threading.Lock()
    cond = threading.Condition()
    release = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        with holder.guard:
            plain.acquire()
            holding.set()
            release.wait()
            plain.release()

    def want_chain() -> None:
        with holder.guard:
            pass

    def want_local(lock: Any) -> None:
        lock.acquire()
        lock.release()

    def want_notify() -> None:
        with cond:
            cond.wait(5)

    threads = {"hold": threading.Thread(target=hold, daemon=True)}
    threads["hold"].start()
    holding.wait(5)
    threads["chain"] = threading.Thread(target=want_chain, daemon=True)
    threads["local"] = threading.Thread(target=want_local, args=(plain,), daemon=True)
    threads["notify"] = threading.Thread(target=want_notify, daemon=True)
    for name in ("chain", "local", "notify"):
        threads[name].start()
    time.sleep(0.2)
    yield {"threads": threads, "holder": holder, "plain": plain, "cond": cond}
    release.set()
    with cond:
        cond.notify_all()
    for t in threads.values():
        t.join(5)


def test_waiting_on(blocked_threads: dict[str, Any]) -> None:
    frames = sys._current_frames()
    threads = blocked_threads["threads"]
    chain = locks.waiting_on(threads["chain"].ident, frames[threads["chain"].ident])
    assert chain is not None and chain["kind"] == "lock" and chain["name"] == "holder.guard"
    assert chain["object"] is blocked_threads["holder"].guard
    assert chain["lock"]["owner"] == threads["hold"].ident
    local = locks.waiting_on(threads["local"].ident, frames[threads["local"].ident])
    assert local is not None and local["name"] == "lock" and local["lock"]["type"] == "Lock"
    assert local["lock"]["owner"] is None  # a plain Lock records no owner
    # ... so it is inferred: the one thread, not waiting for it, with it among a frame's locals
    plain = blocked_threads["plain"]
    others = {i: f for i, f in frames.items() if i != threading.get_ident()}  # as the agent leaves itself out
    assert locks.infer_holder(others, plain, {threads["local"].ident}) == threads["hold"].ident
    assert locks.infer_holder(others, plain, set()) is None  # the waiter refers to it too: not clear
    notify = locks.waiting_on(threads["notify"].ident, frames[threads["notify"].ident])
    assert notify is not None and notify["kind"] == "condition" and notify["at"]["function"].endswith("want_notify")
    where = locks.holding_frame(frames[threads["hold"].ident], blocked_threads["holder"].guard)
    assert where is not None and where["function"].endswith("hold")
    hold = locks.waiting_on(threads["hold"].ident, frames[threads["hold"].ident])
    assert hold is not None and hold["kind"] == "event"


def test_detail_splits_a_stacks_cpu_like_its_samples_by_line() -> None:
    names = sampling.Names()
    busy, caller = _code("busy"), _code("caller")
    hot, waiting = (1, (busy, caller)), (2, (caller,))
    counts = {(hot, (3, 9)): 3, (hot, (4, 9)): 1, (waiting, (7,)): 10}  # the waiting thread used no CPU
    cpu = {hot: 4_000, (1, (sampling.BETWEEN, caller)): 500}
    detail: sampling.Detailed = {}
    sampling.detail(cpu, counts, {1: "a", 2: "b"}, names, detail)
    sampling.detail(cpu, counts, {1: "a", 2: "b"}, names, detail)  # a second window adds up
    b, c = "busy (<string>)", "caller (<string>)"
    assert detail == {
        ("a", ((b, 3), (c, 9))): [6_000.0, 6], ("a", ((b, 4), (c, 9))): [2_000.0, 2],
        ("b", ((c, 7),)): [0.0, 20],
        ("a", ((f"{c} [calls returned between samples]", 0), (c, 0))): [1_000.0, 0],  # never caught: no line
    }
    wall: sampling.Detailed = {}
    sampling.detail(None, counts, {1: "a", 2: "b"}, names, wall)
    assert wall[("a", ((b, 3), (c, 9)))] == [0.0, 3] and len(wall) == 3


def test_sampler_counts_each_sample_with_its_lines() -> None:
    """Recording: every sample counted, a running frame's moving line read afresh, a parked one's kept."""
    stop = threading.Event()
    parked = threading.Event()

    def spin() -> None:
        n = 0
        while not stop.is_set():  # the frame stays; its line moves among these three
            n += 1
            n -= 1

    def park() -> None:
        parked.set()
        stop.wait(5)

    threads = [threading.Thread(target=f, name=f.__name__, daemon=True) for f in (spin, park)]
    for thread in threads:
        thread.start()
    parked.wait(5)
    sampler = sampling.Sampler()
    sampler.counts = {}
    sampler.skip = frozenset({threading.get_ident()})
    try:
        for _ in range(40):
            sampler.sample()
            time.sleep(0.001)
        counts = sampler.take_counts()
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    by_thread: dict[int, dict[int, int]] = {}  # ident -> line of its own function (spin, or Event.wait) -> samples
    for ((ident, codes), lines), count in counts.items():
        assert len(lines) == len(codes)
        at = lines[codes.index(spin.__code__)] if spin.__code__ in codes else lines[0]
        by_line = by_thread.setdefault(ident, {})
        by_line[at] = by_line.get(at, 0) + count
    spin_first = spin.__code__.co_firstlineno
    park_first = park.__code__.co_firstlineno
    assert sum(by_thread[threads[0].ident].values()) == 40  # type: ignore[index]
    assert set(by_thread[threads[0].ident]) <= {spin_first + 2, spin_first + 3, spin_first + 4}  # type: ignore[index]
    # park() waits inside Event.wait: its innermost Python frame is threading's, every sample the same.
    assert sum(by_thread[threads[1].ident].values()) == 40 and len(by_thread[threads[1].ident]) == 1  # type: ignore[index]
    assert park_first not in by_thread[threads[1].ident]  # type: ignore[index]
    assert sampler.take_counts() == {}
