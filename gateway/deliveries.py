"""One target's deliveries in flight: render, post, judge the answer, settle.

Up to `concurrency` at once. A delivery is a chain of callbacks, not a coroutine:
`_deliver` renders and posts, the answer arrives from the connection
(`_answered`), the ack is gathered and the slot takes the next entry claimed
ahead (`_finished`). A coroutine per slot cost ~4 µs more per event
(benchmarks/cpu_per_delivery.sh). Retries and dead letters, rare, run as a task
that holds the slot until their store write is done (gateway/bookkeeping.py owns
the writes). Claiming is gateway/forwarder.py's: it hands entries to `start` and
hears of each freed slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from functools import partial
from typing import Any, Protocol

import structlog

from gateway.bookkeeping import Bookkeeping
from gateway.config import SourceConfig, TargetConfig
from gateway.formats import Renderer, Request, UnknownSource
from gateway.metrics import TargetMetrics
from gateway.models import Queued
from gateway.policy import Verdict, judge, next_delay
from gateway.store import DeliveryStore
from gateway.upstream import ConnectError, Pool, Response, UpstreamError, UpstreamTimeout
from gateway.upstream_connection import Done

log = structlog.get_logger("gateway.forwarder")


class Upstream(Protocol):
    """What a delivery needs of the app's connections: gateway.upstream.Pool."""

    def post(self, data: bytes, done: Done) -> None: ...

    async def aclose(self) -> None: ...


class Rendering(Protocol):
    """What a delivery needs to build its request: gateway.formats.Renderer."""

    def render(self, entry: Queued) -> Request: ...


def _pool_for(target: TargetConfig) -> Pool:
    return Pool(
        target.host,
        target.port,
        concurrency=target.concurrency,
        connect_timeout=target.connect_timeout,
        timeout=target.timeout,
    )


