"""Issue 6's targets, as ratios of a run's own measurements: one row per target, computed
from the run's JSON document. Pure: no I/O here.

The workers and footprint rows come from benchmarks/process_report.py's `found` dicts,
the gateway's req/s vs bare, bare + admit and FastAPI from benchmarks/pairs_report.py's
when the run has a usable pairs group, and the drain vs the bare client from
benchmarks/drain_rounds.py's when the delivery group's rounds give a median;
benchmarks/report.py renders the rows as the report's first table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks import drain_rounds, pairs_report, process_report
from benchmarks.outcomes import LATENCY_C1, LATENCY_HALF, THROUGHPUT, rounded

GATEWAY = "gateway"


@dataclass(frozen=True, slots=True)
class _Num:
    """One measured number, where it came from, and whether its run was clean."""

    value: float
    label: str
    clean: bool


def _ingest(doc: dict[str, Any], system: str, scenario: str, key: str) -> _Num | None:
    s = doc["systems"].get(system, {}).get("scenarios", {}).get(scenario)
    if not s or s.get(key) is None:
        return None
    return _Num(float(s[key]), f"{system} {scenario}", not s["flags"])


def _delivered(doc: dict[str, Any], scenario: str, key: str = "rps") -> _Num | None:
    r = doc.get("delivery", {}).get("results", {}).get(scenario)
    if not r or r.get(key) is None:
        return None
    return _Num(float(r[key]), f"{r['system']} {scenario}", not r["flags"])


def _target(
    measure: str,
    goal: str,
    value: float | None,
    met: bool | None,
    basis: str,
    inputs: Sequence[_Num | None],
    shown: str | None = None,
) -> dict[str, Any]:
    """`shown`: the measured cell as text, where a number and a unit would not say it."""
    clean = all(n is not None and n.clean for n in inputs)
    return {
        "measure": measure,
        "target": goal,
        "value": rounded(value, 6),  # 3 digits, then :.2f, rounded 0.2245 up to 0.23
        "met": met,
        "basis": basis,
        # A row not measured has nothing to be clean or not.
        "clean": clean if inputs and value is not None else None,
        "shown": shown,
    }


def _group_target(measure: str, goal: str, found: dict[str, Any]) -> dict[str, Any]:
    """A row from a group's `found` dict (process_report's: workers, footprint;
    pairs_report's: pairs; drain_rounds': the delivery rounds)."""
    value = found["value"]
    num = _Num(0.0 if value is None else value, measure, found["clean"])
    return _target(measure, goal, value, found["met"], found["basis"], [num], found["shown"])


def _limit_target(
    measure: str,
    goal: str,
    num: _Num | None,
    limit: float,
    basis: Callable[[_Num], str],
    scale: float = 1.0,
) -> dict[str, Any]:
    """A measured value against an upper limit (shown times `scale`)."""
    if num is None:
        return _target(measure, goal, None, None, "not measured in this run", [num])
    return _target(measure, goal, num.value * scale, num.value <= limit, basis(num), [num])


def _ratio_target(
    measure: str, bound: float, num: _Num | None, den: _Num | None, unit: str, *, at_most: bool
) -> dict[str, Any]:
    goal = f"{'≤' if at_most else '≥'} {bound:g}x"
    if num is None or den is None or not den.value:
        return _target(measure, goal, None, None, "not measured in this run", [num, den])
    ratio = num.value / den.value
    basis = f"{num.label} {num.value:,.0f} / {den.label} {den.value:,.0f} {unit}"
    met = ratio <= bound if at_most else ratio >= bound
    return _target(measure, goal, ratio, met, basis, [num, den])


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 6's target table, each row computed from this run only (None: not measured)."""
    rps = {name: _ingest(doc, name, THROUGHPUT, "rps") for name in (GATEWAY, *_BASES)}
    rows = [
        _ingest_ratio_row(doc, rps, name, label, bound)
        for name, label, bound in (
            ("bare", "bare", 0.45),
            ("bare_admit", "bare + admit", 1.0),
            ("fastapi", "FastAPI", 10.0),
        )
    ]
    rows.append(
        _ratio_target(
            "end to end delivered/s (load + drain) vs bare",
            0.25,
            _delivered(doc, "e2e"),
            rps["bare"],
            "/s",
            at_most=False,
        )
    )
    rows.append(
        _limit_target(
            "backlog back to 0 after the load stops", "≤ 2 s",
            _delivered(doc, "e2e", "drain_s"), 2.0,
            lambda n: f"{n.value:.2f} s (gateway e2e)",
        )
    )  # fmt: skip
    rows.append(
        _ratio_target(
            "p50 ack latency, 1 connection, vs bare + one awaited Redis call",
            1.3,
            _ingest(doc, GATEWAY, LATENCY_C1, "p50_us"),
            _ingest(doc, "bare_call", LATENCY_C1, "p50_us"),
            "µs",
            at_most=True,
        )
    )
    rows.append(
        _limit_target(
            "p99 ack latency at half the maximum rate (ms)", "≤ 1 ms",
            _ingest(doc, GATEWAY, LATENCY_HALF, "p99_us"), 1000,
            lambda n: f"{n.label} {n.value:,.0f} µs", scale=1 / 1000,
        )
    )  # fmt: skip
    rows += [_drain_row(doc), _ready_row(doc), _rss_row(doc), _workers_row(doc)]
    return rows


