"""logger: the target's loggers and handlers; change a level live; follow records as they are emitted.

args:
  (none)            list every logger (``logging.Logger.manager.loggerDict`` plus root)
  name              only this logger and its descendants ("root" or "" is the root)
  name, level       set that logger's level (a name such as DEBUG, or a number); the original is
                    kept and restored by ``reset`` (no pattern) and by detach
  follow            stream the records that reach logger ``name`` (default root) as they are
                    emitted, from ``level`` up (handler threshold); ``limit`` (-n), ``timeout`` (s),
                    ``max_rate`` (records/s streamed, default 2,000; the rest counted as dropped)

List result: ``{"loggers": [...], "count", "disable": global logging.disable level, "changed"}``;
each logger: name, level, effective_level, propagate, disabled, placeholder, handlers (type,
level, writes_to, formatter), original_level when Peeka changed it.
"""

from __future__ import annotations

import difflib
import logging
from typing import Any, Dict, List, Optional, Tuple

from .. import compat, loglevels, streams, values
from ..loglevels import level_name
from ..streams import CommandError, Stream

ROOT_NAMES = ("root", "")
DEFAULT_MAX_RATE = 2000  # records per second a follow stream renders; more are counted as dropped


def parse_level(value: Any) -> int:
    """A level from a name (case-insensitive, custom names included) or a number 0-50+."""
    if type(value) is int and value >= 0:
        return value
    if type(value) is str:
        text = value.strip()
        if text.isdigit():
            return int(text)
        known = logging._nameToLevel  # type: ignore[attr-defined]  # custom levels too (addLevelName)
        level = known.get(text.upper(), known.get(text))
        if type(level) is int:
            return level
    names = sorted(logging._nameToLevel, key=lambda n: logging._nameToLevel[n])  # type: ignore[attr-defined]
    raise CommandError("unknown level %r: use one of %s, or a number" % (value, ", ".join(names)))


def find_logger(name: Any) -> logging.Logger:
    """An existing logger by name; never creates one (getLogger would)."""
    if name is None or name in ROOT_NAMES:
        return logging.getLogger()
    if type(name) is not str:
        raise CommandError("logger name must be a string, got %r" % (name,))
    found = logging.Logger.manager.loggerDict.get(name)
    if isinstance(found, logging.Logger):
        return found
    if found is not None:
        raise CommandError(
            "%r is only a placeholder (loggers below it exist, it was never created with getLogger); "
            "pick one of its children, or the root" % name
        )
    near = difflib.get_close_matches(name, _names(), 5)
    hint = ("; similar: %s" % ", ".join(near)) if near else ""
    raise CommandError("no logger named %r%s; `peeka logger PID` lists them" % (name, hint))


def _names() -> List[str]:
    for _ in range(10):
        try:
            return [n for n in list(logging.Logger.manager.loggerDict) if type(n) is str]
        except RuntimeError:  # the dict changed size while a host thread created a logger
            continue
    return []


# ---------------------------------------------------------------- describing


def writes_to(handler: Any) -> Dict[str, Any]:
    """Where a handler sends records, from the stdlib handler types' own attributes."""
    out: Dict[str, Any] = {}
    attrs = handler.__dict__ if isinstance(getattr(handler, "__dict__", None), dict) else {}
    if "baseFilename" in attrs:
        out["file"] = attrs["baseFilename"]
        for key in ("mode", "maxBytes", "backupCount", "when", "interval"):
            if key in attrs:
                out[key] = attrs[key]
    elif "stream" in attrs:
        stream = attrs["stream"]
        name = getattr(stream, "name", None)
        out["stream"] = name if type(name) in (str, int) else values.type_name(type(stream))
    if "host" in attrs and "port" in attrs:  # SocketHandler, DatagramHandler
        out["address"] = "%s:%s" % (attrs["host"], attrs["port"]) if attrs["port"] is not None else attrs["host"]
    elif "address" in attrs:  # SysLogHandler
        out["address"] = values.safe_repr(attrs["address"], 200)
    if "url" in attrs and "method" in attrs:  # HTTPHandler
        out["url"] = "%s %s%s" % (attrs["method"], attrs.get("host", ""), attrs["url"])
    if "mailhost" in attrs:  # SMTPHandler
        out["mailhost"] = values.safe_repr(attrs["mailhost"], 200)
        out["to"] = values.safe_repr(attrs.get("toaddrs"), 200)
    if "queue" in attrs:  # QueueHandler
        queue = attrs["queue"]
        out["queue"] = values.type_name(type(queue))
        try:
            out["queued"] = queue.qsize()
        except Exception:
            pass
    if "capacity" in attrs:  # MemoryHandler
        out["capacity"] = attrs["capacity"]
        target = attrs.get("target")
        out["target"] = values.type_name(type(target)) if target is not None else None
    return out


