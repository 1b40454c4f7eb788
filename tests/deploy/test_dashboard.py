"""The Grafana dashboard and the Prometheus alerts (k8s/monitoring/).

Static checks of the dashboard JSON, its ConfigMap and the PrometheusRule; promtool
`check rules` and `test rules` (every alert fires on its condition, after its `for:`,
and not on the look-alikes); and the real thing: the distribution's Prometheus
scraping a real gateway (real redis-server, a real sink as the app) under mixed
load, evaluating every dashboard query and every alert expression through its
HTTP API, with the rules loaded into it.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.metrics import Metrics
from tests.support.configs import config_variant
from tests.support.processes import ROOT, GatewayProcess, free_port, wait_until
from tests.support.signing import SIGNERS, new_secret
from tests.support.sink import Sink
from tests.support.webhooks import Answer, Poster, post_once, with_key

MONITORING = ROOT / "k8s" / "monitoring"
DASHBOARD = MONITORING / "webhook-gateway-dashboard.json"
CONFIGMAP = MONITORING / "dashboard-configmap.yaml"
RULE = MONITORING / "prometheusrule.yaml"
GENERATOR = ROOT / "deploy" / "dashboard_configmap.py"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCRAPE_INTERVAL = 1  # seconds, in the test's Prometheus
# What Grafana substitutes for its own variables at that scrape interval:
# $__rate_interval = max($__interval + scrape interval, 4 * scrape interval).
RATE_INTERVAL = f"{max(2 * SCRAPE_INTERVAL, 4 * SCRAPE_INTERVAL)}s"
METRIC_NAME = re.compile(r"\b((?:webhook_gateway|process)_[a-z0-9_]+|up)\b(?!\s*\()")
GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)"
)


# ---------------------------------------------------------------- the artifacts


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))  # a collapsed row holds its panels


def queries() -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query of every panel."""
    return [
        (panel["title"], target["refId"], target["expr"])
        for panel in all_panels(dashboard()["panels"])
        for target in panel.get("targets", [])
    ]


def variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard()["templating"]["list"]}


def rule_spec() -> dict[str, Any]:
    return dict(yaml.safe_load(RULE.read_text(encoding="utf-8"))["spec"])


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in rule_spec()["groups"] for r in group["rules"]}


def substitute(expr: str, values: dict[str, str]) -> str:
    """What Grafana sends for `expr`: its variables replaced; an unknown one is an error."""

    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            raise AssertionError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]

    return GRAFANA_VARIABLE.sub(value, expr)


def metric_names(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))


def exported_names() -> set[str]:
    """Every sample name the gateway's /metrics can show, from the real registry."""
    metrics = Metrics()
    metrics.target("app")
    metrics.source("inboxcomponents")
    text = metrics.exposition().decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1].isalpha()}
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    return names | families


def write_rules(directory: Path, annotations: bool = True) -> Path:
    """The plain Prometheus rules file: `.spec` of the PrometheusRule."""
    spec = rule_spec()
    if not annotations:
        for group in spec["groups"]:
            for rule in group["rules"]:
                rule.pop("annotations", None)
    path = directory / "webhook-gateway.rules.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# ---------------------------------------------------------------- static checks


