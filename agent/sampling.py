"""A stack sampler over ``sys._current_frames()`` and the arithmetic of its profiles.

The sampler runs in an agent thread and holds the GIL while it samples, so the hot path does the
least it can: walk each thread's frames into a tuple of code objects and count that tuple in a
dict. Names, filtering, self/total shares and collapsed stacks are made later, once per report,
from those counts (``label_stacks``, ``summarize``, ``collapsed``), which are pure functions.
"""

from __future__ import annotations

import _random
import os
import sys
import time
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

from . import compat
from .compat import current_frames

RawStacks = Dict[Tuple[int, Tuple[Any, ...]], int]  # (thread ident, code objects innermost first) -> samples
# A stack while sampling: (thread ident, id of each code object innermost first). Hashing a code
# object hashes its bytecode, constants and names (about 3 us each on 3.12), so a tuple of them is
# too dear to hash for each thread at each tick; ids hash at once, and the sampler keeps each id
# tuple's stack (its code objects alive, so no id is reused) until it no longer refers to it.
Sid = Tuple[int, ...]
Labelled = Dict[Tuple[str, Tuple[str, ...]], float]  # (thread name, labels innermost first) -> weighted samples
# ((thread ident, code objects), the lines its frames were at, innermost first) -> times caught
Counts = Dict[Tuple[Tuple[int, Tuple[Any, ...]], Tuple[int, ...]], int]
# (thread name, ((label, line) innermost first)) -> [CPU ns, times caught]: a recording's detail
Detailed = Dict[Tuple[str, Tuple[Tuple[str, int], ...]], List[float]]


_RESUMABLE = 0x20 | 0x80 | 0x200  # CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR
# A thread parked in a wait that used no CPU has its clock read every 8th tick only, then every
# 16th, ... up to every 64th while it stays so. Nothing is lost: a read gives all the CPU used since
# the previous one, and a thread that moves to another frame is read at once.
QUIET_RECHECK = 8
QUIET_RECHECK_MAX = 64
# Names a line calls when it gives the GIL up: waits (sleep, select/poll/epoll, locks, conditions,
# events, queues: their innermost Python frame is Condition.wait at an acquire; joins, accepts,
# signals) and I/O (reads, writes, sends, connects, name lookups). The sampler gets the GIL at
# such calls far more often than its share of the time, so CPU a sample finds there went before.
WAIT_CALLS = frozenset((
    "sleep", "select", "poll", "epoll", "kevent", "control", "wait", "wait_for", "acquire", "join",
    "recv", "recv_into", "recvfrom", "recvfrom_into", "recvmsg", "accept", "_accept", "read", "readinto",
    "readline", "pause", "sigwait", "sigwaitinfo", "sigtimedwait", "waitpid", "wait3", "wait4",
    "send", "sendall", "sendto", "sendmsg", "sendfile", "write", "writelines", "flush", "connect",
    "connect_ex", "getaddrinfo", "gethostbyname", "fsync", "readv", "writev", "getsockopt", "setsockopt",
    "shutdown",
))
# Local variables a line calls that hold such a call: eventlet's green sockets get the socket's
# recv/send method as an argument (GreenSocket._recv_loop, _send_loop).
LOCAL_WAIT_CALLS = frozenset(("recv_meth", "send_method"))
_WAIT_NAMES = WAIT_CALLS | LOCAL_WAIT_CALLS


# Our own generator (the C one random.Random is built on, seeded from the OS): the host's random
# sequence stays as it was, and random.py is not imported into it.
_JITTER = _random.Random()


def jittered(period: float) -> float:
    """The wait before the next tick: ``period`` on average, anywhere from half to one and a half
    of it. A sampler on a fixed beat can stay in step with a loop in the host whose cycle divides
    the beat (each sample then catches the loop at nearly the same point, and a report's few
    samples say less than their number suggests); random gaps catch it at independent points."""
    return period * (0.5 + _JITTER.random())


class Between:
    """Stands innermost in a stack for CPU a thread used in calls that returned between two samples.

    The sampler holds the GIL while it samples, so it sees a thread either where the interpreter
    forced it to hand the GIL over (after a switch interval, 5 ms, of holding it) or where it gave
    the GIL up itself: in a wait. A burst of work shorter than the switch interval that ends in a
    wait (compute 1 ms, sleep 20 ms; an event loop's short callbacks) is never seen running; the
    thread's CPU clock still says it ran. That CPU is shown under the waiting frame's caller,
    marked as such, never as the wait's own.
    """

    __slots__ = ()


