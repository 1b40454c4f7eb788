"""The embedded store: the Redis store's contract on one local SQLite file.

One connection, owned by one dedicated thread (a single-worker executor):
the event loop never touches the database, it only awaits the thread's
answers. Every method is one transaction on that thread.

Tables:

    markers  dedup_key -> "<token>|<digest of the body>", expires_at (ms)
    queue    one row per (event, target) not yet delivered; a claimed row
             carries claimed_by / claimed_at_ms; a retry waits in place
             with a future due_ms
    dead     dead letters, with the failure bookkeeping

An entry's attempt number is `attempts + deliveries`: `deliveries` is raised
in the same transaction that claims the row, so an attempt is counted before
it is made (as Redis counts it in the stream's pending entries list), and
`retry_later` folds it into `attempts`.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from gateway.config import StoreConfig
from gateway.errors import StoreUnavailable
from gateway.models import Admission, AdmitOutcome, Queued

T = TypeVar("T")

_SWEEP_PER_ADMIT = 256  # expired markers deleted by each admit transaction, at most
_BUSY_TIMEOUT_MS = 5000  # another process (a CLI) holding the write lock
_HEADROOM_PAGES = 64  # above a capped store's admit limit, for its bookkeeping

SCHEMA = """
CREATE TABLE IF NOT EXISTS markers (
    dedup_key  TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS markers_expiry ON markers (expires_at);
CREATE TABLE IF NOT EXISTS queue (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    target        TEXT NOT NULL,
    source        TEXT NOT NULL,
    type          TEXT NOT NULL,
    key           TEXT NOT NULL,
    body          BLOB NOT NULL,
    since_ms      INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    due_ms        INTEGER NOT NULL DEFAULT 0,
    claimed_by    TEXT,
    claimed_at_ms INTEGER,
    deliveries    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS queue_ready ON queue (target, id) WHERE claimed_by IS NULL;
CREATE INDEX IF NOT EXISTS queue_due ON queue (target, due_ms) WHERE claimed_by IS NULL;
CREATE INDEX IF NOT EXISTS queue_claimed ON queue (target, claimed_by, id)
    WHERE claimed_by IS NOT NULL;
CREATE INDEX IF NOT EXISTS queue_since ON queue (target, since_ms);
CREATE TABLE IF NOT EXISTS dead (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    target       TEXT NOT NULL,
    source       TEXT NOT NULL,
    type         TEXT NOT NULL,
    key          TEXT NOT NULL,
    body         BLOB NOT NULL,
    since_ms     INTEGER NOT NULL,
    attempts     INTEGER NOT NULL,
    status       INTEGER NOT NULL,
    error        TEXT NOT NULL,
    failed_at_ms INTEGER NOT NULL,
    queued_id    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_target ON dead (target, id);
"""

_COLUMNS = "id, source, type, key, body, attempts + deliveries"
_Row = tuple[int, str, str, str, bytes, int]


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

    def partition(self, dedup_key: str) -> int:
        return 0

    # -- the thread's side ----------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """The connection, opened on first use (on the store's thread), so an
        unreachable file fails a call with StoreUnavailable and the next call
        tries again."""
        if self._db is not None:
            return self._db
        db = sqlite3.connect(self.path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL, not NORMAL: in WAL mode NORMAL survives a process crash but
            # a power cut can lose the last commits. A 200 (and an ack) promises
            # the event is on disk, so every commit fsyncs the WAL.
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            db.executescript(SCHEMA)
            if self._max_bytes:
                # Admits stop at max_bytes (_check_room); the file's hard cap
                # sits a quarter above, so that claiming, retrying and
                # acking (which grow indexes) still work in a full store and
                # space can come back. Past the hard cap a write fails with
                # SQLITE_FULL, as on a full disk: a 503, never an ack.
                page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
                hard = self._max_bytes * 5 // 4 // page_size + _HEADROOM_PAGES
                db.execute(f"PRAGMA max_page_count={hard}")
        except BaseException:
            db.close()
            raise
        self._db = db
        return db

    def _transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run `body` as one write transaction: all of it commits, or none."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            result = body(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result

    def _admit_tx(self, batch: Sequence[Admission]) -> list[AdmitOutcome]:
        def body(db: sqlite3.Connection) -> list[AdmitOutcome]:
            self._check_room(db)
            now = _now_ms()
            out: list[AdmitOutcome] = []
            for a in batch:
                mine = f"{a.token}|{a.digest}"
                held = db.execute(
                    "SELECT value FROM markers WHERE dedup_key = ? AND expires_at > ?",
                    (a.dedup_key, now),
                ).fetchone()
                if held is None:  # unseen, or its marker expired
                    db.executemany(
                        "INSERT INTO queue (target, source, type, key, body, since_ms)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        [(t, a.source, a.event_type, a.key, a.body, now) for t in a.targets],
                    )
                    db.execute(
                        "INSERT OR REPLACE INTO markers (dedup_key, value, expires_at)"
                        " VALUES (?, ?, ?)",
                        (a.dedup_key, mine, now + self._ttl_ms),
                    )
                    out.append(AdmitOutcome.ACCEPTED)
                elif held[0] == mine:  # our own request, re-sent: already queued
                    out.append(AdmitOutcome.ACCEPTED)
                elif held[0].endswith("|" + a.digest):
                    out.append(AdmitOutcome.DUPLICATE)
                else:
                    out.append(AdmitOutcome.CONFLICT)
            _sweep(db, now, _SWEEP_PER_ADMIT)
            return out

        return self._transaction(body)

    def _check_room(self, db: sqlite3.Connection) -> None:
        """Refuse an admit once the pages in use reach max_bytes (freed pages
        are reused, so they do not count)."""
        if not self._max_bytes:
            return
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        used = (int(pages) - int(free)) * int(size)
        if used >= self._max_bytes:
            raise StoreUnavailable(f"full: {used} bytes in use of max_size {self._max_bytes}")

    def _claim_tx(
        self, target: str, consumer: str, where: str, params: dict[str, object], count: int
    ) -> list[_Row]:
        """Select up to `count` rows of `target` matching `where` (named parameters;
        :now is the current time in ms), oldest first, and claim them for
        `consumer`, counting the delivery, in one transaction."""

        def body(db: sqlite3.Connection) -> list[_Row]:
            now = _now_ms()
            ids = [
                row[0]
                for row in db.execute(
                    f"SELECT id FROM queue WHERE target = :target AND ({where})"
                    " ORDER BY id LIMIT :count",
                    {**params, "target": target, "now": now, "count": count},
                )
            ]
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            db.execute(
                "UPDATE queue SET claimed_by = ?, claimed_at_ms = ?, deliveries = deliveries + 1"
                f" WHERE id IN ({marks})",
                (consumer, now, *ids),
            )
            rows: list[_Row] = db.execute(
                f"SELECT {_COLUMNS} FROM queue WHERE id IN ({marks}) ORDER BY id", ids
            ).fetchall()
            return rows

        return self._transaction(body)

    def _next_due(self, target: str, after_ms: int) -> int | None:
        row = (
            self._connection()
            .execute(
                "SELECT MIN(due_ms) FROM queue WHERE target = ? AND claimed_by IS NULL"
                " AND due_ms > ?",
                (target, after_ms),
            )
            .fetchone()
        )
        return None if row is None or row[0] is None else int(row[0])

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

        def sweep_all() -> int:
            return self._transaction(lambda db: _sweep(db, _now_ms(), -1))

        return await self._run("sweep", sweep_all)

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
            rows = await self._run(
                "claim",
                self._claim_tx,
                target,
                consumer,
                "claimed_by IS NULL AND due_ms <= :now",
                {},
                count,
            )
            left = deadline - time.monotonic()
            if rows or left <= 0:
                return _queued(rows)
            next_due = await self._run("claim", self._next_due, target, _now_ms())
            if next_due is not None:
                left = min(left, max(0.001, (next_due - _now_ms()) / 1000))
            await self._wait(left)

    async def claim_own_pending(
        self, partition: int, target: str, consumer: str, count: int, after: bytes = b"0"
    ) -> list[Queued]:
        """Entries this consumer name claimed before a crash, with ids past `after`."""
        rows = await self._run(
            "claim",
            self._claim_tx,
            target,
            consumer,
            "claimed_by = :consumer AND id > :after",
            {"consumer": consumer, "after": int(after)},
            count,
        )
        return _queued(rows)

    async def claim_stale(
        self, partition: int, target: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Queued]:
        """Entries any consumer has held claimed for longer than min_idle_ms."""
        rows = await self._run(
            "claim",
            self._claim_tx,
            target,
            consumer,
            "claimed_by IS NOT NULL AND claimed_at_ms <= :now - :idle",
            {"idle": min_idle_ms},
            count,
        )
        return _queued(rows)

    async def ack(self, partition: int, target: str, ids: Sequence[bytes]) -> None:
        rows = [(target, int(i)) for i in ids]

        def delete(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM queue WHERE target = ? AND id = ?", rows)

        if rows:
            await self._run("ack", self._transaction, delete)

    async def retry_later(self, entry: Queued, target: str, due_ms: int) -> None:
        """Release the entry until due_ms, its attempts so far made durable."""

        def release() -> None:
            self._transaction(
                lambda db: db.execute(
                    "UPDATE queue SET due_ms = ?, attempts = ?, deliveries = 0,"
                    " claimed_by = NULL, claimed_at_ms = NULL WHERE id = ? AND target = ?",
                    (due_ms, entry.attempt, int(entry.id), target),
                )
            )

        await self._run("retry", release)
        self._wake()

    async def dead_letter(
        self, entry: Queued, target: str, status: int, error: str, now_ms: int
    ) -> None:
        """Move the entry to the dead letters, in one transaction."""

        def move(db: sqlite3.Connection) -> None:
            queued_id = int(entry.id)
            db.execute(
                "INSERT INTO dead (target, source, type, key, body, since_ms, attempts,"
                " status, error, failed_at_ms, queued_id)"
                " SELECT target, source, type, key, body, since_ms, ?, ?, ?, ?, id"
                " FROM queue WHERE id = ? AND target = ?",
                (entry.attempt, status, error, now_ms, queued_id, target),
            )
            db.execute("DELETE FROM queue WHERE id = ? AND target = ?", (queued_id, target))

        await self._run("dead_letter", self._transaction, move)

    # -- dead letters, for the operator's commands -----------------------------

    async def dead_letters(self, targets: Sequence[str], letter_id: int | None = None) -> list[Any]:
        """Rows of the dead table for the targets (one id, or all), oldest first."""
        marks = ",".join("?" * len(targets))
        sql = (
            "SELECT id, target, source, type, key, body, since_ms, attempts, status, error,"
            f" failed_at_ms, queued_id FROM dead WHERE target IN ({marks})"
        )
        args: list[object] = list(targets)
        if letter_id is not None:
            sql += " AND id = ?"
            args.append(letter_id)

        def read() -> list[Any]:
            return list(self._connection().execute(sql + " ORDER BY id", args).fetchall())

        return await self._run("dead_letters", read)

    async def replay_dead_letter(self, letter_id: int, target: str) -> int | None:
        """Back onto the queue with a fresh attempt count, then out of the dead
        table, in one transaction; the new queue id, or None if already gone."""

        def move(db: sqlite3.Connection) -> int | None:
            cursor = db.execute(
                "INSERT INTO queue (target, source, type, key, body, since_ms)"
                " SELECT target, source, type, key, body, since_ms FROM dead"
                " WHERE id = ? AND target = ?",
                (letter_id, target),
            )
            if cursor.rowcount == 0:
                return None
            db.execute("DELETE FROM dead WHERE id = ? AND target = ?", (letter_id, target))
            return cursor.lastrowid

        return await self._run("replay", self._transaction, move)

    async def purge_dead_letter(self, letter_id: int, target: str) -> bool:
        def delete(db: sqlite3.Connection) -> bool:
            cursor = db.execute("DELETE FROM dead WHERE id = ? AND target = ?", (letter_id, target))
            return cursor.rowcount > 0

        return await self._run("purge", self._transaction, delete)

    async def promote_due(self, partition: int, target: str, now_ms: int) -> int | None:
        """Retries wait in the queue table and `claim` takes them once due, so
        there is nothing to move: only the next due time (ms) after now, if any."""
        return await self._run("promote", self._next_due, target, now_ms)

    async def depth(self, partition: int, target: str) -> tuple[int, int | None]:
        """Events not yet delivered (queued, claimed or waiting to retry), and
        the oldest one's first-queued time in ms."""

        def read() -> tuple[int, int | None]:
            count, oldest = (
                self._connection()
                .execute("SELECT COUNT(*), MIN(since_ms) FROM queue WHERE target = ?", (target,))
                .fetchone()
            )
            return int(count), None if oldest is None else int(oldest)

        return await self._run("depth", read)

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

        def read() -> tuple[str, int, str]:
            db = self._connection()
            mode = str(db.execute("PRAGMA journal_mode").fetchone()[0])
            sync = int(db.execute("PRAGMA synchronous").fetchone()[0])
            return mode, sync, _filesystem_type(self.path)

        try:
            mode, sync, fstype = await self._run("durability", read)
        except StoreUnavailable as exc:
            return [f"could not read SQLite durability settings: {exc}"]
        problems = []
        if mode.lower() != "wal":
            problems.append(f"journal_mode is {mode}, not wal: the filesystem refused WAL")
        if sync < 2:
            problems.append(f"synchronous is {sync}, not FULL (2): a power cut can lose acks")
        if fstype in {"tmpfs", "ramfs"}:
            problems.append(
                f"{self.path} is on {fstype}: a pod or node restart loses every queued "
                "event; put it on a persistent volume"
            )
        return problems

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


def _sweep(db: sqlite3.Connection, now_ms: int, limit: int) -> int:
    """Delete expired markers (up to `limit`; -1: all). An expired marker
    already counts as absent; this only reclaims its space."""
    cursor = db.execute(
        "DELETE FROM markers WHERE dedup_key IN"
        " (SELECT dedup_key FROM markers WHERE expires_at <= ? LIMIT ?)",
        (now_ms, limit),
    )
    return cursor.rowcount


def _queued(rows: list[_Row]) -> list[Queued]:
    return [
        Queued(
            partition=0,
            id=str(row_id).encode(),
            source=source,
            event_type=event_type,
            key=key,
            body=bytes(body),
            attempt=int(attempt),
        )
        for row_id, source, event_type, key, body, attempt in rows
    ]


def _filesystem_type(path: str) -> str:
    """The type of the filesystem holding `path` (from /proc/mounts), or ""."""
    if path == ":memory:" or path.startswith("file::memory:"):
        return "ramfs"
    where = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    best, fstype = "", ""
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = where == point or where.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, fstype = point, fields[2]
    except OSError:
        return ""
    return fstype
