"""The embedded store: the Redis store's contract on one local SQLite file.

One connection, owned by one dedicated thread (a single-worker executor):
the event loop never touches the database, it only awaits the thread's
answers. Every write is one transaction on that thread.

The tables and their SQL are in gateway/store/sqlite_tables.py; how the file
is opened, capped and checked for durability, in gateway/store/sqlite_file.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from gateway.config import StoreConfig
from gateway.errors import StoreUnavailable
from gateway.models import Admission, AdmitOutcome, Queued
from gateway.store import sqlite_tables as tables
from gateway.store.due_clock import DueClock
from gateway.store.sqlite_file import check_room, connect, durability_problems, durability_settings

T = TypeVar("T")


def _now_ms() -> int:
    return int(time.time() * 1000)


class SqliteStore:
    """The store contract (see RedisStore) on one SQLite file; one partition."""

    def __init__(self, config: StoreConfig, *, path: str, max_bytes: int = 0) -> None:
        self._config = config
        self.path = path
        self._max_bytes = max_bytes  # 0: as large as the disk allows
        self.partitions = 1
        self._ttl_ms = max(1, round(config.dedup_ttl * 1000))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gw-sqlite")
        self._db: sqlite3.Connection | None = None  # touched only by the executor's thread
        self._closed = False
        self._waiters: set[asyncio.Future[None]] = set()
        self._due = DueClock()  # used on the event loop's side only

    def partition(self, dedup_key: str) -> int:
        return 0

    # -- the thread's side ----------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """The connection, opened on first use (on the store's thread), so an
        unreachable file fails a call with StoreUnavailable and the next call
        tries again."""
        if self._db is None:
            self._db = connect(self.path, self._max_bytes)
        return self._db

    def _read(self, query: Callable[..., T], *args: object) -> T:
        """Run `query(db, *args)` outside a transaction: it sees the last commit."""
        return query(self._connection(), *args)

    def _transaction(self, body: Callable[..., T], *args: object) -> T:
        """Run `body(db, *args)` as one write transaction: all of it commits, or none."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            result = body(db, *args)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result

    def _admit_tx(self, batch: Sequence[Admission]) -> list[AdmitOutcome]:
        def body(db: sqlite3.Connection) -> list[AdmitOutcome]:
            check_room(db, self._max_bytes)
            return tables.admit(db, batch, _now_ms(), self._ttl_ms)

        return self._transaction(body)

    def _claim_tx(self, claim: Callable[..., list[tables.Row]], *args: object) -> list[tables.Row]:
        """Run one of the tables' claims as a transaction, at the time it begins."""
        return self._transaction(lambda db: claim(db, _now_ms(), *args))

    def _close_db(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.close()

    # -- the event loop's side ------------------------------------------------

    async def _run(self, op: str, call: Callable[..., T], *args: object) -> T:
        """Run `call` on the store's thread, mapping database errors to StoreUnavailable."""
        if self._closed:
            raise StoreUnavailable(f"{op} failed: the store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, call, *args)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"{op} failed: {exc}") from exc

    async def admit(self, partition: int, batch: Sequence[Admission]) -> list[AdmitOutcome]:
        """One transaction per call (the batcher's: per loop tick or ADMIT_CHUNK admits)."""
        outcomes = await self._run("admit", self._admit_tx, batch)
        if any(a.targets for a in batch):
            self._wake()
        return outcomes

    async def transact(self, op: str, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run `body` as one transaction on the store's thread (for the spool's drain)."""
        return await self._run(op, self._transaction, body)

    async def sweep(self) -> int:
        """Delete every expired dedup marker; how many. (Admit also deletes a few.)"""
        return await self._run(
            "sweep", self._transaction, lambda db: tables.sweep(db, _now_ms(), -1)
        )

    # -- the delivery queue ---------------------------------------------------

    async def ensure_group(self, partition: int, target: str) -> None:
        """Nothing to create: every target's rows live in the one queue table."""

    async def claim(
        self, partition: int, target: str, consumer: str, count: int, block_ms: int
    ) -> list[Queued]:
        """Unclaimed entries that are due, oldest first: new ones and due retries.
        With none, wait up to block_ms for an admit or a retry falling due."""
        deadline = time.monotonic() + block_ms / 1000
        while True:
            due_by = self._due.now_ms()
            rows = await self._run(
                "claim", self._claim_tx, tables.claim_due, target, consumer, count, due_by
            )
            left = deadline - time.monotonic()
            if rows or left <= 0:
                return tables.queued(rows)
            until_due = await self.promote_due(partition, target)
            if until_due is not None:
                left = min(left, max(0.001, until_due))
            await self._wait(left)

    async def claim_own_pending(
        self, partition: int, target: str, consumer: str, count: int, after: bytes = b"0"
    ) -> list[Queued]:
        """Entries this consumer name claimed before a crash, with ids past `after`."""
        rows = await self._run(
            "claim", self._claim_tx, tables.claim_own_pending, target, consumer, int(after), count
        )
        return tables.queued(rows)

    async def claim_orphans(
        self,
        partition: int,
        target: str,
        consumer: str,
        holds: Callable[[bytes], bool],
        scan: int,
        count: int,
    ) -> list[Queued]:
        """None here: a claim is one transaction in this process, so one that
        failed claimed nothing, and no reply can be lost on the way back."""
        return []

    async def claim_stale(
        self, partition: int, target: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Queued]:
        """Entries any consumer has held claimed for longer than min_idle_ms."""
        rows = await self._run(
            "claim", self._claim_tx, tables.claim_stale, target, consumer, min_idle_ms, count
        )
        return tables.queued(rows)

    async def ack(self, partition: int, target: str, ids: Sequence[bytes]) -> None:
        queue_ids = [int(i) for i in ids]
        if queue_ids:
            await self._run("ack", self._transaction, tables.ack, target, queue_ids)

    async def retry_later(self, entry: Queued, target: str, delay: float) -> None:
        """Release the entry for `delay` seconds, its attempts so far made durable."""
        due_ms = self._due.due_ms(delay)
        await self._run("retry", self._transaction, tables.retry_later, target, entry, due_ms)
        self._wake()

    async def dead_letter(
        self, entry: Queued, target: str, status: int, error: str, now_ms: int
    ) -> None:
        """Move the entry to the dead letters, in one transaction."""
        failure = (target, entry, status, error, now_ms)
        await self._run("dead_letter", self._transaction, tables.dead_letter, *failure)

    # -- dead letters, for the operator's commands -----------------------------

    async def dead_letters(self, targets: Sequence[str], letter_id: int | None = None) -> list[Any]:
        """Rows of the dead table for the targets (one id, or all), oldest first."""
        return await self._run("dead_letters", self._read, tables.dead_letters, targets, letter_id)

    async def replay_dead_letter(self, letter_id: int, target: str) -> int | None:
        """Back onto the queue with a fresh attempt count, then out of the dead
        table, in one transaction; the new queue id, or None if already gone."""
        return await self._run(
            "replay", self._transaction, tables.replay_dead_letter, letter_id, target
        )

    async def purge_dead_letter(self, letter_id: int, target: str) -> bool:
        return await self._run(
            "purge", self._transaction, tables.purge_dead_letter, letter_id, target
        )

    async def promote_due(self, partition: int, target: str) -> float | None:
        """Retries wait in the queue table and `claim` takes them once due, so
        there is nothing to move: only the seconds until the next falls due, if any."""
        now_ms = self._due.now_ms()
        next_due = await self._run("promote", self._read, tables.next_due, target, now_ms)
        return None if next_due is None else (next_due - now_ms) / 1000

    async def depth(self, partition: int, target: str) -> tuple[int, int | None]:
        """Events not yet delivered (queued, claimed or waiting to retry), and
        the oldest one's first-queued time in ms."""
        return await self._run("depth", self._read, tables.depth, target)

    # -- waiting for work -----------------------------------------------------

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self, seconds: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait([waiter], timeout=seconds)
        finally:
            self._waiters.discard(waiter)
            waiter.cancel()

    # -- health -----------------------------------------------------------------

    async def ping(self) -> bool:
        def select_one() -> bool:
            return bool(self._connection().execute("SELECT 1").fetchone()[0] == 1)

        try:
            return await self._run("ping", select_one)
        except StoreUnavailable:
            return False

    async def durability_warnings(self) -> list[str]:
        """Settings or placement that put dedup markers or queued events at risk."""
        try:
            mode, sync, fstype = await self._run(
                "durability", self._read, durability_settings, self.path
            )
        except StoreUnavailable as exc:
            return [f"could not read SQLite durability settings: {exc}"]
        return durability_problems(self.path, mode, sync, fstype)

    async def close(self) -> None:
        """Close the connection on its own thread, then end the thread."""
        if self._closed:
            return
        self._closed = True
        self._wake()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close_db)
        finally:
            self._executor.shutdown(wait=True)