BETWEEN = Between()
_BETWEEN_ID = id(BETWEEN)


class _Seen:
    """What the sampler knew of one thread at its last sample."""

    __slots__ = ("frame", "parent", "key", "sid", "clock", "cpu", "quiet", "read_at", "running", "lines", "counted", "pending",
                 "lasti", "waits_lasti", "waits", "unread")

    def __init__(self, clock: Optional[int]) -> None:
        self.frame: Any = None
        self.parent: Any = None  # its caller's frame then, if that cannot be resumed elsewhere
        self.key: Tuple[int, Tuple[Any, ...]] = (0, ())
        self.sid: Sid = (0,)
        self.clock = clock
        self.cpu: Optional[int] = None
        self.quiet = 0  # ticks between reads of its clock while it stays parked in its wait; 0: every tick
        self.read_at = 0
        self.running: Optional[Sid] = None  # its stack, if caught running last time
        # With counts: samples in one stack at the same lines, counted here until it moves on (a dict
        # keyed by a stack hashes every code object on it: too dear for each thread at each tick).
        self.lines: Tuple[int, ...] = ()
        self.counted: Sid = (0,)
        self.pending = 0
        self.lasti = -1  # the innermost frame's last instruction then: the same, the same line
        self.waits_lasti = -1  # where in its parked frame it was when ``waits`` was found
        self.waits = False
        self.unread = False  # counted running since its clock was last read (see sample)


