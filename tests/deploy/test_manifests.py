"""The Kubernetes manifests under k8s/, checked offline.

- Every object in every *.yaml under k8s/ (found recursively, so files other
  people add, e.g. k8s/monitoring/, are checked too) validates against the
  Kubernetes 1.29, 1.31 and 1.33 OpenAPI schemas shipped in kubernetes-validate,
  in strict mode (an unknown field is an error), except Prometheus Operator
  objects, which validate against the Operator's own CRD schemas: the pydantic
  models of cloudcoil-models-prometheus-operator, generated from its CRDs, plus a
  round trip that rejects every field the models do not know (they ignore
  unknown fields by themselves).
- Every kustomization.yaml lists only files and directories that exist, and
  lists every manifest beside it; `kubectl kustomize k8s/` renders, where kubectl
  is installed.
- What the restricted Pod Security Standard demands, container by container;
  the gateway as a native sidecar with its probes, ports, Service, PodMonitor
  and PodDisruptionBudget agreeing with each other; the ConfigMap's gateway.yaml
  accepted by `webhook-gateway check-config` with the Deployment's environment;
  terminationGracePeriodSeconds covering the gateway's own shutdown bound; the
  example app answering a POST; the Redis config accepted by a real redis-server.
"""

from __future__ import annotations

import copy
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pydantic
import pytest
import redis
import yaml
from cloudcoil.models.prometheus_operator import v1 as operator

from gateway.config import Config, parse
from gateway.forwarder import _LOOP_STOP_TIMEOUT
from tests.support.processes import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUBERNETES_VERSIONS = ("1.29", "1.31", "1.33")
GATEWAY_IMAGE = "ghcr.io/webhook-gateway/webhook-gateway"

# Prometheus Operator kinds, validated against its CRDs instead of Kubernetes' schemas.
OPERATOR_MODELS: dict[tuple[str, str], type[pydantic.BaseModel]] = {
    ("monitoring.coreos.com/v1", "PodMonitor"): operator.PodMonitor,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): operator.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): operator.PrometheusRule,
}

# The gateway's shutdown bound (gateway/service.py, forwarder.py, spool.py): after
# SIGTERM the listener drain (<= grace) runs alongside the forwarder's stop (loop
# stop, then <= grace for deliveries, then <= grace for the last acks); then, if the
# spool is in use, its supervisor stops (2 x its 1 s probe timeout) and its own
# forwarder stops the same way. Before the sidecar gets SIGTERM, the app container
# has run its preStop and exited; the example app exits at once on SIGTERM.
SPOOL_SUPERVISOR_STOP = 2.0
APP_EXIT = 2.0


# --- Loading ------------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def kustomizations() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


def documents() -> list[tuple[str, dict[str, Any]]]:
    """(an id naming file, position, kind and name; the object) for every object."""
    found = []
    for path in manifest_files():
        for i, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if doc is None:
                continue
            assert isinstance(doc, dict), f"{path}: document {i} is not a mapping"
            name = doc.get("metadata", {}).get("name", "?")
            where = f"{path.relative_to(K8S)}#{i}:{doc.get('kind')}/{name}"
            found.append((where, doc))
    return found


DOCUMENTS = documents()
KUBERNETES_DOCUMENTS = [
    (where, doc)
    for where, doc in DOCUMENTS
    if (doc.get("apiVersion"), doc.get("kind")) not in OPERATOR_MODELS
]
OPERATOR_DOCUMENTS = [
    (where, doc)
    for where, doc in DOCUMENTS
    if (doc.get("apiVersion"), doc.get("kind")) in OPERATOR_MODELS
]


def objects(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in DOCUMENTS if doc.get("kind") == kind]


