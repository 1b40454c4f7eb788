"""The spool's drain into Redis, driven in-process against a real redis-server
and a real SQLite file: idempotent after a crash, and never a second copy of
an event that Redis already holds."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import redis

from gateway import spool
from gateway.config import SpoolConfig
from gateway.errors import StoreUnavailable
from gateway.metrics import Metrics
from gateway.models import Admission, AdmitOutcome, body_digest
from gateway.spool import Delivery, Mode, SpoolingStore, _body_size, _by_size, _read_step
from gateway.store.redis import RedisStore
from gateway.store.sqlite import SqliteStore
from tests.support.processes import RedisServer
from tests.support.stores import store_config

pytestmark = pytest.mark.integration

T = TypeVar("T")
STREAM = "{gw:0}:q:app"
Field = tuple[str, bytes | str]


def admission(key: str, token: str, targets: tuple[str, ...] = ("app",)) -> Admission:
    body = f'{{"idempotency_key": "{key}"}}'.encode()
    return Admission(f"src:e:{key}", token, "src", "e", key, body, body_digest(body), targets)


def run(
    server: RedisServer,
    path: Path,
    scenario: Callable[[SpoolingStore], Awaitable[T]],
    delivery: Callable[[SqliteStore], Delivery | None] = lambda _: None,
) -> T:
    async def main() -> T:
        spooling = SpoolingStore(
            RedisStore(store_config(server.url)),
            SqliteStore(store_config(""), path=str(path)),
            SpoolConfig(enabled=True, max_size=64 << 20, wait_for_redis=0.5),
            Metrics(),
            delivery,
            stop_grace=5.0,
        )
        try:
            return await scenario(spooling)
        finally:
            await spooling.close()

    return asyncio.run(main())


def queued_keys(db: redis.Redis) -> list[bytes]:
    return [fields[b"key"] for _, fields in db.xrange(STREAM)]


def spool_counts(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
        markers = db.execute("SELECT COUNT(*) FROM markers").fetchone()[0]
    return rows, markers


async def drain(spooling: SpoolingStore) -> None:
    spooling.mode = Mode.DRAINING
    await spooling._drain()


async def supervised_until(spooling: SpoolingStore, done: asyncio.Event) -> None:
    """The supervisor started and run until `done` is set (10 s at most), then stopped."""
    spooling.start()
    try:
        async with asyncio.timeout(10):
            await done.wait()
    finally:
        await spooling.stop()


def drains_signalled(spooling: SpoolingStore, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """An event set each time one of the supervisor's drains has finished."""
    drained = asyncio.Event()
    real_drain = spooling._drain

    async def drain() -> None:
        await real_drain()
        drained.set()

    monkeypatch.setattr(spooling, "_drain", drain)
    return drained


