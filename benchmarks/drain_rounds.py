"""The delivery group's interleaved rounds of the bare client's `post` and the gateway's
`drain`: their JSON, the targets' drain row and their section of the report. Pure: no
I/O here.

A single post and a single drain, one after the other, moved the drain target from 0.23x
to 0.45x between runs of the same code: the machine's speed drifts by up to a third within
minutes. So benchmarks/delivery.py measures the two in `rounds` rounds, the order
reversed every other round, and the target takes the median of the per-round ratios, as
the pairs group does for the ingest ratios (benchmarks/pairs_report.py, whose pieces serve
here). document.py puts `rounds_json` into the delivery section, targets.py takes the
row, report.py places the section.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.pairs_report import (
    alternating,
    interleaved_rounds,
    median,
    median_target,
    orders_text,
    ratio,
    ratio_row,
    rounds_row,
    rounds_table,
    rps_range,
    span_text,
    usable_rps,
)

POST, DRAIN = "post", "drain"
SIDES = {DRAIN: "gateway drain", POST: "bare client post"}  # as the table's rows say
MEDIAN_FROM = 2  # usable rounds the row's median needs; with fewer, round 1's single ratio
TITLE = "## Drain vs bare client, interleaved rounds"


def round_order(round_: int) -> tuple[str, ...]:
    """The two measurements in the order round `round_` (from 1) runs them: the bare
    client first in odd rounds, the gateway first in even ones."""
    return alternating((POST, DRAIN), round_)


def rounds_json(measured: Sequence[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The delivery section's `rounds`, one dict a round: its order, both sides as their
    `results` row would show them, and the ratio drain / post (None: a side unusable);
    and `rounds_summary`. `measured`: round by round, the sides' JSON by scenario."""
    rounds = [
        {
            "round": n,
            "order": list(round_order(n)),
            POST: sides[POST],
            DRAIN: sides[DRAIN],
            "ratio": ratio(usable_rps(sides[DRAIN]), usable_rps(sides[POST])),
        }
        for n, sides in enumerate(measured, start=1)
    ]
    return {"rounds": rounds, "rounds_summary": rounds_summary(rounds)}


def rounds_summary(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each round's ratio and their median; per side the range of events/s; every flag
    a round's measurements raised, behind the side and round."""
    ratios = [r["ratio"] for r in rounds]
    return {
        "ratios": ratios,
        "median": median(ratios),
        "usable_rounds": sum(r is not None for r in ratios),
        "rps": {side: rps_range([r[side] for r in rounds]) for side in SIDES},
        "flags": [
            f"{SIDES[side]} round {r['round']}: {flag}"
            for r in rounds
            for side in round_order(r["round"])
            for flag in r[side]["flags"]
        ],
    }


# -- the targets' drain row ------------------------------------------------------------------


def has_median(delivery: dict[str, Any]) -> bool:
    """Whether the drain row takes the median of the rounds: MEDIAN_FROM rounds or more
    measured both sides. Documents from before the rounds have none."""
    summary = delivery.get("rounds_summary")
    return summary is not None and summary["usable_rounds"] >= MEDIAN_FROM


def ratio_target(delivery: dict[str, Any], bound: float) -> dict[str, Any]:
    """The median of the per-round ratios, with each round's ratio and both sides'
    events/s in the basis; not clean when any round's measurement raised a flag."""
    summary = delivery["rounds_summary"]
    over = f"{SIDES[DRAIN]} {span_text(summary['rps'][DRAIN])}"
    under = f"bare client {span_text(summary['rps'][POST])} events/s"
    section = "the delivery rounds section"
    return median_target(summary["ratios"], bound, over, under, section, clean=not summary["flags"])


def single_round(row: dict[str, Any], delivery: dict[str, Any]) -> dict[str, Any]:
    """The row from `results` alone (round 1) when the rounds gave no median: still not
    clean when a later round raised a flag, and saying why it is not the median."""
    summary = delivery.get("rounds_summary")
    if summary is None:
        return row
    if row["clean"] and summary["flags"]:
        row["clean"] = False
    if len(summary["ratios"]) >= MEDIAN_FROM:
        usable, rounds = summary["usable_rounds"], len(summary["ratios"])
        row["basis"] += f"; round 1 alone: {usable} of {rounds} interleaved rounds measured both"
    return row


# -- the report's section ------------------------------------------------------------------


def rounds_section(delivery: dict[str, Any]) -> list[str]:
    """events/s of each side per round, the ratio per round and their median, and how
    they were measured."""
    rounds, summary = delivery["rounds"], delivery["rounds_summary"]
    numbers = [r["round"] for r in rounds]
    rows = [
        rounds_row(f"{label} events/s", [r[side] | {"round": r["round"]} for r in rounds], numbers)
        for side, label in SIDES.items()
    ]
    rows.append(ratio_row(f"{SIDES[DRAIN]} / {SIDES[POST]}", summary["ratios"], summary["median"]))
    return [TITLE, rounds_table(numbers, rows), _rounds_note(delivery)]


def _rounds_note(delivery: dict[str, Any]) -> str:
    rounds = delivery["rounds"]
    orders = orders_text([r["order"] for r in rounds])
    e2e = " e2e runs once, after the rounds." if "e2e" in delivery["results"] else ""
    return (
        f"The bare client's `post` and the gateway's `drain` in"
        f" {interleaved_rounds(len(rounds))}, the order reversed every other round ({orders}),"
        " so that a drift of the machine over the rounds falls on both alike and neither"
        " always runs first. Each measurement exactly as the Delivery table's row of the"
        f" same name: a fresh sink, the same {delivery['events']:,} events (queued"
        " beforehand on an emptied Redis, for the drain), pinned alike. Ratios: the"
        " gateway's events/s over the bare client's in the same round; the target takes"
        f" their median when {MEDIAN_FROM} or more rounds measured both sides, else round"
        f" 1's ratio. The Delivery table shows round 1.{e2e}"
    )
