"""One target: attach (or reuse its agent), run the ``export`` stream, feed spans and numbers on.

A session lives on its own thread. Whatever ends the stream (target gone, agent detached, a
refusal) ends the session with ``up`` false and the reason kept for /healthz; the service decides
whether to start a new one.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExporter
from peeka_agent.protocol import EXPORT_FLUSH_EVERY, EXPORT_MAX_SLOWER, End

from peeka.attach import ClientRole, attach
from peeka.client import AgentClient
from peeka.errors import PeekaError
from peeka.process import TargetProcess

from .config import ExportConfig, TargetRule
from .metrics import Exemplar, TargetSnapshot
from .pipeline import SpanQueue
from .procfs import process_numbers
from .profiles import ProfileQueue, SpanIndex
from .translate import RandomIds, SpanRecord, SpanTranslator, resource_attributes


def whole_trees(batch: list[Mapping[str, Any]], room: int) -> int:
    """How many spans of ``batch`` fit in ``room`` without cutting a tree: a trace tree is exported
    whole or not at all (a root is a span without a parent; its nodes follow it)."""
    if room >= len(batch):
        return len(batch)
    keep = room
    while keep > 0 and batch[keep].get("parent") is not None:
        keep -= 1
    return keep


EXEMPLARS_KEPT = 64  # per function: recent exported spans, a few per duration bucket


class TargetSession:
    def __init__(self, pid: int, rule: TargetRule, config: ExportConfig,
                 make_exporter: Callable[[], SpanExporter], environ: Mapping[str, str],
                 make_profiles: Callable[[], list[Any]] | None = None) -> None:
        self.pid = pid
        self.rule = rule
        self.config = config
        self.make_exporter = make_exporter
        self.environ = environ
        self.service = rule.service or str(pid)
        self.state = "attaching"
        self.error: str | None = None
        self.up = False
        self.ended_at: float | None = None
        self.functions: list[str] = []
        self.rows: list[Mapping[str, Any]] = []
        self.gc: list[int] = []
        self.top: list[list[Any]] = []
        self.agent_dropped = 0
        self.exemplars: dict[str, deque[Exemplar]] = {}  # function -> its latest exported spans
        self.overhead: Mapping[str, Any] | None = None  # the agent's governor: estimated ratio and budget
        self.incomplete_trees = 0
        self.spans_received = 0
        self.attached_here = False
        self.attach_method = ""
        self.queue: SpanQueue | None = None
        self.make_profiles = make_profiles
        self.profiles: ProfileQueue | None = None  # with rule.profile: this target's profiles on their way
        self.span_index: SpanIndex | None = None  # exported spans, for the profiles' links
        self.profiles_received = 0
        self.client: AgentClient | None = None
        self._stopping = False
        self.thread = threading.Thread(target=self._run, name=f"peeka-export-{pid}", daemon=True)

    def start(self) -> TargetSession:
        self.thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def _run(self) -> None:
        try:
            self._stream()
        except PeekaError as exc:
            self.error = exc.message
        except Exception as exc:  # never let one target take the exporter down
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.up = False
            self.state = "stopped" if self._stopping else "lost"
            self.ended_at = time.monotonic()
            if self.client is not None:
                self.client.close()
            if self.queue is not None:
                self.queue.shutdown(timeout=5.0)
                self.queue.exporter.shutdown()
            if self.profiles is not None:
                self.profiles.shutdown(timeout=5.0)
                for destination in self.profiles.destinations:
                    destination.close()

    def _stream(self) -> None:
        # Read-only by construction: the agent refuses anything of export's that would change the target.
        client, report = attach(self.pid, method=self.config.method, timeout=self.config.attach_timeout,
                                role=ClientRole("export", read_only=True))
        self.client = client
        self.attached_here = not report.reused
        self.attach_method = report.method
        assert client.hello is not None
        hello = client.hello.to_dict()
        attrs = resource_attributes(hello, TargetProcess(self.pid).cmdline, socket.gethostname(), self.rule.service,
                                    self.environ)
        self.service = str(attrs["service.name"])
        translator = SpanTranslator(Resource(attrs), RandomIds())
        self.queue = SpanQueue(self.make_exporter(), self.environ, name=f"peeka-export-queue-{self.pid}",
                               on_exported=self._exported)
        if self.rule.profile and self.make_profiles is not None:
            self.span_index = SpanIndex()
            # Linked once the spans of the calls it caught are out: the stream's next interval and
            # the span queue's batching delay.
            self.profiles = ProfileQueue(self.make_profiles(), attrs, self.service, self.span_index,
                                         grace=self.config.interval + self.queue.delay + 1.0,
                                         name=f"peeka-export-profiles-{self.pid}")
        stream = client.stream("export", self.rule.agent_args(self.config.interval))
        try:
            self.functions = list(next(stream).data.get("functions", []))
            self.exemplars = {name: deque(maxlen=EXEMPLARS_KEPT) for name in self.functions}
            self.up, self.state, self.error = True, "exporting", None
            for message in stream:
                if isinstance(message, End):
                    self.error = f"the agent ended the export: {message.reason}"
                    return
                data = message.data
                if data.get("kind") == "spans":
                    batch = data["spans"]
                    self.spans_received += len(batch)
                    room = self.queue.room()
                    if room < len(batch):  # overloaded: spend no CPU on spans the queue would drop
                        keep = whole_trees(batch, room)
                        self.queue.drop(len(batch) - keep)
                        batch = batch[:keep]
                    self.queue.put(translator.records(batch))
                elif data.get("kind") == "profile":
                    self.profiles_received += 1
                    if self.profiles is not None:
                        self.profiles.put(data)
                elif data.get("kind") == "stats":
                    self.rows, self.gc, self.top = data["functions"], data["gc"], data["top"]
                    self.agent_dropped = data["dropped"]
                    self.overhead = data.get("overhead")
                    self.incomplete_trees = data.get("incomplete_trees", 0)
        except PeekaError:
            if not self._stopping:
                raise
        finally:
            stream.close()

    def _exported(self, spans: Sequence[SpanRecord]) -> None:
        """The export queue's worker: spans the backend took become exemplars of their function."""
        if self.span_index is not None:
            self.span_index.add(spans)
        # Each function keeps its latest EXEMPLARS_KEPT spans: only a batch's last ones per function
        # are looked at (newest first, so a full batch costs a few dozen spans, not thousands).
        exemplars = self.exemplars
        latest: dict[str, list[Exemplar]] = {}
        full = 0
        for span in reversed(spans):
            item = span.item
            kept = exemplars.get(item["name"])
            if kept is None:
                continue
            mine = latest.setdefault(item["name"], [])
            if len(mine) >= EXEMPLARS_KEPT:
                continue
            start, end = item["start_ns"], item["end_ns"]
            if end and start:
                mine.append(Exemplar(f"{span.trace_id:032x}", f"{span.span_id:016x}", (end - start) / 1e9, end / 1e9))
                if len(mine) == EXEMPLARS_KEPT:
                    full += 1
                    if full == len(exemplars):
                        break
        for name, mine in latest.items():
            exemplars[name].extend(reversed(mine))

    def stop(self, grace: float = 0.2 + EXPORT_FLUSH_EVERY * EXPORT_MAX_SLOWER) -> None:
        """End the stream: let the agent's last batch arrive, then close (its probes go with it). The
        grace covers the agent's longest flush interval (the governor slows it on an idle target:
        0.2 s alone lost the spans of the last requests before a SIGTERM)."""
        self._stopping = True
        if self.up:
            time.sleep(grace)
        if self.client is not None:
            self.client.interrupt()
        self.thread.join(10.0)

    def snapshot(self) -> TargetSnapshot:
        queue = self.queue
        return TargetSnapshot(
            pid=self.pid, service=self.service, up=self.up,
            process=process_numbers(self.pid) if self.up else None,
            functions=list(self.rows), gc=list(self.gc), top=list(self.top),
            dropped={"agent": self.agent_dropped, "queue": queue.dropped if queue is not None else 0,
                     "export": queue.failed_spans if queue is not None else 0},
            queue_spans=len(queue) if queue is not None else 0, export_failures=queue.failures if queue is not None else 0,
            overhead_ratio=self.overhead["ratio"] if self.up and self.overhead else None,
            exemplars={name: list(kept) for name, kept in self.exemplars.items() if kept},
            profiles_exported=self.profiles.exported if self.profiles is not None else None,
            profiles_dropped=self.profiles.dropped if self.profiles is not None else None,
        )

    def governed(self) -> dict[str, Any] | None:
        """What the agent's overhead governor does: its estimate, the budget, and each function it samples."""
        if not self.overhead:
            return None
        functions = {}
        for row in self.rows:
            g = row.get("governor")
            if g and (g["sampling_ratio"] < 1 or g["duty"] < 1):
                functions[row["function"]] = {"sampling_ratio": g["sampling_ratio"], "duty": g["duty"],
                                              "estimated_calls": g["estimated_calls"], "note": g["note"]}
        return {"ratio": self.overhead["ratio"], "budget": self.overhead["budget"], "functions": functions,
                # A mostly idle process: its calls cost at most the floor (CPU s per s), which may be
                # more than the budget's share of its little CPU (agent/governor.py FLOOR_NS_PER_S).
                "floored": bool(self.overhead.get("floored")),
                "floor_cpu_per_second": self.overhead.get("floor_ns_per_s", 0) / 1e9}

    def health(self) -> dict[str, Any]:
        queue = self.queue
        return {"pid": self.pid, "service": self.service, "up": self.up, "state": self.state, "error": self.error,
                "agent": None if self.client is None else ("attached" if self.attached_here else "reused"),
                "functions": self.functions, "spans_received": self.spans_received,
                "spans_exported": queue.exported if queue is not None else 0, "queue": len(queue) if queue is not None else 0,
                "dropped": self.snapshot().dropped, "export_failures": queue.failures if queue is not None else 0,
                "incomplete_trees": self.incomplete_trees, "overhead": self.governed(), "profiles": self.profile_health()}

    def profile_health(self) -> dict[str, Any] | None:
        """The continuous profile: received from the agent, sent, dropped, failed sends, linked samples."""
        profiles = self.profiles
        if profiles is None:
            return None
        return {"received": self.profiles_received, "exported": profiles.exported, "dropped": profiles.dropped,
                "failures": profiles.failures, "queue": len(profiles), "linked_samples": profiles.linked_samples,
                "to": [d.description for d in profiles.destinations]}
