"""Pure logic of logger, tasks and source: levels, where handlers write, the await chain, and the
comparison of loaded code with a file's text (compiled here, so every rule runs on this Python)."""

from __future__ import annotations

import asyncio
import io
import logging
import logging.handlers
import queue
import sys
import textwrap
import threading
import types
import warnings
from pathlib import Path

import pytest
from peeka_agent.commands import CommandError, logger, source, tasks

pytestmark = pytest.mark.parallel

# ---------------------------------------------------------------- logger


def test_parse_level_names_numbers_and_custom_levels() -> None:
    assert logger.parse_level("debug") == logging.DEBUG
    assert logger.parse_level("WARN") == logging.WARNING
    assert logger.parse_level("15") == 15 and logger.parse_level(5) == 5
    logging.addLevelName(25, "NOTICE")
    assert logger.parse_level("notice") == 25
    for bad in ("LOUD", "", -1, None, 1.5):
        with pytest.raises(CommandError, match="unknown level"):
            logger.parse_level(bad)


def test_writes_to_for_stdlib_handlers(tmp_path: Path) -> None:
    file_handler = logging.FileHandler(tmp_path / "a.log", delay=True)
    rotating = logging.handlers.RotatingFileHandler(tmp_path / "b.log", maxBytes=100, backupCount=3, delay=True)
    stream = open(tmp_path / "s.log", "w")  # noqa: SIM115 - closed with the handler
    cases = [
        (logging.StreamHandler(stream), {"stream": str(tmp_path / "s.log")}),
        (logging.StreamHandler(io.StringIO()), {"stream": "_io.StringIO"}),
        (file_handler, {"file": str(tmp_path / "a.log"), "mode": "a"}),
        (rotating, {"file": str(tmp_path / "b.log"), "mode": "a", "maxBytes": 100, "backupCount": 3}),
        (logging.handlers.SocketHandler("10.0.0.1", 9020), {"address": "10.0.0.1:9020"}),
        (logging.handlers.DatagramHandler("10.0.0.2", 9021), {"address": "10.0.0.2:9021"}),
        (logging.handlers.HTTPHandler("logs.example:80", "/ingest", method="POST"),
         {"url": "POST logs.example:80/ingest"}),
        (logging.handlers.QueueHandler(queue.Queue()), {"queue": "queue.Queue", "queued": 0}),
        (logging.handlers.MemoryHandler(50), {"capacity": 50, "target": None}),
        (logging.NullHandler(), {}),
    ]
    try:
        for handler, expected in cases:
            assert logger.writes_to(handler) == expected, type(handler).__name__
    finally:
        for handler, _ in cases:
            handler.close()
        stream.close()


def test_render_record_merges_arguments_and_survives_bad_ones() -> None:
    record = logging.LogRecord("app", logging.INFO, "/x.py", 3, "order %d of %s", (7, "bob"), None, "f")
    event = logger.render_record(record)
    assert event["message"] == "order 7 of bob" and event["level"] == "INFO" and event["line"] == 3
    broken = logging.LogRecord("app", logging.ERROR, "/x.py", 4, "needs %d", ("text",), None, "f")
    assert "could not merge the arguments" in logger.render_record(broken)["message"]
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("app", logging.ERROR, "/x.py", 5, "failed", (), sys.exc_info(), "f")
    assert "ValueError: boom" in logger.render_record(failed)["exception"]


# ---------------------------------------------------------------- tasks


def test_await_chain_and_what_a_task_awaits() -> None:
    async def inner(q: asyncio.Queue) -> None:
        await q.get()

    async def outer(q: asyncio.Queue) -> None:
        await inner(q)

    async def main() -> None:
        q: asyncio.Queue = asyncio.Queue()
        task = asyncio.ensure_future(outer(q))
        await asyncio.sleep(0.01)
        entry = tasks.describe_task(task, 32)
        assert [f["function"].rsplit(".", 1)[-1] for f in entry["frames"]] == ["get", "inner", "outer"]
        assert entry["awaits"]["kind"] == "queue get" and entry["awaits"]["getters"] == 1
        assert entry["state"] == "pending"
        short = tasks.describe_task(task, 1)
        assert len(short["frames"]) == 1 and short["frames_omitted"] == 2
        waiter = asyncio.ensure_future(asyncio.wait_for(task, 10))
        await asyncio.sleep(0.01)
        assert tasks.describe_task(waiter, 32)["awaits"]["kind"] in ("task", "future")
        gathered = asyncio.ensure_future(gather_two(q))
        waiting = asyncio.ensure_future(asyncio.wait([task, gathered]))
        await asyncio.sleep(0.01)
        assert tasks.describe_task(gathered, 32)["awaits"]["kind"] == "gather"
        assert tasks.describe_task(gathered, 32)["awaits"]["pending"] == 2
        many = tasks.describe_task(waiting, 32)["awaits"]
        assert many["kind"] == "wait" and many["what"] == "asyncio.wait on 2"
        for t in (task, waiter, gathered, waiting):
            t.cancel()
        await asyncio.gather(task, waiter, gathered, waiting, return_exceptions=True)

    async def gather_two(q: asyncio.Queue) -> None:
        await asyncio.gather(q.get(), q.get())

    asyncio.run(main())


def test_natural_order_of_task_names() -> None:
    names = ["Task-10", "Task-2", "worker", "Task-1"]
    assert sorted(names, key=tasks._natural) == ["Task-1", "Task-2", "Task-10", "worker"]


# ---------------------------------------------------------------- source

