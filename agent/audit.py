"""The audit trail: every request that reaches the agent, refused ones included.

An entry: time, the peer's pid and uid (SO_PEERCRED, read once when the connection was accepted),
the front end the client named, the command, its arguments (secrets redacted, values truncated, as
export's values are), and the outcome: "ok", "error" (with its error_type) or "refused" (read-only,
busy). Kept in a bounded ring (``protocol.AUDIT_RING``); ``audit`` (agent/commands/audit.py) reads
it and follows it.

Recording runs on the client's reader thread (an agent thread, never the host's): a dict built and
appended. With ``audit_file`` and/or ``audit_log`` (attach options) the entries also go to a
JSON-lines file and/or the host's logger ``peeka.audit``, written by the trail's own thread from a
bounded queue: a slow disk or a slow log handler delays that thread only, and a full queue drops
(counted in the ring's stats), never blocks a request. Nothing here raises to its caller.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional

from . import compat, protocol

_WRITER_POLL = 1.0  # s: how soon an idle writer notices the trail closed
_LITERALS: Any = None  # the compiled pattern of a string literal, made on first use


def _redacted(name: Any, value: Any) -> Any:
    """One argument as the trail keeps it: plain numbers and booleans as they are, the rest as text
    of at most AUDIT_MAX_VALUE characters; a secret's name hides its value, and an expression that
    names a secret has its string literals hidden (``params['token'] == 'abc'``)."""
    from . import values

    limit = protocol.AUDIT_MAX_VALUE
    if values.is_secret(name):
        return values.REDACTED
    if value is None or type(value) in (bool, int, float):
        return value
    if type(value) is str:
        # Cut first: the pattern below then never scans more than ``limit`` characters.
        value = value if len(value) <= limit else value[:limit - 1] + "\u2026"
        if values.is_secret(value):
            global _LITERALS
            if _LITERALS is None:
                import re

                # A string literal, or one the cut left open at the end.
                _LITERALS = re.compile(r"""(?s)(['"])(?:\\.|(?!\1).)*(?:\1|$)""")
            value = _LITERALS.sub("'%s'" % values.REDACTED, value)
        return value
    if type(value) is list:  # one level: a list nested deeper is its bounded repr (no recursion to exhaust)
        return [values.redacted_repr(name, item, limit) if type(item) in (list, dict) else _redacted(name, item)
                for item in value[:20]]
    return values.redacted_repr(name, value, limit)


def redacted_args(args: Any) -> Dict[str, Any]:
    if not isinstance(args, dict):
        return {}
    return {str(k)[:64]: _redacted(k, v) for k, v in list(args.items())[:50]}


def _open_append(path: str) -> Any:
    # Not eventlet's os.open or fdopen: they would give this agent thread a hub (and an epoll fd).
    fd = compat.original("os", "open")(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return open(fd, "a", encoding="utf-8")


class Trail:
    def __init__(self, config: Dict[str, Any]) -> None:
        self.ring: Deque[Dict[str, Any]] = deque(maxlen=protocol.AUDIT_RING)
        self.recorded = 0
        self.followers: List[Any] = []  # audit --follow streams
        self.file_path: Optional[str] = config.get("audit_file") or None
        self.log = bool(config.get("audit_log"))
        self._made_loggers: List[str] = []  # logger names that exist only because the trail logged
        self.dropped = 0  # entries the file/log writer never got (its queue was full)
        self.write_errors = 0
        self.last_write_error = ""
        self._queue: Deque[Dict[str, Any]] = deque()
        self._lock = compat.lock()  # seq numbers: several readers record at once
        self._wakeup = compat.lock()
        self._wakeup.acquire()
        self._closed = False
        self._writer: Any = None
        if self.file_path or self.log:
            self._writer = compat.spawn(self._write_loop, "peeka-agent-audit")

    def record(self, client: Any, request: Any, outcome: str, error_type: Optional[str] = None) -> None:
        try:
            self._record(client, request, outcome, error_type)
        except Exception:
            pass  # the trail never fails a request

    def _record(self, client: Any, request: Any, outcome: str, error_type: Optional[str]) -> None:
        frontend = getattr(request, "frontend", None)
        with self._lock:
            self.recorded += 1
            seq = self.recorded
        entry = {
            "seq": seq,
            "time": time.time(),
            "peer_pid": getattr(client, "peer_pid", None),
            "peer_uid": getattr(client, "peer_uid", None),
            "client": getattr(client, "number", None),
            "frontend": frontend[:16] if isinstance(frontend, str) else None,
            "read_only": getattr(request, "read_only", False) is True,
            "command": str(getattr(request, "command", ""))[:64],
            "args": redacted_args(getattr(request, "args", None)),
            "outcome": outcome,
            "error_type": error_type,
        }
        self.ring.append(entry)
        for stream in list(self.followers):
            stream.emit(entry)
        if self._writer is not None and not self._closed:
            if len(self._queue) >= protocol.AUDIT_FILE_QUEUE:
                self.dropped += 1
                return
            self._queue.append(entry)
            if self._wakeup.locked():
                try:
                    self._wakeup.release()
                except RuntimeError:
                    pass  # another recorder released it first

    def entries(self, since: int = 0) -> List[Dict[str, Any]]:
        return [e for e in list(self.ring) if e["seq"] > since]

    def stats(self) -> Dict[str, Any]:
        return {"recorded": self.recorded, "kept": len(self.ring), "ring_size": self.ring.maxlen,
                "file": self.file_path, "log": protocol.AUDIT_LOGGER if self.log else None,
                "dropped": self.dropped, "write_errors": self.write_errors,
                "last_write_error": self.last_write_error}

    # -- the mirror to a file and/or the host's logging, on the trail's own thread
    def _write_loop(self) -> None:
        out: Any = None
        try:
            while True:
                self._wakeup.acquire(True, _WRITER_POLL)
                if self._queue:
                    out = self._write_batch(out)
                if self._closed and not self._queue:
                    break
        except Exception:
            pass
        finally:
            if out is not None:
                try:
                    out.close()
                except Exception:
                    pass

    def _write_batch(self, out: Any) -> Any:
        import json

        queue = self._queue
        lines = []
        batch = [queue.popleft() for _ in range(len(queue))]
        for entry in batch:
            lines.append(json.dumps(entry, separators=(",", ":"), default=repr))
        if self.file_path:
            try:
                out = self._append(out, lines)
            except Exception as exc:  # full disk, removed directory: counted, and tried again next time
                self.write_errors += 1
                self.last_write_error = "%s: %s" % (type(exc).__name__, exc)
                if out is not None:
                    try:
                        out.close()
                    except Exception:
                        pass
                out = None
        if self.log:
            self._log(batch, lines)
        return out

    def _append(self, out: Any, lines: List[str]) -> Any:
        path = self.file_path
        assert path is not None
        if out is None:
            out = _open_append(path)
        chunk: List[str] = []
        size = out.tell()
        for line in lines:
            if chunk or size:
                if size + len(line) + 1 > protocol.AUDIT_FILE_MAX_BYTES:
                    # Bounded: one rotation (PATH.1 holds the previous file), as logrotate's copies would.
                    out.write("".join(chunk))
                    out.close()
                    os.replace(path, path + ".1")
                    out = _open_append(path)
                    chunk, size = [], 0
            chunk.append(line + "\n")
            size += len(line) + 1
        out.write("".join(chunk))
        out.flush()
        return out

    def _log(self, batch: List[Dict[str, Any]], lines: List[str]) -> None:
        import logging

        if not self._made_loggers:
            known = logging.Logger.manager.loggerDict
            name, made = protocol.AUDIT_LOGGER, []
            while name:  # the logger and the placeholders of its parents that getLogger would add
                if name not in known:
                    made.append(name)
                name = name.rpartition(".")[0]
            self._made_loggers = made or [""]
        logger = logging.getLogger(protocol.AUDIT_LOGGER)
        for entry, line in zip(batch, lines):
            try:
                # Refusals at WARNING: the platform's collection may keep only those.
                logger.log(logging.WARNING if entry["outcome"] == "refused" else logging.INFO, "peeka audit %s", line)
            except Exception:
                self.write_errors += 1

    def close(self, join_timeout: float = 2.0) -> None:
        """Detach: the writer writes what is queued, closes the file and ends (waited for up to
        ``join_timeout``; a fork child has no writer and waits for nothing)."""
        self._closed = True
        if self._wakeup.locked():
            try:
                self._wakeup.release()
            except RuntimeError:
                pass
        writer = self._writer
        if writer is not None:
            writer.join(join_timeout)
        self._forget_loggers()

    def _forget_loggers(self) -> None:
        """Detach leaves the host's logging as it was: the loggers only the trail made go again."""
        made = [name for name in self._made_loggers if name]
        if not made or (self._writer is not None and self._writer.is_alive()):
            return
        try:
            import logging

            with logging._lock:  # type: ignore[attr-defined]  # the lock getLogger takes (3.9-3.14)
                known = logging.Logger.manager.loggerDict
                for name in made:
                    item = known.get(name)
                    if isinstance(item, logging.Logger) and (item.handlers or item.level or item.filters):
                        continue  # the host configured it meanwhile: it is the host's now
                    if isinstance(item, logging.PlaceHolder) and any(
                            child.name not in made for child in item.loggerMap):
                        continue  # the host made a logger below it meanwhile
                    known.pop(name, None)
        except Exception:
            pass