def describe_handler(handler: Any) -> Dict[str, Any]:
    formatter = getattr(handler, "formatter", None)
    fmt = getattr(formatter, "_fmt", None) if formatter is not None else None
    return {
        "type": values.type_name(type(handler)),
        "name": getattr(handler, "name", None),
        "level": level_name(getattr(handler, "level", 0)),
        "writes_to": writes_to(handler),
        "format": fmt if type(fmt) is str else None,
        "peeka": isinstance(handler, FollowHandler),
    }


def describe(name: str, logger: Any, originals: Dict[str, List[int]]) -> Dict[str, Any]:
    if not isinstance(logger, logging.Logger):
        return {"name": name, "placeholder": True, "handlers": []}
    entry: Dict[str, Any] = {
        "name": name,
        "placeholder": False,
        "level": level_name(logger.level),
        "effective_level": level_name(logger.getEffectiveLevel()),
        "propagate": bool(logger.propagate),
        "disabled": bool(logger.disabled),
        "handlers": [describe_handler(h) for h in list(logger.handlers)],
    }
    if name in originals:
        entry["original_level"] = level_name(originals[name][0])
    return entry


def _list(agent: Any, only: Optional[str]) -> Dict[str, Any]:
    originals = loglevels.originals(agent)
    manager = logging.Logger.manager
    loggers: List[Tuple[str, Any]] = [("root", logging.getLogger())]
    if only is not None and only not in ROOT_NAMES:
        find_logger(only)
        loggers = []
    for name in sorted(_names()):
        if only is None or only in ROOT_NAMES or name == only or name.startswith(only + "."):
            loggers.append((name, manager.loggerDict.get(name)))
    described = [describe(name, logger, originals) for name, logger in loggers]
    return {
        "loggers": described,
        "count": len(described),
        "disable": level_name(manager.disable) if manager.disable else None,
        "changed": {name: level_name(levels[0]) for name, levels in originals.items()},
    }


# ---------------------------------------------------------------- changing levels


def _set_level(agent: Any, name: Any, level_arg: Any) -> Dict[str, Any]:
    logger = find_logger(name)
    key = "root" if logger is logging.getLogger() else logger.name
    level = parse_level(level_arg)
    originals = loglevels.originals(agent)
    before = logger.level
    originals.setdefault(key, [before, level])[1] = level
    logger.setLevel(level)  # also clears the manager's isEnabledFor caches
    if originals[key][0] == level:
        del originals[key]  # back where it started: nothing left to restore
    result = describe(key, logger, originals)
    result["previous_level"] = level_name(before)
    result["warnings"] = _why_unseen(logger, level)
    return result


def _why_unseen(logger: Any, level: int) -> List[str]:
    """Reasons records at ``level`` would still not come out."""
    notes = []
    disable = logging.Logger.manager.disable
    if disable >= level:
        notes.append("logging.disable(%s) is in force: records at or below it are dropped everywhere" % level_name(disable))
    if logger.disabled:
        notes.append("this logger is disabled (logging.config with disable_existing_loggers?): it emits nothing")
    current: Any = logger
    seen_handler = False
    while current is not None:
        for handler in list(current.handlers):
            seen_handler = True
            if handler.level > level:
                notes.append("handler %s on %r has level %s: records below it stop there"
                             % (values.type_name(type(handler)), current.name, level_name(handler.level)))
        if not current.propagate:
            break
        current = current.parent
    if not seen_handler:
        notes.append("no handler on this logger or its ancestors: records go to logging.lastResort (stderr, WARNING+)")
    return notes


# ---------------------------------------------------------------- following records


