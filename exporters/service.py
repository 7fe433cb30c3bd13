"""The sidecar: find targets, keep one session per target, serve /metrics and /healthz, summarize.

Targets come from the rules (PIDs, ``all`` Python processes, or a command-line regex). A rescan
every second notices new processes (a restarted target has a new PID and the same command line)
and sessions that ended; a target that is gone keeps ``peeka_target_up 0`` for ``forget_after``
seconds (default 300), then its series leave /metrics and /healthz (pre-fork servers replace workers
all day: pid-labelled series must not grow without bound).
SIGTERM/SIGINT: stop every stream (the agent's last batch is flushed), flush the export queues,
detach the agents an exporter attached (unless ``keep_agent``; an agent someone else attached keeps
serving its other clients) and return 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from peeka.errors import UnsupportedVersion, UsageError
from peeka.process import python_processes

from .config import ExportConfig, TargetRule
from .metrics import PeekaCollector, TargetSnapshot, merge_by_service, retire
from .pipeline import exporter_factory
from .profiles import destinations, otlp_schema_problem
from .session import TargetSession

RESCAN = 1.0  # s
RETRY = 5.0  # s before re-attaching to a PID whose session ended while it still runs, doubling
RETRY_MAX = 120.0  # ... per failure in a row up to this


def _cmdline(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return None


class Exporter:
    def __init__(self, config: ExportConfig, environ: Mapping[str, str] | None = None,
                 out: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.environ = dict(os.environ if environ is None else environ)
        self.make_exporter, self.destination = exporter_factory(self.environ, config.spans_file)
        self.make_profiles = self._profile_destinations()
        self.sessions: dict[int, TargetSession] = {}
        self.stop_event = threading.Event()
        self.out = out or (lambda line: print(line, file=sys.stderr, flush=True))
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(PeekaCollector(self.snapshots, config.by_service))
        self.retired: dict[str, TargetSnapshot] = {}  # by service: what its forgotten targets counted
        self.server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()
        self._said: dict[TargetSession, str] = {}
        self._failures: dict[int, int] = {}  # pid -> sessions in a row that never streamed
        self._last_message: dict[int, str] = {}
        self._notes: dict[tuple[int, str], float] = {}  # (pid, function) -> sampling ratio last said
        self._floored: set[int] = set()  # pids told that their calls keep the governor's floor

    def _profile_destinations(self) -> Callable[[], list[Any]] | None:
        """How to make one profiled target's profile destinations: OTLP profiles where the spans go
        over OTLP, Pyroscope with its URL. Refused up front when a target is profiled and neither is set."""
        if not any(rule.profile for rule in self.config.rules):
            return None
        otlp = not self.destination.startswith("OTLP-JSON")
        if not otlp and not self.config.pyroscope_url:
            raise UsageError("--profile needs somewhere to send profiles",
                             "Set OTEL_EXPORTER_OTLP_ENDPOINT (OTLP profiles) and/or give --pyroscope-url URL.")
        problem = otlp_schema_problem() if otlp else None
        if problem is not None:
            if not self.config.pyroscope_url:
                raise UnsupportedVersion(f"--profile over OTLP: {problem}",
                                         "Run `peeka export` on Python 3.10 or newer (its opentelemetry-proto speaks "
                                         "the current schema), or send profiles to Pyroscope with --pyroscope-url.")
            self.out(f"peeka export: profiles go to Pyroscope only: OTLP profiles refused ({problem})")
            otlp = False
        environ, url = self.environ, self.config.pyroscope_url
        return lambda: destinations(environ, otlp, url)

    # -- state for /metrics and /healthz
    def snapshots(self) -> list[TargetSnapshot]:
        with self._lock:
            sessions = list(self.sessions.values())
            retired = dict(self.retired)
        snapshots = [s.snapshot() for s in sessions]
        return merge_by_service(snapshots, retired) if self.config.by_service else snapshots

    def health(self) -> dict[str, Any]:
        with self._lock:
            sessions = list(self.sessions.values())
        return {"status": "stopping" if self.stop_event.is_set() else "running", "spans_to": self.destination,
                "targets": [s.health() for s in sessions]}

    # -- discovery
    def _wanted(self) -> dict[int, TargetRule]:
        wanted: dict[int, TargetRule] = {}
        scan = any(r.all or r.match for r in self.config.rules)
        candidates = {t.pid for t in python_processes()} if scan else set()
        for rule in self.config.rules:
            for pid in rule.pids:
                wanted.setdefault(pid, rule)
            if rule.all or rule.match:
                for pid in candidates:
                    cmd = _cmdline(pid)
                    if cmd is not None and pid not in wanted and rule.selects(pid, cmd):
                        wanted[pid] = rule
        return wanted

    def _reconcile(self) -> None:
        now = time.monotonic()
        for pid, rule in self._wanted().items():
            session = self.sessions.get(pid)
            if session is not None:
                if session.alive or not os.path.exists(f"/proc/{pid}"):
                    continue
                failures = self._failures.get(pid, 0)
                if session.ended_at is not None and now - session.ended_at < min(RETRY_MAX, RETRY * 2 ** failures):
                    continue
                self._failures[pid] = 0 if session.functions else failures + 1  # streamed once: start afresh
            elif not os.path.exists(f"/proc/{pid}"):
                continue
            fresh = TargetSession(pid, rule, self.config, self.make_exporter, self.environ, self.make_profiles)
            with self._lock:
                self.sessions[pid] = fresh
            fresh.start()
        with self._lock:
            for pid, session in list(self.sessions.items()):
                self._announce(session)
                self._announce_governor(session)
                gone = not session.alive and not os.path.exists(f"/proc/{pid}")
                if gone and session.ended_at is not None and now - session.ended_at > self.config.forget_after:
                    del self.sessions[pid]
                    if self.config.by_service:
                        self.retired[session.service] = retire(self.retired.get(session.service), session.snapshot())
                    self._said.pop(session, None)
                    self._failures.pop(pid, None)
                    self._last_message.pop(pid, None)
                    self._floored.discard(pid)
                    for key in [k for k in self._notes if k[0] == pid]:
                        del self._notes[key]

    def _announce(self, session: TargetSession) -> None:
        """One console line when a target starts streaming and when it is lost."""
        said = self._said.get(session)
        if session.up and said != "up":
            self._last_message.pop(session.pid, None)
            how = "reusing its agent" if not session.attached_here else f"attached via {session.attach_method}"
            self.out(f"peeka export: {session.pid} ({session.service}) streaming, {how}; "
                     f"{len(session.functions)} function(s) probed")
            self._said[session] = "up"
        elif not session.alive and said != "ended":
            self._said[session] = "ended"
            message = f"{session.state}: {session.error or 'ended'}"
            if self._last_message.get(session.pid) != message:  # a retry failing the same way says nothing new
                self.out(f"peeka export: {session.pid} ({session.service}) {message}")
                self._last_message[session.pid] = message

    def _announce_governor(self, session: TargetSession) -> None:
        """A console line when the overhead governor starts sampling a function, when its share of
        calls exported moves by a factor of 2 or more, and when it exports every call again; and
        once when a mostly idle target's estimated overhead passes the budget under the floor."""
        if not session.up:
            return
        governed = session.governed()
        if governed and governed["floored"] and governed["ratio"] > governed["budget"]:
            if session.pid not in self._floored:
                self._floored.add(session.pid)
                self.out(f"peeka export: {session.pid} ({session.service}) uses little CPU: its calls keep the "
                         f"governor's floor of {governed['floor_cpu_per_second'] * 1000:g} ms CPU per second "
                         f"(an estimated {governed['ratio']:.0%} of its own CPU, over the {governed['budget']:.0%} budget)")
        elif governed and not governed["floored"]:
            self._floored.discard(session.pid)
        for row in session.rows:
            governed = row.get("governor")
            if not governed:
                continue
            key = (session.pid, row["function"])
            note, ratio = governed.get("note"), governed["sampling_ratio"]
            said = self._notes.get(key)
            if note and (said is None or not said / 2 < ratio < said * 2):
                self.out(f"peeka export: {session.pid} ({session.service}) {note}")
                self._notes[key] = ratio
            elif not note and said is not None:
                self.out(f"peeka export: {session.pid} ({session.service}) every call of {row['function']} exported again")
                del self._notes[key]

    # -- HTTP
    def _serve(self) -> None:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    # OpenMetrics (with exemplars) when the scraper asks for it, as Prometheus does.
                    encode, ctype = choose_encoder(self.headers.get("Accept", ""))
                    body, code = encode(exporter.registry), 200
                elif path == "/healthz":
                    body, ctype, code = json.dumps(exporter.health()).encode(), "application/json", 200
                else:
                    body, ctype, code = b"peeka export: see /metrics and /healthz\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        host, port = self.config.metrics_host, self.config.metrics_port
        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise UsageError(f"cannot serve metrics on {host}:{port}: {exc.strerror}",
                             "Pick another --metrics-address HOST:PORT (port 0 picks a free one).") from None
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="peeka-export-http", daemon=True).start()

    @property
    def metrics_address(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    # -- the main loop
    def summary(self, previous: int | None = None, elapsed: float = 0.0) -> tuple[str, int]:
        """The console line: targets up, spans received (and their rate since ``previous``), losses."""
        health = self.health()["targets"]
        spans = sum(t["spans_received"] for t in health)
        dropped = sum(sum(t["dropped"].values()) for t in health)
        rate = "" if previous is None else f" ({(spans - previous) / max(elapsed, 1e-9):.0f}/s)"
        line = (f"peeka export: {sum(t['up'] for t in health)}/{len(health)} targets up, {spans} spans{rate}, "
                f"queue {sum(t['queue'] for t in health)}, dropped {dropped}, "
                f"export failures {sum(t['export_failures'] for t in health)}")
        return line, spans

    def run(self) -> int:
        self._serve()
        self.out(f"peeka export: metrics on http://{self.metrics_address}/metrics, spans to {self.destination}")
        if self.make_profiles is not None:
            made = self.make_profiles()
            self.out("peeka export: profiles to " + ", ".join(d.description for d in made))
            for d in made:
                d.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())
        last_summary, spans_then = time.monotonic(), 0
        try:
            while not self.stop_event.is_set():
                self._reconcile()
                self.stop_event.wait(RESCAN)
                now = time.monotonic()
                if now - last_summary >= self.config.interval:
                    line, spans_then = self.summary(spans_then, now - last_summary)
                    self.out(line)
                    last_summary = now
        finally:
            self.shutdown()
        return 0

    def shutdown(self) -> None:
        self.stop_event.set()
        with self._lock:
            sessions = list(self.sessions.values())
        stoppers = [threading.Thread(target=s.stop, daemon=True) for s in sessions]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(15.0)
        if not self.config.keep_agent:
            from peeka.attach import detach

            for s in sessions:
                if os.path.exists(f"/proc/{s.pid}") and s.client is not None:
                    hello = s.client.hello
                    by = getattr(hello, "attached_by", None)
                    if not s.attached_here and by != "export":
                        # Someone else's agent (`peeka attach`, maybe read-only or audited, maybe
                        # serving other clients): our probes went with our stream; the agent stays.
                        self.out(f"peeka export: left the agent in {s.pid} running "
                                 f"(attached by {by or 'another client'}, not by an exporter)")
                        continue
                    try:
                        detach(s.pid, timeout=5.0)
                    except Exception as exc:
                        self.out(f"peeka export: detach from {s.pid} failed: {exc}")
        line, _ = self.summary()
        self.out(line.replace("peeka export:", "peeka export: stopped;", 1))
        # The shared file exporter (when spans go to a file) is closed once, after every queue.
        close = getattr(self.make_exporter(), "close", None)
        if close is not None:
            close()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
