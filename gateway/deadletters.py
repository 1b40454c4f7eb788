"""Dead letters as the operator's commands see them, over either store.

An event the forwarder gave up on waits in its target's dead-letter store until
an operator looks at it, sends it again or drops it (`gateway.deadletters_cli`).
Those commands speak to the small `DeadLetters` interface here, implemented over
the Redis store (`RedisDeadLetters`; key shapes stay in gateway.store.redis_shapes)
and the SQLite store (`SqliteDeadLetters`; its SQL is in gateway.store.sqlite_tables).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from gateway.config import Config
from gateway.store import sqlite_path
from gateway.store.redis import RedisStore
from gateway.store.sqlite import SqliteStore

_PAGE: Final = 500  # dead letters read per store call


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str  # the store's id for it, unique within its target
    target: str
    source: str
    event_type: str
    key: str
    body: bytes  # the provider's body, byte for byte
    since_ms: int  # when the event was first queued
    attempts: int
    status: int  # the last HTTP status; 0 = no response (connect error, timeout, ...)
    error: str
    failed_at_ms: int
    queued_id: str  # its id on the queue when it failed


class Unreplayable(Exception):
    """A dead letter that cannot go back on the queue (it lacks an event field)."""


class DeadLetters(Protocol):
    """What the commands need from a store's dead letters.

    Every method raises StoreUnavailable when the store cannot be reached."""

    async def list_all(self, targets: Sequence[str]) -> Sequence[DeadLetter]:
        """The targets' dead letters, oldest first."""
        ...

    async def find(self, letter_id: str, targets: Sequence[str]) -> Sequence[DeadLetter]:
        """The dead letters with this id among the targets (one per target at most)."""
        ...

    async def replay(self, letter: DeadLetter) -> str | None:
        """Put it back on its target's queue with a fresh attempt count and delete
        it, atomically; the new queue id, or None when it was already gone.
        Raises Unreplayable."""
        ...

    async def purge(self, letters: Sequence[DeadLetter]) -> Sequence[bool]:
        """Delete them; per letter, whether it was still there."""
        ...

    async def close(self) -> None: ...


def dead_letters_for(config: Config) -> DeadLetters:
    """The dead letters of the store the config names."""
    path = sqlite_path(config.store.url)
    if path is not None:
        return SqliteDeadLetters(SqliteStore(config.store, path=path))
    return RedisDeadLetters(RedisStore(config.store))


# --- the SQLite implementation -----------------------------------------------


