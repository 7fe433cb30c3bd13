"""The agent's life inside the target: the socket server, its clients, start and detach.

Manners of a guest: every thread is a named daemon, nothing raised here reaches the host, every
client has its own bounded outbox, and ``stop()`` undoes what ``start()`` did.
"""

from __future__ import annotations

import os
import struct
import sys
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional

from . import __version__, compat, protocol, readonly, threadids
from .audit import Trail
from .commands import dispatch
from .streams import CommandError, DeferredEvent, Stream, build_event, run_cleanups

_ACCEPT_POLL = 0.2  # s: how soon the listener notices stop()
_WRITER_POLL = 0.2  # s: how soon an idle writer notices its client closed
_DEFAULT_OUTBOX = 10_000
_READ_POLL = 1.0  # s: a client's reader wakes this often to check its deadlines
_HANG_UP_GRACE = 2.0  # s a closing connection's last message may take to leave
_TIMEVAL = struct.Struct("ll")  # struct timeval
_CREDS = struct.Struct("3i")  # struct ucred


class Client:
    """One connected client, served by its reader thread, which reads a request, runs it and
    writes the answer itself; a writer thread starts with the client's first stream, for the
    events probes queue from host threads.

    Why: in a target whose threads hog the GIL, every hand-off between agent threads and every
    system call that releases the GIL costs a switch interval (5 ms) or more before the agent
    runs again (the GIL convoy). A simple request costs one wake-up here: one ``recv`` that
    takes the whole request (kernel timeouts instead of a poll() before it), the handler, one
    ``send``, with a lowered switch interval meanwhile (see ``_Hurry``).
    """

    def __init__(self, agent: Agent, conn: Any, number: int, peer_pid: Optional[int] = None,
                 peer_uid: Optional[int] = None) -> None:
        self.agent = agent
        self.conn = conn
        self.number = number
        self.peer_pid = peer_pid  # SO_PEERCRED, read once at accept: the audit trail's "who"
        self.peer_uid = peer_uid
        self.closed = False
        lock_type = compat.original("_thread", "allocate_lock")
        self._wakeup = lock_type()
        self._wakeup.acquire()
        self._outbox: Deque[Any] = deque()
        self.max_outbox = agent.max_outbox
        self.dropped = 0
        self.streams: Dict[int, Stream] = {}
        self.close_when_flushed = False
        self.connected = time.monotonic()
        self.spoke = False  # has sent a whole request: counts against max_clients from then on
        self._sending_since = 0.0  # monotonic time a sendall began, 0 when not sending
        self._write_lock = compat.lock()  # the reader and the writer share the socket
        self.writer: Any = None

    # -- sending: never blocks the caller, which may be a host thread running a probe. No lock on
    # this path: deque append/popleft are atomic, the bound is approximate under races (by a few
    # messages), and a wakeup is at worst spurious, never lost (see _writer).
    def send(self, message: Any, droppable: bool = False) -> bool:
        # Encoding happens in the writer thread: a probe on a host thread only appends.
        if self.closed:
            return False
        outbox = self._outbox
        if droppable and len(outbox) >= self.max_outbox:
            self.dropped += 1
            return False
        outbox.append(message)
        wakeup = self._wakeup
        if wakeup.locked():
            try:
                wakeup.release()
            except RuntimeError:
                pass  # another thread released it first
        return True

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            self._sending_since = time.monotonic()
            self.conn.sendall(data)  # SO_SNDTIMEO bounds a client that reads nothing
            self._sending_since = 0.0

    def _flush(self) -> None:
        outbox = self._outbox
        while outbox:
            pop = outbox.popleft
            batch = [pop() for _ in range(len(outbox))]
            self._write(b"".join(_encode(m) for m in batch))

    def _writer(self) -> None:
        # The writer holds _wakeup from one wait to the next, so a sender that appends after the
        # outbox was found empty sees it locked and releases it: the next wait returns at once.
        try:
            while not self.closed:
                self._wakeup.acquire(True, _WRITER_POLL)
                self._flush()
                if self.close_when_flushed and not self._outbox:
                    break
        except Exception:
            pass
        finally:
            self.close()

    def _reply(self, message: Any) -> None:
        """An answer from the reader: straight onto the socket while no stream shares it (after
        anything queued before it), else through the writer's queue, which keeps the order."""
        if self.writer is not None:
            self.send(message)
            return
        self._flush()
        self._write(_encode(message))

    def _reader(self) -> None:
        # Frames are assembled here from whatever arrives, and the reader waits in poll() with a
        # timeout, not in recv(): a client that never speaks, stops mid-frame, or never reads what
        # it asked for is noticed and closed, and none of them holds a thread forever.
        agent = self.agent
        buf = bytearray()
        header = protocol.HEADER
        conn = self.conn
        last_heard = self.connected
        try:
            _set_timeouts(conn, _READ_POLL, agent.send_stall_timeout)
            while not self.closed:
                try:
                    chunk = conn.recv(1 << 16)
                except BlockingIOError:  # SO_RCVTIMEO: nothing arrived for _READ_POLL
                    reason = self._reason_to_close(time.monotonic(), last_heard, bool(buf))
                    if reason:
                        self.send(protocol.failure(0, reason, protocol.CLOSED_IDLE))
                        self._hang_up_now()
                        return
                    continue
                if not chunk:
                    break
                last_heard = time.monotonic()
                buf += chunk
                while len(buf) >= header.size:
                    (length,) = header.unpack_from(buf)
                    if length > agent.max_request_frame:
                        # The framing is lost: nothing after this can be trusted. Say why, then hang up.
                        self.send(protocol.failure(0, "protocol error: frame length %d exceeds the %d-byte limit "
                                                      "of a request; closing the connection"
                                                   % (length, agent.max_request_frame), "ProtocolError"))
                        self._hang_up_now()
                        return
                    if len(buf) < header.size + length:
                        break
                    payload = bytes(buf[header.size:header.size + length])
                    del buf[:header.size + length]
                    try:
                        message = protocol.decode(payload)
                    except protocol.ProtocolError as exc:
                        # One bad message in a sound frame: refuse it, keep serving this client.
                        self._reply(protocol.failure(0, "protocol error: %s" % exc, "ProtocolError"))
                        continue
                    if not self.spoke:
                        self.spoke = True
                        if not agent.admit(self):
                            agent.audit.record(self, message, "refused", protocol.REFUSED_BUSY)
                            self.send(protocol.failure(getattr(message, "id", 0), agent.busy_message(), protocol.REFUSED_BUSY))
                            self._hang_up_now()
                            return
                    with _HURRY:
                        self._handle(message)
                    if self.close_when_flushed:
                        return
        except Exception:
            pass  # a vanished or broken client is not the agent's problem
        finally:
            if not self.close_when_flushed:
                self.close()

    def _hang_up_now(self) -> None:
        """Send what is queued (the reason), then close, within a short grace: a client that does
        not read even that is closed anyway."""
        self.hang_up_after_flush()
        sleep = compat.original("time", "sleep")
        deadline = time.monotonic() + _HANG_UP_GRACE
        while not self.closed and time.monotonic() < deadline:
            sleep(0.05)
        self.close()

    def _reason_to_close(self, now: float, last_heard: float, mid_frame: bool) -> str:
        """Why this connection should be closed now, or ''."""
        agent = self.agent
        sending = self._sending_since
        if sending and now - sending > agent.send_stall_timeout:
            return ("closing: this client took nothing of what the agent sent for %gs (read your "
                    "connection, or cancel the stream)" % agent.send_stall_timeout)
        if mid_frame and now - last_heard > agent.first_request_timeout:
            return "closing: a frame stayed incomplete for %gs" % agent.first_request_timeout
        if not self.spoke and now - self.connected > agent.first_request_timeout:
            return ("closing: no request within %gs of connecting (send a request right after the "
                    "hello)" % agent.first_request_timeout)
        if not self.streams and now - last_heard > agent.idle_timeout:
            return "closing: idle for %gs with no stream running (connect again when needed)" % agent.idle_timeout
        return ""

    def _handle(self, message: Any) -> None:
        if isinstance(message, protocol.Cancel):
            stream = self.streams.pop(message.id, None)
            if stream is not None:
                stream.cancel("cancelled")
            return
        if not isinstance(message, protocol.Request):
            self._reply(protocol.failure(0, "expected a request, got a %s message" % message.type, "ProtocolError"))
            return
        rid = message.id
        audit = self.agent.audit
        if (not isinstance(message.args, dict) or not isinstance(message.command, str)
                or not isinstance(message.frontend, str) or not isinstance(message.read_only, bool)):
            audit.record(self, message, "error", "ProtocolError")
            self._reply(protocol.failure(rid, "request needs a string command, an object of args, a string "
                                              "frontend and a boolean read_only", "ProtocolError"))
            return
        refused = readonly.refusal(self.agent.read_only, message)
        if refused is not None:
            audit.record(self, message, "refused", protocol.REFUSED_READ_ONLY)
            self._reply(refused)
            return
        try:
            result = dispatch(self.agent, self, message)
        except CommandError as exc:
            audit.record(self, message, "error", "CommandError")
            self._reply(protocol.failure(rid, str(exc), "CommandError"))
            return
        except BaseException as exc:  # SystemExit from a command's call into the app too: the reader must live
            import traceback  # here, not at the top: it costs ~30 ms of the attach on 3.14

            audit.record(self, message, "error", "AgentError")
            self._reply(protocol.failure(rid, "%s: %s" % (type(exc).__name__, exc), "AgentError", traceback.format_exc()))
            return
        audit.record(self, message, "ok")
        if not self.agent.running:
            audit.close()  # this request detached the agent: it is the trail's last (and in its file) before the answer
        if isinstance(result, Stream):
            self.streams[rid] = result

            def answer() -> None:
                self._reply(protocol.success(rid, result.describe()))
                self._start_writer()  # from now on the stream's events and our answers share its queue

            result.start(self, rid, answer)  # the answer once its probes are installed
        else:
            self._reply(protocol.success(rid, result))
        if not self.agent.running:
            self.hang_up_after_flush()  # this request detached the agent: say so, then hang up

    def hang_up_after_flush(self) -> None:
        """The writer sends what is queued, then closes the connection; with no writer (no
        stream ever ran), the caller does, within a short grace."""
        self.close_when_flushed = True
        if self.writer is None:
            try:
                _set_timeouts(self.conn, _READ_POLL, _HANG_UP_GRACE)
                self._flush()
            except Exception:
                pass
            self.close()
            return
        if self._wakeup.locked():
            try:
                self._wakeup.release()
            except RuntimeError:
                pass

    def _start_writer(self) -> None:
        if self.writer is None:
            self.writer = compat.spawn(self._writer, "peeka-agent-client-%d-writer" % self.number)

    def start(self) -> None:
        self.reader = compat.spawn(self._reader, "peeka-agent-client-%d" % self.number)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for stream in list(self.streams.values()):
            stream.cancel("client gone")
        self.streams.clear()
        if os.getpid() == self.agent.pid:  # a fork child's copy: shutdown would cut the parent's too
            try:
                self.conn.shutdown(2)
            except Exception:
                pass
        try:
            self.conn.close()
        except Exception:
            pass
        if self._wakeup.locked():
            try:
                self._wakeup.release()
            except Exception:
                pass
        self.agent._forget(self)


