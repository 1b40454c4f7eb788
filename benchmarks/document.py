"""A run as one JSON document: its facts, each outcome's JSON, and the targets computed
from them (benchmarks/targets.py). Pure: no I/O here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.drain_rounds import rounds_json
from benchmarks.outcomes import (
    DeliveryOutcome,
    Scenario,
    SystemOutcome,
    delivery_json,
    rounded,
    scenario_json,
)
from benchmarks.targets import targets


def document(
    *,
    run: dict[str, Any],
    machine: dict[str, Any],
    scenarios: Sequence[Scenario],
    outcomes: Sequence[SystemOutcome],
    delivery: Sequence[DeliveryOutcome] = (),
    delivery_settings: dict[str, Any] | None = None,
    pairs: dict[str, Any] | None = None,
    workers: dict[str, Any] | None = None,
    footprint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`delivery`: every delivery measurement, those of the interleaved rounds of post and
    drain with their round (round 1's are the `results` rows). `pairs`, `workers`,
    `footprint`: those groups' JSON (benchmarks/pairs.py, workers.py, footprint.py), None
    when they did not run."""
    doc: dict[str, Any] = {
        "run": run,
        "machine": machine,
        "scenarios": {
            s.name: {
                "connections": s.connections,
                "threads": s.threads,
                "script": s.script,
                "payload": s.payload,
                "rate_of": s.rate_of,
                "rate_share": s.rate_share if s.rate_of else None,
                "about": s.about,
            }
            for s in scenarios
        },
        "systems": {
            o.name: {
                "description": o.description,
                "argv": o.argv,
                "usable": o.usable,
                "error": o.error,
                "ready_s": rounded(o.ready_s),
                "scenarios": {s.scenario: scenario_json(s) for s in o.scenarios},
            }
            for o in outcomes
        },
        "delivery": {
            **(delivery_settings or {}),
            "results": {o.scenario: delivery_json(o) for o in delivery if o.round in (None, 1)},
        },
    }
    rounds = _delivery_rounds(delivery)
    if rounds:
        doc["delivery"] |= rounds_json(rounds)
    groups = {"pairs": pairs, "workers": workers, "footprint": footprint}
    doc |= {name: group for name, group in groups.items() if group is not None}
    doc["targets"] = targets(doc)
    return doc


def _delivery_rounds(delivery: Sequence[DeliveryOutcome]) -> list[dict[str, dict[str, Any]]]:
    """Round by round, the JSON of its measurements by scenario (post, drain)."""
    rounds: dict[int, dict[str, dict[str, Any]]] = {}
    for o in delivery:
        if o.round is not None:
            rounds.setdefault(o.round, {})[o.scenario] = delivery_json(o)
    return [rounds[n] for n in sorted(rounds)]