def _ingest_ratio_row(
    doc: dict[str, Any], rps: dict[str, _Num | None], base: str, label: str, bound: float
) -> dict[str, Any]:
    """The gateway's req/s over `base`'s: the median of the pairs group's interleaved
    rounds when it measured them (the drift between systems measured minutes apart falls
    on both sides alike there); without it, the sequential ingest numbers."""
    measure = f"ingest-only acked req/s vs {label}"
    pairs = doc.get("pairs")
    if pairs is not None and pairs_report.has_ratio(pairs, base):
        found = pairs_report.ratio_target(pairs, base, bound)
        return _group_target(measure, f"≥ {bound:g}x", found)
    row = _ratio_target(measure, bound, rps[GATEWAY], rps[base], "req/s", at_most=False)
    if pairs is not None and base in pairs_report.BASES:
        row["basis"] += "; sequential ingest runs: the pairs group was not usable"
    return row


DRAIN = "forwarder draining a pre-filled stream vs a bare httptools client"


def _drain_row(doc: dict[str, Any]) -> dict[str, Any]:
    """The gateway's drain over the bare client's post: the median of the delivery
    group's interleaved rounds when enough of them measured both (the machine's drift
    between two measurements falls on both sides alike there); without, round 1's
    single ratio, the Delivery table's rows."""
    bound, delivery = 0.5, doc.get("delivery", {})
    if drain_rounds.has_median(delivery):
        found = drain_rounds.ratio_target(delivery, bound)
        return _group_target(DRAIN, f"≥ {bound:g}x", found)
    drain, post = _delivered(doc, "drain"), _delivered(doc, "post")
    row = _ratio_target(DRAIN, bound, drain, post, "events/s", at_most=False)
    return drain_rounds.single_round(row, delivery)


_BASES = ("bare", "bare_admit", "bare_call", "fastapi")
READY, RSS, WORKERS = "exec to /readyz 200", "RSS after 1M events", "2 workers vs 1 (SO_REUSEPORT)"


def _ready_row(doc: dict[str, Any]) -> dict[str, Any]:
    """The footprint group's starts; without it, the ingest gateway's one start."""
    if "footprint" in doc:
        return _group_target(READY, "≤ 1 s", process_report.ready_target(doc["footprint"]))
    ready = doc["systems"].get(GATEWAY, {}).get("ready_s")
    if ready is None:
        return _target(READY, "≤ 1 s", None, None, "not measured in this run", [])
    basis = f"{ready:.2f} s (gateway, ingest config; polled every 20 ms)"
    return _target(READY, "≤ 1 s", ready, ready <= 1.0, basis, [])


def _rss_row(doc: dict[str, Any]) -> dict[str, Any]:
    """The footprint group's; without it, not the target's measurement: what this run saw."""
    goal = "≤ 80 MB, no growth"
    if "footprint" in doc:
        return _group_target(RSS, goal, process_report.rss_target(doc["footprint"]))
    gateway = doc["systems"].get(GATEWAY, {}).get("scenarios", {})
    rss = [s["rss_mb"] for s in gateway.values() if s.get("rss_mb") is not None]
    requests = sum(s.get("requests", 0) for s in gateway.values())
    basis = "not measured by this harness"
    if rss:
        basis += f" (gateway RSS after this run's {requests:,} ingest requests: {rss[-1]:.0f} MB)"
    return _target(RSS, goal, None, None, basis, [])


def _workers_row(doc: dict[str, Any]) -> dict[str, Any]:
    if "workers" in doc:
        return _group_target(WORKERS, "reported", process_report.workers_target(doc["workers"]))
    return _target(WORKERS, "reported", None, None, "not measured by this harness", [])