class _Hurry:
    """While any client's request is served, a shorter switch interval (``serve_switch_interval``):
    each time the serving thread gave the GIL up (a /proc read, a socket call, an import) it waits
    that long, not 5 ms, before the thread holding the GIL is asked to let go. Restored exactly
    when the last request in flight ends (``sys.setswitchinterval`` truncates to whole
    microseconds, hence the half), unless the host set its own meanwhile: then it keeps it."""

    def __init__(self) -> None:
        self.interval = 0.0  # 0: never lowered
        self._lock = compat.lock()
        self._depth = 0
        self._saved = 0.0
        self._lowered = 0.0

    def __enter__(self) -> None:
        with self._lock:
            self._depth += 1
            if self._depth == 1 and self.interval:
                current = sys.getswitchinterval()
                if current > self.interval:
                    self._saved = current
                    sys.setswitchinterval(self.interval)
                    self._lowered = sys.getswitchinterval()

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._saved:
                if sys.getswitchinterval() == self._lowered:
                    sys.setswitchinterval((round(self._saved * 1e6) + 0.5) / 1e6)
                self._saved = 0.0


    def after_fork(self) -> None:
        """A fork child: the thread that lowered the interval, and any holder of the lock, are
        not in it; the interval is put back as __exit__ would have."""
        self._lock = compat.lock()
        self._depth = 0
        if self._saved:
            if sys.getswitchinterval() == self._lowered:
                sys.setswitchinterval((round(self._saved * 1e6) + 0.5) / 1e6)
            self._saved = 0.0