class Deliveries:
    def __init__(
        self,
        target: TargetConfig,
        sources: Mapping[str, SourceConfig],
        store: DeliveryStore,
        metrics: TargetMetrics,
        slot_freed: Callable[[], None],
        retry_scheduled: Callable[[], None],
        *,
        pool: Upstream | None = None,
        renderer: Rendering | None = None,
    ) -> None:
        """`pool` and `renderer` are seams for tests (a module global patched
        in their place would not reach this module compiled: mypyc-modules.txt)."""
        self._target = target
        self._store = store
        self._metrics = metrics
        self._slot_freed = slot_freed
        self._retry_scheduled = retry_scheduled
        self._renderer = Renderer(target, sources) if renderer is None else renderer
        self._pool = _pool_for(target) if pool is None else pool
        self._rng = random.Random()
        self._bookkeeping = Bookkeeping(store, target.name)
        self._busy = 0  # deliveries started and not yet finished
        self._ready: deque[Queued] = deque()  # claimed ahead, waiting for a slot
        self._idle = asyncio.Event()  # set when _busy falls to 0
        self._settling: set[asyncio.Task[None]] = set()  # retry / dead-letter writes
        self._abandoned = False  # past the grace at stop
        self._delivering: set[tuple[int, bytes]] = set()  # (partition, entry id) held

    def holds(self, entry: Queued) -> bool:
        """In flight, claimed ahead, or delivered with its ack not yet written: not
        to be started twice."""
        return self.holds_id(entry.partition, entry.id)

    def holds_id(self, partition: int, entry_id: bytes) -> bool:
        if (partition, entry_id) in self._delivering:
            return True
        return self._bookkeeping.acking(partition, entry_id)

    def held(self) -> set[tuple[int, bytes]]:
        """A copy of what `holds` answers True for now: (partition, entry id)."""
        return self._delivering | self._bookkeeping.acking_ids()

    def start(self, entry: Queued) -> bool:
        """Deliver now or when a slot frees. False once stopped: the entry stays pending."""
        if self._abandoned:
            return False  # claimed by a loop that outlived the stop
        self._delivering.add((entry.partition, entry.id))
        if self._busy < self._target.concurrency:
            self._deliver(entry)
        else:
            self._ready.append(entry)
        return True

    def _deliver(self, entry: Queued) -> bool:
        """Render and post; `_answered` takes it from there. Retries and dead
        letters, rare, wait for their store write in a task that holds the slot.
        False if it failed at once (a bug): the slot is free again."""
        self._busy += 1
        try:
            if entry.attempt > self._target.max_attempts:
                # Earlier attempts crashed or froze the gateway mid-delivery.
                reason = "attempts exhausted during a crash or freeze"
                self._settle_later(self._dead_letter(entry, 0, reason), entry)
                return True
            try:
                head, body = self._renderer.render(entry)
            except UnknownSource as exc:
                self._settle_later(self._dead_letter(entry, 0, str(exc)), entry)
                return True
            self._pool.post(head + body, partial(self._answered, entry, time.perf_counter()))
            return True
        except Exception as crash:  # a bug: the entry stays pending, redelivered later
            # (Not `exc` again: compiled, the name keeps the inner handler's type.)
            self._free_slot(entry)
            _log_crash(self._target.name, crash)
            return False

    def _answered(
        self, entry: Queued, started: float, response: Response | None, error: UpstreamError | None
    ) -> None:
        if self._abandoned:
            return  # past the grace at stop: the entry stays pending
        try:
            self._metrics.duration.observe(time.perf_counter() - started)
            if error is not None:
                status, reason = 0, f"{type(error).__name__}: {error}"
            else:
                assert response is not None
                status, reason = response.status, ""
            verdict = judge(status)
            if error is not None:
                self._metrics.outcome(_error_outcome(error))
            else:
                ok = verdict is Verdict.DELIVERED
                self._metrics.outcome("delivered" if ok else "http_error")
            if verdict is Verdict.DELIVERED:
                self._bookkeeping.ack_later(entry)
                self._finished(entry)
            elif verdict is Verdict.RETRY and entry.attempt < self._target.max_attempts:
                self._settle_later(self._retry_later(entry, status, response), entry)
            else:
                self._settle_later(
                    self._dead_letter(entry, status, reason or f"HTTP {status}"), entry
                )
        except Exception as exc:
            self._crashed(entry, exc)

    async def _retry_later(self, entry: Queued, status: int, response: Response | None) -> None:
        bounds = (self._target.backoff.initial, self._target.backoff.max)
        retry_after = None if response is None else response.header(b"retry-after")
        delay = next_delay(entry.attempt, status, retry_after, bounds, time.time(), self._rng)
        await self._bookkeeping.settle(self._store.retry_later(entry, self._target.name, delay))
        self._retry_scheduled()

    async def _dead_letter(self, entry: Queued, status: int, error: str) -> None:
        if await self._bookkeeping.dead_letter(entry, status, error):
            self._metrics.dead_letters.inc()

    def _settle_later(self, write: Coroutine[Any, Any, None], entry: Queued) -> None:
        """The delivery's slot stays taken until its store write is done."""
        task = asyncio.get_running_loop().create_task(write)
        self._settling.add(task)
        task.add_done_callback(partial(self._settled, entry))

    def _settled(self, entry: Queued, task: asyncio.Task[None]) -> None:
        self._settling.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._crashed(entry, task.exception())
            return
        self._finished(entry)

    def _crashed(self, entry: Queued, exc: BaseException | None) -> None:
        try:
            _log_crash(self._target.name, exc)
        finally:
            self._finished(entry)

    def _finished(self, entry: Queued) -> None:
        """The slot is free: hand it the next claimed entry, if one waits. A loop,
        not a recursion: a run of deliveries failing at once must not nest."""
        self._free_slot(entry)
        while self._ready and not self._abandoned:
            if self._deliver(self._ready.popleft()):
                return
        if self._busy == 0:
            self._idle.set()

    def _free_slot(self, entry: Queued) -> None:
        self._busy -= 1
        self._delivering.discard((entry.partition, entry.id))
        self._slot_freed()

    async def stop(self, grace: float) -> None:
        """Let what is in flight or claimed ahead finish within `grace`; then let go."""
        if self._busy:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._idle.wait()
        # Late answers are ignored: their entries stay pending, delivered after the
        # restart. The pool closes first, so nothing more reaches the app (no
        # connect finishing, no resend); a store write already started gets up to
        # max(grace, 1 s) more to finish (bookkeeping).
        self._abandoned = True
        self._ready.clear()
        await self._pool.aclose()
        await self._bookkeeping.finish(within=max(grace, 1.0))

    def __repr__(self) -> str:
        return (
            f"in_flight={self._busy} ready={len(self._ready)} "
            f"bookkeeping={len(self._bookkeeping)} pool={self._pool!r}"
        )


def _error_outcome(exc: UpstreamError) -> str:
    if isinstance(exc, ConnectError):
        return "connect_error"
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    return "protocol_error"


def _log_crash(target: str, exc: BaseException | None) -> None:
    log.error("delivery_crashed", target=target, error=repr(exc))
