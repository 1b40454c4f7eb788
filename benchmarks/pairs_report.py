"""What the pairs group found: its summary, its section of the report and the three ingest
ratio rows of the targets table. Pure: no I/O here.

benchmarks/pairs.py measures; report.py places the section rendered here, and targets.py
takes the rows' `found` dicts. Like process_report.py, it does not import the harness.
The pieces of any group of interleaved rounds (the order, the ratios, their median, the
table) serve the delivery group's rounds too (benchmarks/drain_rounds.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

GATEWAY = "gateway"
# What the gateway's req/s is divided by, round by round. FastAPI joined them after the
# 22:50 UTC run of 2026-12-07: measured in the sequential ingest group, minutes from the
# gateway, its ratio moved between 7.49x and 11.84x in the runs the README lists, around
# the target's 10x; interleaved, a drift of the machine falls on both sides alike.
BASES = ("bare_admit", "bare", "fastapi")


def round_order(round_: int) -> tuple[str, ...]:
    """The systems in the order round `round_` (from 1) runs them: odd rounds the gateway
    first, even rounds last."""
    return alternating((GATEWAY, *BASES), round_)


def alternating(order: tuple[str, ...], round_: int) -> tuple[str, ...]:
    """`order` in odd rounds (from 1), reversed in even ones, so no system always runs
    first, or always after another."""
    return order if round_ % 2 else order[::-1]


def round_ratios(runs: Sequence[dict[str, Any]], base: str) -> list[float | None]:
    """req/s of the gateway over `base`'s, per round (None: a side failed)."""
    rps = {(r["round"], r["system"]): usable_rps(r) for r in runs}
    rounds = sorted({r["round"] for r in runs})
    return [ratio(rps.get((n, GATEWAY)), rps.get((n, base))) for n in rounds]


def ratio(over: float | None, under: float | None) -> float | None:
    """One round's ratio; None when either side has no number."""
    return round(over / under, 6) if over and under else None


def pairs_summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per system the range of req/s; per baseline the ratio of each round, and their
    median (None when no round measured both sides)."""
    systems = {}
    for system in (GATEWAY, *BASES):
        mine = [r for r in runs if r["system"] == system]
        counted = sum(usable_rps(r) is not None for r in mine)
        systems[system] = {"rps": rps_range(mine), "runs": counted}
    ratios = {base: round_ratios(runs, base) for base in BASES}
    medians = {base: median(found) for base, found in ratios.items()}
    return {"systems": systems, "ratios": ratios, "median": medians}


def usable_rps(run: dict[str, Any]) -> float | None:
    """A run's rate, if it counts: not one whose server exited during the load."""
    return run.get("rps") if run.get("usable", True) else None


def rps_range(runs: Sequence[dict[str, Any]]) -> list[float] | None:
    """[lowest, highest] of the runs' rates that count; None when none does."""
    found = [rps for r in runs if (rps := usable_rps(r)) is not None]
    return [min(found), max(found)] if found else None


def median(values: Sequence[float | None]) -> float | None:
    """The median of the rounds that have a number; None when none has."""
    found = [v for v in values if v is not None]
    return round(statistics.median(found), 6) if found else None


# -- the targets' three ingest ratio rows ----------------------------------------------------


def has_ratio(p: dict[str, Any], base: str) -> bool:
    """Whether the targets take the ratio to `base` from this pairs group: every run of
    it was usable, and at least one round measured both sides."""
    return bool(p.get("usable")) and p["summary"]["median"].get(base) is not None


def ratio_target(p: dict[str, Any], base: str, bound: float) -> dict[str, Any]:
    """The median of the per-round ratios, with each round's ratio and both sides' req/s
    in the basis; not clean when any run of the group raised a flag."""
    systems = p["summary"]["systems"]
    over = f"{GATEWAY} {span_text(systems[GATEWAY]['rps'])}"
    under = f"{base} {span_text(systems[base]['rps'])} req/s"
    ratios = p["summary"]["ratios"][base]
    return median_target(ratios, bound, over, under, "the pairs section", clean=not p["flags"])