_HURRY = _Hurry()


def _set_timeouts(conn: Any, receive: float, send: float) -> None:
    """Kernel timeouts on a blocking socket (SO_RCVTIMEO/SO_SNDTIMEO): a recv, accept or send that
    waits longer fails with EAGAIN. Unlike ``settimeout``, there is no poll() before every call,
    which would hand the GIL over once more per request."""
    import socket as _socket

    for option, seconds in ((_socket.SO_RCVTIMEO, receive), (_socket.SO_SNDTIMEO, send)):
        whole = int(seconds)
        conn.setsockopt(_socket.SOL_SOCKET, option, _TIMEVAL.pack(whole, int((seconds - whole) * 1e6)))


def _encode(message: Any) -> bytes:
    if type(message) is DeferredEvent:  # queued by Stream.emit_later
        message = build_event(message)
    try:
        return protocol.encode(message)
    except protocol.ProtocolError as exc:
        return protocol.encode(protocol.failure(getattr(message, "id", 0), str(exc), "ResultTooLarge"))


class Agent:
    def __init__(self, config: Dict[str, Any]) -> None:
        self.config = config
        self.pid = os.getpid()
        self.socket_path: str = config["socket_path"]
        self.files_dir: Optional[str] = config.get("files_dir")
        self.attach_method: str = config.get("method", "unknown")
        self.max_outbox: int = int(config.get("max_outbox", _DEFAULT_OUTBOX))
        self.max_request_frame = protocol.MAX_REQUEST_FRAME
        limits = config.get("limits") or {}
        self.max_clients = int(limits.get("max_clients", protocol.MAX_CLIENTS))
        self.max_silent = int(limits.get("max_silent", protocol.MAX_SILENT))
        self.first_request_timeout = float(limits.get("first_request_timeout", protocol.FIRST_REQUEST_TIMEOUT))
        self.idle_timeout = float(limits.get("idle_timeout", protocol.IDLE_TIMEOUT))
        self.send_stall_timeout = float(limits.get("send_stall_timeout", protocol.SEND_STALL_TIMEOUT))
        _HURRY.interval = float(limits.get("serve_switch_interval", protocol.SERVE_SWITCH_INTERVAL))
        self.read_only = bool(config.get("read_only"))  # attach --read-only: every client held to read-only
        attached_by = config.get("attached_by")
        self.attached_by = attached_by if attached_by in protocol.FRONTENDS else None
        self.audit = Trail(config)
        self.started = time.time()
        self._start_time = _process_start_time()  # once: each /proc read hands the GIL over
        self.running = False
        self.clients: List[Client] = []
        self._next_client = 0
        self._listener: Any = None
        self._thread: Any = None
        self._own_threads: List[Any] = []
        self.state: Dict[str, Any] = {}  # per-command state, e.g. installed probes
        self.finder: Any = None
        self.fork_hold: List[Any] = []  # what the at-fork hook takes apart in a fork child (see start())
        threadids.remember_main(config.get("main_ident"))  # seen by the boot script on the main thread

    # -- lifecycle
    def start(self) -> None:
        sock_ns = compat.socket_module()
        path = self.socket_path
        if os.path.exists(path):
            # A socket left by a process that had this pid before: nobody answers there.
            os.unlink(path)
        listener = sock_ns.socket(sock_ns.AF_UNIX, sock_ns.SOCK_STREAM)
        try:
            listener.bind(path)
            os.chmod(path, 0o600)
            listener.listen(protocol.LISTEN_BACKLOG)
            # A blocking accept (no poll() before each one), woken now and then by SO_RCVTIMEO.
            _set_timeouts(listener, _ACCEPT_POLL, _ACCEPT_POLL)
        except Exception:
            listener.close()
            raise
        self._listener = listener
        self.running = True
        self._thread = compat.spawn(self._accept_loop, "peeka-agent-listener")

    def _accept_loop(self) -> None:
        listener = self._listener
        sock_type = compat.original("socket", "socket")
        while self.running and os.getpid() == self.pid:
            try:
                # Not listener.accept(): it wraps the new fd with the socket module's *current*
                # class, which gevent/eventlet replace with a cooperative one.
                fd, _ = listener._accept()
                conn = sock_type(fileno=fd)
            except OSError:
                continue  # timeout (to notice stop) or a transient accept failure
            except Exception:
                continue
            try:
                peer_pid, peer_uid = self._peer(conn)
                if not (peer_uid == 0 or peer_uid == os.getuid()):
                    conn.sendall(protocol.encode(protocol.failure(0, "permission denied: connect as the target's user or root", "PermissionDenied")))
                    conn.close()
                    continue
                self._make_room()
                conn.sendall(protocol.encode(self.hello()))
                self._next_client += 1
                client = Client(self, conn, self._next_client, peer_pid, peer_uid)
                self.clients.append(client)
                client.start()
            except Exception:
                try:
                    conn.close()
                except Exception:
                    pass

    def _peer(self, conn: Any) -> Any:
        """(pid, uid) of the connecting process (SO_PEERCRED), read once per connection."""
        import socket as _socket

        creds = conn.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, _CREDS.size)
        pid, uid, _gid = _CREDS.unpack(creds)
        return pid, uid

    def hello(self) -> protocol.Hello:
        return protocol.Hello(
            protocol=protocol.PROTOCOL_VERSION,
            agent_version=__version__,
            pid=os.getpid(),
            python_version="%d.%d.%d" % sys.version_info[:3],
            implementation=sys.implementation.name,
            executable=sys.executable,
            argv=list(sys.argv),
            start_time=self._start_time,
            agent_started=self.started,
            socket_path=self.socket_path,
            read_only=self.read_only,
            audit_file=self.audit.file_path,
            audit_log=self.audit.log,
            attached_by=self.attached_by,
        )

    def _make_room(self) -> None:
        """Room for one more connection. Connections that have not sent a request yet are capped
        apart from the clients being served (who are capped at their first request, by admit):
        past the cap the oldest silent one is closed, so a flood of connections that never speak
        cannot keep a real client out, nor make the agent hold a thread per connection."""
        silent = [c for c in list(self.clients) if not c.spoke]
        if len(silent) >= self.max_silent:
            oldest = min(silent, key=lambda c: c.connected)
            oldest.send(protocol.failure(0, "closing: more than %d connections sent no request; the oldest "
                                            "is closed" % self.max_silent, protocol.CLOSED_IDLE))
            oldest.hang_up_after_flush()
            self._forget(oldest)

    def admit(self, client: Client) -> bool:
        """A connection's first request: serve it if fewer than max_clients are being served."""
        served = sum(1 for c in list(self.clients) if c.spoke and c is not client)
        return served < self.max_clients

    def busy_message(self) -> str:
        return ("the agent already serves %d clients, its limit: close other peeka sessions (idle ones "
                "are closed after %gs), or attach with a higher PEEKA_AGENT_MAX_CLIENTS"
                % (self.max_clients, self.idle_timeout))

    def _forget(self, client: Client) -> None:
        try:
            self.clients.remove(client)
        except ValueError:
            pass

    def stop(self, join_timeout: float = 2.0, keep: Optional[Client] = None) -> None:
        """Detach: undo every change, stop every thread, remove the socket and files."""
        if not self.running:
            return
        self.running = False
        del self.fork_hold[:]  # the at-fork hook (os.register_at_fork cannot take it back) now does nothing
        run_cleanups(self)
        if keep is None:
            # (join_timeout is 0 in a fork child: never wait there.) With keep, the detaching
            # client's reader closes the trail once the detach itself is on it.
            self.audit.close(join_timeout)
        if self.finder is not None:
            try:
                sys.meta_path.remove(self.finder)  # the import system as it was
            except ValueError:
                pass
        for client in list(self.clients):
            if client is not keep:
                client.close()
        try:
            self._listener.close()
        except Exception:
            pass
        if os.getpid() == self.pid:
            for path in (self.socket_path,):
                try:
                    os.unlink(path)
                except OSError:
                    pass
            if self.files_dir and os.path.basename(self.files_dir).startswith("peeka-"):
                import shutil  # only detach needs it: keep it off the attach path

                pending = self.config.get("pending_remote_exec") and not os.path.exists(
                    os.path.join(self.files_dir, "rerun"))
                shutil.rmtree(self.files_dir, ignore_errors=True)
                if pending:
                    leave_pending_stub(self.files_dir)
        if self._thread is not None:
            self._thread.join(join_timeout)


    def after_fork_in_child(self) -> None:
        """os.fork's child inherits this agent without its threads (a prefork server's workers,
        forked by an attached master): take it apart as detach would, or the child runs the
        parent's probes for good, into connections nobody serves. Runs inside os.fork: never raises,
        never waits (a lock an agent thread held at the fork stays held in the child)."""
        try:
            if os.getpid() == self.pid:
                return
            _HURRY.after_fork()
            engine = self.state.get("probes")
            if engine is not None:
                engine._lock = compat.rlock()
            detach(serving=self, join_timeout=0.0)
        except BaseException:
            pass