def the(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in objects(kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def deployment() -> dict[str, Any]:
    return the("Deployment", "webhook-gateway")


def pod_spec(workload: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def gateway_container() -> dict[str, Any]:
    sidecars = [
        c
        for c in pod_spec(deployment()).get("initContainers", [])
        if c["image"].startswith(GATEWAY_IMAGE + ":")
    ]
    assert len(sidecars) == 1, "the gateway must be exactly one init container"
    return sidecars[0]


def app_containers() -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = pod_spec(deployment())["containers"]
    return containers


def port_named(container: Mapping[str, Any], name: str) -> int:
    ports = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == name]
    assert len(ports) == 1, f"{container['name']} has no single port named {name}"
    return int(ports[0])


def secret_value(name: str, key: str) -> str:
    secret = the("Secret", name)
    value = secret.get("stringData", {}).get(key)
    assert isinstance(value, str), f"Secret {name} has no stringData key {key}"
    return value


def container_env(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's environment as Kubernetes would set it: literal values,
    secretKeyRefs resolved from the Secret manifests, $(VAR) references to
    earlier variables expanded."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: env.get(m.group(1), m.group(0)),
                var["value"],
            )
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secret_value(ref["name"], ref["key"])
    return env


def gateway_config_text() -> str:
    config = the("ConfigMap", "webhook-gateway-config")
    text: str = config["data"]["gateway.yaml"]
    return text


def gateway_config() -> Config:
    return parse(gateway_config_text(), container_env(gateway_container()))


def quantity(text: str) -> int:
    """A Kubernetes quantity in bytes (the binary and decimal suffixes used here)."""
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "k": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|k|M|G)?", text)
    assert match, f"unsupported quantity {text!r}"
    return int(match.group(1)) * units.get(match.group(2) or "", 1)


# --- Schemas --------------------------------------------------------------------


def test_the_manifests_are_found() -> None:
    kinds = {doc["kind"] for _, doc in DOCUMENTS}
    expected = {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget"}
    assert expected | {"PodMonitor", "StatefulSet", "NetworkPolicy"} <= kinds
    assert (K8S / "redis" / "statefulset.yaml") in manifest_files()


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "doc", [doc for _, doc in KUBERNETES_DOCUMENTS], ids=[w for w, _ in KUBERNETES_DOCUMENTS]
)
def test_every_object_is_valid_kubernetes_in_strict_mode(doc: dict[str, Any], version: str) -> None:
    try:
        validated = kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(exc.message)  # the package's CLI only warns: an unknown kind is an error here
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"invalid for Kubernetes {exc.version} at {path or '<root>'}: {exc.message}")
    assert validated == version  # the package has this very version's schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_strict_validation_rejects_an_unknown_field(version: str) -> None:
    broken = copy.deepcopy(deployment())
    pod_spec(broken)["initContainers"][0]["readinesProbe"] = {"httpGet": {"port": 9102}}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(broken, version, strict=True)


def test_the_sidecar_needs_kubernetes_1_28_or_newer() -> None:
    """Shows the schemas are version-specific: initContainers[].restartPolicy is new in 1.28."""
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolicy"):
        kubernetes_validate.validate(deployment(), "1.27", strict=True)


def unknown_fields(given: object, known: object, path: str = "") -> Iterator[str]:
    """Paths of keys in `given` that the validated model dropped (`known`)."""
    if isinstance(given, dict) and isinstance(known, dict):
        for key, value in given.items():
            here = f"{path}.{key}" if path else str(key)
            if key not in known:
                yield here
            else:
                yield from unknown_fields(value, known[key], here)
    elif isinstance(given, list) and isinstance(known, list):
        for i, (value, kept) in enumerate(zip(given, known, strict=True)):
            yield from unknown_fields(value, kept, f"{path}[{i}]")


def validate_operator_object(doc: Mapping[str, Any]) -> None:
    """Against the Prometheus Operator's CRD schema: types (strictly, as the API
    server would: no "true" for true), enums, patterns and ranges by the generated
    models; unknown fields by the round trip."""
    model = OPERATOR_MODELS[(doc["apiVersion"], doc["kind"])]
    validated = model.model_validate(doc, strict=True)
    kept = validated.model_dump(mode="json", by_alias=True, exclude_unset=True)
    unknown = list(unknown_fields(doc, kept))
    if unknown:
        raise ValueError(f"unknown fields for {doc['kind']}: {', '.join(unknown)}")


