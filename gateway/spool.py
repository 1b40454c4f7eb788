"""The local spool: keep acking while Redis is unavailable, without a loss.

InboxComponents disables an endpoint after 5 non-2xx answers in a row, so a
Redis restart or failover must not become a run of 503s. With Redis as the
store, an admit that Redis refuses or does not finish within
`store.spool.wait_for_redis` is written to a local SQLite file instead (the
SqliteStore, fsynced before the 200), and the gateway switches its admits
to that spool:

    redis     admits go to Redis; the spool is empty
    spool     Redis is unavailable: admits go to the spool, a forwarder
              delivers from it (deduplicated against the spool's own keys),
              and Redis is probed until it takes an admit (the admit script
              with no event: a Redis that answers PING but refuses writes is
              still unavailable)
    draining  Redis answers again: the spool's forwarder is stopped, then
              the spool moves into Redis in batches, each batch one admit
              call per partition (mark and enqueue, the same Lua script),
              then deleted from the spool. Admits still go to the spool, so
              no key can be admitted in Redis while the spool holds it.
              Once a batch comes back short, admits go to Redis again and
              the last batches follow. A shutdown lets a drain under way
              finish (within the stop grace): the spool may be on an emptyDir.

The drain is idempotent: a spooled event keeps the token of its request, so
moving it again after a crash finds its own marker in Redis and enqueues
nothing. Events already delivered from the spool move as a marker only (so
a provider retry after the outage is still a duplicate); events not yet
delivered are enqueued with a fresh attempt count. A key that Redis already
holds under another token (a replica admitted it meanwhile) is dropped from
the spool: that replica delivers it.

The spool's dead letters (events its forwarder gave up on) move at the end of
each drain into the targets' dead-letter streams in Redis, with their failure
bookkeeping, so `gateway dead-letters` lists and replays them as any other.
A drain cut between the move and the delete leaves a dead letter twice, never
none.

Where a duplicate can still come from:
- an admit that timed out in Redis may have been run by Redis anyway; the spool
  then holds it too, and if the spool's forwarder delivers it before the drain,
  Redis delivers it again;
- a delivery the spool's forwarder still had in flight when it was stopped for
  the drain (after its grace) may have reached the app: its row moves to Redis
  undelivered, and is delivered again;
- right after a start, until the supervisor has read the spool left by the
  previous run, admits go to Redis: a provider's retry of an event that spool
  already delivered is accepted there and delivered again (a copy the spool had
  not delivered yet is dropped at the drain instead: delivered once).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import Any, NamedTuple, Protocol, TypeVar

import structlog

from gateway.config import SpoolConfig
from gateway.errors import StoreUnavailable
from gateway.metrics import Metrics
from gateway.models import Admission, AdmitOutcome, body_digest
from gateway.store.redis import RedisStore
from gateway.store.sqlite import SqliteStore
from gateway.store.sqlite_tables import DeadRow, forget_dead, oldest_dead
from gateway.timers import Timeouts

log = structlog.get_logger("gateway.spool")
T = TypeVar("T")
E = TypeVar("E")

DRAIN_BATCH = 500  # spooled events moved into Redis per step
_PROBE_INTERVAL = 0.5  # seconds between probes of an unavailable Redis
_PROBE_TIMEOUT = 1.0
# A drain step's events go to Redis in calls of at most this many body bytes: 500
# events of 1 MiB in one call would outlast the link's socket timeout every time.
DRAIN_CALL_BYTES = 4 << 20
_RETRY_DRAIN = 5.0  # seconds before a drain the spool's own file refused is tried again

# The dedup key of a queue row, as ingest builds it; indexed for the drain.
_EVENT_KEY = "source || ':' || type || ':' || key"
_DRAIN_INDEX = f"CREATE INDEX IF NOT EXISTS queue_event ON queue ({_EVENT_KEY})"


class SpoolUnavailable(Exception):
    """The spool's own file refused a drain step (Redis may be fine)."""


class Mode(enum.Enum):
    REDIS = "redis"
    SPOOL = "spool"
    DRAINING = "draining"


class Delivery(Protocol):
    """The spool's forwarder, made on entering spool mode (None: forwarder off)."""

    def start(self) -> None: ...

    async def stop(self, grace: float) -> None: ...


