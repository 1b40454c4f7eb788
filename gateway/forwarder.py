"""The forwarder: claim -> deliver -> ack / retry later / dead-letter, per target.

One consumer per process in the consumer group of each target's stream.
Entries are claimed while the claim budget lasts: the free delivery slots plus
PREFETCH more, which wait in memory for a slot (still pending in the store under
this consumer's name), so a slot that frees finds its next entry without a round
trip to the store. At shutdown they are delivered within the grace; any left
stay pending, resumed by this consumer name or reclaimed after the visibility
timeout. The attempt number is counted durably before the attempt: Redis
raises an entry's delivery counter as part of the claim.

A delivery is a chain of callbacks, not a coroutine: render and post
(`_deliver`), the answer arrives from the connection (`_answered`), the ack is
gathered and the slot takes the next waiting entry (`_finished`). A coroutine per
slot cost ~4 µs more per event (benchmarks/cpu_per_delivery.sh). Retries and dead
letters, rare, run as a task holding the slot until their store write is done. Ack,
retry and dead-letter writes are gateway/bookkeeping.py's: owned tasks, so a stop
cannot cut one in half.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections import deque
from collections.abc import Coroutine, Mapping
from functools import partial
from typing import Any

import structlog

from gateway.bookkeeping import Bookkeeping
from gateway.config import ForwarderConfig, SourceConfig, TargetConfig
from gateway.depth import watch_depth
from gateway.errors import StoreUnavailable
from gateway.formats import Renderer, UnknownSource
from gateway.metrics import Metrics, TargetMetrics
from gateway.models import Queued
from gateway.policy import Verdict, judge, next_delay
from gateway.store import DeliveryStore
from gateway.upstream import ConnectError, Pool, Response, UpstreamError, UpstreamTimeout

log = structlog.get_logger("gateway.forwarder")

BLOCK_MS = 500  # how long one XREADGROUP waits for new entries
_IDLE_RETRY = 1.0  # seconds between store calls while the store is down
_DEPTH_INTERVAL = 2.0  # seconds between queue depth readings
_LOOP_STOP_TIMEOUT = 2.0
CLAIM_GATHER = 0.002  # seconds a claim waits for more free slots (see _wait_for_slot)
# Claimed entries that may wait for a lane, as a share of `concurrency`. With none,
# lanes sat idle for each claim's round trip while ingest kept Redis busy: under the
# harness' e2e load (concurrency 64) the backlog took 2.32-2.57 s to drain after the
# load stopped; with half, 0.52-0.56 s (and the pre-filled drain went from 28.2-28.8k
# to 29.5-31.3k events/s).
PREFETCH = 0.5
_OUTAGE_LOG_INTERVAL = 10.0  # one log line per target per 10 s while the store is down


class _Stopped(Exception):
    """Raised inside a forwarder loop once stop() has begun."""


def consumer_name(config: ForwarderConfig, worker: int | None = None) -> str:
    """A stable name per pod: a restarted container resumes its own pending entries.
    Worker i of `workers: N > 1` is "<name>-w<i>": distinct from its siblings (one
    never resumes another's deliveries in flight), the same after its restart."""
    name = config.consumer or socket.gethostname().lower()
    return name if worker is None else f"{name}-w{worker}"


class TargetForwarder:
    def __init__(
        self,
        target: TargetConfig,
        sources: Mapping[str, SourceConfig],
        store: DeliveryStore,
        config: ForwarderConfig,
        metrics: TargetMetrics,
        watch_depth: bool = True,
    ) -> None:
        self.target = target
        self._watches_depth = watch_depth
        self._store = store
        self._config = config
        self._metrics = metrics
        self._consumer = consumer_name(config)
        self._renderer = Renderer(target, sources)
        self._pool = Pool(
            target.host,
            target.port,
            concurrency=target.concurrency,
            connect_timeout=target.connect_timeout,
            timeout=target.timeout,
        )
        self._rng = random.Random()
        # The claim budget: idle lanes plus entries allowed to wait for one.
        self._free = target.concurrency + int(target.concurrency * PREFETCH)
        self._gather_at = max(1, min(config.batch, target.concurrency) // 4)
        self._slot_freed = asyncio.Event()
        self._retry_scheduled = asyncio.Event()
        # Up to `concurrency` deliveries at once, each a chain of callbacks (post,
        # answered, finished) rather than a coroutine: see _deliver.
        self._busy = 0  # deliveries started and not yet finished
        self._ready: deque[Queued] = deque()  # claimed ahead, waiting for a slot
        self._idle = asyncio.Event()  # set when _busy falls to 0
        self._settling: set[asyncio.Task[None]] = set()  # retry / dead-letter writes
        self._abandoned = False  # past the grace at stop
        self._delivering: set[tuple[int, bytes]] = set()  # (partition, entry id) in flight
        self._bookkeeping = Bookkeeping(store, target.name)
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False
        self._outage_logged = -_OUTAGE_LOG_INTERVAL

    def start(self) -> None:
        for partition in range(self._store.partitions):
            self._run(self._consume(partition))
            self._run(self._promote(partition))
        self._run(self._reclaim())
        if self._watches_depth:
            self._run(watch_depth(self._store, self.target.name, self._metrics, _DEPTH_INTERVAL))

    def _run(self, loop_body: Coroutine[Any, Any, None]) -> None:
        self._loops.append(asyncio.get_running_loop().create_task(_until_stopped(loop_body)))

    # -- claiming -------------------------------------------------------------

    async def _consume(self, partition: int) -> None:
        await self._until_ok(lambda: self._store.ensure_group(partition, self.target.name))
        await self._resume_own(partition)
        while not self._stopping:
            await self._wait_for_slot()
            count = min(self._free, self._config.batch)
            claim = partial(
                self._store.claim, partition, self.target.name, self._consumer, count, BLOCK_MS
            )
            claimed = await self._until_ok(claim)
            for entry in claimed:
                self._start(entry)

    async def _resume_own(self, partition: int) -> None:
        """Deliver what this consumer name had claimed before a crash or restart."""
        after = b"0"
        while not self._stopping:
            await self._wait_for_slot()
            count = min(self._free, self._config.batch)
            claim = partial(
                self._store.claim_own_pending,
                partition,
                self.target.name,
                self._consumer,
                count,
                after,
            )
            own = await self._until_ok(claim)
            if not own:
                return
            after = own[-1].id
            for entry in own:
                if not self._in_flight(entry):
                    self._start(entry)

    async def _reclaim(self) -> None:
        """Claim entries that a crashed or frozen consumer left pending too long."""
        idle_ms = int(self._config.visibility_timeout * 1000)
        while not self._stopping:
            await asyncio.sleep(max(1.0, self._config.visibility_timeout / 4))
            for partition in range(self._store.partitions):
                if self._free == 0:
                    break
                claim = partial(
                    self._store.claim_stale,
                    partition,
                    self.target.name,
                    self._consumer,
                    idle_ms,
                    self._free,
                )
                stale = await self._until_ok(claim)
                for entry in stale:
                    if not self._in_flight(entry):
                        self._start(entry)

    async def _promote(self, partition: int) -> None:
        """Put due retries back on the stream, waking early when one is scheduled."""
        while not self._stopping:
            now_ms = int(time.time() * 1000)
            promote = partial(self._store.promote_due, partition, self.target.name, now_ms)
            next_due = await self._until_ok(promote)
            wait = 1.0 if next_due is None else (next_due - now_ms) / 1000
            self._retry_scheduled.clear()
            try:
                async with asyncio.timeout(min(1.0, max(0.005, wait))):
                    await self._retry_scheduled.wait()
            except TimeoutError:
                pass

    async def _until_ok(self, call: Any) -> Any:
        """Run a store call until it succeeds: an outage pauses the forwarder."""
        while True:
            if self._stopping:
                raise _Stopped
            try:
                return await call()
            except StoreUnavailable as exc:
                now = time.monotonic()
                if now - self._outage_logged >= _OUTAGE_LOG_INTERVAL:
                    self._outage_logged = now
                    log.warning(
                        "forwarder_store_unavailable", target=self.target.name, error=str(exc)
                    )
                await asyncio.sleep(_IDLE_RETRY)

    async def _wait_for_slot(self) -> None:
        """Until a slot is free; then up to CLAIM_GATHER more for a quarter of the
        slots: claiming as each slot frees was one XREADGROUP per ~25 events."""
        await self._wait_for_free(1)
        if self._free < self._gather_at:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLAIM_GATHER):
                    await self._wait_for_free(self._gather_at)

    async def _wait_for_free(self, slots: int) -> None:
        while self._free < slots and not self._stopping:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    # -- delivering -----------------------------------------------------------

    def _in_flight(self, entry: Queued) -> bool:
        return (entry.partition, entry.id) in self._delivering

    def _start(self, entry: Queued) -> None:
        self._free -= 1
        self._delivering.add((entry.partition, entry.id))
        if self._busy < self.target.concurrency:
            self._deliver(entry)
        else:
            self._ready.append(entry)

    def _deliver(self, entry: Queued) -> None:
        """Render and post; `_answered` takes it from there. Retries and dead
        letters, rare, wait for their store write in a task that holds the slot."""
        self._busy += 1
        try:
            if entry.attempt > self.target.max_attempts:
                # Earlier attempts crashed or froze the gateway mid-delivery.
                reason = "attempts exhausted during a crash or freeze"
                self._settle_later(self._dead_letter(entry, 0, reason), entry)
                return
            try:
                head, body = self._renderer.render(entry)
            except UnknownSource as exc:
                self._settle_later(self._dead_letter(entry, 0, str(exc)), entry)
                return
            self._pool.post(head + body, partial(self._answered, entry, time.perf_counter()))
        except Exception as exc:  # a bug: the entry stays pending, redelivered later
            self._crashed(entry, exc)

    def _answered(
        self, entry: Queued, started: float, response: Response | None, error: UpstreamError | None
    ) -> None:
        if self._abandoned:
            return  # past the grace at stop: the entry stays pending
        try:
            self._metrics.duration.observe(time.perf_counter() - started)
            if error is not None:
                self._metrics.outcome(_error_outcome(error))
                status, reason = 0, f"{type(error).__name__}: {error}"
            else:
                assert response is not None
                status, reason = response.status, ""
                self._metrics.outcome("delivered" if 200 <= status < 300 else "http_error")
            verdict = judge(status)
            if verdict is Verdict.DELIVERED:
                self._bookkeeping.ack_later(entry)
                self._finished(entry)
            elif verdict is Verdict.RETRY and entry.attempt < self.target.max_attempts:
                self._settle_later(self._retry_later(entry, status, response), entry)
            else:
                self._settle_later(
                    self._dead_letter(entry, status, reason or f"HTTP {status}"), entry
                )
        except Exception as exc:
            self._crashed(entry, exc)

    async def _retry_later(self, entry: Queued, status: int, response: Response | None) -> None:
        bounds = (self.target.backoff.initial, self.target.backoff.max)
        retry_after = None if response is None else response.header(b"retry-after")
        delay = next_delay(entry.attempt, status, retry_after, bounds, time.time(), self._rng)
        due_ms = int((time.time() + delay) * 1000)
        await self._bookkeeping.settle(self._store.retry_later(entry, self.target.name, due_ms))
        self._retry_scheduled.set()

    async def _dead_letter(self, entry: Queued, status: int, error: str) -> None:
        await self._bookkeeping.dead_letter(entry, status, error)
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
        log.error("delivery_crashed", target=self.target.name, error=repr(exc))
        self._finished(entry)

    def _finished(self, entry: Queued) -> None:
        """The slot is free: hand it the next claimed entry, if one waits."""
        self._busy -= 1
        self._delivering.discard((entry.partition, entry.id))
        self._free += 1
        self._slot_freed.set()
        if self._ready and not self._abandoned:
            self._deliver(self._ready.popleft())
        elif self._busy == 0:
            self._idle.set()

    # -- shutdown -------------------------------------------------------------

    async def stop(self, grace: float) -> None:
        """Stop claiming; let deliveries finish within `grace`; leave the rest pending."""
        # The flag, not only cancel(): a cancellation that lands inside a
        # redis-py call can be absorbed there (seen on Python 3.11), and the
        # loop must still end at its next turn.
        self._stopping = True
        self._slot_freed.set()
        self._retry_scheduled.set()
        for task in self._loops:
            task.cancel()
        await asyncio.wait(self._loops, timeout=_LOOP_STOP_TIMEOUT)
        # What was claimed ahead is still delivered within the grace.
        if self._busy:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._idle.wait()
        # Late answers are ignored: their entries stay pending, delivered after the
        # restart. A store write already started runs to its end (bookkeeping).
        self._abandoned = True
        self._ready.clear()
        await self._bookkeeping.finish(within=max(grace, 1.0))
        await self._pool.aclose()

    def __repr__(self) -> str:
        return (
            f"<TargetForwarder {self.target.name} in_flight={self._busy} "
            f"free={self._free} bookkeeping={len(self._bookkeeping)} pool={self._pool!r}>"
        )


class Forwarder:
    """Every target's forwarder, started and stopped together."""

    def __init__(
        self,
        targets: tuple[TargetConfig, ...],
        sources: tuple[SourceConfig, ...],
        store: DeliveryStore,
        config: ForwarderConfig,
        metrics: Metrics,
        watch_depth: bool = True,  # False: the spool's forwarder (queue_depth is Redis')
    ) -> None:
        by_name = {s.name: s for s in sources}
        self.targets = [
            TargetForwarder(t, by_name, store, config, metrics.target(t.name), watch_depth)
            for t in targets
        ]

    def start(self) -> None:
        for target in self.targets:
            target.start()

    async def stop(self, grace: float) -> None:
        await asyncio.gather(*(t.stop(grace) for t in self.targets))


def _error_outcome(exc: UpstreamError) -> str:
    if isinstance(exc, ConnectError):
        return "connect_error"
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    return "protocol_error"


async def _until_stopped(loop_body: Coroutine[Any, Any, None]) -> None:
    with contextlib.suppress(_Stopped):
        await loop_body