@pytest.mark.parametrize(
    "doc", [doc for _, doc in OPERATOR_DOCUMENTS], ids=[w for w, _ in OPERATOR_DOCUMENTS]
)
def test_prometheus_operator_objects_match_the_operator_schemas(doc: dict[str, Any]) -> None:
    validate_operator_object(doc)


def test_operator_validation_rejects_an_unknown_field() -> None:
    monitor = copy.deepcopy(the("PodMonitor", "webhook-gateway"))
    validate_operator_object(monitor)
    monitor["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s"
    with pytest.raises(ValueError, match=r"spec\.podMetricsEndpoints\[0\]\.intervall"):
        validate_operator_object(monitor)
    misplaced = copy.deepcopy(the("PodMonitor", "webhook-gateway"))
    misplaced["spec"]["port"] = "admin"  # belongs in a podMetricsEndpoint
    with pytest.raises(ValueError, match=r"spec\.port"):
        validate_operator_object(misplaced)


def test_operator_validation_rejects_bad_values() -> None:
    monitor = copy.deepcopy(the("PodMonitor", "webhook-gateway"))
    monitor["spec"]["podMetricsEndpoints"][0]["interval"] = "15 seconds"  # not a duration
    with pytest.raises(pydantic.ValidationError, match="interval"):
        validate_operator_object(monitor)
    monitor = copy.deepcopy(the("PodMonitor", "webhook-gateway"))
    monitor["spec"]["podMetricsEndpoints"][0]["scheme"] = "ftp"
    with pytest.raises(pydantic.ValidationError, match="scheme"):
        validate_operator_object(monitor)
    monitor = copy.deepcopy(the("PodMonitor", "webhook-gateway"))
    monitor["spec"]["podMetricsEndpoints"][0]["honorLabels"] = "true"  # a string, not a bool
    with pytest.raises(pydantic.ValidationError, match="honorLabels"):
        validate_operator_object(monitor)
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "r"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up", "fro": "5m"}]}]},
    }
    with pytest.raises(ValueError, match=r"spec\.groups\[0\]\.rules\[0\]\.fro"):
        validate_operator_object(rule)


# --- Kustomize --------------------------------------------------------------------

KUSTOMIZATION_KEYS = {
    *("apiVersion", "kind", "resources", "images", "namespace", "labels", "commonLabels"),
    *("commonAnnotations", "configMapGenerator", "secretGenerator", "patches", "components"),
    *("namePrefix", "nameSuffix", "replicas", "generatorOptions"),
}


