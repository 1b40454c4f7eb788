"""The admit batcher: the admits of one event-loop tick, one store call per partition
(or per ADMIT_CHUNK of them).

Measured (DESIGN.md §7): one call per tick carrying all of that tick's admits
reaches about twice the rate of one pipelined call per event. The 200 for an
event is written only when its call has returned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from gateway.errors import StoreUnavailable
from gateway.metrics import Metrics
from gateway.models import Admission, AdmitOutcome
from gateway.store import Store
from gateway.timers import Timeouts

# Called with the outcome (None: not persisted, answer 503) and the time the
# batch finished, read once for the whole batch.
Done = Callable[[AdmitOutcome | None, float], None]

log = structlog.get_logger("gateway.admit")

_ERROR_LOG_INTERVAL = 10.0  # seconds between store-error log lines during an outage
# A partition's batch is sent as soon as it holds this many admits, not only at
# the end of the tick: Redis works on the first events of a burst while the loop
# parses the rest. 64 connections of benchmarks/cpu_per_request.sh, req/s (2 runs):
# end of tick only 31.1-31.2k, 16: 32.3-34.8k, 24: 32.6-35.4k.
ADMIT_CHUNK = 24


class AdmitBatcher:
    def __init__(self, store: Store, deadline: float, metrics: Metrics) -> None:
        self._store = store
        # With one partition (the default) `store.partition` is not asked per request:
        # two interpreted calls (the spooling store's, then Redis') that answer 0 took
        # 1.6% of the compiled gateway's ingest samples (benchmarks/PROFILE.md).
        self._one_partition = store.partitions == 1
        # One shared timer for every call's deadline, not a loop timer per call.
        self._deadlines = Timeouts(deadline)
        self._errors = metrics.store_admit_errors
        self._pending: dict[int, list[tuple[Admission, Done]]] = {}
        self._scheduled = False
        self._calls: set[asyncio.Task[None]] = set()
        self._failed_since_log = 0
        self._last_error_log = 0.0
        self._crashes = 0  # crashed batches since the last admit_crashed line
        self._last_crash_log = -_ERROR_LOG_INTERVAL

    def submit(self, admission: Admission, done: Done) -> None:
        partition = 0 if self._one_partition else self._store.partition(admission.dedup_key)
        batch = self._pending.get(partition)
        if batch is None:
            batch = self._pending[partition] = []
        batch.append((admission, done))
        if len(batch) == ADMIT_CHUNK:
            del self._pending[partition]
            self._start(partition, batch)
        elif not self._scheduled:
            self._scheduled = True
            # Runs after every callback already queued for this loop iteration,
            # so all requests read in this tick join the same call.
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for partition, batch in pending.items():
            self._start(partition, batch)

    def _start(self, partition: int, batch: list[tuple[Admission, Done]]) -> None:
        """The store call starts now (a Redis store writes it here); a task awaits it."""
        try:
            call = self._store.admit(partition, [a for a, _ in batch])
        except Exception as exc:  # a bug must still answer every waiting request
            self._crashed(exc, batch)
            return
        task = asyncio.get_running_loop().create_task(self._admit(batch, call))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _admit(
        self,
        batch: list[tuple[Admission, Done]],
        call: Coroutine[Any, Any, list[AdmitOutcome]],
    ) -> None:
        outcomes: list[AdmitOutcome] | None = None
        try:
            async with self._deadlines.scope():
                outcomes = await call
        except (StoreUnavailable, TimeoutError) as exc:
            self._store_failed(exc, len(batch))
        except Exception as exc:
            self._crashed(exc, batch)
            return
        if outcomes is not None and len(outcomes) != len(batch):
            outcomes = None  # cannot pair outcomes with requests: answer none of them 200
        _answer(batch, outcomes)

    def _crashed(self, exc: Exception, batch: list[tuple[Admission, Done]]) -> None:
        # A bug here fails every batch alike: its traceback once per interval, not per
        # batch (at thousands of batches a second the log would bury everything else).
        self._crashes += 1
        now = time.monotonic()
        if now - self._last_crash_log >= _ERROR_LOG_INTERVAL:
            log.error("admit_crashed", exc_info=exc, crashes=self._crashes)
            self._crashes = 0
            self._last_crash_log = now
        self._store_failed(exc, len(batch))
        _answer(batch, None)

    def _store_failed(self, exc: BaseException, size: int) -> None:
        self._errors.inc()
        self._failed_since_log += size
        now = time.monotonic()
        if now - self._last_error_log >= _ERROR_LOG_INTERVAL:
            reason = str(exc) or "admit deadline exceeded"
            log.warning("store_admit_failed", error=reason, events_refused=self._failed_since_log)
            self._failed_since_log = 0
            self._last_error_log = now

    async def wait_idle(self) -> None:
        """Wait for every admit call in flight (used when draining)."""
        while self._calls or self._scheduled:
            await asyncio.gather(*self._calls, return_exceptions=True)
            if self._scheduled:
                await asyncio.sleep(0)  # let the scheduled flush start its calls

    def __repr__(self) -> str:
        queued = sum(len(b) for b in self._pending.values())
        return f"<AdmitBatcher queued={queued} calls_in_flight={len(self._calls)}>"


def _answer(batch: list[tuple[Admission, Done]], outcomes: list[AdmitOutcome] | None) -> None:
    """Every request of the batch its outcome (None: 503), with one clock read."""
    now = time.perf_counter()
    answers: Sequence[AdmitOutcome | None] = outcomes or [None] * len(batch)
    for (_, done), outcome in zip(batch, answers, strict=True):
        done(outcome, now)
