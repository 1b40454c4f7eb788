"""What the pairs group found: its summary, its section of the report and the two ingest
ratio rows of the targets table. Pure: no I/O here.

benchmarks/pairs.py measures; report.py places the section rendered here, and targets.py
takes the rows' `found` dicts. Like process_report.py, it does not import the harness.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

GATEWAY = "gateway"
BASES = ("bare_admit", "bare")  # what the gateway's req/s is divided by, round by round


def round_order(round_: int) -> tuple[str, ...]:
    """The systems in the order round `round_` (from 1) runs them: odd rounds the gateway
    first, even rounds last, so no system always runs first, or always after another."""
    order = (GATEWAY, *BASES)
    return order if round_ % 2 else order[::-1]


def round_ratios(runs: Sequence[dict[str, Any]], base: str) -> list[float | None]:
    """req/s of the gateway over `base`'s, per round (None: a side failed)."""
    rps = {(r["round"], r["system"]): _rps(r) for r in runs}
    ratios = []
    for round_ in sorted({r["round"] for r in runs}):
        gateway, other = rps.get((round_, GATEWAY)), rps.get((round_, base))
        ratios.append(round(gateway / other, 6) if gateway and other else None)
    return ratios


def pairs_summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per system the range of req/s; per baseline the ratio of each round, and their
    median (None when no round measured both sides)."""
    systems = {}
    for system in (GATEWAY, *BASES):
        found = [rps for r in runs if r["system"] == system and (rps := _rps(r)) is not None]
        systems[system] = {"rps": [min(found), max(found)] if found else None, "runs": len(found)}
    ratios = {base: round_ratios(runs, base) for base in BASES}
    medians = {base: _median(found) for base, found in ratios.items()}
    return {"systems": systems, "ratios": ratios, "median": medians}


def _rps(run: dict[str, Any]) -> float | None:
    """A run's req/s, if it counts: not one whose server exited during the load."""
    return run.get("rps") if run.get("usable", True) else None


def _median(values: Sequence[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return round(statistics.median(found), 6) if found else None


# -- the targets' two ingest ratio rows ----------------------------------------------------


def has_ratio(p: dict[str, Any], base: str) -> bool:
    """Whether the targets take the ratio to `base` from this pairs group: every run of
    it was usable, and at least one round measured both sides (FastAPI is not in it)."""
    return bool(p.get("usable")) and p["summary"]["median"].get(base) is not None


def ratio_target(p: dict[str, Any], base: str, bound: float) -> dict[str, Any]:
    """The median of the per-round ratios, with each round's ratio and both sides' req/s
    in the basis; not clean when any run of the group raised a flag."""
    value = p["summary"]["median"][base]
    ratios = p["summary"]["ratios"][base]
    counted = sum(r is not None for r in ratios)
    rounds = f"{counted} of {len(ratios)}" if counted < len(ratios) else f"{len(ratios)}"
    systems = p["summary"]["systems"]
    basis = (
        f"median of {rounds} interleaved round{'' if len(ratios) == 1 else 's'}:"
        f" {', '.join(_ratio(r) for r in ratios)} ({GATEWAY} {_span(systems[GATEWAY]['rps'])}"
        f" / {base} {_span(systems[base]['rps'])} req/s; the pairs section below)"
    )
    clean = not p["flags"]
    return {"value": value, "met": value >= bound, "basis": basis, "shown": None, "clean": clean}


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _span(pair: list[float] | None) -> str:
    if pair is None:
        return "—"
    low, high = (f"{v:,.0f}" for v in pair)
    return low if low == high else f"{low}-{high}"


# -- the report's section --------------------------------------------------------------------


def pairs_section(p: dict[str, Any]) -> list[str]:
    """req/s of each system per round, the gateway's ratios per round and their medians,
    and how they were measured."""
    title = "## Gateway vs bare_admit and bare, interleaved rounds"
    if p.get("error"):
        return [title, f"✗ failed: {p['error']}"]
    rounds = list(range(1, p["rounds"] + 1))
    header = "| | " + " | ".join(f"round {n}" for n in rounds) + " | median | status |"
    header += "\n|---|" + "--:|" * (len(rounds) + 1) + "---|"
    rows = [_system_row(p["runs"], system, rounds) for system in (GATEWAY, *BASES)]
    for base in BASES:
        ratios, median = p["summary"]["ratios"][base], p["summary"]["median"][base]
        cells = [f"{GATEWAY} / {base}", *map(_ratio, ratios), f"**{_ratio(median)}**", ""]
        rows.append("| " + " | ".join(cells) + " |")
    return [title, "\n".join([header, *rows]), _pairs_note(p)]


def _system_row(runs: Sequence[dict[str, Any]], system: str, rounds: list[int]) -> str:
    mine = {r["round"]: r for r in runs if r["system"] == system}
    rps = [_rps(mine[n]) if n in mine else None for n in rounds]
    found = [v for v in rps if v is not None]
    median = f"{statistics.median(found):,.0f}" if found else "—"
    # A failed run's flag carries the child's log tail: its first line only, in a cell.
    flags = [f"round {n}: {f.splitlines()[0]}" for n, r in mine.items() for f in r["flags"]]
    status = "ok" if not flags else "⚠ " + "; ".join(flags)
    cells = [f"{system} req/s", *("—" if v is None else f"{v:,.0f}" for v in rps), median]
    return "| " + " | ".join([*cells, status.replace("|", "/")]) + " |"


def _pairs_note(p: dict[str, Any]) -> str:
    orders = "; ".join(
        f"round {n}: {', '.join(order)}" for n, order in enumerate(p["orders"], start=1)
    )
    warmup = f"a {p['warmup_s']} s wrk warm-up, then" if p["warmup_s"] else "no warm-up (smoke);"
    return (
        f"The gateway, bare_admit and bare in {interleaved_rounds(p['rounds'])}, the order"
        f" reversed every other round ({orders}), so that a drift of the machine over the"
        " group falls on all three alike and none always runs first. Each run: a fresh start"
        " of the system exactly as the ingest group starts it, on an emptied Redis (the run's"
        f" own), {warmup} one measurement of the ingest `throughput` scenario,"
        f" `{p['wrk']}`{_retries(p)}. {p['pinning']} Ratios: the gateway's req/s over the"
        " baseline's in the same round; the targets take their median. The ingest group"
        " measures each system once, one after another, minutes apart."
    )


def interleaved_rounds(n: int) -> str:
    return f"{n} interleaved round{'' if n == 1 else 's'}"


def _retries(p: dict[str, Any]) -> str:
    retries = p.get("retries")
    if not retries:
        return ""
    return (
        f" (measured again, up to {retries} times, while processes outside the run used CPU;"
        " the least disturbed attempt kept, as in ingest)"
    )