class FollowHandler(logging.Handler):
    """Hands records to a stream without taking the handler lock or formatting on the host thread."""

    def __init__(self, follow: Follow, level: int, max_rate: int) -> None:
        logging.Handler.__init__(self, level)
        self.name = "peeka-follow"
        self.follow = follow
        self.max_rate = max_rate
        self.second = 0.0  # the current one-second window: its end, and the records passed in it
        self.passed = 0

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        # Unlike Handler.handle: no handler lock (a host thread must never wait on us), no formatting
        # here (the writer thread renders). Records logged by the agent's own threads are skipped:
        # rendering one could log again and feed the stream from its own writer.
        if record.levelno < self.level or str(record.threadName).startswith("peeka-agent"):
            return False
        # Above max_rate records per second the rest are only counted: rendering every record of a
        # host that logs 100k/s would take the GIL from it. (Unlocked: a race only blurs the count.)
        if record.created >= self.second:
            self.second = record.created + 1.0
            self.passed = 0
        if self.passed >= self.max_rate:
            self.follow.dropped += 1
            return False
        self.passed += 1
        self.follow.emit_later(render_record, record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # only Handler.handle calls it, and handle is ours
        self.handle(record)


_FORMATTER = logging.Formatter()


def render_record(record: logging.LogRecord) -> Dict[str, Any]:
    try:
        message = record.getMessage()
    except Exception as exc:
        message = "%s (peeka could not merge the arguments: %s: %s)" % (values.safe_repr(record.msg, 2000),
                                                                        type(exc).__name__, exc)
    event: Dict[str, Any] = {
        "time": record.created,
        "logger": record.name,
        "level": record.levelname,
        "levelno": record.levelno,
        "message": message,
        "file": record.pathname,
        "line": record.lineno,
        "function": record.funcName,
        "thread": record.threadName,
        "process": record.process,
    }
    if record.exc_info and record.exc_info[0] is not None:
        event["exception"] = _FORMATTER.formatException(record.exc_info)
    elif record.exc_text:
        event["exception"] = record.exc_text
    if record.stack_info:
        event["stack"] = record.stack_info
    return event


class Follow(Stream):
    def __init__(self, agent: Any, args: Dict[str, Any]) -> None:
        Stream.__init__(self, streams.int_arg(args, "limit", None, 1, 1 << 62))  # type: ignore[arg-type]
        self.agent = agent
        self.logger = find_logger(args.get("name"))
        self.level = parse_level(args["level"]) if args.get("level") is not None else logging.NOTSET
        self.timeout = streams.float_arg(args, "timeout", None, 0.0)
        self.max_rate = streams.int_arg(args, "max_rate", DEFAULT_MAX_RATE, 1, 1_000_000)
        self.handler = FollowHandler(self, self.level, self.max_rate)
        self._done = compat.Event()  # a real lock: a gevent-patched Event would wait on a hub nobody runs

    def describe(self) -> Dict[str, Any]:
        effective = self.logger.getEffectiveLevel()
        notes = []
        if self.level and effective > self.level:
            notes.append("logger %r's effective level is %s: its records below that are never created (a child "
                         "logger set lower still sends its own); `peeka logger PID --name %s --level %s` lowers it"
                         % (self.logger.name, level_name(effective), self.logger.name, level_name(self.level)))
        if logging.Logger.manager.disable:
            notes.append("logging.disable(%s) is in force" % level_name(logging.Logger.manager.disable))
        return {
            "stream": True,
            "logger": self.logger.name,
            "level": level_name(self.level),
            "effective_level": level_name(effective),
            "affected": "a handler on logger %r" % self.logger.name,
            "max_rate": self.max_rate,
            "notes": notes,
        }

    def setup(self) -> None:
        _follows(self.agent).add(self)
        self.logger.addHandler(self.handler)

    def run(self) -> None:
        # Records arrive through the handler; this thread only ends the stream on its timeout.
        self._done.wait(self.timeout)
        if not self.cancelled:
            self.finish("timeout")

    def on_stop(self) -> None:  # finish (-n, timeout) and cancel (client gone, Ctrl-C, detach) both
        self.logger.removeHandler(self.handler)
        _follows(self.agent).discard(self)
        self._done.set()


def _follows(agent: Any) -> Any:
    found = agent.state.get("logger_follows")
    if found is None:
        found = agent.state["logger_follows"] = set()
    return found


# ---------------------------------------------------------------- entry points


def handle(agent: Any, client: Any, args: Dict[str, Any]) -> Any:
    if args.get("follow"):
        return Follow(agent, args)
    if args.get("level") is not None:
        if args.get("name") is None:
            raise CommandError("--level needs --name: which logger? (use --name root for the root logger)")
        return _set_level(agent, args.get("name"), args["level"])
    return _list(agent, args.get("name"))


@streams.on_detach
def cleanup(agent: Any) -> None:
    """Detach: handlers off (``loglevels`` puts the levels back)."""
    for follow in list(_follows(agent)):
        follow.cancel("detached")