class Sampler:
    """Counts stacks; with ``clocks`` (ident -> per-thread CPU clock id, see threadids) each sample
    counts the CPU nanoseconds its thread used since its previous sample, not 1."""

    def __init__(self) -> None:
        self.stacks: RawStacks = {}
        self.ticks = 0
        self.busy_seconds = 0.0  # time spent sampling (GIL held): the sampler's own cost
        self.skip: FrozenSet[int] = frozenset()
        self.clocks: Optional[Dict[int, int]] = None  # None: every sample counts 1 (wall clock)
        # ident -> CPU ns seen used since take(); complete only when take() has read the clocks it put off
        self.thread_cpu: Dict[int, int] = {}
        self.runs: RawStacks = {}  # with clocks: samples that caught their thread running, by stack
        # Recording only (top --record): every sample counted, waits included, by stack and the lines
        # its frames were at, for the wall-clock samples and the locations of pprof and speedscope.
        self.counts: Optional[Dict[Tuple[Sid, Tuple[int, ...]], int]] = None  # by Sid while sampling (take_counts)
        # Export's profile links: every stack this round caught, by Sid (``stack`` gives its codes), in sampling order.
        self.caught: Optional[List[Sid]] = None
        # ident -> what it was: a frame still running has the same callers as when it was last
        # walked, so a thread parked in the same frame (waiting, sleeping) costs one lookup.
        self._last: Dict[int, _Seen] = {}
        self._tick = 0  # ticks ever (``ticks`` restarts at each take)
        self._stack_of: Dict[Sid, Tuple[int, Tuple[Any, ...]]] = {}  # see Sid
        self._sid_stacks: Dict[Sid, int] = {}  # what stacks and runs count while sampling, by Sid
        self._sid_runs: Dict[Sid, int] = {}
        # (id(code), line) -> (code, waits there), for this window and the one before (take() drops
        # the older): a code object no longer sampled is let go (see Sid for why it is kept at all).
        self._waits: Dict[Tuple[int, int], Tuple[Any, bool]] = {}
        self._waits_before: Dict[Tuple[int, int], Tuple[Any, bool]] = {}

    def sample(self) -> None:
        started = time.perf_counter()
        stacks = self._sid_stacks
        runs = self._sid_runs
        stack_of = self._stack_of
        skip = self.skip
        last = self._last
        clocks = self.clocks
        counts = self.counts
        caught = self.caught
        tick = self._tick = self._tick + 1
        for ident, frame in current_frames().items():
            if ident in skip:
                continue
            seen = last.get(ident)
            if seen is not None and seen.frame is frame:
                key = seen.key
                sid = seen.sid
                parked = True
            else:
                code = frame.f_code
                back = frame.f_back
                if seen is not None and back is not None and back is seen.parent:
                    # Its caller is the frame it was in before, still running (not a generator):
                    # only the innermost frame is new (a loop calling functions), no walk.
                    sid = seen.sid
                    key = seen.key
                    if code is not key[1][0]:
                        sid = (ident, id(code)) + sid[2:]
                        key = stack_of.get(sid)  # type: ignore[assignment]
                        if key is None:
                            key = stack_of[sid] = (ident, (code,) + seen.key[1][1:])
                else:
                    codes = []
                    walk = frame
                    while walk is not None:
                        codes.append(walk.f_code)
                        walk = walk.f_back
                    sid = (ident,) + tuple(map(id, codes))
                    key = stack_of.get(sid)  # type: ignore[assignment]
                    if key is None:
                        key = stack_of[sid] = (ident, tuple(codes))
                    if seen is None:
                        seen = last[ident] = _Seen(None if clocks is None else clocks.get(ident))
                # A generator's frame can be resumed from another caller: never reuse its stack.
                seen.frame = None if code.co_flags & _RESUMABLE else frame
                seen.parent = None if back is None or back.f_code.co_flags & _RESUMABLE else back
                seen.key = key
                seen.sid = sid
                parked = False
            if caught is not None:
                caught.append(sid)
            if counts is not None:
                lasti = frame.f_lasti
                if parked and seen.pending and seen.lasti == lasti:
                    seen.pending += 1
                elif parked and seen.pending and seen.lines[0] == (frame.f_lineno or 0):
                    seen.lasti = lasti
                    seen.pending += 1
                else:
                    inner = frame.f_lineno or 0
                    seen.lasti = lasti
                    if seen.pending:
                        at = (seen.counted, seen.lines)
                        counts[at] = counts.get(at, 0) + seen.pending
                    if parked and len(seen.lines) == len(key[1]):
                        # Its callers are on the same lines; the innermost frame has moved on.
                        seen.lines = (inner,) + seen.lines[1:]
                    else:
                        seen.lines = _lines(frame)
                    seen.counted = sid
                    seen.pending = 1
            if clocks is None:
                stacks[sid] = stacks.get(sid, 0) + 1
                continue
            clock = seen.clock
            if clock is None or (parked and tick - seen.read_at < seen.quiet):
                continue
            # Whether it waits now: the same as last time if it is at the same instruction of the same frame.
            lasti = frame.f_lasti
            moved = not parked or seen.waits_lasti != lasti
            if moved:
                waits = seen.waits = self._waits_here(frame)
                seen.waits_lasti = lasti
            else:
                waits = seen.waits
            if moved and not waits and seen.cpu is not None:
                # Caught running, and it ran since it was last looked at (a thread that executes no
                # bytecode keeps its frame and instruction): counted without reading its clock. The
                # CPU it used meanwhile is read later, at a wait or at take(), and shared among its
                # run samples like all its CPU; most ticks of a busy thread cost no system call.
                seen.running = sid
                seen.unread = True
                seen.quiet = 0
                runs[sid] = runs.get(sid, 0) + 1
                continue
            try:
                now = _clock_ns(clock)
            except (OSError, OverflowError):  # the thread ended
                seen.clock = None
                continue
            used = 0 if seen.cpu is None else now - seen.cpu
            seen.cpu = now
            seen.read_at = tick
            unread = seen.unread
            seen.unread = False
            if used <= 0:
                # Quiet: its clock is read less often while it stays parked in the same frame, but
                # only if it is in a wait (a running thread the OS held off for a tick is not quiet:
                # skipping it would favour its longer-lived frames).
                seen.quiet = (min(2 * seen.quiet, QUIET_RECHECK_MAX) if seen.quiet else QUIET_RECHECK) if waits else 0
                seen.running = None
                continue
            seen.quiet = 0
            self.thread_cpu[ident] = self.thread_cpu.get(ident, 0) + used
            if waits:
                running = seen.running
                seen.running = None
                if unread:
                    # CPU of ticks it was counted running in without a read, and since: shared
                    # among its run samples (weigh), like the CPU read while it runs.
                    continue
                # It waits now, so the CPU went before the wait: to the stack the previous sample
                # caught it running in, else to the calls that ran between samples (see Between).
                if running is None:
                    # Under the outermost frame of the wait (a loop's select under its _run_once,
                    # which ran the callbacks), not under the library call that waits.
                    depth = 1
                    walk = frame.f_back
                    while walk is not None and self._waits_here(walk):
                        depth += 1
                        walk = walk.f_back
                    running = (ident, _BETWEEN_ID) + sid[depth:]
                    if running not in stack_of:
                        stack_of[running] = (ident, (BETWEEN,) + key[1][depth - 1:])
                stacks[running] = stacks.get(running, 0) + used
            else:
                # Caught running: counted, and given an equal part of the thread's CPU at take().
                seen.running = sid
                runs[sid] = runs.get(sid, 0) + 1
        self.ticks += 1
        self.busy_seconds += time.perf_counter() - started

    def _waits_here(self, frame: Any) -> bool:
        """Whether the frame's current line calls something that waits (cached per code and line)."""
        code, line = frame.f_code, frame.f_lineno
        at = (id(code), line)  # not the code object: see Sid (the cache keeps it alive)
        known = self._waits.get(at)
        if known is None:
            known = self._waits_before.get(at)
            if known is not None:
                self._waits[at] = known
                return known[1]
            names = _names_on_line(code, line)
            # gevent's hub waits in its C loop's run() (eventlet's hub calls wait(): listed above).
            known = self._waits[at] = (code, bool(_WAIT_NAMES.intersection(names)) or ("run" in names and _is_hub_loop(code)))
        return known[1]

    def stack(self, sid: Sid) -> Tuple[int, Tuple[Any, ...]]:
        """``(ident, code objects)`` of a Sid this window counted (``caught``), until take()."""
        return self._stack_of[sid]

    def take(self) -> Tuple[RawStacks, int, float]:
        """The counts so far, and start afresh: ``(stacks, ticks, busy seconds)``."""
        self._read_unread()
        stack_of = self._stack_of
        for sid, count in self._sid_stacks.items():
            key = stack_of[sid]
            self.stacks[key] = self.stacks.get(key, 0) + count
        for sid, count in self._sid_runs.items():
            key = stack_of[sid]
            self.runs[key] = self.runs.get(key, 0) + count
        self._sid_stacks, self._sid_runs = {}, {}
        self._waits_before, self._waits = self._waits, {}
        stacks = self.stacks if self.clocks is None else weigh(self.stacks, self.runs, self.thread_cpu)
        taken = stacks, self.ticks, self.busy_seconds
        self.stacks, self.ticks, self.busy_seconds = {}, 0, 0.0
        self.thread_cpu, self.runs = {}, {}
        # Let go of the frames (threads end, frames finish), keep each thread's last CPU reading,
        # and only the stacks its record or the recording's counts still refer to.
        kept = {}
        for seen in self._last.values():
            seen.frame = seen.parent = None
            for sid in (seen.sid, seen.running, seen.counted):
                if sid is not None and sid in stack_of:
                    kept[sid] = stack_of[sid]
        for sid, _lines in self.counts or ():
            kept[sid] = stack_of[sid]
        self._stack_of = kept
        return taken

    def _read_unread(self) -> None:
        """Reads the clocks of threads counted running without a read, so each window has all the
        CPU its threads used in it (their run samples share it)."""
        for ident, seen in self._last.items():
            if not seen.unread:
                continue
            seen.unread = False
            try:
                now = _clock_ns(seen.clock)  # type: ignore[arg-type]
            except (OSError, OverflowError, TypeError):  # the thread ended
                seen.clock = None
                continue
            if seen.cpu is not None and now > seen.cpu:
                self.thread_cpu[ident] = self.thread_cpu.get(ident, 0) + now - seen.cpu
            seen.cpu = now

    def take_counts(self) -> Counts:
        """The recording's counts so far (see ``counts``), and start afresh."""
        counts = self.counts or {}
        for seen in self._last.values():
            if seen.pending:
                at = (seen.counted, seen.lines)
                counts[at] = counts.get(at, 0) + seen.pending
                seen.pending = 0
        self.counts = {}
        stack_of = self._stack_of
        taken: Counts = {}
        for (sid, lines), count in counts.items():
            at = (stack_of[sid], lines)
            taken[at] = taken.get(at, 0) + count
        return taken

    def use_clocks(self, clocks: Optional[Dict[int, int]]) -> None:
        """Per-thread CPU clocks for the next samples (None: none); threads that are gone are forgotten."""
        self.clocks = clocks
        if clocks is None:
            alive = current_frames()
            for ident in [i for i in self._last if i not in alive]:
                del self._last[ident]
            return
        for ident in [i for i in self._last if i not in clocks]:
            del self._last[ident]
        for ident, seen in self._last.items():
            if seen.clock != clocks[ident]:
                seen.clock, seen.cpu, seen.unread = clocks[ident], None, False