@pytest.mark.parametrize("path", kustomizations(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_kustomization_lists_what_exists_and_all_that_is_there(path: Path) -> None:
    kustomization = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert set(kustomization) <= KUSTOMIZATION_KEYS, "unknown keys in kustomization.yaml"
    listed = kustomization.get("resources", [])
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    for entry in listed:
        target = path.parent / entry
        if target.is_dir():
            assert (target / "kustomization.yaml").is_file(), f"{entry}/ has no kustomization.yaml"
        else:
            assert target.is_file(), f"{path.relative_to(K8S)} lists {entry}, which does not exist"
    beside = {p.name for p in path.parent.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert beside <= set(listed), f"not listed in {path.relative_to(K8S)}: {beside - set(listed)}"


def test_the_top_level_kustomization_includes_redis_and_monitoring() -> None:
    top = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert {"redis", "monitoring"} <= set(top["resources"])
    images = {image["name"]: image for image in top["images"]}
    assert images[GATEWAY_IMAGE]["newTag"] == gateway_container()["image"].split(":")[-1]


def reachable_documents(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        target = directory / entry
        if target.is_dir():
            found += reachable_documents(target)
        else:
            found += [d for d in yaml.safe_load_all(target.read_text(encoding="utf-8")) if d]
    return found


def test_kubectl_kustomize_renders_every_object() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize k8s/` not tried")
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d]

    def names(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return sorted((d["kind"], d["metadata"]["name"]) for d in docs)

    # Every listed object is rendered (generators, if any, may add more).
    assert set(names(reachable_documents(K8S))) <= set(names(rendered))
    (gateway,) = [d for d in rendered if d["kind"] == "Deployment"]
    sidecar = pod_spec(gateway)["initContainers"][0]
    assert sidecar["image"] == f"{GATEWAY_IMAGE}:0.1.0"  # images: reaches the init container


# --- Restricted Pod Security Standard ---------------------------------------------

RESTRICTED_VOLUME_TYPES = {
    *("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral"),
    *("persistentVolumeClaim", "projected", "secret"),
}


def workloads() -> list[tuple[str, dict[str, Any]]]:
    kinds = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod")
    return [(where, doc) for where, doc in DOCUMENTS if doc["kind"] in kinds]


@pytest.mark.parametrize("workload", [d for _, d in workloads()], ids=[w for w, _ in workloads()])
def test_every_container_meets_the_restricted_pod_security_standard(
    workload: dict[str, Any],
) -> None:
    spec = pod_spec(workload)
    pod = spec.get("securityContext", {})
    assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        assert kinds <= RESTRICTED_VOLUME_TYPES, f"volume {volume['name']}: {kinds}"
    containers = spec.get("initContainers", []) + spec["containers"]
    assert containers
    for container in containers:
        name = container["name"]
        own = container.get("securityContext", {})
        assert own.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, name
        assert own.get("runAsUser", pod.get("runAsUser")) not in (0, None), name
        assert own.get("allowPrivilegeEscalation") is False, name
        assert own.get("readOnlyRootFilesystem") is True, name
        assert not own.get("privileged"), name
        assert "ALL" in own.get("capabilities", {}).get("drop", []), name
        assert not own.get("capabilities", {}).get("add"), name
        seccomp = own.get("seccompProfile", pod.get("seccompProfile", {}))
        assert seccomp.get("type") == "RuntimeDefault", name
        assert not any("hostPort" in port for port in container.get("ports", [])), name


def test_the_gateway_runs_as_the_images_numeric_user() -> None:
    assert pod_spec(deployment())["securityContext"]["runAsUser"] == 10001
    dockerfile = ROOT / "Dockerfile"
    if dockerfile.exists():
        assert re.search(r"^USER 10001(:10001)?\s*$", dockerfile.read_text(), re.MULTILINE)


# --- The gateway sidecar ---------------------------------------------------------


def test_the_gateway_is_a_native_sidecar_probed_on_the_admin_port() -> None:
    gateway = gateway_container()
    assert gateway["restartPolicy"] == "Always"
    admin = port_named(gateway, "admin")
    env = container_env(gateway)
    assert int(env["GATEWAY_ADMIN_PORT"]) == admin == gateway_config().admin.port
    assert int(env["GATEWAY_PORT"]) == port_named(gateway, "webhooks")
    probes = {kind: gateway[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe")}
    probes["readinessProbe"] = gateway["readinessProbe"]["httpGet"]
    # Liveness (and startup) never depend on the store: /healthz. Readiness: /readyz.
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    assert {probe["port"] for probe in probes.values()} == {admin}
    # /readyz pings the store with a 1 s timeout (gateway/admin.py): the probe waits longer.
    assert gateway["readinessProbe"]["timeoutSeconds"] > 1
    for container in [gateway, *app_containers()]:
        assert container["resources"]["requests"], container["name"]
        assert container["resources"]["limits"]["memory"], container["name"]


def test_the_gateway_reads_the_configmap_and_writes_to_emptydirs() -> None:
    gateway = gateway_container()
    spec = pod_spec(deployment())
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in gateway["volumeMounts"]}
    config_arg = gateway["args"][gateway["args"].index("--config") + 1]
    assert config_arg == "/etc/webhook-gateway/gateway.yaml"
    config_volume = volumes[mounts["/etc/webhook-gateway"]]
    assert config_volume["configMap"]["name"] == "webhook-gateway-config"
    config = gateway_config()
    data_dir = container_env(gateway)["GATEWAY_DATA_DIR"]
    assert data_dir == config.data_dir == "/var/lib/webhook-gateway"
    data = volumes[mounts[data_dir]]["emptyDir"]
    # The spool (<data_dir>/spool.db) fits with room for SQLite's journal beside it.
    assert quantity(data["sizeLimit"]) >= 2 * config.store.spool.max_size
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_every_secret_and_configmap_reference_resolves() -> None:
    for workload in (deployment(), the("StatefulSet", "webhook-gateway-redis")):
        spec = pod_spec(workload)
        for container in spec.get("initContainers", []) + spec["containers"]:
            container_env(container)  # fails on a missing Secret or key
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                the("ConfigMap", volume["configMap"]["name"])


def test_check_config_accepts_the_configmap_with_the_deployments_environment(
    tmp_path: Path,
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(gateway_config_text(), encoding="utf-8")
    env = {"PATH": os.environ.get("PATH", ""), **container_env(gateway_container())}
    command = [sys.executable, "-m", "gateway", "check-config", "--config", str(config)]
    done = subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "ok (2 sources, 1 targets, 2 routes)" in done.stdout
    # ... and needs the Secret: without it the gateway would refuse to start.
    del env["INBOX_WEBHOOK_TOKEN"]
    done = subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2
    assert "environment variable INBOX_WEBHOOK_TOKEN is not set" in done.stderr


def test_the_store_url_points_at_the_redis_service_with_its_password() -> None:
    url = container_env(gateway_container())["STORE_URL"]
    password = secret_value("webhook-gateway-redis", "password")
    service = the("Service", "webhook-gateway-redis")
    port = service["spec"]["ports"][0]["port"]
    assert url == f"redis://:{password}@webhook-gateway-redis:{port}/0"
    assert gateway_config().store.url == url
    redis_pod = pod_spec(the("StatefulSet", "webhook-gateway-redis"))
    assert service["spec"]["selector"].items() <= workload_labels(redis_pod_template()).items()
    assert redis_pod["containers"][0]["ports"][0]["containerPort"] == port


def workload_labels(template: Mapping[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = template["metadata"]["labels"]
    return labels


def redis_pod_template() -> dict[str, Any]:
    template: dict[str, Any] = the("StatefulSet", "webhook-gateway-redis")["spec"]["template"]
    return template


def test_the_service_exposes_only_the_webhook_port() -> None:
    service = the("Service", "webhook-gateway")
    (port,) = service["spec"]["ports"]
    assert port["port"] == port["targetPort"] == 8080 == port_named(gateway_container(), "webhooks")
    # A number: named ports of native sidecars resolve in Services only from 1.32 on.
    assert isinstance(port["targetPort"], int)
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    pod_labels = workload_labels(deployment()["spec"]["template"])
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_the_podmonitor_scrapes_the_admin_port_for_kube_prometheus_stack() -> None:
    monitor = the("PodMonitor", "webhook-gateway")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    pod_labels = workload_labels(deployment()["spec"]["template"])
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert port_named(gateway_container(), endpoint["port"]) == 9102
    assert endpoint["path"] == "/metrics"


def test_the_alerts_select_the_podmonitors_scrape_job() -> None:
    rules = objects("PrometheusRule")
    if not rules:
        pytest.skip("no PrometheusRule under k8s/ yet")
    job = f"some-namespace/{the('PodMonitor', 'webhook-gateway')['metadata']['name']}"
    expressions = [
        rule["expr"] for doc in rules for group in doc["spec"]["groups"] for rule in group["rules"]
    ]
    selectors = {m for e in expressions for m in re.findall(r'job=~"([^"]+)"', e)}
    assert selectors, "no alert selects a job"
    for selector in selectors:
        assert re.fullmatch(selector, job), f"job=~{selector!r} misses the PodMonitor's job {job}"


def test_the_disruption_budget_keeps_a_pod_and_selects_the_gateway() -> None:
    budget = the("PodDisruptionBudget", "webhook-gateway")
    pod_labels = workload_labels(deployment()["spec"]["template"])
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert deployment()["spec"]["replicas"] > budget["spec"]["maxUnavailable"] >= 1


def test_the_grace_period_covers_the_app_and_the_gateway_shutdown() -> None:
    grace = gateway_config().shutdown_grace
    assert grace == 10.0
    for target in gateway_config().targets:  # a delivery in flight at SIGTERM can finish
        assert target.timeout <= grace, target.name
    forwarder_stop = _LOOP_STOP_TIMEOUT + 2 * grace
    gateway = max(grace, forwarder_stop) + SPOOL_SUPERVISOR_STOP + forwarder_stop
    pre_stops = [0.0]
    for app in app_containers():
        hook = app.get("lifecycle", {}).get("preStop", {})
        if "sleep" in hook:
            pre_stops.append(float(hook["sleep"]["seconds"]))
        elif "exec" in hook:
            command = hook["exec"]["command"]
            assert command[0] == "sleep", command
            pre_stops.append(float(command[1]))
    app = max(pre_stops) + APP_EXIT
    period = pod_spec(deployment())["terminationGracePeriodSeconds"]
    assert period >= app + gateway + 5, f"{period} s < {app} + {gateway} + 5 s margin"
    assert (app, gateway) == (7.0, 46.0)  # the arithmetic written in deployment.yaml


# --- The example app and Redis, run for real -----------------------------------------


def test_the_example_app_answers_a_post_and_stops_on_sigterm() -> None:
    (app,) = app_containers()
    assert app["command"][:2] == ["python", "-c"]
    script = app["command"][2]
    forward = container_env(gateway_container())["FORWARD_URL"]
    assert forward == "http://127.0.0.1:3000/events"
    assert '("127.0.0.1", 3000)' in script
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", script.replace('("127.0.0.1", 3000)', f'("127.0.0.1", {port})')],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def post() -> int:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                connection.request("POST", "/events", b'{"a":1}', {"ce-id": "e1", "ce-type": "t"})
                response = connection.getresponse()
                response.read()
                return response.status
            except OSError:
                return 0
            finally:
                connection.close()

        wait_until(lambda: post() == 200, timeout=10, what="the example app")
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert '"ce-id": "e1"' in out


def test_redis_runs_with_the_configmaps_settings(tmp_path: Path) -> None:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    statefulset = the("StatefulSet", "webhook-gateway-redis")
    (container,) = pod_spec(statefulset)["containers"]
    env = container_env(container)
    command = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["command"]]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert command[:2] == ["redis-server", f"{mounts['config']}/redis.conf"]
    claims = [t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]]
    assert claims == ["data"]
    assert mounts["data"] == "/data"
    text = the("ConfigMap", "webhook-gateway-redis")["data"]["redis.conf"]
    assert re.search(r"^dir /data$", text, re.MULTILINE)  # the claim's mount
    conf = tmp_path / "redis.conf"
    conf.write_text(text.replace("dir /data", f"dir {tmp_path}"), encoding="utf-8")
    port = free_port()
    overrides = ["--port", str(port), "--bind", "127.0.0.1"]
    process = subprocess.Popen(
        [server, str(conf), *command[2:], *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    password = secret_value("webhook-gateway-redis", "password")
    assert env["REDISCLI_AUTH"] == password
    client = redis.Redis(port=port, password=password, socket_timeout=2)
    try:

        def answers() -> bool:
            if process.poll() is not None:
                output = process.communicate()[0]
                raise AssertionError(f"redis-server refused the config: {output}")
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(answers, timeout=10, what="redis-server with the ConfigMap's redis.conf")
        keys = ("appendonly", "appendfsync", "maxmemory-policy", "maxmemory", "save")
        assert {key: client.config_get(key)[key] for key in keys} == {
            "appendonly": "yes",
            "appendfsync": "always",
            "maxmemory-policy": "noeviction",
            "maxmemory": str(512 << 20),
            "save": "",
        }
        with socket.create_connection(("127.0.0.1", port), timeout=2) as anonymous:
            anonymous.sendall(b"PING\r\n")
            assert anonymous.recv(100).startswith(b"-NOAUTH")  # requirepass is on
    finally:
        client.close()
        process.terminate()
        process.communicate(timeout=10)
    # The memory limit leaves room above maxmemory for an AOF rewrite's fork.
    assert quantity(container["resources"]["limits"]["memory"]) >= 2 * (512 << 20)