def leave_pending_stub(files_dir: str) -> None:
    """A 3.14 ``sys.remote_exec`` request made while attaching never ran (the main thread was
    blocked, gdb started the agent instead). CPython runs it when the main thread next runs
    Python, and prints an error to the target's stderr if its script is gone: leave a script that
    removes itself and its directory, binding no name wherever it runs."""
    path = os.path.join(files_dir, "launch.py")
    try:
        os.mkdir(files_dir, 0o700)
        fd = compat.original("os", "open")(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # not eventlet's
        with open(fd, "w") as out:
            out.write("%s\ntry:\n    __import__('os').unlink(%r)\n    __import__('os').rmdir(%r)\n"
                      "except OSError:\n    pass\n" % (protocol.PENDING_STUB_MARK, path, files_dir))
    except OSError:
        pass


def _process_start_time() -> float:
    """Wall-clock start of this process, from /proc when available (else 0)."""
    from . import procfs  # the hello's only use of it

    try:
        return procfs.start_time() or 0.0
    except Exception:
        return 0.0


_AGENT: Optional[Agent] = None


def current() -> Optional[Agent]:
    agent = _AGENT
    if agent is not None and (not agent.running or agent.pid != os.getpid()):
        return None
    return agent


def start(config: Dict[str, Any], finder: Any = None) -> Agent:
    """Start the agent once per process; a second call reuses the running one.

    ``finder`` is the import hook that serves the agent's own modules; detach removes it.
    """
    global _AGENT
    agent = current()
    if agent is not None:
        return agent
    stale = _AGENT
    if stale is not None and stale.pid != os.getpid():
        # We are a fork child: the parent's listener fd is ours too; close our copy only.
        try:
            stale._listener.close()
        except Exception:
            pass
    agent = Agent(config)
    agent.finder = finder
    # Known before the socket exists: a client may connect and ask for detach at once.
    _AGENT = agent
    try:
        agent.start()
    except BaseException:
        _AGENT = None
        raise
    if hasattr(os, "register_at_fork"):
        # The hook outlives detach (it cannot be unregistered), so it keeps no module alive: a
        # lambda over a list of its own, which stop() empties.
        agent.fork_hold.append(agent.after_fork_in_child)
        os.register_at_fork(after_in_child=eval("lambda: hold and hold[0]()", {"hold": agent.fork_hold}))  # noqa: S307
    return agent


def detach(keep: Optional[Client] = None, on_done: Optional[Callable[[], None]] = None,
           serving: Optional[Agent] = None, join_timeout: float = 2.0) -> None:
    """Stop the agent (and ``serving``, the one that took the request, should it not be the
    registered one), then forget the agent's modules."""
    global _AGENT
    agents = [a for a in (serving, _AGENT) if a is not None]
    if not agents:
        return
    for agent in dict.fromkeys(agents):
        agent.stop(join_timeout, keep=keep)
    agent = agents[0]
    _AGENT = None
    name = agent.config.get("module")
    if name:
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            sys.modules.pop(mod, None)