def test_a_drain_cut_after_redis_took_a_step_moves_nothing_twice(
    redis_server: RedisServer, redis_db: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "spool.db"

    async def scenario(spooling: SpoolingStore) -> None:
        batch = [admission(f"k{i}", f"t{i}") for i in range(3)]
        assert await spooling.spool.admit(0, batch) == [AdmitOutcome.ACCEPTED] * 3
        # A crash after Redis ran the step's admit, before the spool forgot it.
        step = await spooling.spool.transact("drain", _read_step)
        await spooling.redis.admit(0, step.admissions)
        await drain(spooling)  # the next run drains everything again

    run(redis_server, path, scenario)
    assert queued_keys(redis_db) == [b"k0", b"k1", b"k2"]
    assert len(redis_db.keys("{gw:0}:idem:*")) == 3
    assert spool_counts(path) == (0, 0)


def test_a_delivered_event_moves_as_its_marker_only(
    redis_server: RedisServer, redis_db: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "spool.db"

    async def scenario(spooling: SpoolingStore) -> AdmitOutcome:
        await spooling.spool.admit(0, [admission("done", "t1"), admission("waiting", "t2")])
        claimed = await spooling.spool.claim(0, "app", "c", 1, 0)
        assert [e.key for e in claimed] == ["done"]
        await spooling.spool.ack(0, "app", [claimed[0].id])
        await drain(spooling)
        # The provider retries the delivered one after the outage: a duplicate.
        return (await spooling.redis.admit(0, [admission("done", "t3")]))[0]

    assert run(redis_server, path, scenario) is AdmitOutcome.DUPLICATE
    assert queued_keys(redis_db) == [b"waiting"]
    assert spool_counts(path) == (0, 0)


def test_a_key_redis_already_holds_under_another_request_is_dropped_from_the_spool(
    redis_server: RedisServer, redis_db: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "spool.db"

    async def scenario(spooling: SpoolingStore) -> None:
        await spooling.spool.admit(0, [admission("both", "spool-token")])
        # Another replica admitted the provider's retry of it into Redis.
        await spooling.redis.admit(0, [admission("both", "replica-token")])
        await drain(spooling)

    run(redis_server, path, scenario)
    assert queued_keys(redis_db) == [b"both"]  # once, from the replica
    assert spool_counts(path) == (0, 0)


def test_rows_whose_marker_expired_in_the_spool_are_still_moved(
    redis_server: RedisServer, redis_db: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "spool.db"

    async def scenario(spooling: SpoolingStore) -> None:
        await spooling.spool.admit(0, [admission("old", "t1", ("app", "other"))])
        await spooling.spool.transact("expire", lambda db: db.execute("DELETE FROM markers"))
        await drain(spooling)

    run(redis_server, path, scenario)
    assert queued_keys(redis_db) == [b"old"]
    assert [f[b"key"] for _, f in redis_db.xrange("{gw:0}:q:other")] == [b"old"]
    assert len(redis_db.keys("{gw:0}:idem:*")) == 1
    assert spool_counts(path) == (0, 0)


def test_a_drain_larger_than_one_step_moves_every_event_once(
    redis_server: RedisServer, redis_db: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "spool.db"
    count = 1234  # two full steps of 500 and a short one

    async def scenario(spooling: SpoolingStore) -> None:
        batch = [admission(f"n{i}", f"t{i}") for i in range(count)]
        await spooling.spool.admit(0, batch)
        await drain(spooling)
        assert spooling.mode is Mode.REDIS

    run(redis_server, path, scenario)
    assert sorted(queued_keys(redis_db)) == sorted(f"n{i}".encode() for i in range(count))
    assert spool_counts(path) == (0, 0)


def test_an_admit_taken_while_draining_that_runs_after_the_drain_ended_goes_to_redis(
    redis_server: RedisServer, redis_db: redis.Redis, tmp_path: Path
) -> None:
    """The batcher's call is taken in one loop turn and runs in a later one: a
    drain may end in between. Written to the spool then, no drain would move it."""
    path = tmp_path / "spool.db"

    async def scenario(spooling: SpoolingStore) -> list[AdmitOutcome]:
        await spooling.spool.admit(0, [admission("early", "t1")])
        spooling.mode = Mode.DRAINING
        late = spooling.admit(0, [admission("late", "t2")])  # taken now, run below
        await spooling._drain()
        assert spooling.mode is Mode.REDIS
        return await late

    assert run(redis_server, path, scenario) == [AdmitOutcome.ACCEPTED]
    assert sorted(queued_keys(redis_db)) == [b"early", b"late"]
    assert spool_counts(path) == (0, 0)


def test_a_drain_that_fails_after_switching_to_redis_is_tried_again(
    redis_server: RedisServer,
    redis_db: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug that cuts a drain in redis mode must not leave events in the spool
    until Redis' next failure: the supervisor drains again after _RETRY_DRAIN."""
    path = tmp_path / "spool.db"
    monkeypatch.setattr(spool, "_RETRY_DRAIN", 0.05)

    async def scenario(spooling: SpoolingStore) -> None:
        await spooling.spool.admit(0, [admission("kept", "t1")])
        drains = 0
        drained = asyncio.Event()
        real_drain = spooling._drain

        async def drain_failing_once() -> None:
            nonlocal drains
            drains += 1
            if drains == 1:
                spooling._set_mode(Mode.REDIS)
                raise RuntimeError("a bug after the switch")
            await real_drain()
            drained.set()

        monkeypatch.setattr(spooling, "_drain", drain_failing_once)
        await supervised_until(spooling, drained)
        assert drains == 2

    run(redis_server, path, scenario)
    assert queued_keys(redis_db) == [b"kept"]
    assert spool_counts(path) == (0, 0)


def test_an_admit_that_fails_over_while_the_first_mode_is_chosen_is_not_overruled(
    redis_server: RedisServer,
    redis_db: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At start the supervisor asks the spool whether it holds events; an admit
    that fails over meanwhile puts its event there after the answer "no". Redis
    mode must not be chosen over that: nothing would drain the event."""
    path = tmp_path / "spool.db"

    async def scenario(spooling: SpoolingStore) -> None:
        real_holds = spooling._holds_events

        async def holds_then_fail_over() -> bool:
            found = await real_holds()
            spooling._fail_over(StoreUnavailable("an admit timed out"))
            await spooling.spool.admit(0, [admission("meanwhile", "t1")])
            return found

        monkeypatch.setattr(spooling, "_holds_events", holds_then_fail_over)
        drained = drains_signalled(spooling, monkeypatch)
        await supervised_until(spooling, drained)

    run(redis_server, path, scenario)
    assert queued_keys(redis_db) == [b"meanwhile"]
    assert spool_counts(path) == (0, 0)


def test_a_redis_that_answers_ping_but_refuses_writes_keeps_the_spool_spooling(
    redis_server: RedisServer,
    redis_db: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Out of memory under noeviction, PING still answers while the admit script
    is refused: the probe is the script itself, so no drain starts (and fails,
    and stops the spool's forwarder) until Redis takes writes again."""
    path = tmp_path / "spool.db"
    monkeypatch.setattr(spool, "_PROBE_INTERVAL", 0.01)

    async def scenario(spooling: SpoolingStore) -> int:
        await spooling.spool.admit(0, [admission("oom", "t1")])
        probes, drains = 0, 0
        probed, drained = asyncio.Event(), asyncio.Event()
        real_probe, real_drain = spooling._redis_answers, spooling._drain

        async def probe() -> bool:
            nonlocal probes
            answer = await real_probe()
            probes += 1
            if probes == 5:
                probed.set()
            return answer

        async def drain() -> None:
            nonlocal drains
            drains += 1
            await real_drain()
            if spooling.mode is Mode.REDIS:
                drained.set()

        monkeypatch.setattr(spooling, "_redis_answers", probe)
        monkeypatch.setattr(spooling, "_drain", drain)
        redis_db.config_set("maxmemory", 1)
        try:
            spooling.start()
            async with asyncio.timeout(10):
                await probed.wait()
            assert spooling.mode is Mode.SPOOL
            refused_drains = drains
        finally:
            redis_db.config_set("maxmemory", 0)
        try:
            async with asyncio.timeout(10):
                await drained.wait()
        finally:
            await spooling.stop()
        return refused_drains

    assert run(redis_server, path, scenario) == 0
    assert queued_keys(redis_db) == [b"oom"]
    assert spool_counts(path) == (0, 0)


def test_a_shutdown_during_a_drain_lets_it_finish(
    redis_server: RedisServer,
    redis_db: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The spool may live on an emptyDir that goes with the pod: a drain under
    way at SIGTERM gets the grace to move everything into Redis."""
    path = tmp_path / "spool.db"
    count = 1600  # four steps of DRAIN_BATCH

    async def scenario(spooling: SpoolingStore) -> None:
        await spooling.spool.admit(0, [admission(f"s{i}", f"t{i}") for i in range(count)])
        started = asyncio.Event()
        real_admit = spooling._admit_into_redis

        async def admit_into_redis(admissions: list[Admission]) -> None:
            started.set()
            await real_admit(admissions)

        monkeypatch.setattr(spooling, "_admit_into_redis", admit_into_redis)
        spooling.start()
        async with asyncio.timeout(10):
            await started.wait()
        await spooling.stop()

    run(redis_server, path, scenario)
    assert len(queued_keys(redis_db)) == count
    assert spool_counts(path) == (0, 0)


class RecordedDelivery:
    """The spool's forwarder, as the supervisor sees it: started, then stopped."""

    def __init__(self, made: list[RecordedDelivery], on_start: asyncio.Event) -> None:
        self.running = False
        self._made = made
        self._on_start = on_start
        made.append(self)

    def start(self) -> None:
        self.running = True
        self.alongside = sum(d.running for d in self._made)  # itself included
        self._on_start.set()

    async def stop(self, grace: float) -> None:
        self.running = False


def test_a_drain_that_keeps_failing_goes_back_to_spooling_and_its_forwarder_delivers(
    redis_server: RedisServer,
    redis_db: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug that fails every drain (a row the drain cannot read) must not leave the
    gateway draining for good, its spool's forwarder stopped: it spools again."""
    path = tmp_path / "spool.db"
    monkeypatch.setattr(spool, "_RETRY_DRAIN", 0.05)
    made: list[RecordedDelivery] = []
    started = asyncio.Event()

    async def scenario(spooling: SpoolingStore) -> None:
        await spooling.spool.admit(0, [admission("stuck", "t1")])

        async def failing_drain() -> None:
            raise RuntimeError("a row the drain cannot read")

        monkeypatch.setattr(spooling, "_drain", failing_drain)
        await supervised_until(spooling, started)  # made and started in spool mode only

    run(redis_server, path, scenario, lambda _: RecordedDelivery(made, started))
    assert made
    assert not any(d.running for d in made)  # each one stopped again


def test_a_drain_step_goes_to_redis_in_calls_of_bounded_size() -> None:
    sizes = [3, 3, 1, 9, 2, 2]
    batch = [
        Admission(f"k{i}", "t", "s", "e", f"k{i}", b"x" * n, "d", ("app",))
        for i, n in enumerate(sizes)
    ]
    calls = _by_size(batch, 6, _body_size)
    assert [[len(a.body) for a in call] for call in calls] == [[3, 3], [1], [9], [2, 2]]
    assert [a for call in calls for a in call] == batch


def test_the_spools_dead_letters_move_into_redis_and_replay_from_there(
    redis_server: RedisServer, redis_db: redis.Redis, tmp_path: Path
) -> None:
    """Events the spool's forwarder gave up on (the app refused them during the
    outage) must not stay in a file that goes with the pod, unlisted."""
    path = tmp_path / "spool.db"
    dead_stream = "{gw:0}:dead:app"

    async def scenario(spooling: SpoolingStore) -> tuple[dict[bytes, bytes], str]:
        await spooling.spool.admit(0, [admission("refused", "t1"), admission("fine", "t2")])
        (entry,) = await spooling.spool.claim(0, "app", "c", 1, 0)
        await spooling.spool.dead_letter(entry, "app", 422, "the app refused it", 1_000)
        await drain(spooling)
        ((dead_id, fields),) = redis_db.xrange(dead_stream)
        outcome, _ = await spooling.redis.replay_dead_letter(0, "app", dead_id.decode())
        return fields, outcome

    fields, outcome = run(redis_server, path, scenario)
    assert fields[b"key"] == b"refused"
    assert (fields[b"status"], fields[b"error"]) == (b"422", b"the app refused it")
    assert (fields[b"failed_at"], fields[b"attempts"]) == (b"1000", b"1")
    assert fields[b"queued_id"].startswith(b"spool:")
    assert outcome == "replayed"
    assert queued_keys(redis_db) == [b"fine", b"refused"]  # back on the queue
    assert redis_db.xlen(dead_stream) == 0
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM dead").fetchone()[0] == 0


def test_a_spool_forwarder_left_by_a_failed_step_is_stopped_before_the_next_starts(
    redis_server: RedisServer,
    redis_db: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two spool forwarders at once would deliver the same rows twice."""
    path = tmp_path / "spool.db"
    monkeypatch.setattr(spool, "_RETRY_DRAIN", 0.05)
    made: list[RecordedDelivery] = []
    started = asyncio.Event()

    async def scenario(spooling: SpoolingStore) -> None:
        await spooling.spool.admit(0, [admission("twice", "t1")])
        real_probe, real_drain = spooling._redis_answers, spooling._drain
        drained = asyncio.Event()

        async def probe_failing_once_in_spool_mode() -> bool:
            if spooling._delivery is not None and len(made) == 1:
                raise RuntimeError("a bug after the forwarder started")
            return await real_probe()

        async def drain_failing_first() -> None:
            if not made:
                raise StoreUnavailable("the first drain fails: spool mode")
            await real_drain()
            drained.set()

        monkeypatch.setattr(spooling, "_redis_answers", probe_failing_once_in_spool_mode)
        monkeypatch.setattr(spooling, "_drain", drain_failing_first)
        spooling._set_mode(Mode.DRAINING)
        await supervised_until(spooling, drained)

    run(redis_server, path, scenario, lambda _: RecordedDelivery(made, started))
    assert len(made) == 2
    assert [d.alongside for d in made] == [1, 1]
    assert queued_keys(redis_db) == [b"twice"]


def test_a_drain_sends_redis_calls_of_bounded_size(
    redis_server: RedisServer,
    redis_db: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """500 events of 1 MiB in one call would outlast the link's socket timeout."""
    path = tmp_path / "spool.db"
    limit = 80  # bodies of 25 bytes: 3 events a call; a dead letter's fields: 1 a call
    monkeypatch.setattr(spool, "DRAIN_CALL_BYTES", limit)
    admits: list[list[int]] = []  # per call, each event's body size
    dead: list[list[int]] = []  # per call, each letter's field bytes

    async def scenario(spooling: SpoolingStore) -> None:
        await spooling.spool.admit(0, [admission(f"b{i}", f"t{i}") for i in range(10)])
        for i in range(4):
            (entry,) = await spooling.spool.claim(0, "app", "c", 1, 0)
            await spooling.spool.dead_letter(entry, "app", 500, "refused", 1_000 + i)
        real_admit, real_dead = spooling.redis.admit, spooling.redis.add_dead_letters

        def admit(partition: int, batch: list[Admission]) -> object:
            admits.append([len(a.body) for a in batch])
            return real_admit(partition, batch)

        async def add_dead(partition: int, target: str, letters: list[list[Field]]) -> None:
            dead.append([sum(len(v) for _, v in fields) for fields in letters])
            await real_dead(partition, target, letters)

        monkeypatch.setattr(spooling.redis, "admit", admit)
        monkeypatch.setattr(spooling.redis, "add_dead_letters", add_dead)
        await drain(spooling)

    run(redis_server, path, scenario)
    assert sum(map(len, admits)) == 10  # 6 queued, 4 dead-lettered: markers only
    assert len(admits) > 1
    assert sum(map(len, dead)) == 4
    assert len(dead) > 1
    assert all(sum(call) <= limit or len(call) == 1 for call in admits + dead)
    assert len(queued_keys(redis_db)) == 6
    assert redis_db.xlen("{gw:0}:dead:app") == 4
    assert spool_counts(path) == (0, 0)


def test_a_spool_holding_only_dead_letters_is_drained_at_start(
    redis_server: RedisServer,
    redis_db: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "spool.db"

    async def scenario(spooling: SpoolingStore) -> None:
        await spooling.spool.admit(0, [admission("gave-up", "t1")])
        (entry,) = await spooling.spool.claim(0, "app", "c", 1, 0)
        await spooling.spool.dead_letter(entry, "app", 500, "refused", 1_000)
        await spooling.spool.transact("expire", lambda db: db.execute("DELETE FROM markers"))
        drained = drains_signalled(spooling, monkeypatch)
        await supervised_until(spooling, drained)

    run(redis_server, path, scenario)
    assert redis_db.xlen("{gw:0}:dead:app") == 1
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM dead").fetchone()[0] == 0