_Row = tuple[int, str, str, str, str, bytes, str]  # id, target, source, type, key, body, event


class _Step(NamedTuple):
    """One drain step: what to admit into Redis, and what to delete after."""

    admissions: list[Admission]
    markers: list[tuple[str, str]]  # (dedup_key, value) as read
    rows: list[int]  # queue ids


class SpoolingStore:
    """The admit store with Redis configured: Redis, or the spool when Redis
    is unavailable. `start()` supervises the modes; see the module docstring."""

    def __init__(
        self,
        redis: RedisStore,
        spool: SqliteStore,
        config: SpoolConfig,
        metrics: Metrics,
        delivery: Callable[[SqliteStore], Delivery | None],
        stop_grace: float,
    ) -> None:
        self.redis = redis
        self.partitions = redis.partitions
        self.spool = spool
        self._waits = Timeouts(config.wait_for_redis)  # one timer for every admit's wait
        self._metrics = metrics
        self._make_delivery = delivery
        self._grace = stop_grace
        self.mode = Mode.REDIS  # until the first probe says otherwise
        metrics.set_store_mode(Mode.REDIS.value)
        self._redis_failed = asyncio.Event()
        self._delivery: Delivery | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._drain_pending = False  # the spool's file refused the last drain
        self._draining = False  # a drain is under way (stop() lets it finish)

    # -- the Store contract, for the admit batcher ---------------------------

    def partition(self, dedup_key: str) -> int:
        return self.redis.partition(dedup_key)

    def admit(
        self, partition: int, batch: Sequence[Admission]
    ) -> Coroutine[Any, Any, list[AdmitOutcome]]:
        # Redis' call starts now (Store.admit); only its reply is awaited later.
        first = self.redis.admit(partition, batch) if self.mode is Mode.REDIS else None
        return self._admit(partition, batch, first)

    async def _admit(
        self,
        partition: int,
        batch: Sequence[Admission],
        first: Coroutine[Any, Any, list[AdmitOutcome]] | None,
    ) -> list[AdmitOutcome]:
        if first is None and self.mode is Mode.REDIS:
            # Taken while spooling or draining, run after the drain ended: the spool
            # must not get it now (no drain would move it). Deciding here, in the
            # same step as the spool's write is submitted, is what makes the drain's
            # last empty read final: the spool's one thread runs calls in order.
            first = self.redis.admit(partition, batch)
        if first is not None:
            try:
                async with self._waits.scope():
                    return await first
            except (StoreUnavailable, TimeoutError) as exc:
                self._fail_over(exc)
        try:
            outcomes = await self.spool.admit(0, batch)
        except StoreUnavailable:
            if self.mode is Mode.SPOOL:
                raise  # neither path can take it: 503
            # Redis answers again (draining, or back to redis meanwhile) but the
            # spool's file does not: Redis takes it.
            return await self.redis.admit(partition, batch)
        accepted = sum(1 for o in outcomes if o is AdmitOutcome.ACCEPTED)
        if accepted:
            self._metrics.spool_events.inc(accepted)
        return outcomes

    async def ping(self) -> bool:
        """Ready while either path can admit: taking the pod out of the
        Service during a Redis outage would fail the provider's requests."""
        if self.mode is Mode.REDIS:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_PROBE_TIMEOUT):
                    if await self.redis.ping():
                        return True
        return await self.spool.ping()

    async def durability_warnings(self) -> list[str]:
        spool = [f"spool: {w}" for w in await self.spool.durability_warnings()]
        return await self.redis.durability_warnings() + spool

    async def close(self) -> None:
        await self.redis.close()
        await self.spool.close()

    # -- modes ----------------------------------------------------------------

    def _fail_over(self, exc: BaseException) -> None:
        if self.mode is Mode.REDIS:
            reason = str(exc) or f"no answer within {self._waits.delay:g}s"
            log.warning("redis_unavailable_spooling", error=reason, spool=self.spool.path)
            self._set_mode(Mode.SPOOL)
            self._redis_failed.set()

    def _set_mode(self, mode: Mode) -> None:
        if mode is not self.mode:
            log.info("store_mode", mode=mode.value, previous=self.mode.value)
        self.mode = mode
        self._metrics.set_store_mode(mode.value)

    def start(self) -> None:
        self._supervisor = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop supervising, then stop the spool's forwarder (deliveries in
        flight get the grace; the rest stays in the spool for the next run).
        A drain under way first gets the grace to finish: the spool may live on
        an emptyDir that goes with the pod."""
        self._stopping = True  # a cancellation can be absorbed inside redis-py
        self._redis_failed.set()
        if self._supervisor is not None:
            if self._draining:
                await asyncio.wait([self._supervisor], timeout=self._grace)
                if self._draining:
                    log.warning("spool_drain_cut_by_shutdown", spool=self.spool.path)
            self._supervisor.cancel()
            await asyncio.wait([self._supervisor], timeout=_PROBE_TIMEOUT * 2)
        await self._stop_delivery()

    async def _run(self) -> None:
        await self._choose_first_mode()
        while not self._stopping:
            try:
                await self._step()
            except Exception:  # a bug here must not leave the gateway spooling for good
                log.exception("spool_supervisor_failed")
                # Nor leave events in the spool: a drain cut after it switched to
                # redis mode would otherwise wait for Redis' next failure; one that
                # fails while draining goes back to spooling, whose forwarder
                # delivers, instead of draining (and failing) for good.
                self._drain_pending = True
                if self.mode is Mode.DRAINING:
                    self._set_mode(Mode.SPOOL)
                await asyncio.sleep(_RETRY_DRAIN)

    async def _choose_first_mode(self) -> None:
        # Admits run meanwhile, in redis mode: one that failed over set spool mode,
        # and its event may be in the spool already; that choice stands.
        if not await self._redis_answers():
            self._fail_over(StoreUnavailable("unreachable at start"))
        elif await self._holds_events() and self.mode is Mode.REDIS:
            self._set_mode(Mode.DRAINING)

    async def _step(self) -> None:
        if self.mode is Mode.SPOOL:
            await self._spool_until_redis_answers()
            if not self._stopping:
                self._set_mode(Mode.DRAINING)
        elif self.mode is Mode.DRAINING:
            try:
                await self._drain()
            except StoreUnavailable as exc:  # from Redis
                self._fail_over_while_draining(exc)
                # Not at once again: the probe may pass where the drain fails.
                await asyncio.sleep(_PROBE_INTERVAL)
            except SpoolUnavailable as exc:
                # Redis is fine: admit there, and try the spool's file again later.
                log.error("spool_unreadable", error=str(exc), spool=self.spool.path)
                self._set_mode(Mode.REDIS)
                self._drain_pending = True
        else:
            await self._until_redis_fails()

    async def _until_redis_fails(self) -> None:
        """Wait in redis mode; wake to retry a drain the spool's file refused."""
        self._redis_failed.clear()
        timeout = _RETRY_DRAIN if self._drain_pending else None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._redis_failed.wait()
        if self.mode is Mode.REDIS and self._drain_pending and not self._stopping:
            self._drain_pending = False
            self._set_mode(Mode.DRAINING)

    def _fail_over_while_draining(self, exc: StoreUnavailable) -> None:
        log.warning("spool_drain_interrupted", error=str(exc))
        if self.mode is Mode.REDIS:
            self._fail_over(exc)
        else:
            self._set_mode(Mode.SPOOL)

    async def _stop_delivery(self) -> None:
        if self._delivery is not None:
            delivery, self._delivery = self._delivery, None
            await delivery.stop(self._grace)

    # -- spool mode -----------------------------------------------------------

    async def _spool_until_redis_answers(self) -> None:
        await self._stop_delivery()  # one left by a step that failed: never two
        self._delivery = self._make_delivery(self.spool)
        if self._delivery is not None:
            self._delivery.start()
        while not self._stopping and not await self._redis_answers():
            await self._report_depth()
            await asyncio.sleep(_PROBE_INTERVAL)
        # The drain must never move an entry the spool's forwarder is
        # delivering: stop it (deliveries in flight finish) first.
        await self._stop_delivery()

    async def _redis_answers(self) -> bool:
        """Whether Redis takes admits: the admit script itself, with no event.
        A Redis that answers PING but refuses writes (out of memory under
        noeviction, a read-only replica, WAIT short of replicas) would
        otherwise send the spool into a cycle of failed drains."""
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT):
                await self.redis.admit(0, [])
        except (StoreUnavailable, TimeoutError):
            return False
        return True

    # -- draining -------------------------------------------------------------

    async def _drain(self) -> None:
        """Move the spool into Redis until it is empty (see the module docstring)."""
        self._draining = True
        try:
            await self._drain_steps()
        finally:
            self._draining = False

    async def _drain_steps(self) -> None:
        started, moved = time.monotonic(), 0
        await self._on_spool("drain", lambda db: db.execute(_DRAIN_INDEX))  # once per drain
        log.info("spool_drain_started", depth=await self._report_depth())
        while self.mode is not Mode.SPOOL:  # a shutdown waits for it: see stop()
            step = await self._on_spool("drain", _read_step)
            if step.admissions:
                await self._admit_into_redis(step.admissions)
                moved += len(step.admissions)
            if step.markers or step.rows:
                await self._on_spool("drain", partial(_forget, step=step))
            read = max(len(step.markers), len(step.rows))
            if read < DRAIN_BATCH and self.mode is Mode.DRAINING:
                self._set_mode(Mode.REDIS)  # the rest follows in the next steps
            elif read == 0 and self.mode is Mode.REDIS:
                break
        if self.mode is Mode.REDIS:
            self._drain_pending = False  # this drain did what a pending one would
            await self._move_dead_letters()
        await self._report_depth()
        seconds = round(time.monotonic() - started, 3)
        log.info("spool_drained", events=moved, seconds=seconds, mode=self.mode.value)

    async def _admit_into_redis(self, admissions: list[Admission]) -> None:
        by_partition: dict[int, list[Admission]] = defaultdict(list)
        for admission in admissions:
            by_partition[self.redis.partition(admission.dedup_key)].append(admission)
        for partition, batch in by_partition.items():
            for call in _by_size(batch, DRAIN_CALL_BYTES, _body_size):
                # Any outcome will do: accepted (enqueued now, or by this very
                # request before), or a duplicate that Redis already holds.
                await self.redis.admit(partition, call)

    async def _move_dead_letters(self) -> None:
        """The spool's dead letters into Redis' dead-letter streams, a step at a time:
        added there first, then deleted here (a cut leaves a copy in both). Redis
        refusing them is no reason to spool admits: they wait here, and the move is
        tried again after _RETRY_DRAIN."""
        try:
            while rows := await self._on_spool("drain", partial(oldest_dead, limit=DRAIN_BATCH)):
                for (partition, target), letters in _dead_by_stream(self.redis, rows).items():
                    for call in _by_size(letters, DRAIN_CALL_BYTES, _fields_size):
                        await self.redis.add_dead_letters(partition, target, call)
                await self._on_spool("drain", partial(forget_dead, ids=[row.id for row in rows]))
                log.info("spool_dead_letters_moved", count=len(rows))
        except StoreUnavailable as exc:
            log.warning("spool_dead_letters_not_moved", error=str(exc))
            self._drain_pending = True

    async def _on_spool(self, op: str, body: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self.spool.transact(op, body)
        except StoreUnavailable as exc:
            raise SpoolUnavailable(str(exc)) from exc

    async def _holds_events(self) -> bool:
        """Anything left from an earlier run (undelivered rows, or markers)?
        An unreadable spool counts as holding some: the drain then retries."""

        def any_row(db: sqlite3.Connection) -> bool:
            query = (
                "SELECT EXISTS (SELECT 1 FROM queue) OR EXISTS (SELECT 1 FROM markers)"
                " OR EXISTS (SELECT 1 FROM dead)"
            )
            return bool(db.execute(query).fetchone()[0])

        try:
            return await self.spool.transact("depth", any_row)
        except StoreUnavailable:
            return True

    async def _report_depth(self) -> int | None:
        def count(db: sqlite3.Connection) -> int:
            return int(db.execute("SELECT COUNT(*) FROM queue").fetchone()[0])

        try:
            depth = await self.spool.transact("depth", count)
        except StoreUnavailable:
            return None
        self._metrics.spool_depth.set(depth)
        return depth


def _dead_by_stream(
    redis: RedisStore, rows: list[DeadRow]
) -> dict[tuple[int, str], list[list[tuple[str, bytes | str]]]]:
    """Dead letters by (partition, target), the stream each goes to in Redis, as
    lua.DEAD_LETTER writes one there; queued_id says it came from the spool."""
    by_stream: dict[tuple[int, str], list[list[tuple[str, bytes | str]]]] = defaultdict(list)
    for row in rows:
        partition = redis.partition(f"{row.source}:{row.type}:{row.key}")  # its dedup key
        by_stream[(partition, row.target)].append(
            [
                ("source", row.source),
                ("type", row.type),
                ("key", row.key),
                ("body", bytes(row.body)),
                ("since", str(row.since_ms)),
                ("attempts", str(row.attempts)),
                ("status", str(row.status)),
                ("error", row.error),
                ("failed_at", str(row.failed_at_ms)),
                ("queued_id", f"spool:{row.queued_id}"),
            ]
        )
    return by_stream


def _fields_size(fields: list[tuple[str, bytes | str]]) -> int:
    return sum(len(value) for _, value in fields)


def _body_size(admission: Admission) -> int:
    return len(admission.body)


def _by_size(items: list[E], most: int, size: Callable[[E], int]) -> list[list[E]]:
    """`items` in order, cut into calls of at most `most` bytes (one item each at least)."""
    calls: list[list[E]] = [[]]
    total = 0
    for item in items:
        if calls[-1] and total + size(item) > most:
            calls.append([])
            total = 0
        calls[-1].append(item)
        total += size(item)
    return calls


def _read_step(db: sqlite3.Connection) -> _Step:
    """The next DRAIN_BATCH events of the spool: markers with their undelivered
    rows first; once no marker is left, rows whose marker expired."""
    markers = db.execute(
        "SELECT dedup_key, value, expires_at FROM markers ORDER BY rowid LIMIT ?", (DRAIN_BATCH,)
    ).fetchall()
    columns = f"id, target, source, type, key, body, {_EVENT_KEY}"
    if markers:
        marks = ",".join("?" * len(markers))
        rows = db.execute(
            f"SELECT {columns} FROM queue WHERE {_EVENT_KEY} IN ({marks})",
            [m[0] for m in markers],
        ).fetchall()
    else:
        query = f"SELECT {columns} FROM queue ORDER BY id LIMIT ?"
        rows = db.execute(query, (DRAIN_BATCH,)).fetchall()
    by_event: dict[str, list[_Row]] = defaultdict(list)
    for row in rows:
        by_event[row[6]].append(row)
    now_ms = time.time() * 1000
    admissions = []
    for key, value, expires_at in markers:
        event_rows = by_event.pop(key, [])
        if event_rows or expires_at > now_ms:  # an expired, delivered one just goes
            admissions.append(_marked(key, value, event_rows))
    admissions += [_unmarked(key, event_rows) for key, event_rows in by_event.items()]
    read = [(key, value) for key, value, _ in markers]
    return _Step(admissions, read, [row[0] for row in rows])


def _marked(dedup_key: str, value: str, rows: list[_Row]) -> Admission:
    token, _, digest = value.rpartition("|")
    if not rows:  # delivered from the spool: only the marker moves
        return Admission(dedup_key, token, "", "", "", b"", digest, ())
    _, _, source, event_type, key, body, _ = rows[0]
    targets = tuple(row[1] for row in rows)
    return Admission(dedup_key, token, source, event_type, key, bytes(body), digest, targets)


def _unmarked(dedup_key: str, rows: list[_Row]) -> Admission:
    """Rows whose marker expired in the spool: moved under a fresh token."""
    _, _, source, event_type, key, body, _ = rows[0]
    token = f"spool:{rows[0][0]}:{time.time_ns()}"
    targets = tuple(row[1] for row in rows)
    body = bytes(body)
    return Admission(dedup_key, token, source, event_type, key, body, body_digest(body), targets)


def _forget(db: sqlite3.Connection, step: _Step) -> None:
    """Delete what the step moved; a marker only if unchanged since it was read."""
    db.executemany("DELETE FROM markers WHERE dedup_key = ? AND value = ?", step.markers)
    db.executemany("DELETE FROM queue WHERE id = ?", [(i,) for i in step.rows])
