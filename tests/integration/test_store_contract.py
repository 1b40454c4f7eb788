"""One contract suite for every store: admit, claim, ack, retry, dead-letter, depth.

Each test runs against the Redis store (on the session's real redis-server) and
the SQLite store (on a file in tmp_path), through the store API only; what a
store keeps of a dead letter is read by a small store-specific helper.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from gateway.errors import StoreUnavailable
from gateway.models import Admission, AdmitOutcome, Queued, body_digest
from gateway.store.due_clock import DueClock
from gateway.store.redis import RedisStore
from gateway.store.sqlite import SqliteStore
from tests.support.digests import EARLIER_KINDS, Digest
from tests.support.processes import RedisServer
from tests.support.stores import store_config

pytestmark = pytest.mark.integration

T = TypeVar("T")
AnyStore = RedisStore | SqliteStore

APP = "app"
OTHER = "other"
C1 = "consumer-1"
C2 = "consumer-2"
POLL_LIMIT = 5.0  # seconds a poll may take before the test fails


@dataclass
class DeadLetter:
    key: str
    body: bytes
    attempts: int
    status: int
    error: str
    failed_at_ms: int
    queued_id: bytes


@dataclass
class Backend:
    name: str
    make: Callable[..., AnyStore]  # make(**StoreConfig overrides): a new store object
    dead_letters: Callable[[str], list[DeadLetter]]
    unreachable: Callable[[], AnyStore]  # a store whose backing cannot be reached

    @contextlib.asynccontextmanager
    async def open(self, **overrides: object) -> AsyncIterator[AnyStore]:
        store = self.make(**overrides)
        try:
            for target in (APP, OTHER):
                await store.ensure_group(0, target)
            yield store
        finally:
            await store.close()


def redis_backend(server: RedisServer, db: redis.Redis) -> Backend:
    def make(**overrides: object) -> AnyStore:
        return RedisStore(store_config(server.url, **overrides))

    def dead_letters(target: str) -> list[DeadLetter]:
        found = []
        stream = f"{{gw:0}}:dead:{target}"
        entries: list[tuple[bytes, dict[bytes, bytes]]] = db.xrange(stream)  # type: ignore[assignment]
        for _, f in entries:
            found.append(
                DeadLetter(
                    key=f[b"key"].decode(),
                    body=f[b"body"],
                    attempts=int(f[b"attempts"]),
                    status=int(f[b"status"]),
                    error=f[b"error"].decode(),
                    failed_at_ms=int(f[b"failed_at"]),
                    queued_id=f[b"queued_id"],
                )
            )
        return found

    def unreachable() -> AnyStore:
        return RedisStore(store_config("redis://127.0.0.1:1/0", connect_timeout=0.2))

    return Backend("redis", make, dead_letters, unreachable)


def sqlite_backend(path: Path) -> Backend:
    def make(**overrides: object) -> AnyStore:
        return SqliteStore(store_config("", **overrides), path=str(path))

    def dead_letters(target: str) -> list[DeadLetter]:
        with contextlib.closing(sqlite3.connect(path)) as db:
            rows = db.execute(
                "SELECT key, body, attempts, status, error, failed_at_ms, queued_id"
                " FROM dead WHERE target = ? ORDER BY id",
                (target,),
            ).fetchall()
        return [
            DeadLetter(key, bytes(body), attempts, status, error, failed, str(queued).encode())
            for key, body, attempts, status, error, failed, queued in rows
        ]

    def unreachable() -> AnyStore:
        return SqliteStore(store_config(), path=str(path.parent / "missing" / "dir" / "gw.db"))

    return Backend("sqlite", make, dead_letters, unreachable)


@pytest.fixture(params=["redis", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        db: redis.Redis = request.getfixturevalue("redis_db")
        yield redis_backend(server, db)
    else:
        yield sqlite_backend(tmp_path / "gateway.db")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await scenario()

    return asyncio.run(main())


def admission(
    key: str, token: str, targets: tuple[str, ...] = (APP,), body: bytes | None = None
) -> Admission:
    body = b'{"k":"%s"}' % key.encode() if body is None else body
    return Admission(f"src:e:{key}", token, "src", "e", key, body, body_digest(body), targets)


def now_ms() -> int:
    return int(time.time() * 1000)


async def poll(call: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    """Call until `done` holds for the result, failing after POLL_LIMIT seconds."""
    deadline = time.monotonic() + POLL_LIMIT
    while True:
        result = await call()
        if done(result):
            return result
        assert time.monotonic() < deadline, f"still {result!r} after {POLL_LIMIT}s"
        await asyncio.sleep(0.02)


async def promote_and_claim(store: AnyStore) -> list[Queued]:
    await store.promote_due(0, APP)
    return await store.claim(0, APP, C1, 10, 0)


def keys_and_attempts(entries: list[Queued]) -> list[tuple[str, int]]:
    return [(e.key, e.attempt) for e in entries]


# -- admit --------------------------------------------------------------------


def test_admit_accepts_a_new_key_then_answers_duplicate_and_conflict(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.open() as store:
            assert await store.admit(0, [admission("a", "t1")]) == [AdmitOutcome.ACCEPTED]
            assert await store.admit(0, [admission("a", "t2")]) == [AdmitOutcome.DUPLICATE]
            other_body = admission("a", "t3", body=b"another body")
            assert await store.admit(0, [other_body]) == [AdmitOutcome.CONFLICT]
            assert (await store.depth(0, APP))[0] == 1

    run(scenario)


@pytest.mark.parametrize("earlier", EARLIER_KINDS)
def test_a_marker_of_an_earlier_digest_kind_is_a_duplicate_never_a_conflict(
    backend: Backend, earlier: Digest
) -> None:
    """Markers outlive an upgrade (the dedup TTL), so the next version meets digests it
    cannot compare with its own: those keys are duplicates (acked, not forwarded, as a
    conflict is too), not conflicts counted and logged. Two digests of the earlier kind
    still compare."""

    async def scenario() -> None:
        async with backend.open() as store:
            for key in ("a", "b"):
                old = admission(key, f"t-{key}")._replace(digest=earlier(b"old body"))
                assert await store.admit(0, [old]) == [AdmitOutcome.ACCEPTED]
            upgraded = admission("a", "t2", body=b"another body")
            assert await store.admit(0, [upgraded]) == [AdmitOutcome.DUPLICATE]
            older = admission("b", "t3")._replace(digest=earlier(b"another body"))
            assert await store.admit(0, [older]) == [AdmitOutcome.CONFLICT]
            assert (await store.depth(0, APP))[0] == 2

    run(scenario)


def test_a_resent_admit_with_its_own_token_is_accepted_and_queues_nothing_more(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        async with backend.open() as store:
            batch = [admission("a", "t1"), admission("b", "t2")]
            assert await store.admit(0, batch) == [AdmitOutcome.ACCEPTED] * 2
            assert await store.admit(0, batch) == [AdmitOutcome.ACCEPTED] * 2
            assert (await store.depth(0, APP))[0] == 2

    run(scenario)


def test_the_same_key_twice_in_one_batch_is_queued_once(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.open() as store:
            outcomes = await store.admit(0, [admission("a", "t1"), admission("a", "t2")])
            assert outcomes == [AdmitOutcome.ACCEPTED, AdmitOutcome.DUPLICATE]
            assert (await store.depth(0, APP))[0] == 1

    run(scenario)


def test_an_event_fans_out_to_every_target(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.open() as store:
            both = admission("a", "t1", targets=(APP, OTHER))
            assert await store.admit(0, [both]) == [AdmitOutcome.ACCEPTED]
            for target in (APP, OTHER):
                assert (await store.depth(0, target))[0] == 1
                claimed = await store.claim(0, target, C1, 10, 0)
                assert [(e.key, e.body) for e in claimed] == [("a", both.body)]

    run(scenario)


def test_an_unrouted_event_is_marked_seen_but_queued_nowhere(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.open() as store:
            assert await store.admit(0, [admission("a", "t1", targets=())]) == [
                AdmitOutcome.ACCEPTED
            ]
            assert await store.admit(0, [admission("a", "t2")]) == [AdmitOutcome.DUPLICATE]
            assert await store.depth(0, APP) == (0, None)
            assert await store.claim(0, APP, C1, 10, 0) == []

    run(scenario)


def test_an_expired_marker_counts_as_absent(backend: Backend) -> None:
    ttl = 0.3

    async def scenario() -> None:
        async with backend.open(dedup_ttl=ttl) as store:
            assert await store.admit(0, [admission("a", "t1")]) == [AdmitOutcome.ACCEPTED]
            assert await store.admit(0, [admission("a", "t2")]) == [AdmitOutcome.DUPLICATE]
            # A sleep, not a poll: an admit during the wait could clean the
            # expired marker up and hide a lookup that still counts it.
            await asyncio.sleep(ttl + 0.05)
            assert await store.admit(0, [admission("a", "t3")]) == [AdmitOutcome.ACCEPTED]
            assert await store.admit(0, [admission("a", "t4")]) == [AdmitOutcome.DUPLICATE]
            assert (await store.depth(0, APP))[0] == 2  # the event is queued again

    run(scenario)


# -- claiming ------------------------------------------------------------------


def test_claim_returns_each_new_entry_once_oldest_first_as_attempt_1(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        async with backend.open() as store:
            await store.admit(0, [admission(k, f"t{k}") for k in "abc"])
            first = await store.claim(0, APP, C1, 2, 0)
            second = await store.claim(0, APP, C1, 10, 0)
            assert keys_and_attempts(first) == [("a", 1), ("b", 1)]
            assert keys_and_attempts(second) == [("c", 1)]
            assert await store.claim(0, APP, C2, 10, 0) == []
            assert all(isinstance(e.id, bytes) and e.partition == 0 for e in first + second)

    run(scenario)


def test_a_blocking_claim_wakes_for_an_admit_and_times_out_without_one(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        async with backend.open() as store:
            started = time.monotonic()
            assert await store.claim(0, APP, C1, 10, 200) == []
            assert time.monotonic() - started >= 0.15  # it did wait

            waiting = asyncio.ensure_future(store.claim(0, APP, C1, 10, 900))
            await asyncio.sleep(0.05)
            admitted = time.monotonic()
            await store.admit(0, [admission("a", "t1")])
            claimed = await waiting
            assert keys_and_attempts(claimed) == [("a", 1)]
            assert time.monotonic() - admitted < 0.6  # woken, not timed out

    run(scenario)


def test_after_a_crash_the_same_consumer_gets_its_unacked_entries_as_attempt_2(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        async with backend.open() as store:
            await store.admit(0, [admission("a", "t1"), admission("b", "t2")])
            assert keys_and_attempts(await store.claim(0, APP, C1, 10, 0)) == [
                ("a", 1),
                ("b", 1),
            ]
        # a new store object: the process crashed and restarted
        async with backend.open() as store:
            assert await store.claim(0, APP, C1, 10, 0) == []  # nothing new
            assert await store.claim_own_pending(0, APP, C2, 10) == []  # not C2's
            own = await store.claim_own_pending(0, APP, C1, 10)
            assert keys_and_attempts(own) == [("a", 2), ("b", 2)]
            past_first = await store.claim_own_pending(0, APP, C1, 10, own[0].id)
            assert keys_and_attempts(past_first) == [("b", 3)]
            assert await store.claim_own_pending(0, APP, C1, 10, own[1].id) == []

    run(scenario)


def test_another_consumer_claims_entries_left_idle_past_min_idle(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.open() as store:
            await store.admit(0, [admission("a", "t1")])
            assert keys_and_attempts(await store.claim(0, APP, C1, 10, 0)) == [("a", 1)]
            assert await store.claim_stale(0, APP, C2, 60_000, 10) == []  # not idle enough

            stale = await poll(
                lambda: store.claim_stale(0, APP, C2, 100, 10), lambda found: bool(found)
            )
            assert keys_and_attempts(stale) == [("a", 2)]
            assert await store.claim_own_pending(0, APP, C1, 10) == []  # C1 lost it
            assert keys_and_attempts(await store.claim_own_pending(0, APP, C2, 10)) == [("a", 3)]

    run(scenario)


def test_ack_removes_the_entry(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.open() as store:
            await store.admit(0, [admission("a", "t1"), admission("b", "t2")])
            a, b = await store.claim(0, APP, C1, 10, 0)
            assert (await store.depth(0, APP))[0] == 2  # claimed is not delivered
            await store.ack(0, APP, [a.id])
            assert (await store.depth(0, APP))[0] == 1
            assert keys_and_attempts(await store.claim_own_pending(0, APP, C1, 10)) == [("b", 2)]
            await store.ack(0, APP, [b.id])
            assert await store.depth(0, APP) == (0, None)
        async with backend.open() as store:
            assert await store.claim_own_pending(0, APP, C1, 10) == []
            assert await store.claim_stale(0, APP, C2, 0, 10) == []

    run(scenario)


def test_a_retry_waits_until_due_then_comes_back_as_the_next_attempt(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        async with backend.open() as store:
            await store.admit(0, [admission("a", "t1")])
            (entry,) = await store.claim(0, APP, C1, 10, 0)
            scheduled = time.monotonic()
            await store.retry_later(entry, APP, 0.4)
            assert (await store.depth(0, APP))[0] == 1  # a waiting retry is not delivered
            until_due = await store.promote_due(0, APP)
            assert until_due is not None
            # Due times are whole milliseconds rounded up, the clock (and, while a retry
            # waits, its wall-monotonic offset) rounded down: never early
            # (gateway/store/due_clock.py), so up to 3 ms over the delay. CI saw 0.401.
            assert 0 < until_due <= 0.4 + 0.003
            assert await store.claim(0, APP, C1, 10, 0) == []  # not before due
            assert await store.claim_own_pending(0, APP, C1, 10) == []  # released

            again = await poll(partial(promote_and_claim, store), bool)
            assert time.monotonic() - scheduled >= 0.4
            assert keys_and_attempts(again) == [("a", 2)]
            assert await store.promote_due(0, APP) is None

            # and once more: the count keeps rising across retries
            await store.retry_later(again[0], APP, 0)
            third = await poll(partial(promote_and_claim, store), bool)
            assert keys_and_attempts(third) == [("a", 3)]

    run(scenario)


def test_a_retry_is_not_due_before_its_delay_when_the_wall_clock_jumps_ahead(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        async with backend.open() as store:
            jump = 0.0
            # The store's clock seam: its wall clock, which the test moves.
            store._due = DueClock(wall=lambda: time.time() + jump)
            await store.admit(0, [admission("a", "t1")])
            (entry,) = await store.claim(0, APP, C1, 10, 0)
            scheduled = time.monotonic()
            await store.retry_later(entry, APP, 1.0)
            jump = 3600.0  # an hour ahead: by the wall clock alone it is long due
            again = await poll(partial(promote_and_claim, store), bool)
            assert time.monotonic() - scheduled >= 1.0
            assert keys_and_attempts(again) == [("a", 2)]

    run(scenario)


def test_dead_letter_moves_the_entry_out_of_the_queue(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.open() as store:
            event = admission("a", "t1")
            await store.admit(0, [event, admission("b", "t2")])
            entry, _ = await store.claim(0, APP, C1, 10, 0)
            failed_at = now_ms()
            await store.dead_letter(entry, APP, 422, "HTTP 422", failed_at)
            assert (await store.depth(0, APP))[0] == 1
            assert keys_and_attempts(await store.claim_own_pending(0, APP, C1, 10)) == [("b", 2)]
            assert backend.dead_letters(APP) == [
                DeadLetter("a", event.body, 1, 422, "HTTP 422", failed_at, entry.id)
            ]
            assert backend.dead_letters(OTHER) == []

    run(scenario)


def test_depth_counts_undelivered_entries_and_reports_the_oldest(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.open() as store:
            assert await store.depth(0, APP) == (0, None)
            before = now_ms()
            await store.admit(0, [admission("a", "t1")])
            between = now_ms()
            await asyncio.sleep(0.03)
            await store.admit(0, [admission("b", "t2"), admission("c", "t3", targets=(OTHER,))])
            count, oldest = await store.depth(0, APP)
            assert count == 2
            assert oldest is not None
            assert before - 5 <= oldest <= between + 5  # a's time, not b's
            assert (await store.depth(0, OTHER))[0] == 1

    run(scenario)


# -- health and failures --------------------------------------------------------


def test_ping_answers_and_an_unreachable_store_raises_store_unavailable(
    backend: Backend,
) -> None:
    async def scenario() -> None:
        async with backend.open() as store:
            assert await store.ping() is True
            assert isinstance(await store.durability_warnings(), list)
        broken = backend.unreachable()
        try:
            assert await store_ping(broken) is False
            with pytest.raises(StoreUnavailable):
                await broken.admit(0, [admission("a", "t1")])
            with pytest.raises(StoreUnavailable):
                await broken.claim(0, APP, C1, 10, 0)
        finally:
            await broken.close()

    run(scenario)


async def store_ping(store: AnyStore) -> bool:
    return await store.ping()


# -- SQLite only ------------------------------------------------------------------


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "gateway.db"


def open_sqlite(path: Path, **overrides: object) -> AbstractAsyncContextManager[AnyStore]:
    return sqlite_backend(path).open(**overrides)


def test_sqlite_data_survives_closing_and_reopening_the_file(sqlite_path: Path) -> None:
    async def scenario() -> None:
        async with open_sqlite(sqlite_path) as store:
            await store.admit(0, [admission("a", "t1"), admission("b", "t2")])
            a, _ = await store.claim(0, APP, C1, 10, 0)
            await store.ack(0, APP, [a.id])
        async with open_sqlite(sqlite_path) as store:
            assert (await store.depth(0, APP))[0] == 1
            assert await store.admit(0, [admission("a", "t9")]) == [AdmitOutcome.DUPLICATE]
            assert keys_and_attempts(await store.claim_own_pending(0, APP, C1, 10)) == [("b", 2)]

    run(scenario)


def test_sqlite_uses_wal_with_full_sync(sqlite_path: Path) -> None:
    async def scenario() -> list[str]:
        async with open_sqlite(sqlite_path) as store:
            await store.admit(0, [admission("a", "t1")])
            return await store.durability_warnings()

    warnings = run(scenario)
    assert not [w for w in warnings if "journal_mode" in w or "synchronous" in w]
    with contextlib.closing(sqlite3.connect(sqlite_path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_sweep_deletes_expired_markers(sqlite_path: Path) -> None:
    async def scenario() -> Any:
        async with open_sqlite(sqlite_path, dedup_ttl=0.05) as store:
            assert isinstance(store, SqliteStore)
            await store.admit(0, [admission("a", "t1"), admission("b", "t2")])
            assert await store.sweep() == 0  # nothing expired yet
            await asyncio.sleep(0.1)
            assert await store.sweep() == 2

    run(scenario)
    with contextlib.closing(sqlite3.connect(sqlite_path)) as db:
        assert db.execute("SELECT COUNT(*) FROM markers").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM queue").fetchone()[0] == 2


def test_sqlite_admit_is_all_or_nothing(sqlite_path: Path) -> None:
    """A batch whose transaction fails leaves neither markers nor queue rows."""

    async def scenario() -> None:
        async with open_sqlite(sqlite_path) as store:
            await store.admit(0, [admission("a", "t1")])  # creates the schema
            with contextlib.closing(sqlite3.connect(sqlite_path)) as db:
                db.execute(
                    "CREATE TRIGGER refuse_c BEFORE INSERT ON queue WHEN NEW.key = 'c'"
                    " BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
                db.commit()
            batch = [admission("b", "t2"), admission("c", "t3")]
            with pytest.raises(StoreUnavailable):
                await store.admit(0, batch)
            assert (await store.depth(0, APP))[0] == 1
            with contextlib.closing(sqlite3.connect(sqlite_path)) as db:
                db.execute("DROP TRIGGER refuse_c")
                db.commit()
            assert await store.admit(0, batch) == [AdmitOutcome.ACCEPTED] * 2

    run(scenario)


def test_sqlite_calls_after_close_raise_store_unavailable(sqlite_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteStore(store_config(), path=str(sqlite_path))
        await store.admit(0, [admission("a", "t1")])
        await store.close()
        await store.close()  # twice is harmless
        assert await store.ping() is False
        with pytest.raises(StoreUnavailable):
            await store.admit(0, [admission("b", "t2")])

    run(scenario)