def weigh(behind_waits: RawStacks, runs: RawStacks, thread_cpu: Dict[int, int]) -> RawStacks:
    """CPU nanoseconds by stack: what samples found behind waits, plus the rest of each thread's
    CPU shared equally among the samples that caught it running (each stands for the same share
    of its running time; weighing each by the CPU since the previous sample would give a sample
    after a long delay of the sampler, common on a loaded machine, the weight of many)."""
    out = dict(behind_waits)
    waited: Dict[int, int] = {}
    for (ident, _codes), used in behind_waits.items():
        waited[ident] = waited.get(ident, 0) + used
    caught: Dict[int, int] = {}
    for (ident, _codes), count in runs.items():
        caught[ident] = caught.get(ident, 0) + count
    for key, count in runs.items():
        rest = thread_cpu.get(key[0], 0) - waited.get(key[0], 0)
        if rest > 0:
            out[key] = out.get(key, 0) + rest * count / caught[key[0]]
    return out


def apportion(raw: RawStacks) -> Tuple[RawStacks, int]:
    """CPU a thread used between samples (``Between`` stacks) shared out like the CPU the sampler
    caught that thread using, in the same window, in calls from the same waiting frame (a caught
    stack that runs through it: the loop that computes, then sleeps); ``(stacks, ns shared out)``.

    An estimate, said to be one (the summary's ``apportioned_percent``): the short bursts are taken
    to be like that frame's bursts that were long enough to be caught. CPU no caught stack explains
    keeps its ``Between`` stack, so what was not seen is shown as not seen.
    """
    out: RawStacks = {}
    between = []
    caught: Dict[int, Dict[Tuple[int, Tuple[Any, ...]], int]] = {}
    for key, value in raw.items():
        if key[1] and key[1][0] is BETWEEN:
            between.append((key, value))
        else:
            out[key] = value
            caught.setdefault(key[0], {})[key] = value
    shared = 0
    for key, value in between:
        waiting = key[1][1:]
        depth = len(waiting)
        if depth and _is_hub_loop(waiting[0]):
            depth = 0  # gevent: the greenlets its hub ran; their stacks do not run through the hub's
        through = {k: v for k, v in caught.get(key[0], {}).items()
                   if not depth or (len(k[1]) > depth and k[1][-depth:] == waiting)}
        total = sum(through.values())
        if not total:
            out[key] = out.get(key, 0) + value
            continue
        for running, weight in through.items():
            out[running] = out.get(running, 0) + value * weight / total
        shared += value
    return out, shared


