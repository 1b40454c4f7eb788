"""What a delivery run's gateway says beyond the sink's count: its queue after the
run, its delivery and store-error counters, and the warnings and errors it logged.
A row with any of these is flagged (benchmarks/delivery.py).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Collection

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.backlog import QueueState
from benchmarks.children import Child
from benchmarks.outcomes import DeliveryOutcome
from benchmarks.systems import Launch


def check_count(outcome: DeliveryOutcome) -> None:
    if outcome.events != outcome.expected:
        outcome.problems.append(f"sink counted {outcome.events}, expected {outcome.expected}")


def check_gateway(
    outcome: DeliveryOutcome, gateway: Child, launch: Launch, state: QueueState
) -> None:
    """What the gateway's queue, metrics and log say beyond the sink's count."""
    outcome.facts["queue_after"] = state.as_dict()
    if state.dead or state.retrying:
        outcome.problems.append(f"{state.dead} dead-lettered, {state.retrying} waiting to retry")
    counters = gateway_counters(launch.ready_url.replace("/readyz", "/metrics"))
    outcome.facts["gateway_counters"] = counters
    failed = {k: v for k, v in counters.items() if v and not k.endswith("delivered")}
    if failed:
        counted = ", ".join(f"{name} {value:g}" for name, value in failed.items())
        outcome.problems.append(f"gateway counted {counted}")
    logged = log_problems(gateway.output())
    outcome.facts["gateway_log"] = logged
    if logged:
        lines = ", ".join(f"{event} x{n}" for event, n in logged.items())
        outcome.problems.append(f"gateway logged {lines}")


COUNTED = (
    "webhook_gateway_forward_attempts",
    "webhook_gateway_store_errors",
    "webhook_gateway_dead_letter",
)


def gateway_counters(metrics_url: str) -> dict[str, float]:
    """The gateway's delivery and store-error counters, e.g. "forward_attempts delivered"."""
    try:
        return counter_totals(metrics_url, COUNTED, timeout=2.0)
    except (urllib.error.URLError, OSError) as exc:
        return {f"unreadable: {exc}": 0.0}


def counter_totals(
    metrics_url: str, families: Collection[str], *, timeout: float
) -> dict[str, float]:
    """The counters of `families` on a gateway's /metrics page, summed by their outcome
    or op label (keyed e.g. "forward_attempts delivered"); URLError if unreadable."""
    with urllib.request.urlopen(metrics_url, timeout=timeout) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in families:
            continue
        for sample in family.samples:
            labels = sample.labels.get("outcome") or sample.labels.get("op") or ""
            name = f"{family.name.removeprefix('webhook_gateway_')} {labels}".strip()
            found[name] = found.get(name, 0.0) + sample.value
    return found


def log_problems(output: str) -> dict[str, int]:
    """Warning and error log lines of the gateway, counted by event (LOG_LEVEL=warning)."""
    counts: Counter[str] = Counter()
    for line in output.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            counts["unstructured output"] += 1
            continue
        if isinstance(entry, dict) and entry.get("level") in ("warning", "error", "critical"):
            counts[f"{entry['level']} {entry.get('event')}"] += 1
    return dict(counts)
