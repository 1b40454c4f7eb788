"""One run of a group of interleaved runs (benchmarks/workers.py, benchmarks/pairs.py):
a fresh start of a system under one wrk load, whose failure is recorded on it and never
ends the group."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import redis

from benchmarks.children import ChildFailed
from benchmarks.outcomes import ScenarioOutcome
from benchmarks.systems import SystemSetupError
from benchmarks.wrkout import WrkResult


@dataclass(slots=True, kw_only=True)
class GroupRun:
    argv: list[str] = dataclasses.field(default_factory=list)
    ready_s: float | None = None  # exec to its ready URL answering 200
    load: ScenarioOutcome | None = None
    error: str | None = None

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