def _lines(frame: Any) -> Tuple[int, ...]:
    lines = []
    while frame is not None:
        lines.append(frame.f_lineno or 0)
        frame = frame.f_back
    return tuple(lines)


def _is_hub_loop(code: Any) -> bool:
    return getattr(code, "co_name", None) == "run" and "gevent" in getattr(code, "co_filename", "")


def _clock_ns(clock: int) -> int:
    return time.clock_gettime_ns(clock)


def _names_on_line(code: Any, line: int) -> List[str]:
    """The names and attributes a line of ``code`` loads (``time.sleep`` -> time, sleep)."""
    import dis

    names: List[str] = []
    at_line = None
    try:
        for ins in dis.get_instructions(code):
            number = getattr(ins, "line_number", None)  # 3.13+
            if number is None and type(ins.starts_line) is int and not isinstance(ins.starts_line, bool):
                number = ins.starts_line
            if number is not None:
                at_line = number
            if at_line != line:
                continue
            if isinstance(ins.argval, str) and ("ATTR" in ins.opname or "GLOBAL" in ins.opname
                                                or "METHOD" in ins.opname or ins.opname == "LOAD_NAME"):
                names.append(ins.argval)
            elif ins.opname.startswith("LOAD_FAST"):  # 3.13+: a pair's argval is a tuple of two names
                local = ins.argval if isinstance(ins.argval, tuple) else (ins.argval,)
                names.extend(name for name in local if name in LOCAL_WAIT_CALLS)
    except Exception:
        return []
    return names


