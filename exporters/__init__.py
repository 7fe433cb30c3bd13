"""The exporter sidecar (``peeka export``), installed as ``peeka_exporters``.

    config     the TOML file and quick-form flags -> ExportConfig
    service    discovery, one session per target, /metrics and /healthz, console summary, SIGTERM
    session    one target: attach or reuse the agent, run its ``export`` stream
    translate  pure: observations -> span records (ids, parents), the target's resource, SDK spans
    otlp       span records -> OTLP requests (opentelemetry-proto, filled in place); HTTP and gRPC send
    metrics    pure: target numbers -> Prometheus families; the collector of a private registry
    pipeline   transport: the configured OTLP exporter or an OTLP-JSON lines file, behind a bounded queue
    procfs     a target's CPU, memory and threads from /proc
"""

from .config import ExportConfig, TargetRule, load
from .service import Exporter

__all__ = ["ExportConfig", "Exporter", "TargetRule", "load"]