class SqliteDeadLetters:
    """Dead letters in the SQLite store's `dead` table; an id is the row id."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def list_all(self, targets: Sequence[str]) -> Sequence[DeadLetter]:
        rows = await self._store.dead_letters(targets)
        return sorted(map(_from_row, rows), key=lambda d: (d.failed_at_ms, d.target, d.id))

    async def find(self, letter_id: str, targets: Sequence[str]) -> Sequence[DeadLetter]:
        if not letter_id.isdigit():
            return []
        return [_from_row(r) for r in await self._store.dead_letters(targets, int(letter_id))]

    async def replay(self, letter: DeadLetter) -> str | None:
        new_id = await self._store.replay_dead_letter(int(letter.id), letter.target)
        return None if new_id is None else str(new_id)

    async def purge(self, letters: Sequence[DeadLetter]) -> Sequence[bool]:
        return [await self._store.purge_dead_letter(int(d.id), d.target) for d in letters]

    async def close(self) -> None:
        await self._store.close()


def _from_row(row: Any) -> DeadLetter:
    letter_id, target, source, event_type, key, body, since, attempts = row[:8]
    status, error, failed_at, queued_id = row[8:]
    return DeadLetter(
        str(letter_id), target, source, event_type, key, bytes(body), int(since),
        int(attempts), int(status), str(error), int(failed_at), str(queued_id),
    )  # fmt: skip


# --- the Redis implementation ------------------------------------------------

_REDIS_ID: Final = re.compile(r"(?:([0-9]{1,4})/)?([0-9]{1,20}-[0-9]{1,20})")


class RedisDeadLetters:
    """Dead letters in the per-partition dead-letter streams of the Redis store.

    An id is the dead-letter stream's entry id, prefixed with `<partition>/`
    outside partition 0, so it is unique within a target."""

    def __init__(self, store: RedisStore) -> None:
        self._store = store

    async def list_all(self, targets: Sequence[str]) -> Sequence[DeadLetter]:
        letters: list[DeadLetter] = []
        for target in targets:
            for partition in range(self._store.partitions):
                letters += await self._stream(partition, target)
        return sorted(letters, key=lambda d: (d.failed_at_ms, d.target, d.id))

    async def _stream(self, partition: int, target: str) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        start = "-"
        while True:
            page = await self._store.dead_letter_range(partition, target, start, "+", _PAGE)
            letters += [_from_redis(target, partition, i, f) for i, f in page]
            if len(page) < _PAGE:
                return letters
            start = "(" + page[-1][0].decode()

    async def find(self, letter_id: str, targets: Sequence[str]) -> Sequence[DeadLetter]:
        place = self._locate(letter_id)
        if place is None:
            return []
        partition, entry = place
        found: list[DeadLetter] = []
        for target in targets:
            page = await self._store.dead_letter_range(partition, target, entry, entry, 1)
            found += [_from_redis(target, partition, i, f) for i, f in page]
        return found

    async def replay(self, letter: DeadLetter) -> str | None:
        partition, entry = self._place(letter)
        outcome, detail = await self._store.replay_dead_letter(partition, letter.target, entry)
        if outcome == "malformed":
            raise Unreplayable(f'it has no "{detail}" field')
        return detail if outcome == "replayed" else None

    async def purge(self, letters: Sequence[DeadLetter]) -> Sequence[bool]:
        groups: dict[tuple[int, str], list[int]] = {}
        for n, letter in enumerate(letters):
            groups.setdefault((self._place(letter)[0], letter.target), []).append(n)
        deleted = [False] * len(letters)
        for (partition, target), members in groups.items():
            entries = [self._place(letters[n])[1] for n in members]
            outcome = await self._store.purge_dead_letters(partition, target, entries)
            for n, gone in zip(members, outcome, strict=True):
                deleted[n] = gone
        return deleted

    async def close(self) -> None:
        await self._store.close()

    def _locate(self, letter_id: str) -> tuple[int, str] | None:
        """(partition, entry id) of a well-formed id of this store, else None."""
        match = _REDIS_ID.fullmatch(letter_id)
        if match is None:
            return None
        partition = int(match.group(1) or 0)
        return (partition, match.group(2)) if partition < self._store.partitions else None

    def _place(self, letter: DeadLetter) -> tuple[int, str]:
        place = self._locate(letter.id)
        if place is None:
            raise ValueError(f"not a dead letter of this store: {letter.id}")
        return place


def _from_redis(
    target: str, partition: int, entry_id: bytes, fields: dict[bytes, bytes]
) -> DeadLetter:
    entry = entry_id.decode()
    failed_at = _int(fields, b"failed_at") or int(entry.split("-")[0])

    def text(name: bytes) -> str:
        return fields.get(name, b"").decode(errors="replace")

    return DeadLetter(
        id=entry if partition == 0 else f"{partition}/{entry}",
        target=target,
        source=text(b"source"),
        event_type=text(b"type"),
        key=text(b"key"),
        body=fields.get(b"body", b""),
        since_ms=_int(fields, b"since") or failed_at,
        attempts=_int(fields, b"attempts"),
        status=_int(fields, b"status"),
        error=text(b"error"),
        failed_at_ms=failed_at,
        queued_id=text(b"queued_id"),
    )


def _int(fields: dict[bytes, bytes], name: bytes) -> int:
    try:
        return int(fields.get(name, b"0"))
    except ValueError:
        return 0