class Names:
    """Code object -> ``module.qualname``, and where it is defined; module found from the file.

    A stream that lives long (export, top) calls ``forget`` once per report: code objects not
    labelled in that report or the one before are let go, so the names it holds are bounded by
    what two reports sampled, not by every code object the host ever ran (code made by exec or
    eval in the host would otherwise be kept alive by the stream).
    """

    def __init__(self) -> None:
        # id(code) -> (code, label): by id, since hashing a code object hashes its bytecode and
        # constants (see Sid); the entry holds the code object, so its id stays its own.
        self._labels: Dict[int, Tuple[Any, str]] = {}
        self._before: Dict[int, Tuple[Any, str]] = {}  # the previous report's, until the next forget
        self.where: Dict[str, Tuple[str, int]] = {}
        self._modules: Optional[Dict[str, str]] = None

    def label(self, code: Any) -> str:
        known = self._labels.get(id(code))
        if known is None or known[0] is not code:
            known = self._before.get(id(code))
            if known is None or known[0] is not code:
                module = self._module(code.co_filename)
                qualname = compat.qualname(code, compat.module_namespace(module))
                label = "%s.%s" % (module, qualname) if module else "%s (%s)" % (qualname, code.co_filename)
                known = (code, label)
            self._labels[id(code)] = known
            self.where.setdefault(known[1], (code.co_filename, code.co_firstlineno))
        return known[1]

    def forget(self, where: bool = True) -> None:
        """A report is done: let go of the code objects not labelled since the previous call, and
        (``where``) of the locations of labels not made since either (a recording keeps them: its
        frames are located at its end)."""
        self._before, self._labels = self._labels, {}
        if where:
            live = {label for _code, label in self._before.values()}
            self.where = {label: at for label, at in self.where.items() if label in live}

    def _module(self, filename: str) -> Optional[str]:
        if self._modules is None or filename not in self._modules:
            self._modules = {}
            for name, module in list(sys.modules.items()):
                path = getattr(module, "__file__", None)
                if isinstance(path, str):
                    self._modules.setdefault(path, name)
                    self._modules.setdefault(os.path.abspath(path), name)
            self._modules.setdefault(filename, "")  # unknown: do not rescan for it
        return self._modules.get(filename) or None


def label_stacks(raw: RawStacks, scale: float, thread_names: Dict[int, str], names: Names) -> Labelled:
    """Raw counts (samples, or CPU ns) times ``scale`` -> counts by thread name and labels."""
    out: Labelled = {}
    for (ident, codes), count in raw.items():
        key = (thread_names.get(ident, str(ident)), _labels(codes, names))
        out[key] = out.get(key, 0) + count * scale
    return out


def _labels(codes: Tuple[Any, ...], names: Names) -> Tuple[str, ...]:
    if codes and codes[0] is BETWEEN:
        caller = names.label(codes[1]) if len(codes) > 1 else "(no Python frame)"
        label = "%s [calls returned between samples]" % caller
        names.where.setdefault(label, names.where.get(caller, (None, None)))  # type: ignore[arg-type]
        return (label,) + tuple(names.label(c) for c in codes[1:])
    return tuple(names.label(c) for c in codes)


