"""2 gateway workers vs 1 (SO_REUSEPORT), measured in the same run: the `workers` group.

The gateway as the ingest `gateway` system (benchmarks/systems.py: forwarder off, Redis
store), started with GATEWAY_WORKERS=1 and GATEWAY_WORKERS=2 in turn, `pairs` interleaved
pairs (1, 2, 1, 2, ...) so that a drift of the machine over the group falls on both
settings alike. Each run: a fresh gateway on an emptied Redis, the run's warm-up (none in
a smoke run), then the ingest `throughput` scenario's wrk load (fresh keys, 1 KiB bodies,
64 connections) for the run's duration. Recorded per run: wrk's numbers, the CPU of the
gateway's processes (the supervisor and its workers, or the one process; /proc, reaped
children included) as cores and as CPU µs per request, and the CPU of processes outside
the run; per pair, req/s of 2 workers over 1.

Pinning: none, for either setting, as benchmarks/workers_ab.sh does. Two workers cannot
be held to the one server CPU of the other groups, and pinning only the single worker
would set a gateway with a core to itself against two processes that share the cores
with wrk and Redis: the ratio would then measure the pinning. So the gateway, wrk and a
Redis of the group's own (the run's Redis stays pinned to the load CPUs) all share every
CPU, and the report gives their count: on 2 cores a second worker has no core to itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from benchmarks.bench import (
    Bench,
    prepare_system,
    redis_server,
    run_wrk,
)
from benchmarks.children import Child, ChildFailed
from benchmarks.group_run import GroupRun, group_json, guarded, measure_started
from benchmarks.machine import CpuWatch, Pinning, process_tree, tree_cpu_seconds
from benchmarks.outcomes import THROUGHPUT, Scenario, scenario_json
from benchmarks.process_report import workers_summary
from benchmarks.systems import select
from benchmarks.wrkout import WrkResult

GROUP = "workers"
SETTINGS = (1, 2)  # GATEWAY_WORKERS, in the order each pair runs them
DEFAULT_PAIRS = 3
SMOKE_PAIRS = 1
GATEWAY = select("gateway")[0]  # the ingest gateway: forwarder off


@dataclass(slots=True)
class WorkersRun(GroupRun):
    """One gateway start with `workers` processes, under one wrk load (ready_s: every
    worker ready)."""

    workers: int
    pair: int
    cores: float | None = None  # the gateway's processes together, over the load
    processes: int | None = None  # how many there were when the load ended
    cpu_us_per_request: float | None = None

    @property
    def label(self) -> str:  # its children's names, and its workdir's
        return f"{GROUP}-{self.workers}-pair{self.pair}"


def measure_workers(bench: Bench, pairs: int) -> dict[str, Any]:
    """The group's report section as JSON (see benchmarks.process_report)."""
    unpinned = dataclasses.replace(bench.pinning, server_cpus=(), load_cpus=())
    note = _pinning_note(bench.pinning)
    print(f"\n== workers: 1 vs 2, interleaved pairs: {pairs}. {note}", flush=True)
    scenario = next(s for s in bench.scenarios if s.name == THROUGHPUT)
    workdir = bench.workdir / GROUP
    workdir.mkdir()
    runs: list[WorkersRun] = []
    try:
        store_url, store = redis_server(bench.children, unpinned, workdir, f"{GROUP}-redis")
    except ChildFailed as exc:
        return _as_json(bench, scenario, pairs, runs) | {"error": str(exc)}
    own = dataclasses.replace(bench, pinning=unpinned, store_url=store_url, workdir=workdir)
    try:
        for pair in range(1, pairs + 1):
            for workers in SETTINGS:
                runs.append(_guarded(own, scenario, WorkersRun(workers, pair)))
    finally:
        bench.children.stop(store)
    return _as_json(bench, scenario, pairs, runs)


def _pinning_note(pinning: Pinning) -> str:
    return (
        "Nothing pinned, for either setting (as benchmarks/workers_ab.sh): the gateway's"
        f" processes, wrk and the group's own Redis share all {pinning.nproc} CPUs."
    )


def _guarded(bench: Bench, scenario: Scenario, run: WorkersRun) -> WorkersRun:
    guarded(run, lambda r: _measure_run(bench, scenario, r))
    print(f"   workers: {run.workers} (pair {run.pair}): {_summary(run)}", flush=True)
    return run


def _measure_run(bench: Bench, scenario: Scenario, run: WorkersRun) -> None:
    launch = prepare_system(bench, GATEWAY, run.label)
    launch = dataclasses.replace(launch, env={**launch.env, "GATEWAY_WORKERS": str(run.workers)})

    def measure(gateway: Child) -> None:
        _measure_load(bench, scenario, launch.target_url, gateway, run)

    measure_started(bench, scenario, launch, run, measure)
    run.argv = [f"GATEWAY_WORKERS={run.workers}", *run.argv]


def _measure_load(
    bench: Bench, scenario: Scenario, url: str, gateway: Child, run: WorkersRun
) -> None:
    def gateway_cpu() -> float | None:
        return tree_cpu_seconds(gateway.process.pid)

    watch = CpuWatch(gateway_cpu, bench.pinning, bench.children.sessions)
    cpu_start = gateway_cpu()
    run.load = load = run_wrk(bench, run.label, scenario, url, bench.duration_s)
    cpu_end = gateway_cpu()
    run.processes = len(process_tree(gateway.process.pid))
    load.server_cpu = run.cores = watch.server_share()
    load.other_cpu, load.steal_cpu = watch.other_share(), watch.steal_share()
    result = load.result
    if result is not None and result.requests and cpu_start is not None and cpu_end is not None:
        run.cpu_us_per_request = round((cpu_end - cpu_start) / result.requests * 1e6, 1)


def _as_json(
    bench: Bench, scenario: Scenario, pairs: int, runs: list[WorkersRun]
) -> dict[str, Any]:
    measured = [_run_json(run) for run in runs]
    return {
        "cpus": bench.pinning.nproc,
        "pairs": pairs,
        **group_json(
            bench, scenario, runs, _pinning_note(bench.pinning),
            lambda r: f"workers {r.workers} pair {r.pair}",
        ),
        "summary": workers_summary(measured),
        "runs": measured,
    }  # fmt: skip


def _run_json(run: WorkersRun) -> dict[str, Any]:
    measured = scenario_json(run.load) if run.load else {"error": run.error, "flags": []}
    return {
        "workers": run.workers,
        "pair": run.pair,
        "argv": run.argv,
        "ready_s": None if run.ready_s is None else round(run.ready_s, 3),
        "processes": run.processes,
        "cores": run.cores,
        "cpu_us_per_request": run.cpu_us_per_request,
        **measured,
        "flags": run.flags(),
    }


def _summary(run: WorkersRun) -> str:
    def measured(result: WrkResult) -> str:
        line = f"{result.rps:,.0f} req/s, gateway {run.cores or 0:.2f} cores"
        return line + f", {run.cpu_us_per_request or 0:.1f} µs CPU per request"

    return run.summary(measured)