def median_target(
    ratios: Sequence[float | None],
    bound: float,
    over: str,
    under: str,
    section: str,
    *,
    clean: bool,
) -> dict[str, Any]:
    """A targets row's `found` dict: the median of the per-round ratios (at least one),
    each round's ratio and what `over` / `under` ranged over in the basis."""
    value = median(ratios)
    assert value is not None, "a median target needs a round with both sides"
    counted = sum(r is not None for r in ratios)
    rounds = f"{counted} of {len(ratios)}" if counted < len(ratios) else f"{len(ratios)}"
    basis = (
        f"median of {rounds} interleaved round{'' if len(ratios) == 1 else 's'}:"
        f" {', '.join(map(ratio_text, ratios))} ({over} / {under}; {section} below)"
    )
    return {"value": value, "met": value >= bound, "basis": basis, "shown": None, "clean": clean}


def ratio_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def span_text(pair: list[float] | None) -> str:
    if pair is None:
        return "—"
    low, high = (f"{v:,.0f}" for v in pair)
    return low if low == high else f"{low}-{high}"


# -- the report's section --------------------------------------------------------------------


def pairs_section(p: dict[str, Any]) -> list[str]:
    """req/s of each system per round, the gateway's ratios per round and their medians,
    and how they were measured."""
    title = "## Gateway vs bare_admit, bare and FastAPI, interleaved rounds"
    if p.get("error"):
        return [title, f"✗ failed: {p['error']}"]
    rounds = list(range(1, p["rounds"] + 1))
    rows = [
        rounds_row(f"{system} req/s", [r for r in p["runs"] if r["system"] == system], rounds)
        for system in (GATEWAY, *BASES)
    ]
    summary = p["summary"]
    rows += [
        ratio_row(f"{GATEWAY} / {base}", summary["ratios"][base], summary["median"][base])
        for base in BASES
    ]
    return [title, rounds_table(rounds, rows), _pairs_note(p)]


def rounds_table(rounds: Sequence[int], rows: Sequence[str]) -> str:
    """A row per system (rounds_row) and per ratio (ratio_row), a column per round."""
    header = "| | " + " | ".join(f"round {n}" for n in rounds) + " | median | status |"
    header += "\n|---|" + "--:|" * (len(rounds) + 1) + "---|"
    return "\n".join([header, *rows])


def rounds_row(label: str, runs: Sequence[dict[str, Any]], rounds: Sequence[int]) -> str:
    """One system's rate in each round of the table (from its `runs`, each with its
    "round"), their median, and the flags its runs raised."""
    mine = {r["round"]: r for r in runs}
    rps = [usable_rps(mine[n]) if n in mine else None for n in rounds]
    found = [v for v in rps if v is not None]
    middle = f"{statistics.median(found):,.0f}" if found else "—"
    # A failed run's flag carries the child's log tail: its first line only, in a cell.
    flags = [f"round {n}: {f.splitlines()[0]}" for n, r in mine.items() for f in r["flags"]]
    status = "ok" if not flags else "⚠ " + "; ".join(flags)
    cells = [label, *("—" if v is None else f"{v:,.0f}" for v in rps), middle]
    return "| " + " | ".join([*cells, status.replace("|", "/")]) + " |"


def ratio_row(label: str, ratios: Sequence[float | None], middle: float | None) -> str:
    cells = [label, *map(ratio_text, ratios), f"**{ratio_text(middle)}**", ""]
    return "| " + " | ".join(cells) + " |"


def orders_text(orders: Sequence[Sequence[str]]) -> str:
    """Each round's order, as "round 1: a, b; round 2: b, a"."""
    return "; ".join(f"round {n}: {', '.join(order)}" for n, order in enumerate(orders, start=1))


def _pairs_note(p: dict[str, Any]) -> str:
    orders = orders_text(p["orders"])
    warmup = f"a {p['warmup_s']} s wrk warm-up, then" if p["warmup_s"] else "no warm-up (smoke);"
    return (
        f"The gateway, {', '.join(p['orders'][0][1:])} in {interleaved_rounds(p['rounds'])},"
        f" the order reversed every other round ({orders}), so that a drift of the machine"
        " over the group falls on all alike and none always runs first. Each run: a fresh start"
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