def detail(cpu: Optional[RawStacks], counts: Counts, thread_names: Dict[int, str], names: Names, into: Detailed) -> None:
    """Adds a window's stacks to a recording's detail: each stack's CPU nanoseconds (``cpu``, None
    where not measured) and the samples that caught it, by thread name and labelled frames with
    the lines they were at. A stack's CPU is split among the lines it was caught at like its
    samples are; CPU of a stack never caught (CPU shared out from between samples) has line 0,
    not known."""
    variants: Dict[Tuple[int, Tuple[Any, ...]], List[Tuple[Tuple[int, ...], int]]] = {}
    for (key, lines), count in counts.items():
        variants.setdefault(key, []).append((lines, count))
    keys = set(variants)
    if cpu is not None:
        keys.update(cpu)
    for key in keys:
        ident, codes = key
        labels = _labels(codes, names)
        thread = thread_names.get(ident, str(ident))
        caught = variants.get(key) or [((0,) * len(codes), 0)]
        used = 0.0 if cpu is None else cpu.get(key, 0)
        total = sum(count for _lines, count in caught)
        for lines, count in caught:
            share = used * count / total if total else used
            at = (thread, tuple(zip(labels, lines)))
            both = into.get(at)
            if both is None:
                both = into[at] = [0.0, 0]
            both[0] += share
            both[1] += count


def frames_and_stacks(detail: Detailed, names: Names, weigh: bool, max_bytes: int) -> Tuple[List[List[Any]], List[Dict[str, Any]], int]:
    """A recording's detail as a shared frame table (``[function, file, line of the def, line it
    was at]``) and its heaviest stacks of indices into it, innermost first, as many as fit in about
    ``max_bytes`` of JSON: ``(frames, stacks, stacks left out)``. Each stack: ``{thread, frames,
    samples, cpu_ns}``."""
    heaviest = sorted(detail.items(), key=lambda item: (-item[1][0], -item[1][1]))
    index: Dict[Any, int] = {}
    frames: List[List[Any]] = []
    stacks = []
    size = 0  # bytes of JSON, roughly
    for (thread, framed), (cpu, count) in heaviest:
        size += 80 + len(thread) + 8 * len(framed)
        if size > max_bytes:
            break
        ids = []
        for at in framed:
            found = index.get(at)
            if found is None:
                found = index[at] = len(frames)
                file, start = names.where.get(at[0], (None, None))
                frames.append([at[0], file, start, at[1]])
                size += 40 + len(at[0]) + len(file or "")
            ids.append(found)
        stacks.append({"thread": thread, "frames": ids, "samples": int(count),
                       "cpu_ns": int(round(cpu)) if weigh else None})
    return frames, stacks, len(heaviest) - len(stacks)


def merge(into: Labelled, more: Labelled) -> None:
    for key, count in more.items():
        into[key] = into.get(key, 0) + count


def summarize(stacks: Labelled, where: Dict[str, Tuple[str, int]], limit: int) -> Tuple[float, List[Dict[str, Any]]]:
    """``(samples, functions)``: each function's self samples (innermost frame) and total samples
    (anywhere on the stack, counted once per sample), as shares of all samples, by self then total."""
    own: Dict[str, float] = {}
    total: Dict[str, float] = {}
    samples = 0.0
    for (_thread, labels), count in stacks.items():
        samples += count
        if labels:
            own[labels[0]] = own.get(labels[0], 0) + count
        for label in set(labels):
            total[label] = total.get(label, 0) + count
    ranked = sorted(total, key=lambda f: (-own.get(f, 0), -total[f], f))[:limit]
    functions = []
    for label in ranked:
        file, line = where.get(label, (None, None))
        functions.append({
            "function": label, "file": file, "line": line,
            "self_samples": round(own.get(label, 0), 2), "total_samples": round(total[label], 2),
            "self_percent": round(100.0 * own.get(label, 0) / samples, 2) if samples else 0.0,
            "total_percent": round(100.0 * total[label] / samples, 2) if samples else 0.0,
        })
    return round(samples, 2), functions


def collapsed(stacks: Labelled) -> List[List[Any]]:
    """Brendan Gregg's collapsed format, as ``[line, count]`` pairs: ``thread NAME;outer;...;inner``.

    ``;`` inside a name would split a frame: it becomes ``:``. Weighted counts are rounded to whole
    samples (flamegraph.pl and speedscope want integers); stacks that round to 0 are left out.
    """
    merged: Dict[str, float] = {}
    for (thread, labels), count in stacks.items():
        frames = ["thread %s" % thread] + list(reversed(labels))
        line = ";".join(f.replace(";", ":") for f in frames)
        merged[line] = merged.get(line, 0) + count
    rounded = [[line, int(round(count))] for line, count in merged.items()]
    return sorted((pair for pair in rounded if pair[1] > 0), key=lambda pair: (-pair[1], pair[0]))
