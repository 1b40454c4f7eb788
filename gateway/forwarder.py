"""The forwarder: claim -> deliver -> ack / retry later / dead-letter, per target.

One consumer per process in the consumer group of each target's stream.
Entries are claimed while the claim budget lasts: the free delivery slots plus
PREFETCH more, which wait in memory for a slot (still pending in the store under
this consumer's name), so a slot that frees finds its next entry without a round
trip to the store. At shutdown they are delivered within the grace; any left
stay pending, resumed by this consumer name or reclaimed after the visibility
timeout. The attempt number is counted durably before the attempt: Redis
raises an entry's delivery counter as part of the claim.

Delivering is gateway/deliveries.py's (a chain of callbacks per entry, up to
`concurrency` at once); this module claims, promotes due retries, reclaims what a
dead consumer left, and watches the queue depth.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from functools import partial
from typing import Any

import structlog

from gateway import depth
from gateway.config import ForwarderConfig, SourceConfig, TargetConfig
from gateway.deliveries import Deliveries
from gateway.errors import StoreUnavailable
from gateway.metrics import Metrics, TargetMetrics
from gateway.models import Queued
from gateway.store import DeliveryStore

log = structlog.get_logger("gateway.forwarder")

BLOCK_MS = 500  # how long one XREADGROUP waits for new entries
_IDLE_RETRY = 1.0  # seconds between store calls while the store is down
_DEPTH_INTERVAL = 2.0  # seconds between queue depth readings
_LOOP_STOP_TIMEOUT = 2.0
CLAIM_GATHER = 0.002  # seconds a claim waits for more free slots (see _wait_for_slot)
# Claimed entries that may wait for a free slot, as a share of `concurrency`. With
# none, slots sat idle for each claim's round trip while ingest kept Redis busy: under the
# harness' e2e load (concurrency 64) the backlog took 2.32-2.57 s to drain after the
# load stopped; with half, 0.52-0.56 s (and the pre-filled drain went from 28.2-28.8k
# to 29.5-31.3k events/s).
PREFETCH = 0.5
_OUTAGE_LOG_INTERVAL = 10.0  # one log line per target per 10 s while the store is down
# Seconds after a failed claim: 50 ms after the first, doubled per failure in a row, to
# _IDLE_RETRY. The exponent is capped: 2.0**1024 overflows, and a claim loop that
# raised OverflowError after ~17 minutes of failures never claimed again (review).
_CLAIM_BACKOFF = 0.025
_BACKOFF_DOUBLINGS = 16
# Pending entries of this consumer listed when looking for orphans: more than it can
# hold (the claim budget, the reclaim's extra, one per partition) for any sane concurrency;
# an orphan past them is reclaimed after the visibility timeout.
_SCAN = 1000


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
        # The claim budget: free slots plus entries allowed to wait for one.
        self._free = target.concurrency + int(target.concurrency * PREFETCH)
        self._gather_at = max(1, min(config.batch, target.concurrency) // 4)
        # The partitions' claim loops claim side by side, each seeing the same free
        # slots: each takes its share, so together they hold at most the budget plus
        # one per partition (each taking every free slot held 24 entries against a
        # budget of 6 with 8 partitions; held ones then outwait the visibility
        # timeout, and another consumer delivers them too). Slots are not reserved
        # for the call instead: a claim blocked in XREADGROUP would hold them all,
        # and the reclaim loop would be left its small extra (see _reclaim) alone.
        self._share = -(-self._free // store.partitions)
        # See _reclaim. A quarter of the slots: with the claimed-ahead half, entries
        # waiting for a slot stay under one slot's worth, so none waits more than
        # about one target timeout (what config.risks' visibility rule assumes).
        self._reclaim_extra = max(1, target.concurrency // 4)
        # Entries asked for by claims still on their way (XREADGROUP may block): the
        # reclaim and the orphans' retake leave room for them, or a burst of new
        # entries answering those claims came on top (30 held against a budget of
        # 12 with 8 partitions, in a review's test).
        self._claiming = 0
        # Set while the reclaim has a full page of stale entries in hand: the claim
        # loops wait, so the oldest events go first and take the slots the claims
        # would have asked for (see _reclaim).
        self._reclaim_first = False
        self._slot_freed = asyncio.Event()
        self._retry_scheduled = asyncio.Event()
        self._deliveries = Deliveries(
            target, sources, store, metrics, self._freed, self._retry_scheduled.set
        )
        self._loops: list[asyncio.Task[None]] = []
        self._claimers: list[asyncio.Task[None]] = []  # the partitions' claim loops
        self._stopping = False
        self._outage_logged = -_OUTAGE_LOG_INTERVAL

    def start(self) -> None:
        for partition in range(self._store.partitions):
            self._claimers.append(self._run(self._consume(partition)))
            self._run(self._promote(partition))
        self._run(self._reclaim())
        if self._watches_depth:
            self._run(
                depth.watch_depth(
                    self._store, self.target.name, self._metrics, _DEPTH_INTERVAL, self._is_stopping
                )
            )

    def _run(self, loop_body: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(_until_stopped(loop_body))
        self._loops.append(task)
        return task

    # -- claiming -------------------------------------------------------------

    async def _consume(self, partition: int) -> None:
        await self._until_ok(lambda: self._store.ensure_group(partition, self.target.name))
        await self._resume_own(partition)
        failures = 0  # claims failed in a row
        orphans_left = False  # a retake of lost claims' entries ran out of room
        while not self._stopping:
            await self._wait_for_slot()
            if self._stopping:
                return  # no slot came free: a claim now would take what none can deliver
            if orphans_left:
                # Older than any new entry, so they go first, as slots free. Left to
                # the reclaim, they waited a visibility timeout (a drain stalled so).
                orphans_left = await self._take_orphans(partition)
                continue
            count = min(self._free, self._config.batch, self._share)
            claim = partial(
                self._store.claim, partition, self.target.name, self._consumer, count, BLOCK_MS
            )
            try:
                claimed = await self._counted(count, claim)
            except StoreUnavailable as exc:
                failures += 1
                self._store_down(exc)
                orphans_left = await self._take_orphans(partition)
                # Backed off: a claim can keep failing while other calls succeed
                # (Redis at maxclients for a new claim connection, a full disk
                # under the spool); without a pause that was ~600 claims a second.
                doublings = min(failures, _BACKOFF_DOUBLINGS)
                await asyncio.sleep(min(_IDLE_RETRY, _CLAIM_BACKOFF * 2**doublings))
                continue
            failures = 0
            for entry in claimed:
                self._start(entry)

    async def _take_orphans(self, partition: int) -> bool:
        """Redis may have run a failed claim and lost only its reply: the entries it
        handed this consumer are pending under its name, unseen. They are taken
        again before any new claim; else they would wait for the reclaim, a
        visibility timeout later. What this consumer holds is left alone.

        Up to the room there is (claims side by side may have asked past the free
        slots); True when more may be left: the store took as many as it was asked
        for (it comes back short only when none are left)."""

        def holds(entry_id: bytes) -> bool:
            return self._deliveries.holds_id(partition, entry_id)

        count = self._room()
        if count <= 0:
            return True
        claim = partial(
            self._store.claim_orphans,
            partition,
            self.target.name,
            self._consumer,
            holds,
            _SCAN,
            count,
        )
        held = self._deliveries.held()
        taken = await self._until_ok(claim)
        self._start_unless_held(taken, held)
        return len(taken) >= count

    async def _resume_own(self, partition: int) -> None:
        """Deliver what this consumer name had claimed before a crash or restart
        (at start, before its first claim; the reclaim may already be running)."""
        after = b"0"
        while not self._stopping:
            await self._wait_for_slot()
            # Every partition resumes side by side: each leaves room for the others'.
            count = max(1, min(self._unasked, self._config.batch))
            claim = partial(
                self._store.claim_own_pending,
                partition,
                self.target.name,
                self._consumer,
                count,
                after,
            )
            held = self._deliveries.held()  # the reclaim runs alongside
            own = await self._until_ok(partial(self._counted, count, claim))
            if not own:
                return
            after = own[-1].id
            self._start_unless_held(own, held)

    async def _reclaim(self) -> None:
        """Claim entries that a crashed or frozen consumer left pending too long.

        They are the oldest events in the queue, so they go ahead of entries not yet
        claimed: with no slot free (a backlog keeps every slot busy, and the claim
        loops take each one that frees), a pass still takes up to `_reclaim_extra`
        of them, to wait behind the entries already claimed ahead. Taking only free
        slots, they waited for the whole backlog to drain. A full page means more
        may wait (a dead consumer's whole budget): the claim loops pause, and the
        next page goes out once room is free, not a visibility timeout later."""
        idle_ms = int(self._config.visibility_timeout * 1000)
        while not self._stopping:
            await asyncio.sleep(max(1.0, self._config.visibility_timeout / 4))
            for partition in range(self._store.partitions):
                await self._reclaim_pages(partition, idle_ms)

    async def _reclaim_pages(self, partition: int, idle_ms: int) -> None:
        try:
            await self._reclaim_page_by_page(partition, idle_ms)
        finally:
            if self._reclaim_first:
                self._reclaim_first = False
                self._slot_freed.set()  # the claim loops go on

    async def _reclaim_page_by_page(self, partition: int, idle_ms: int) -> None:
        while not self._stopping:
            count = self._room()
            if count <= 0:
                return  # an earlier pass's extra still waits for slots
            claim = partial(
                self._store.claim_stale,
                partition,
                self.target.name,
                self._consumer,
                idle_ms,
                count,
            )
            held = self._deliveries.held()  # XAUTOCLAIM may take our own slow ones
            stale = await self._until_ok(claim)
            self._start_unless_held(stale, held)
            if len(stale) < count:
                return  # none left, or this scan's share of the pending list seen
            # The claims on their way return (within BLOCK_MS) and none goes out
            # meanwhile, so the room waited for is not promised to them too.
            self._reclaim_first = True
            await self._wait_until(lambda: self._unasked >= self._reclaim_extra)

    def _room(self) -> int:
        """How many a reclaim or an orphans' retake may take: the free slots no claim
        on its way has asked for, plus `_reclaim_extra` past the budget (the oldest
        entries go ahead of a backlog that keeps every slot busy), less what is
        already past it. So the forwarder holds at most the budget, one more per
        partition (the claims' shares round up) and the extra."""
        if self._free < 0:
            return max(0, self._free + self._reclaim_extra)
        return max(0, self._unasked) + self._reclaim_extra

    @property
    def _unasked(self) -> int:
        """Free slots that no claim on its way has asked for."""
        return self._free - self._claiming

    async def _counted(
        self, count: int, claim: Callable[[], Coroutine[Any, Any, list[Queued]]]
    ) -> list[Queued]:
        self._claiming += count
        try:
            return await claim()
        finally:
            self._claiming -= count
            if self._reclaim_first:
                self._slot_freed.set()  # the reclaim waits for this room

    def _start_unless_held(self, entries: list[Queued], held: set[tuple[int, bytes]]) -> None:
        for entry in entries:
            # Held when the call began and finished during it (acked after Redis
            # handed it back), or held now: not to be sent again.
            if (entry.partition, entry.id) not in held and not self._deliveries.holds(entry):
                self._start(entry)

    async def _promote(self, partition: int) -> None:
        """Put due retries back on the stream, waking early when one is scheduled."""
        while not self._stopping:
            promote = partial(self._store.promote_due, partition, self.target.name)
            until_due = await self._until_ok(promote)
            wait = 1.0 if until_due is None else until_due
            self._retry_scheduled.clear()
            try:
                async with asyncio.timeout(min(1.0, max(0.005, wait))):
                    await self._retry_scheduled.wait()
            except TimeoutError:
                pass

    def _is_stopping(self) -> bool:
        return self._stopping

    async def _until_ok(self, call: Any) -> Any:
        """Run a store call until it succeeds: an outage pauses the forwarder."""
        while True:
            if self._stopping:
                raise _Stopped
            try:
                return await call()
            except StoreUnavailable as exc:
                self._store_down(exc)
                await asyncio.sleep(_IDLE_RETRY)

    def _store_down(self, exc: StoreUnavailable) -> None:
        now = time.monotonic()
        if now - self._outage_logged >= _OUTAGE_LOG_INTERVAL:
            self._outage_logged = now
            log.warning("forwarder_store_unavailable", target=self.target.name, error=str(exc))

    async def _wait_for_slot(self) -> None:
        """Until the reclaim lets claims go on and a slot is free; then up to
        CLAIM_GATHER more for a quarter of the slots: claiming as each slot frees
        was one XREADGROUP per ~25 events."""
        await self._wait_until(lambda: not self._reclaim_first and self._free >= 1)
        if self._free < self._gather_at:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLAIM_GATHER):
                    await self._wait_until(lambda: self._free >= self._gather_at)
            # Meanwhile another partition's claim or the reclaim may have taken the
            # slots: a claim of COUNT 0 or less would take no limit at all.
            await self._wait_until(lambda: self._free >= 1)

    async def _wait_until(self, ready: Callable[[], bool]) -> None:
        """Until `ready()` (rechecked whenever a slot frees or the reclaim lets
        claims go on), or the forwarder stops."""
        while not ready() and not self._stopping:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    # -- delivering -----------------------------------------------------------

    def _start(self, entry: Queued) -> None:
        if self._deliveries.start(entry):
            self._free -= 1

    def _freed(self) -> None:
        self._free += 1
        self._slot_freed.set()

    # -- shutdown -------------------------------------------------------------

    async def stop(self, grace: float) -> None:
        """Stop claiming; let deliveries finish within `grace`; leave the rest pending."""
        # The flag, not only cancel(): a cancellation that lands inside a
        # redis-py call can be absorbed there (seen on Python 3.11), and the
        # loop must still end at its next turn.
        self._stopping = True
        self._slot_freed.set()
        self._retry_scheduled.set()
        # A claim blocked in XREADGROUP is let return (within BLOCK_MS) and its
        # entries delivered: cancelled, its reply would be dropped with the entries
        # Redis handed it (admits still land while ingest drains), pending under
        # this consumer name until another reclaims them after the visibility timeout.
        for task in self._loops:
            if task not in self._claimers:
                task.cancel()
        await asyncio.wait(self._loops, timeout=_LOOP_STOP_TIMEOUT)
        for task in self._claimers:
            task.cancel()  # one still running now is stuck: let go of it
        await self._deliveries.stop(grace)

    def __repr__(self) -> str:
        return f"<TargetForwarder {self.target.name} free={self._free} {self._deliveries!r}>"


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


async def _until_stopped(loop_body: Coroutine[Any, Any, None]) -> None:
    with contextlib.suppress(_Stopped):
        await loop_body