def test_the_dashboard_has_a_fixed_uid_and_a_prometheus_datasource_variable() -> None:
    doc = dashboard()
    assert doc["uid"] == "webhook-gateway"
    assert "id" not in doc or doc["id"] is None  # an id is per Grafana instance
    datasource = variables()["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    for name in ("job", "instance"):
        assert variables()[name]["datasource"] == DATASOURCE
        assert variables()[name]["allValue"] == ".*"


def test_no_datasource_is_hard_coded_anywhere() -> None:
    found: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "datasource" and value != DATASOURCE:
                    builtin = {"type": "grafana", "uid": "-- Grafana --"}
                    if not (where == "annotations" and value == builtin):
                        found.append(f"{where}.{key} = {value!r}")
                if key in ("datasourceId", "datasourceUid", "__inputs", "__requires"):
                    found.append(f"{where}.{key}")
                walk(value, where if where != "root" else key)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)
        elif isinstance(node, str) and "${DS_" in node:
            found.append(f"{where}: {node!r}")

    walk(dashboard(), "root")
    assert found == []
    for panel in all_panels(dashboard()["panels"]):
        if panel["type"] == "row":
            assert not panel.get("targets")
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = list(all_panels(dashboard()["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    taken: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_the_dashboard_has_the_panels_the_issue_asks_for() -> None:
    titles = {p["title"] for p in all_panels(dashboard()["panels"])}
    assert {
        "Requests by status code",
        "Ack latency",
        "Admitted vs delivered vs duplicates",
        "Forward latency",
        "Forward attempts by outcome",
        "Queue depth",
        "Oldest queued event age",
        "Dead letters",
        "Store errors",
        "Spool",
        "Store mode",
        "Rejected requests by reason",
        "CPU",
        "Resident memory",
    } <= titles
    ack = next(p for p in all_panels(dashboard()["panels"]) if p["title"] == "Ack latency")
    quantiles = [re.search(r"histogram_quantile\(([\d.]+),", t["expr"]) for t in ack["targets"]]
    assert [m.group(1) for m in quantiles if m] == ["0.5", "0.99", "0.999"]


def test_every_metric_the_gateway_exports_is_on_the_dashboard_and_every_name_used_exists() -> None:
    exported = exported_names()
    used = set().union(*(metric_names(expr) for _, _, expr in queries()))
    used_by_alerts = set().union(*(metric_names(r["expr"]) for r in alerts().values()))
    assert (used | used_by_alerts) - exported - {"up"} == set()
    families = {name for name in exported if name.startswith("webhook_gateway_")}
    shown = {name.removesuffix("_bucket") for name in used}
    missing = {f for f in families if not any(s.startswith(f) or f.startswith(s) for s in shown)}
    assert missing == set()
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes"):
        assert name in used


def test_the_configmap_is_the_dashboard_json_labelled_for_the_grafana_sidecar() -> None:
    check = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stderr
    configmap = yaml.safe_load(CONFIGMAP.read_text(encoding="utf-8"))
    assert (configmap["apiVersion"], configmap["kind"]) == ("v1", "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    (embedded,) = configmap["data"].values()
    assert embedded == DASHBOARD.read_text(encoding="utf-8")
    # `kubectl apply` keeps the object in an annotation limited to 256 KiB.
    assert len(CONFIGMAP.read_bytes()) < 200_000


def test_the_generator_notices_a_stale_configmap(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "deploy", copy / "deploy")
    shutil.copytree(MONITORING, copy / "k8s" / "monitoring")
    source = copy / "k8s" / "monitoring" / DASHBOARD.name
    doc = json.loads(source.read_text())
    doc["description"] += " Changed."
    source.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    script = str(copy / "deploy" / GENERATOR.name)
    check = [sys.executable, script, "--check"]
    assert subprocess.run(check, capture_output=True, timeout=30).returncode == 1
    subprocess.run([sys.executable, script], check=True, capture_output=True, timeout=30)
    assert subprocess.run(check, capture_output=True, timeout=30).returncode == 0
    configmap = yaml.safe_load((copy / "k8s" / "monitoring" / CONFIGMAP.name).read_text())
    (embedded,) = configmap["data"].values()
    assert json.loads(embedded) == doc


def test_the_prometheusrule_is_picked_up_by_kube_prometheus_stack_and_documents_each_alert() -> (
    None
):
    doc = yaml.safe_load(RULE.read_text(encoding="utf-8"))
    assert (doc["apiVersion"], doc["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert doc["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert set(alerts()) == {
        "WebhookGatewayDeadLetters",
        "WebhookGatewayQueueStale",
        "WebhookGatewayStoreErrors",
        "WebhookGatewaySpoolInUse",
        "WebhookGatewayScrapeFailing",
        "WebhookGatewayNotScraped",
        "WebhookGatewayAckLatencyHigh",
    }
    for name, rule in alerts().items():
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
        assert len(rule["annotations"]["description"]) > 200, name  # what to check, what to do


def test_the_kustomization_lists_every_manifest_here() -> None:
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    manifests = {p.name for p in MONITORING.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(manifests)


def test_the_scrape_alerts_match_the_job_of_the_shipped_podmonitor() -> None:
    """The Prometheus Operator names a PodMonitor's job "<namespace>/<name>", or takes it
    from the pod label spec.jobLabel names."""
    podmonitor_path = ROOT / "k8s" / "podmonitor.yaml"
    if not podmonitor_path.exists():
        pytest.skip("no k8s/podmonitor.yaml in this checkout")
    podmonitor = yaml.safe_load(podmonitor_path.read_text())
    assert podmonitor["kind"] == "PodMonitor"
    if podmonitor["spec"].get("jobLabel"):
        pytest.skip("the PodMonitor takes its job from a pod label")
    for name in ("WebhookGatewayScrapeFailing", "WebhookGatewayNotScraped"):
        match = re.search(r'job=~"([^"]+)"', alerts()[name]["expr"])
        assert match is not None, name
        for namespace in ("default", "shop"):
            job = f"{namespace}/{podmonitor['metadata']['name']}"
            assert re.fullmatch(match.group(1), job), (name, job)
        assert re.fullmatch(match.group(1), "webhook-gateway"), name  # a plain scrape job


# ---------------------------------------------------------------- promtool


@needs_promtool
def test_promtool_check_rules_passes(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(write_rules(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


SHOP = {"namespace": "shop", "job": "shop/webhook-gateway"}


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in {**SHOP, **labels}.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def expect(alert: str, at: str, *fired: dict[str, str]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": [{"exp_labels": f} for f in fired]}


def warning(**labels: str) -> dict[str, str]:
    return {"severity": "warning", **labels}


def ack_buckets(source: str, fast: float, slow: float) -> list[dict[str, str]]:
    """An ack histogram growing, per minute, by `fast` acks under 1 ms and `slow` ones
    between 250 and 500 ms."""
    name = "webhook_gateway_ack_duration_seconds"
    under, total = f"0+{fast}x40", f"0+{fast + slow}x40"
    return [
        series(f"{name}_bucket", under, source=source, le="0.001"),
        series(f"{name}_bucket", under, source=source, le="0.25"),
        series(f"{name}_bucket", total, source=source, le="0.5"),
        series(f"{name}_bucket", total, source=source, le="+Inf"),
        series(f"{name}_count", total, source=source),
    ]


PROMTOOL_TESTS: list[dict[str, Any]] = [
    {  # one dead letter at 11m: fires after 1m, clears 15m after the last one
        "input_series": [
            series("webhook_gateway_dead_letter_total", "0x10 1x40", target="app"),
            series("webhook_gateway_dead_letter_total", "0x50", target="quiet"),
        ],
        "alert_rule_test": [
            expect("WebhookGatewayDeadLetters", "10m"),
            expect("WebhookGatewayDeadLetters", "13m", warning(**SHOP, target="app")),
            expect("WebhookGatewayDeadLetters", "40m"),
        ],
    },
    {  # the oldest event ages a minute per minute: over 600 s at 11m, fires 5m later
        "input_series": [
            series("webhook_gateway_queue_oldest_age_seconds", "0+60x30", target="app"),
            series("webhook_gateway_queue_oldest_age_seconds", "5x30", target="fast"),
        ],
        "alert_rule_test": [
            expect("WebhookGatewayQueueStale", "15m"),
            expect("WebhookGatewayQueueStale", "16m", warning(**SHOP, target="app")),
        ],
    },
    {  # admit errors from 7m on fire at 10m; one blip on ack never does
        "input_series": [
            series("webhook_gateway_store_errors_total", "0x5 0+10x20", op="admit", pod="a"),
            series("webhook_gateway_store_errors_total", "0x5 1x20", op="ack", pod="a"),
        ],
        "alert_rule_test": [
            expect("WebhookGatewayStoreErrors", "9m"),
            expect(
                "WebhookGatewayStoreErrors",
                "10m",
                {"severity": "critical", **SHOP, "op": "admit", "pod": "a"},
            ),
            expect(
                "WebhookGatewayStoreErrors",
                "20m",
                {"severity": "critical", **SHOP, "op": "admit", "pod": "a"},
            ),
        ],
    },
    {  # pod b spools from 6m, pod c holds spooled events from 3m, pod d runs on SQLite
        "input_series": [
            series("webhook_gateway_store_mode", "1x5 0x20", mode="redis", pod="b"),
            series("webhook_gateway_store_mode", "0x5 1x20", mode="spool", pod="b"),
            series("webhook_gateway_spool_depth", "0x2 3x20", pod="c"),
            series("webhook_gateway_store_mode", "1x25", mode="sqlite", pod="d"),
            series("webhook_gateway_spool_depth", "0x25", pod="d"),
        ],
        "alert_rule_test": [
            expect("WebhookGatewaySpoolInUse", "7m"),
            expect("WebhookGatewaySpoolInUse", "8m", warning(**SHOP, pod="c")),
            expect(
                "WebhookGatewaySpoolInUse",
                "12m",
                warning(**SHOP, pod="b"),
                warning(**SHOP, pod="c"),
            ),
        ],
    },
    {  # one of two gateways stops answering at 6m; another app's failing target is not ours
        "input_series": [
            series("up", "1x5 0x30", instance="10.0.0.2:9102"),
            series("up", "1x40", instance="10.0.0.3:9102"),
            {"series": 'up{job="shop/other-app", instance="10.0.0.9:8080"}', "values": "0x40"},
        ],
        "alert_rule_test": [
            expect("WebhookGatewayScrapeFailing", "10m"),
            expect("WebhookGatewayScrapeFailing", "11m", warning(**SHOP, instance="10.0.0.2:9102")),
            expect("WebhookGatewayNotScraped", "30m"),
        ],
    },
    {  # no gateway is scraped at all (a plain scrape job named webhook-gateway stops at 5m)
        "input_series": [
            {"series": 'up{job="shop/other-app", instance="10.0.0.9:8080"}', "values": "1x40"},
            {
                "series": 'up{job="webhook-gateway", instance="127.0.0.1:9102"}',
                "values": "1x5 0x30",
            },
        ],
        "alert_rule_test": [
            expect("WebhookGatewayNotScraped", "15m"),
            expect("WebhookGatewayNotScraped", "16m", warning()),
        ],
    },
    {  # inbox: half its acks near 0.5 s; github: all fast; rare: slow but 1 ack per 10 minutes
        "input_series": [
            *ack_buckets("inbox", 50, 50),
            *ack_buckets("github", 100, 0),
            *ack_buckets("rare", 0, 0.1),
        ],
        "alert_rule_test": [
            expect("WebhookGatewayAckLatencyHigh", "10m"),
            expect("WebhookGatewayAckLatencyHigh", "12m", warning(**SHOP, source="inbox")),
        ],
    },
]


@needs_promtool
def test_every_alert_fires_on_its_condition_after_its_for_and_not_on_look_alikes(
    tmp_path: Path,
) -> None:
    assert PROMTOOL is not None
    # promtool would compare annotations too: `check rules` parses their templates and
    # the real Prometheus below renders them.
    rules = write_rules(tmp_path, annotations=False)
    tests = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", **case} for case in PROMTOOL_TESTS],
    }
    tested = {t["alertname"] for case in PROMTOOL_TESTS for t in case["alert_rule_test"]}
    assert tested == set(alerts())
    path = tmp_path / "alerts.test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        [PROMTOOL, "test", "rules", path.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- a real Prometheus


class Prometheus:
    """The distribution's prometheus on a free port, temp config and storage."""

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        assert PROMETHEUS is not None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config_path = directory / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = directory / "prometheus.log"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        wait_until(self.ready, timeout=20, what="prometheus /-/ready")

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited: {self.log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return int(response.status) == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return dict(json.load(answer))
        except urllib.error.HTTPError as exc:  # a bad query is a 400 with a JSON body
            with exc:
                return dict(json.load(exc))

    def query(self, expr: str, at: float | None = None) -> dict[str, Any]:
        return self.api("/api/v1/query", query=expr, time=str(at or time.time()))

    def vector(self, expr: str) -> list[dict[str, Any]]:
        answer = self.query(expr)
        assert answer["status"] == "success", (expr, answer)
        return list(answer["data"]["result"])

    def label_values(self, label: str, match: str) -> list[str]:
        answer = self.api(f"/api/v1/label/{label}/values", **{"match[]": match})
        assert answer["status"] == "success", answer
        return list(answer["data"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Load:
    """Mixed traffic on a thread until stopped. Each round: a new event (accepted), the
    same again (duplicate), invalid JSON (400), a forged signature (401), an unknown
    path (404); every 10th event the app refuses (422: dead letter), every 10th+5 it
    fails once (503: retried, then delivered)."""

    PAUSE = 0.02  # between rounds: a steady rate for the scrapes to see, not synchronization

    def __init__(self, gw: GatewayProcess, sink: Sink, secret: str) -> None:
        self.gw, self.sink = gw, sink
        self.forged = SIGNERS["github"](new_secret("github"))  # not the gateway's secret
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.unexpected: list[str] = []
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _check(self, what: str, answer: Answer, status: int) -> None:
        self.statuses[(what, answer.status)] += 1
        if answer.status != status:
            self.unexpected.append(f"{what}: {answer.status} {answer.body[:200]!r}")

    def _forged(self) -> Answer:
        poster = Poster(self.gw.port, "/webhooks/github")
        try:
            poster.conn.request("POST", poster.path, self.forged.body, self.forged.headers)
            response = poster.conn.getresponse()
            return Answer(response.status, response.read(), {})
        finally:
            poster.close()

    def _run(self) -> None:
        poster = Poster(self.gw.port)
        try:
            while not self._stop.wait(self.PAUSE):
                self.rounds += 1
                key = f"load-{self.rounds}"
                if self.rounds % 10 == 0:
                    self.sink.plan(key, 422)
                elif self.rounds % 10 == 5:
                    self.sink.plan(key, 503)
                self._check("new", poster.post(with_key(key)), 200)
                self._check("duplicate", poster.post(with_key(key)), 200)
                self._check("invalid", post_once(self.gw.port, b'{"idempotency_key": '), 400)
                self._check("forged", self._forged(), 401)
                self._check("unknown", post_once(self.gw.port, with_key(key), "/nope"), 404)
        except Exception as exc:  # the test reports it
            self.unexpected.append(f"load stopped: {exc!r}")
        finally:
            poster.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


@pytest.fixture
def prometheus_binary() -> str:
    if PROMETHEUS is None:
        pytest.skip("the prometheus server is not installed (apt-get install prometheus)")
    return PROMETHEUS


def finite(result: list[dict[str, Any]]) -> list[float]:
    """The finite values of an instant vector or a range matrix."""
    values = [s["value"] for s in result if "value" in s]
    values += [v for s in result for v in s.get("values", [])]
    return [float(v) for _, v in values if math.isfinite(float(v))]


@pytest.mark.integration
def test_a_real_prometheus_scraping_a_loaded_gateway_answers_every_query_and_alert(
    prometheus_binary: str,
    start_gateway: Callable[..., GatewayProcess],
    sink: Sink,
    tmp_path: Path,
) -> None:
    secret = new_secret("github")
    config = config_variant(
        tmp_path,
        {
            "sources": {
                "github": {
                    "kind": "github",
                    "path": "/webhooks/github",
                    "secrets": [{"env": "WEBHOOK_SECRET"}],
                }
            },
            "routes": [
                {"source": "inboxcomponents", "events": ["*"], "targets": ["app"]},
                {"source": "github", "events": ["*"], "targets": ["app"]},
            ],
        },
    )
    gw = start_gateway(
        config=config,
        WEBHOOK_SECRET=secret,
        FORWARD_BACKOFF_INITIAL="50ms",
        FORWARD_BACKOFF_MAX="200ms",
    )
    nobody = free_port()  # an operator-style job name whose target does not answer
    prom = Prometheus(
        tmp_path,
        {
            "global": {
                "scrape_interval": f"{SCRAPE_INTERVAL}s",
                "scrape_timeout": f"{SCRAPE_INTERVAL}s",
                "evaluation_interval": f"{SCRAPE_INTERVAL}s",
            },
            "rule_files": [str(write_rules(tmp_path))],
            "scrape_configs": [
                {
                    "job_name": "webhook-gateway",
                    "static_configs": [{"targets": [f"127.0.0.1:{gw.admin_port}"]}],
                },
                {
                    "job_name": "monitoring/webhook-gateway",
                    "static_configs": [{"targets": [f"127.0.0.1:{nobody}"]}],
                },
            ],
        },
    )
    started = time.time()
    load = Load(gw, sink, secret)
    try:
        scraped(prom)
        check_alert_expressions(prom, nobody)
        check_dashboard_queries(prom, gw, started)
    finally:
        load.stop()
        prom.close()
    assert load.unexpected == []
    assert {what for what, _ in load.statuses} == {
        "new",
        "duplicate",
        "invalid",
        "forged",
        "unknown",
    }
    assert load.rounds >= 20


def scraped(prom: Prometheus) -> None:
    """Wait (polling Prometheus) until it holds enough of the load to graph: 8 scrapes,
    every status code, a dead letter and a retry, and the rules evaluated on them."""
    gw = 'job="webhook-gateway"'

    def has(expr: str) -> bool:
        return prom.vector(expr) != []

    conditions = [
        f"count_over_time(webhook_gateway_build_info{{{gw}}}[1m]) >= 8",
        "count(count by (code) ("
        f'webhook_gateway_requests_total{{{gw}, code=~"200|400|401|404"}})) == 4',
        f"sum(webhook_gateway_dead_letter_total{{{gw}}}) > 0",
        f'sum(webhook_gateway_forward_attempts_total{{{gw}, outcome="http_error"}}) > 2',
        'ALERTS{alertname="WebhookGatewayDeadLetters", alertstate="pending"}',
        'ALERTS{alertname="WebhookGatewayScrapeFailing", alertstate="pending"}',
    ]
    for expr in conditions:
        wait_until(lambda e=expr: has(e), timeout=30, what=f"prometheus: {expr}")


def check_alert_expressions(prom: Prometheus, nobody: int) -> None:
    """Every alert parses and evaluates; in this healthy run only the dead letters (the
    load makes them) and the unanswered operator-style target fire; and Prometheus
    itself evaluates every loaded rule without error."""
    firing = {}
    for name, rule in alerts().items():
        answer = prom.query(rule["expr"])
        assert answer["status"] == "success", (name, answer)
        firing[name] = answer["data"]["result"]
    assert {name for name, result in firing.items() if result} == {
        "WebhookGatewayDeadLetters",
        "WebhookGatewayScrapeFailing",
    }
    ((dead,),) = [firing["WebhookGatewayDeadLetters"]]
    assert dead["metric"]["target"] == "app"
    ((down,),) = [firing["WebhookGatewayScrapeFailing"]]
    assert down["metric"]["job"] == "monitoring/webhook-gateway"
    rendered = {a["labels"]["alertname"]: a for a in prom.api("/api/v1/alerts")["data"]["alerts"]}
    assert set(rendered) == {"WebhookGatewayDeadLetters", "WebhookGatewayScrapeFailing"}
    for alert in rendered.values():
        for text in alert["annotations"].values():
            assert "<no value>" not in text, text
            assert "error expanding" not in text, text
    dead_letters = rendered["WebhookGatewayDeadLetters"]["annotations"]
    assert dead_letters["summary"] == "Events for app are being dead-lettered"
    assert "event(s) for target app (webhook-gateway)" in dead_letters["description"]
    assert (
        f"127.0.0.1:{nobody}" in rendered["WebhookGatewayScrapeFailing"]["annotations"]["summary"]
    )
    groups = prom.api("/api/v1/rules")["data"]["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(loaded) == set(alerts())
    assert {n: (r["health"], r.get("lastError", "")) for n, r in loaded.items()} == {
        n: ("ok", "") for n in alerts()
    }


def check_dashboard_queries(prom: Prometheus, gw: GatewayProcess, started: float) -> None:
    """The variables resolve as Grafana resolves them, then every query, with them
    substituted, parses and returns data both as an instant query (a stat) and over
    the load's time range (a graph), for one selected instance and for All."""
    job_query = variables()["job"]["query"]["query"]
    metric = re.fullmatch(r"label_values\((.+), job\)", job_query)
    assert metric is not None
    assert prom.label_values("job", metric.group(1)) == ["webhook-gateway"]
    instance_query = variables()["instance"]["query"]["query"]
    match = re.fullmatch(r"label_values\((.+), instance\)", instance_query)
    assert match is not None
    here = f"127.0.0.1:{gw.admin_port}"
    instances = prom.label_values(
        "instance", substitute(match.group(1), {"job": "webhook-gateway"})
    )
    assert instances == [here]

    now = time.time()
    grafana = {"__rate_interval": RATE_INTERVAL, "__interval": f"{SCRAPE_INTERVAL}s"}
    grafana["__range"] = f"{math.ceil(now - started)}s"
    selections = [
        {"job": "webhook-gateway", "instance": re.escape(here).replace("\\", "\\\\")},
        {"job": ".*", "instance": ".*"},  # "All" (allValue)
    ]
    results: dict[str, list[dict[str, Any]]] = {}
    for selection in selections:
        for title, ref, expr in queries():
            promql = substitute(expr, {**grafana, **selection})
            instant = prom.query(promql, at=now)
            assert instant["status"] == "success", (title, ref, promql, instant)
            assert finite(instant["data"]["result"]), (title, ref, promql, "no data now")
            graph = prom.api(
                "/api/v1/query_range", query=promql, start=str(started), end=str(now), step="1s"
            )
            assert graph["status"] == "success", (title, ref, promql, graph)
            assert finite(graph["data"]["result"]), (title, ref, promql, "no data in range")
            results.setdefault(f"{title}/{ref}", graph["data"]["result"])

    def labels(key: str, label: str) -> set[str]:
        return {s["metric"].get(label, "") for s in results[key] if any(v > 0 for v in finite([s]))}

    assert {"200", "400", "401", "404"} <= labels("Requests by status code/A", "code")
    assert {"bad_signature", "invalid_json"} <= labels("Rejected requests by reason/A", "reason")
    assert {"delivered", "http_error"} <= labels("Forward attempts by outcome/A", "outcome")
    assert labels("Dead letters/A", "target") == {"app"}
    for key in ("Admitted vs delivered vs duplicates/A", "Admitted vs delivered vs duplicates/C"):
        assert max(finite(results[key])) > 0, key  # admitted, duplicates
