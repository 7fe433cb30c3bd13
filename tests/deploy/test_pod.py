"""The Kubernetes sidecar scenario, run on this machine: a simulated pod.

What the rendered overlay describes is what runs here:
- a pod PID namespace (``unshare --pid``, its PID 1 playing the pause container);
- the app container: the demo shop in that PID namespace, in its own mount namespace with a
  private tmpfs /tmp (its emptyDir);
- the sidecar container: the exact ``args`` and ``env`` of the rendered ``peeka`` container (the
  Downward API values filled in as the kubelet would, ``$(VAR)`` expanded) and the rendered
  ConfigMap's exporter.toml, in its own mount namespace with its own /tmp, with exactly the
  capabilities of ``drop: [ALL], add: [SYS_PTRACE]`` and no_new_privs (allowPrivilegeEscalation:
  false). It finds the shop by the config's command-line match and attaches through
  /proc/PID/root;
- a real OTLP/gRPC receiver standing in for the collector, and /metrics and /healthz scraped.

Users and capabilities are the runtime's: the rendered uid (10001 for both containers), the
sidecar's SYS_PTRACE in its bounding set only (a non-root process gets no effective capability),
no_new_privs; and once with both containers switched to root, where SYS_PTRACE is effective.
The dashboard's queries are checked against this live exporter's /metrics.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, python_for
from deploy_support import DEPLOY, documents, find, sidecar, tool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90), pytest.mark.parallel]

OVERLAY = "sidecar"
CONFIG_MOUNT = "/mnt/config"  # where the sidecar's mount namespace sees the ConfigMap's files
POD_NAME = "shop-5d9f7c6b8-x2x9q"
NODE_NAME = "node-1"
# PromQL words that are not metric names.
PROMQL_WORDS = {"sum", "by", "without", "rate", "increase", "histogram_quantile", "le", "label_values", "and",
                "or", "unless", "on", "ignoring", "group_left", "group_right", "avg", "max", "min", "count"}


# This machine's interpreters (and the venv's) live under /root, mode 0700. In a container's own
# mount namespace /root becomes a 0755 tmpfs holding bind mounts of the same directories, so a
# non-root container user can run them; nothing changes outside the namespace.
EXPOSE_ROOT = ("mkdir /tmp/.root && mount --bind /root /tmp/.root && mount -t tmpfs -o mode=755 tmpfs /root"
               " && for d in .pyenv .cache; do if [ -d /tmp/.root/$d ]; then mkdir /root/$d"
               " && mount --bind /tmp/.root/$d /root/$d; fi; done && umount /tmp/.root && rmdir /tmp/.root")


def _needs_namespaces() -> None:
    for name in ("unshare", "nsenter", "setpriv"):
        if shutil.which(name) is None:
            pytest.skip(f"{name} is not installed (util-linux)")
    if not os.path.isdir("/mnt"):
        pytest.skip("/mnt does not exist: the containers' namespaces mount their scratch space there")
    if os.geteuid() != 0:
        pytest.skip("the simulated pod needs root to create PID and mount namespaces")
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create PID/mount namespaces here: {probe.stderr.strip()}")


class Receiver:
    """A real OTLP/gRPC trace and profiles receiver on 127.0.0.1 (what the collector's otlp receiver does)."""

    def __init__(self) -> None:
        import grpc
        from opentelemetry.proto.collector.profiles.v1development import (
            profiles_service_pb2,
            profiles_service_pb2_grpc,
        )
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        self.requests: list[Any] = []
        self.profile_requests: list[Any] = []
        receiver = self

        class Profiles(profiles_service_pb2_grpc.ProfilesServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's name
                receiver.profile_requests.append(request)
                return profiles_service_pb2.ExportProfilesServiceResponse()

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's name
                receiver.requests.append(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        profiles_service_pb2_grpc.add_ProfilesServiceServicer_to_server(Profiles(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def spans(self) -> list[tuple[dict[str, str], Any]]:
        """(resource attributes, span) for every span received."""
        out = []
        for request in list(self.requests):
            for resource_spans in request.resource_spans:
                attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    out.extend((attributes, span) for span in scope.spans)
        return out

    def profile_resources(self) -> list[dict[str, str]]:
        """The resource attributes of every OTLP profile received."""
        return [{a.key: a.value.string_value for a in rp.resource.attributes}
                for request in list(self.profile_requests) for rp in request.resource_profiles]

    def stop(self) -> None:
        self.server.stop(grace=None)


def _downward_api(container: dict[str, Any], namespace: str) -> dict[str, str]:
    """The container's env as the kubelet resolves it: fieldRefs filled in, $(VAR) expanded in order."""
    fields = {"metadata.name": POD_NAME, "metadata.namespace": namespace, "metadata.uid": str(uuid.uuid4()),
              "spec.nodeName": NODE_NAME}
    env: dict[str, str] = {}
    for item in container["env"]:
        if "valueFrom" in item:
            env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
    return env


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _descendant(pid: int, timeout: float = 10.0) -> int:
    """The process nsenter forked into the pod (it execs the container's command)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = _children(pid)
        if kids:
            return kids[0]
        time.sleep(0.02)
    raise AssertionError(f"process {pid} started nothing")


class Pod:
    """A PID namespace whose PID 1 is a pause process; killing it kills everything inside."""

    def __init__(self) -> None:
        self.pause = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "sleep", "3600"],
                                      start_new_session=True)
        self.pause_pid = _descendant(self.pause.pid)
        self.containers: list[subprocess.Popen[str]] = []

    def run(self, command: list[str], env: dict[str, str], security: dict[str, Any],
            binds: dict[str, str] | None = None, stdout: Any = subprocess.PIPE) -> tuple[subprocess.Popen[str], int]:
        """A container: its own mount namespace with the pod's /proc, a private /tmp (its emptyDir),
        ``binds`` (host path -> path inside) mounted, then ``command`` with the user and
        capabilities a container runtime gives for ``security`` (its securityContext)."""
        uid, gid = security.get("runAsUser", 0), security.get("runAsGroup", 0)
        caps = [f"+{c.lower()}" for c in security["capabilities"].get("add", [])]
        assert security["capabilities"]["drop"] == ["ALL"] and not security.get("privileged")
        # Runtimes put added capabilities in the bounding set; a non-root user gets none effective.
        wrap = ["setpriv", "--reuid", str(uid), "--regid", str(gid), "--clear-groups",
                "--bounding-set", ",".join(["-all", *caps]), "--inh-caps", "-all"]
        if security.get("allowPrivilegeEscalation") is False:
            wrap.append("--no-new-privs")
        # The host's /tmp is kept reachable under /mnt while the binds are made, so a checkout
        # that lives under /tmp is mounted back at its own path inside the private /tmp.
        steps = ["mount -t proc proc /proc", "mount -t tmpfs tmpfs /mnt", "mkdir /mnt/host-tmp",
                 "mount --bind /tmp /mnt/host-tmp"]
        for source, target in (binds or {}).items():
            steps += [f"mkdir -p {target}", f"mount --bind {source} {target}"]
        steps.append("mount -t tmpfs tmpfs /tmp")
        if ROOT.is_relative_to("/tmp"):
            inside = Path("/mnt/host-tmp") / ROOT.relative_to("/tmp")
            steps += [f"mkdir -p {ROOT}", f"mount --bind {inside} {ROOT}"]
        steps += ["umount /mnt/host-tmp", EXPOSE_ROOT]
        setup = " && ".join(steps) + ' && exec "$@"'
        proc = subprocess.Popen(
            ["nsenter", "--target", str(self.pause_pid), "--pid", "--",
             "unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "container", *wrap, "--",
             *command],
            stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        self.containers.append(proc)
        return proc, _descendant(proc.pid)

    def stop(self) -> None:
        if self.pause.poll() is None:
            os.killpg(self.pause.pid, signal.SIGKILL)  # the pod's PID 1 dies: the kernel kills the rest
        self.pause.wait(10)
        for proc in self.containers:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana label_values() query) reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, regexes)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"label_values\(([^,)]*),[^)]*\)", r"\1", expr)  # label_values(metric, label)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return {w for w in words if w not in PROMQL_WORDS and not w.startswith("__")}


def test_promql_metric_names() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, service) (rate(peeka_function_duration_seconds_bucket'
            '{service=~"$service", function="a.b"}[$__rate_interval])))')
    assert promql_metric_names(expr) == {"peeka_function_duration_seconds_bucket"}
    assert promql_metric_names('label_values(peeka_target_up{service=~"$service"}, pid)') == {"peeka_target_up"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


# The manifests as rendered (both containers uid 10001), and with both switched to root (`runAsUser: 0`,
# the README's setting for an app that runs as root).
CASES = [("3.9", "manifest"), ("3.12", "manifest"), ("3.14", "manifest"), ("3.12", "root")]


@pytest.mark.parametrize(("version", "users"), CASES, ids=[f"{v}-{u}" for v, u in CASES])
def test_sidecar_in_a_simulated_pod(version: str, users: str, receiver: Receiver, tmp_path: Path) -> None:
    _needs_namespaces()
    python = python_for(version)
    docs = documents(OVERLAY)
    deployment = find(docs, "Deployment", "shop")
    container = sidecar(deployment)
    security = dict(container["securityContext"])
    app_security = dict(deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"])
    if users == "root":
        for context in (security, app_security):
            context.update(runAsUser=0, runAsGroup=0, runAsNonRoot=False)
    config_map = find(docs, "ConfigMap")
    mount = next(m for m in container["volumeMounts"] if m["name"] == "peeka-config")
    config_dir = tmp_path / "configmap"
    config_dir.mkdir()
    for name, text in config_map["data"].items():
        (config_dir / name).write_text(text)

    env = _downward_api(container, deployment["metadata"]["namespace"])
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{receiver.port}"  # the receiver plays the collector
    args = list(container["args"])
    args[args.index("--metrics-address") + 1] = "127.0.0.1:0"  # host network here: any free port
    args = [a.replace(mount["mountPath"], CONFIG_MOUNT) for a in args]
    sidecar_env = {"PATH": os.environ["PATH"], "HOME": "/tmp", "XDG_CACHE_HOME": "/tmp/.cache", **env}

    pod = Pod()
    try:
        shop, shop_pid = pod.run([python, "-u", str(ROOT / "examples" / "shop.py"), "0"],
                                 {"PATH": os.environ["PATH"]}, app_security)
        assert shop.stdout is not None and shop.stdout.readline().startswith("ready")
        exporter, exporter_pid = pod.run(
            [tool("peeka"), *args], sidecar_env, security, binds={str(config_dir): CONFIG_MOUNT},
            stdout=subprocess.DEVNULL)
        assert exporter.stderr is not None
        line = exporter.stderr.readline()
        match = re.search(r"metrics on http://([\d.]+:\d+)/metrics", line)
        assert match, line + (exporter.stderr.read() if exporter.poll() is not None else "")
        base = f"http://{match.group(1)}"
        # It runs peeka now (not the setup shell): separate mount namespaces, one PID namespace,
        # the manifest's uid, and at most the capability it grants (effective only for root).
        ns = {p: {n: os.readlink(f"/proc/{p}/ns/{n}") for n in ("mnt", "pid")} for p in (shop_pid, exporter_pid)}
        assert ns[shop_pid]["mnt"] != ns[exporter_pid]["mnt"] != os.readlink("/proc/self/ns/mnt")
        assert ns[shop_pid]["pid"] == ns[exporter_pid]["pid"] != os.readlink("/proc/self/ns/pid")
        status = Path(f"/proc/{exporter_pid}/status").read_text()
        assert re.search(rf"Uid:\s+{security['runAsUser']}\s", status), status
        assert re.search(rf"Uid:\s+{app_security['runAsUser']}\s", Path(f"/proc/{shop_pid}/status").read_text())
        effective = "0000000000080000" if security["runAsUser"] == 0 else "0000000000000000"  # CAP_SYS_PTRACE or none
        assert re.search(rf"CapEff:\s+{effective}", status) and re.search(r"CapBnd:\s+0000000000080000", status)
        assert re.search(r"NoNewPrivs:\s+1", status), status

        stderr_lines: list[str] = []
        threading.Thread(target=lambda: stderr_lines.extend(exporter.stderr), daemon=True).start()  # type: ignore[arg-type]

        code, body = _get(f"{base}/healthz")
        assert code == 200 and json.loads(body)["status"] == "running"
        deadline = time.monotonic() + 60
        calls: dict[str, float] = {}
        spans: list[tuple[dict[str, str], Any]] = []
        while time.monotonic() < deadline:
            samples = _samples(_get(f"{base}/metrics")[1].decode())
            calls = {labels["function"]: value for name, labels, value in samples
                     if name == "peeka_function_calls_total" and labels["outcome"] == "ok"}
            spans = receiver.spans()
            up = [v for name, _, v in samples if name == "peeka_target_up"]
            if up == [1.0] and any("handle_item" in f and v > 0 for f, v in calls.items()) and \
                    any("handle_item" in s.name for _, s in spans) and receiver.profile_resources():
                break
            assert exporter.poll() is None, "".join(stderr_lines)
            time.sleep(0.5)
        else:
            raise AssertionError(f"no calls/spans seen in time: calls={calls} spans={len(spans)}\n"
                                 + "".join(stderr_lines) + _get(f"{base}/healthz")[1].decode())
        # The agent lives in the shop's /tmp (reached through /proc/PID/root), not the sidecar's.
        shop_tmp = Path(f"/proc/{shop_pid}/root/tmp")
        assert any(p.name.startswith("peeka_") and p.name.endswith(".sock") for p in shop_tmp.iterdir())
        assert not any(p.name.endswith(".sock") for p in Path(f"/proc/{exporter_pid}/root/tmp").iterdir())
        # Metrics carry the target's pod-namespace PID and the configured service name.
        labels = next(lb for n, lb, _ in samples if n == "peeka_target_up")
        assert labels["service"] == "shop" and int(labels["pid"]) < 100  # pod PIDs, not the host's
        # Spans carry the Downward API's resource attributes.
        resource = spans[0][0]
        assert resource["k8s.pod.name"] == POD_NAME and resource["k8s.node.name"] == NODE_NAME
        assert resource["k8s.namespace.name"] == deployment["metadata"]["namespace"]
        assert resource["service.name"] == "shop"
        # The config's continuous profile came to the same endpoint, with the same resource.
        profiled = receiver.profile_resources()[0]
        assert {k: profiled.get(k) for k in resource} == resource

        # Every metric the dashboard queries is one this live exporter exposes.
        exposed = {name for name, _, _ in samples}
        dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "peeka.json").read_text())
        queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"] if "expr" in t]  # Pyroscope's: no PromQL
        queries += [v["query"]["query"] for v in dashboard["templating"]["list"]]
        wanted = set().union(*(promql_metric_names(q) for q in queries))
        assert wanted and wanted <= exposed, f"the dashboard queries metrics the exporter lacks: {wanted - exposed}"

        # SIGTERM (what the kubelet sends): the sidecar detaches, the app keeps running untouched.
        os.kill(exporter_pid, signal.SIGTERM)
        assert exporter.wait(30) == 0, "".join(stderr_lines)
        assert shop.poll() is None
        assert not any(p.name.endswith(".sock") for p in shop_tmp.iterdir())
    finally:
        pod.stop()
