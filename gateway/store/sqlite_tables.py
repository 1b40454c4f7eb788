"""The embedded store's tables and the SQL on them: one function per read or
transaction body, each given an open connection (and the time, where it
matters). No threads and no event loop here: gateway/store/sqlite.py owns the
connection's thread and decides what runs as one transaction.

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

import sqlite3
from collections.abc import Sequence
from typing import Any, NamedTuple

from gateway.models import Admission, AdmitOutcome, Queued, conflicting, marker_value

SWEEP_PER_ADMIT = 256  # expired markers deleted by each admit transaction, at most

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
Row = tuple[int, str, str, str, bytes, int]  # a claimed queue row, in _COLUMNS order

# -- admitting ----------------------------------------------------------------


def admit(
    db: sqlite3.Connection, batch: Sequence[Admission], now_ms: int, ttl_ms: int
) -> list[AdmitOutcome]:
    """Admit each event of the batch in turn, then reclaim a few expired markers."""
    out = [_admit_one(db, a, now_ms, ttl_ms) for a in batch]
    sweep(db, now_ms, SWEEP_PER_ADMIT)
    return out


def _admit_one(db: sqlite3.Connection, a: Admission, now_ms: int, ttl_ms: int) -> AdmitOutcome:
    mine = marker_value(a)
    held = db.execute(
        "SELECT value FROM markers WHERE dedup_key = ? AND expires_at > ?",
        (a.dedup_key, now_ms),
    ).fetchone()
    if held is None:  # unseen, or its marker expired
        db.executemany(
            "INSERT INTO queue (target, source, type, key, body, since_ms)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(t, a.source, a.event_type, a.key, a.body, now_ms) for t in a.targets],
        )
        db.execute(
            "INSERT OR REPLACE INTO markers (dedup_key, value, expires_at) VALUES (?, ?, ?)",
            (a.dedup_key, mine, now_ms + ttl_ms),
        )
        return AdmitOutcome.ACCEPTED
    if held[0] == mine:  # our own request, re-sent: already queued
        return AdmitOutcome.ACCEPTED
    if conflicting(held[0].rpartition("|")[2], a.digest):
        return AdmitOutcome.CONFLICT
    return AdmitOutcome.DUPLICATE


def sweep(db: sqlite3.Connection, now_ms: int, limit: int) -> int:
    """Delete expired markers (up to `limit`; -1: all). An expired marker
    already counts as absent; this only reclaims its space."""
    cursor = db.execute(
        "DELETE FROM markers WHERE dedup_key IN"
        " (SELECT dedup_key FROM markers WHERE expires_at <= ? LIMIT ?)",
        (now_ms, limit),
    )
    return cursor.rowcount


# -- the delivery queue -------------------------------------------------------


def claim_due(
    db: sqlite3.Connection, now_ms: int, target: str, consumer: str, count: int, due_by: int
) -> list[Row]:
    """Unclaimed rows due by `due_by` (ms; the store's DueClock): new ones and due retries."""
    where = "claimed_by IS NULL AND due_ms <= :due_by"
    return _claim(db, now_ms, target, consumer, count, where, {"due_by": due_by})


def claim_own_pending(
    db: sqlite3.Connection, now_ms: int, target: str, consumer: str, after: int, count: int
) -> list[Row]:
    """Rows this consumer name claimed before a crash, with ids past `after`."""
    where = "claimed_by = :consumer AND id > :after"
    return _claim(
        db, now_ms, target, consumer, count, where, {"consumer": consumer, "after": after}
    )


def claim_stale(
    db: sqlite3.Connection, now_ms: int, target: str, consumer: str, min_idle_ms: int, count: int
) -> list[Row]:
    """Rows any consumer has held claimed for longer than min_idle_ms."""
    where = "claimed_by IS NOT NULL AND claimed_at_ms <= :now - :idle"
    return _claim(db, now_ms, target, consumer, count, where, {"idle": min_idle_ms})


def _claim(
    db: sqlite3.Connection,
    now_ms: int,
    target: str,
    consumer: str,
    count: int,
    where: str,
    params: dict[str, object],
) -> list[Row]:
    """Select up to `count` rows of `target` matching `where` (named parameters;
    :now is the current time in ms), oldest first, and claim them for
    `consumer`, counting the delivery."""
    ids = [
        row[0]
        for row in db.execute(
            f"SELECT id FROM queue WHERE target = :target AND ({where}) ORDER BY id LIMIT :count",
            {**params, "target": target, "now": now_ms, "count": count},
        )
    ]
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    db.execute(
        "UPDATE queue SET claimed_by = ?, claimed_at_ms = ?, deliveries = deliveries + 1"
        f" WHERE id IN ({marks})",
        (consumer, now_ms, *ids),
    )
    rows: list[Row] = db.execute(
        f"SELECT {_COLUMNS} FROM queue WHERE id IN ({marks}) ORDER BY id", ids
    ).fetchall()
    return rows


def next_due(db: sqlite3.Connection, target: str, after_ms: int) -> int | None:
    """When the next retry waiting in `target`'s rows falls due (ms), if any."""
    row = db.execute(
        "SELECT MIN(due_ms) FROM queue WHERE target = ? AND claimed_by IS NULL AND due_ms > ?",
        (target, after_ms),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def ack(db: sqlite3.Connection, target: str, ids: Sequence[int]) -> None:
    db.executemany("DELETE FROM queue WHERE target = ? AND id = ?", [(target, i) for i in ids])


def retry_later(db: sqlite3.Connection, target: str, entry: Queued, due_ms: int) -> None:
    """Release the entry until due_ms (wall clock), its attempts so far made durable."""
    db.execute(
        "UPDATE queue SET due_ms = ?, attempts = ?, deliveries = 0,"
        " claimed_by = NULL, claimed_at_ms = NULL WHERE id = ? AND target = ?",
        (due_ms, entry.attempt, int(entry.id), target),
    )


def depth(db: sqlite3.Connection, target: str) -> tuple[int, int | None]:
    """Rows not yet delivered, and the oldest one's first-queued time in ms."""
    count, oldest = db.execute(
        "SELECT COUNT(*), MIN(since_ms) FROM queue WHERE target = ?", (target,)
    ).fetchone()
    return int(count), None if oldest is None else int(oldest)


def queued(rows: list[Row]) -> list[Queued]:
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


# -- dead letters -------------------------------------------------------------


def dead_letter(
    db: sqlite3.Connection, target: str, entry: Queued, status: int, error: str, now_ms: int
) -> None:
    """Copy the entry's row into the dead table, then delete it from the queue."""
    queued_id = int(entry.id)
    db.execute(
        "INSERT INTO dead (target, source, type, key, body, since_ms, attempts,"
        " status, error, failed_at_ms, queued_id)"
        " SELECT target, source, type, key, body, since_ms, ?, ?, ?, ?, id"
        " FROM queue WHERE id = ? AND target = ?",
        (entry.attempt, status, error, now_ms, queued_id, target),
    )
    db.execute("DELETE FROM queue WHERE id = ? AND target = ?", (queued_id, target))


class DeadRow(NamedTuple):
    """A row of the dead table, as dead_letters and oldest_dead read it."""

    id: int
    target: str
    source: str
    type: str
    key: str
    body: bytes
    since_ms: int
    attempts: int
    status: int
    error: str
    failed_at_ms: int
    queued_id: int


_DEAD_COLUMNS = ", ".join(DeadRow._fields)


def dead_letters(
    db: sqlite3.Connection, targets: Sequence[str], letter_id: int | None
) -> list[Any]:
    """Rows of the dead table for the targets (one id, or all), oldest first."""
    marks = ",".join("?" * len(targets))
    sql = f"SELECT {_DEAD_COLUMNS} FROM dead WHERE target IN ({marks})"
    args: list[object] = list(targets)
    if letter_id is not None:
        sql += " AND id = ?"
        args.append(letter_id)
    return list(db.execute(sql + " ORDER BY id", args).fetchall())


def oldest_dead(db: sqlite3.Connection, limit: int) -> list[DeadRow]:
    """Up to `limit` rows of the dead table, every target's, oldest first."""
    rows = db.execute(f"SELECT {_DEAD_COLUMNS} FROM dead ORDER BY id LIMIT ?", (limit,))
    return [DeadRow(*row) for row in rows]


def forget_dead(db: sqlite3.Connection, ids: Sequence[int]) -> None:
    db.executemany("DELETE FROM dead WHERE id = ?", [(i,) for i in ids])


def replay_dead_letter(db: sqlite3.Connection, letter_id: int, target: str) -> int | None:
    """Copy the letter back onto the queue with a fresh attempt count, then
    delete it; the new queue id, or None if it was already gone."""
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


def purge_dead_letter(db: sqlite3.Connection, letter_id: int, target: str) -> bool:
    cursor = db.execute("DELETE FROM dead WHERE id = ? AND target = ?", (letter_id, target))
    return cursor.rowcount > 0
