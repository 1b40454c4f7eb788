"""What a store still holds, read from outside the gateway, for either store.

The fault suite asks each store the same questions after a fault:

- settled(): is nothing queued, claimed (in delivery) or waiting to retry?
- held_keys(): the idempotency keys of every event the store still holds:
  queued, claimed, waiting to retry or dead-lettered. An event the provider
  got a 200 for is lost only if it is neither at the app nor in here.
- dead_letters(): the dead-lettered events, oldest first (key, attempts).

RedisQueues reads the keys of the one partition the shipped config has
(`partitions: 1`, key prefix `gw`). SqliteQueues opens the database file
read-only with the standard library's sqlite3 (tables of
gateway/store/sqlite_tables.py); in WAL mode a reader never blocks the gateway's
writer, and each question is one read transaction on a fresh connection.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec
import redis

TARGET = "app"  # the shipped config's one target


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: str
    attempts: int


class Queues(Protocol):
    name: str  # "redis" or "sqlite"
    url: str  # the STORE_URL a gateway on this store is started with

    def settled(self) -> bool: ...

    def held_keys(self) -> set[str]: ...

    def dead_letters(self) -> list[DeadLetter]: ...


class RedisQueues:
    """The Redis store's keys for one target, partition 0."""

    name = "redis"

    def __init__(self, db: redis.Redis, url: str, target: str = TARGET) -> None:
        self.db = db
        self.url = url
        tag = "{gw:0}"
        self.stream = f"{tag}:q:{target}"
        self.retry = f"{tag}:retry:{target}"
        self.retry_data = f"{tag}:retrydata:{target}"
        self.dead = f"{tag}:dead:{target}"

    def settled(self) -> bool:
        if self.db.xlen(self.stream) or self.db.zcard(self.retry):
            return False
        return not self.db.exists(self.stream) or self.pending() == 0

    def pending(self) -> int:
        """Entries claimed by a consumer and not acked."""
        return int(self.db.xpending(self.stream, "gateway")["pending"])

    def held_keys(self) -> set[str]:
        entries = self.db.xrange(self.stream) + self.db.xrange(self.dead)
        found = {fields[b"key"].decode() for _, fields in entries}
        for packed in self.db.hvals(self.retry_data):
            fields = msgspec.msgpack.decode(packed)
            found.add(str(fields[fields.index("key") + 1]))
        return found

    def dead_letters(self) -> list[DeadLetter]:
        return [
            DeadLetter(fields[b"key"].decode(), int(fields[b"attempts"]))
            for _, fields in self.db.xrange(self.dead)
        ]

    def held_by(self, consumer: str) -> set[str]:
        """Keys of the entries a consumer has claimed and not acked."""
        pending = self.db.xpending_range(self.stream, "gateway", "-", "+", 10_000, consumer)
        keys = set()
        for p in pending:
            for _, fields in self.db.xrange(self.stream, p["message_id"], p["message_id"]):
                keys.add(fields[b"key"].decode())
        return keys


class SqliteQueues:
    """The SQLite store's tables for one target, read from its file, read-only."""

    name = "sqlite"

    def __init__(self, path: Path, target: str = TARGET) -> None:
        self.path = path.resolve()
        self.url = f"sqlite:///{self.path}"  # an absolute path: sqlite:////tmp/...
        self.target = target

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True)
        try:
            return db.execute(sql, {"target": self.target}).fetchall()
        finally:
            db.close()

    def settled(self) -> bool:
        # A queue row is an event not yet delivered: new, claimed (claimed_by
        # set) or waiting to retry (due_ms in the future). Delivered rows are
        # deleted, dead-lettered ones moved to `dead`.
        ((count,),) = self._rows("SELECT COUNT(*) FROM queue WHERE target = :target")
        return count == 0

    def held_keys(self) -> set[str]:
        rows = self._rows(
            "SELECT key FROM queue WHERE target = :target"
            " UNION SELECT key FROM dead WHERE target = :target"
        )
        return {str(key) for (key,) in rows}

    def dead_letters(self) -> list[DeadLetter]:
        rows = self._rows("SELECT key, attempts FROM dead WHERE target = :target ORDER BY id")
        return [DeadLetter(str(key), int(attempts)) for key, attempts in rows]
