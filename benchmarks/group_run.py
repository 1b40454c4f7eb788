"""One run of a group of interleaved runs (benchmarks/workers.py, benchmarks/pairs.py):
a fresh start of a system under one wrk load, whose failure is recorded on it and never
ends the group."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from benchmarks.bench import Bench, flush_store, run_wrk, start_launch
from benchmarks.children import Child, ChildFailed
from benchmarks.outcomes import Scenario, ScenarioOutcome
from benchmarks.systems import Launch, SystemSetupError
from benchmarks.wrkout import WrkResult


@dataclass(slots=True, kw_only=True)
class GroupRun:
    argv: list[str] = dataclasses.field(default_factory=list)
    ready_s: float | None = None  # exec to its ready URL answering 200
    load: ScenarioOutcome | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        """Its children's names, and its workdir's: unique in the run."""
        raise NotImplementedError

    def flags(self) -> list[str]:
        if self.error:
            return [f"failed: {self.error}"]
        return self.load.flags() if self.load else ["not measured"]

    @property
    def usable(self) -> bool:
        return self.error is None and self.load is not None and self.load.usable

    def summary(self, measured: Callable[[WrkResult], str]) -> str:
        """`measured`'s line for wrk's result, with the run's flags; or why it failed."""
        result = None if self.load is None else self.load.result
        if self.error or result is None:
            return "FAILED: " + "; ".join(self.flags())
        flags = self.flags()
        return measured(result) + (f"  ⚠ {'; '.join(flags)}" if flags else "")


R = TypeVar("R", bound=GroupRun)


def guarded(run: R, measure: Callable[[R], None]) -> R:
    """`measure(run)`; a failure to start or to reach Redis is recorded on the run."""
    try:
        measure(run)
    except (ChildFailed, SystemSetupError, redis.RedisError, OSError) as exc:
        run.error = str(exc)
    return run


def measure_started(
    bench: Bench,
    scenario: Scenario,
    launch: Launch,
    run: GroupRun,
    measure: Callable[[Child], None],
) -> Child:
    """On an emptied store: start the prepared system, give it the run's warm-up, then
    `measure(server)`; a server that exited meanwhile is recorded on the run. Stopped
    after, whatever happened. The child, for what its argv and start time say."""
    flush_store(bench.store_url)  # one run's events must not slow the next
    label = run.label
    server = start_launch(bench, launch, label)
    run.argv, run.ready_s = list(server.argv), server.ready_s
    try:
        if bench.warmup_s:
            run_wrk(bench, f"{label}-warmup", scenario, launch.target_url, bench.warmup_s)
        measure(server)
        if server.returncode is not None:
            run.error = f"exited with code {server.returncode} during the run\n{server.log_tail()}"
    finally:
        bench.children.stop(server)


def group_json(
    bench: Bench, scenario: Scenario, runs: Sequence[R], pinning: str, name: Callable[[R], str]
) -> dict[str, Any]:
    """What the workers and pairs groups' JSON shares: the load, and the runs' flags
    (each behind `name(run)`)."""
    env = " ".join(f"{k}={v}" for k, v in scenario.wrk_env(None).items())
    wrk = f"{env} wrk -t{scenario.threads} -c{scenario.connections} -d{bench.duration_s}s"
    return {
        "duration_s": bench.duration_s,
        "warmup_s": bench.warmup_s,
        "pinning": pinning,
        "wrk": f"{wrk} --latency -s benchmarks/wrk/{scenario.script}".strip(),
        "usable": bool(runs) and all(run.usable for run in runs),
        "flags": [f"{name(r)}: {f}" for r in runs for f in r.flags()],
        "error": None,
    }
