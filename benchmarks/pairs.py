"""The gateway against bare_admit, bare and FastAPI in interleaved rounds: the `pairs` group.

The ingest group measures each system once, one after another, minutes apart; on a
machine whose speed drifts (a shared virtual machine), the ratio of the gateway's req/s to
bare_admit's moved from 0.70x to 0.94x between runs of the same code. So this group
measures the systems of the three ingest ratio targets (benchmarks/systems.py:
gateway, bare_admit, bare, fastapi) close together, `rounds` times: round 1 in the order
gateway, bare_admit, bare, fastapi; round 2 in the reverse order, and so on, so that a
drift over the group falls on all alike, and no system always runs first or always after
the same one.
The targets take the median of the per-round ratios (benchmarks/pairs_report.py).

Each run: a fresh start of the system exactly as the ingest group starts it (the run's
Redis, emptied; the server on the server CPU, wrk and Redis on the load CPUs), the run's
warm-up (none in a smoke run), then one measurement of the ingest `throughput` scenario
(fresh keys, 1 KiB bodies, 64 connections) with ingest's own `measure_scenario`: measured
again while processes outside the run took CPU, up to the run's --retries. A run that
fails is recorded as failed; the group goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.bench import Bench, prepare_system
from benchmarks.children import Child
from benchmarks.group_run import GroupRun, group_json, guarded, measure_started
from benchmarks.ingest import measure_scenario
from benchmarks.machine import Pinning
from benchmarks.outcomes import THROUGHPUT, Scenario, scenario_json
from benchmarks.pairs_report import interleaved_rounds, pairs_summary, round_order
from benchmarks.systems import System, select
from benchmarks.wrkout import WrkResult

GROUP = "pairs"
DEFAULT_ROUNDS = 3
SMOKE_ROUNDS = 1


@dataclass(slots=True)
class PairsRun(GroupRun):
    """One start of one system, under one throughput load."""

    system: System
    round: int

    @property
    def label(self) -> str:  # its children's names, and its workdir's: unique in the run
        return f"{GROUP}-{self.system.name}-r{self.round}"


def measure_pairs(bench: Bench, rounds: int) -> dict[str, Any]:
    """The group's report section as JSON (see benchmarks.pairs_report)."""
    systems = ", ".join(round_order(1))
    print(f"\n== pairs: {systems} in {interleaved_rounds(rounds)}", flush=True)
    scenario = next(s for s in bench.scenarios if s.name == THROUGHPUT)
    runs: list[PairsRun] = []
    for round_ in range(1, rounds + 1):
        for system in select(",".join(round_order(round_))):
            runs.append(_guarded(bench, scenario, PairsRun(system, round_)))
    return _as_json(bench, scenario, rounds, runs)


def _pinning_note(pinning: Pinning) -> str:
    if not pinning.pinned:
        return f"As in the ingest group, {pinning.note}."
    return f"Pinned as in the ingest group: {pinning.note}."


def _guarded(bench: Bench, scenario: Scenario, run: PairsRun) -> PairsRun:
    guarded(run, lambda r: _measure_run(bench, scenario, r))
    print(f"   {run.system.name} (round {run.round}): {_summary(run)}", flush=True)
    return run


def _measure_run(bench: Bench, scenario: Scenario, run: PairsRun) -> None:
    launch = prepare_system(bench, run.system, run.label)

    def measure(server: Child) -> None:
        run.load = measure_scenario(bench, run.label, server, launch.target_url, scenario, None)

    measure_started(bench, scenario, launch, run, measure)


def _as_json(bench: Bench, scenario: Scenario, rounds: int, runs: list[PairsRun]) -> dict[str, Any]:
    measured = [_run_json(run) for run in runs]
    return {
        "rounds": rounds,
        "orders": [list(round_order(n)) for n in range(1, rounds + 1)],
        "retries": bench.retries,
        **group_json(
            bench, scenario, runs, _pinning_note(bench.pinning),
            lambda r: f"{r.system.name} round {r.round}",
        ),
        "summary": pairs_summary(measured),
        "runs": measured,
    }  # fmt: skip


def _run_json(run: PairsRun) -> dict[str, Any]:
    measured = scenario_json(run.load) if run.load else {}
    return {
        "system": run.system.name,
        "round": run.round,
        "argv": run.argv,
        "ready_s": None if run.ready_s is None else round(run.ready_s, 3),
        "usable": run.usable,  # a run whose server exited may still have wrk's req/s
        **measured,
        "error": run.error or measured.get("error"),
        "flags": run.flags(),
    }


def _summary(run: PairsRun) -> str:
    def measured(r: WrkResult) -> str:
        return f"{r.rps:,.0f} req/s, p50 {r.p50_us:,.0f} µs, p99 {r.p99_us:,.0f} µs"

    return run.summary(measured)