ORIGINAL = textwrap.dedent(
    '''\
    from __future__ import annotations
    import functools


    def price(quantity: int, unit=3) -> int:
        # cents
        total = quantity * unit
        return total


    class Basket:
        def __init__(self):
            self.__items = []

        @functools.lru_cache(maxsize=None)
        def total(self):
            return sum(x for x in self.__items) + super().__hash__() * 0


    def untouched(x):
        return x + 1
    '''
)


def loaded(text: str, tmp_path: Path) -> dict[str, types.CodeType]:
    """Code objects as the interpreter loaded them from ``text``."""
    path = tmp_path / "mod.py"
    path.write_text(text)
    namespace: dict[str, object] = {"__name__": "mod"}
    exec(compile(text, str(path), "exec"), namespace)
    basket = namespace["Basket"]
    return {
        "price": namespace["price"].__code__,  # type: ignore[attr-defined]
        "init": basket.__init__.__code__,  # type: ignore[attr-defined]
        "total": basket.__dict__["total"].__wrapped__.__code__,  # type: ignore[attr-defined]
        "untouched": namespace["untouched"].__code__,  # type: ignore[attr-defined]
    }


def compare(code: types.CodeType, text: str, enclosing: list[str] | None = None) -> tuple[str, list[str], int]:
    return source.compare(code, text.splitlines(True), enclosing or [])


def test_unchanged_file_matches_also_methods_with_super_private_names_and_decorators(tmp_path: Path) -> None:
    codes = loaded(ORIGINAL, tmp_path)
    assert compare(codes["price"], ORIGINAL) == ("matches", [], 5)
    assert compare(codes["init"], ORIGINAL, ["Basket"])[0] == "matches"
    assert compare(codes["total"], ORIGINAL, ["Basket"])[:2] == ("matches", [])
    assert compare(codes["untouched"], ORIGINAL)[0] == "matches"


def test_comments_do_not_count_a_shift_is_moved_a_constant_is_changed(tmp_path: Path) -> None:
    codes = loaded(ORIGINAL, tmp_path)
    commented = ORIGINAL.replace("# cents", "# whole cents, rounded")
    assert compare(codes["price"], commented)[0] == "matches"
    shifted = ORIGINAL.replace("class Basket:", "# new\n\n\nclass Basket:")
    status, why, line = compare(codes["total"], shifted, ["Basket"])
    assert status == "moved" and line == codes["total"].co_firstlineno + 3 and "now at line" in why[0]
    assert compare(codes["untouched"], shifted)[0] == "moved"
    edited = ORIGINAL.replace("quantity * unit", "quantity * unit * 2")
    status, why, _ = compare(codes["price"], edited)
    assert status == "changed" and "constants only the file has: 2" in why[0]
    renamed = ORIGINAL.replace("total = quantity * unit\n    return total", "cost = quantity * unit\n    return cost")
    assert "local variables only the running code has: total" in compare(codes["price"], renamed)[1][0]


def test_a_line_added_inside_the_body_is_a_change_of_lines(tmp_path: Path) -> None:
    codes = loaded(ORIGINAL, tmp_path)
    inside = ORIGINAL.replace("    total = quantity * unit\n", "    total = quantity * unit\n\n")
    assert compare(codes["price"], inside)[0] == "changed"


def test_a_function_gone_from_the_file(tmp_path: Path) -> None:
    codes = loaded(ORIGINAL, tmp_path)
    gone = ORIGINAL.replace("def untouched(x):\n    return x + 1\n", "")
    status, why, _ = compare(codes["untouched"], gone)
    assert status == "changed" and "no def of 'untouched'" in why[0]


def test_compiling_the_file_prints_no_warning(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    text = 'def pattern():\n    return "\\d+" if 1 is 1 else None\n'
    namespace: dict[str, object] = {}
    with warnings.catch_warnings(record=True) as caught:  # as the interpreter did when it loaded the file
        warnings.simplefilter("always")
        exec(compile(text, str(tmp_path / "w.py"), "exec"), namespace)
    assert caught
    code = namespace["pattern"].__code__  # type: ignore[attr-defined]
    assert compare(code, text)[0] == "matches"
    assert capfd.readouterr().err == ""


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup is new in 3.11")
def test_a_task_waiting_on_its_task_group() -> None:
    async def group() -> None:
        async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined]
            tg.create_task(asyncio.sleep(10), name="member-1")
            tg.create_task(asyncio.sleep(10), name="member-2")

    async def main() -> None:
        owner = asyncio.ensure_future(group())
        await asyncio.sleep(0.01)
        awaits = tasks.describe_task(owner, 32)["awaits"]
        assert awaits["kind"] == "task group" and sorted(awaits["children"]) == ["member-1", "member-2"]
        owner.cancel()
        await asyncio.gather(owner, return_exceptions=True)

    asyncio.run(main())


def test_no_running_loop_is_said_and_the_gc_scan_finds_a_running_one() -> None:
    result = tasks.handle(None, None, {})
    assert result["loops"] == [] and "--scan-gc" in result["note"]
    started = threading.Event()
    release: list[asyncio.Future] = []

    async def idle() -> None:
        release.append(asyncio.get_running_loop().create_future())
        started.set()
        await release[0]

    thread = threading.Thread(target=asyncio.run, args=(idle(),))
    thread.start()
    try:
        assert started.wait(10)
        loop = release[0].get_loop()
        assert id(loop) in tasks._loops_in_gc()
        (found,) = tasks.handle(None, None, {})["loops"]
        assert found["thread"] == thread.name and found["task_count"] == 1
    finally:
        loop.call_soon_threadsafe(release[0].set_result, None)
        thread.join(10)
