"""The Redis store's admit script against a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
import redis

from gateway.config import StoreConfig
from gateway.errors import StoreUnavailable
from gateway.models import Admission, AdmitOutcome, Queued, body_digest
from gateway.store import lua
from gateway.store.redis import RedisStore
from tests.support.faultproxy import DropReplyProxy
from tests.support.processes import RedisServer, wait_until
from tests.support.stores import store_config as shared_store_config

pytestmark = pytest.mark.integration


def store_config(port: int, **overrides: object) -> StoreConfig:
    return shared_store_config(f"redis://127.0.0.1:{port}/0", **overrides)


def admission(
    key: str, token: str, targets: tuple[str, ...] = ("app",), body: bytes | None = None
) -> Admission:
    body = b'{"k":"%s"}' % key.encode() if body is None else body
    return Admission(f"src:e:{key}", token, "src", "e", key, body, body_digest(body), targets)


def admit(config: StoreConfig, batches: Sequence[Sequence[Admission]]) -> list[list[AdmitOutcome]]:
    async def run() -> list[list[AdmitOutcome]]:
        store = RedisStore(config)
        try:
            return [await store.admit(store.partition(b[0].dedup_key), b) for b in batches]
        finally:
            await store.close()

    return asyncio.run(run())


def test_a_resent_admit_with_the_same_token_is_accepted_not_duplicate(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    first = [admission("a", "t1"), admission("b", "t2")]
    outcomes = admit(store_config(redis_server.port), [first, first])
    assert outcomes == [[AdmitOutcome.ACCEPTED] * 2, [AdmitOutcome.ACCEPTED] * 2]
    assert redis_db.xlen("{gw:0}:q:app") == 2  # the resend enqueued nothing more


def test_another_token_for_a_seen_key_is_a_duplicate(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    outcomes = admit(
        store_config(redis_server.port), [[admission("a", "t1")], [admission("a", "t2")]]
    )
    assert outcomes == [[AdmitOutcome.ACCEPTED], [AdmitOutcome.DUPLICATE]]


def test_the_same_key_with_another_body_is_a_conflict(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    outcomes = admit(
        store_config(redis_server.port),
        [[admission("a", "t1", body=b"one")], [admission("a", "t2", body=b"two")]],
    )
    assert outcomes == [[AdmitOutcome.ACCEPTED], [AdmitOutcome.CONFLICT]]
    assert redis_db.xlen("{gw:0}:q:app") == 1


def test_one_batch_with_the_same_key_twice_queues_it_once(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    batch = [admission("a", "t1"), admission("a", "t2"), admission("b", "t3")]
    (outcomes,) = admit(store_config(redis_server.port), [batch])
    assert outcomes == [AdmitOutcome.ACCEPTED, AdmitOutcome.DUPLICATE, AdmitOutcome.ACCEPTED]
    assert [f[b"key"] for _, f in redis_db.xrange("{gw:0}:q:app")] == [b"a", b"b"]


def test_fan_out_queues_the_event_once_per_target(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    batch = [admission("a", "t1", ("app", "audit")), admission("b", "t2", ("audit",))]
    admit(store_config(redis_server.port), [batch])
    assert redis_db.xlen("{gw:0}:q:app") == 1
    assert redis_db.xlen("{gw:0}:q:audit") == 2


def test_each_event_of_a_call_is_queued_with_its_own_source_and_type(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """The call lists each (source, type, targets) once and the events refer to it:
    events of several kinds in one call, interleaved, each keep their own."""
    kinds = [("src", "e", ("app",)), ("other", "f", ("app", "audit")), ("src", "g", ("audit",))]
    batch = []
    for i in range(7):
        source, event_type, targets = kinds[i % 3]
        body = b'{"n":%d}' % i
        batch.append(
            Admission(
                f"{source}:{event_type}:k{i}",
                f"t{i}",
                source,
                event_type,
                f"k{i}",
                body,
                body_digest(body),
                targets,
            )
        )
    admit(store_config(redis_server.port), [batch])
    queued = {
        t: [(f[b"source"], f[b"type"], f[b"key"], f[b"body"]) for _, f in redis_db.xrange(s)]
        for t, s in (("app", "{gw:0}:q:app"), ("audit", "{gw:0}:q:audit"))
    }
    for target in ("app", "audit"):
        expected = [
            (a.source.encode(), a.event_type.encode(), a.key.encode(), a.body)
            for a in batch
            if target in a.targets
        ]
        assert queued[target] == expected


def test_a_marker_written_as_token_and_digest_is_a_duplicate_or_a_conflict(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """The marker's value is "<token>|<digest>" for every gateway version (a rolling
    deploy runs two side by side): the digest after the bar decides."""
    body = b'{"k":"a"}'
    redis_db.set("{gw:0}:idem:src:e:a", "0123abcd:17|" + body_digest(body))
    redis_db.set("{gw:0}:idem:src:e:b", "0123abcd:18|" + body_digest(b"another"))
    outcomes = admit(
        store_config(redis_server.port), [[admission("a", "t1", body=body), admission("b", "t2")]]
    )
    assert outcomes == [[AdmitOutcome.DUPLICATE, AdmitOutcome.CONFLICT]]
    assert redis_db.exists("{gw:0}:q:app") == 0


def test_unrouted_event_is_marked_but_queued_nowhere(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    admit(store_config(redis_server.port), [[admission("a", "t1", ())]])
    assert redis_db.exists("{gw:0}:idem:src:e:a") == 1
    assert redis_db.keys("{gw:0}:q:*") == []


def test_an_enqueue_that_fails_takes_its_marker_back(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """The script marks first (SET NX GET), so a failed XADD must unmark: else the
    provider's retry would be acked as a duplicate of an event never queued."""
    redis_db.set("{gw:0}:q:audit", "not a stream")  # XADD to it fails: WRONGTYPE
    config = store_config(redis_server.port)
    first = admission("ok", "t0", ("app",))
    with pytest.raises(StoreUnavailable, match="WRONGTYPE"):
        admit(config, [[first, admission("a", "t1", ("app", "audit"))]])
    assert redis_db.exists("{gw:0}:idem:src:e:a") == 0  # no marker without its event
    assert redis_db.exists("{gw:0}:idem:src:e:ok") == 1  # the event before it: both
    assert [f[b"key"] for _, f in redis_db.xrange("{gw:0}:q:app")] == [b"ok", b"a"]
    redis_db.delete("{gw:0}:q:audit")
    retry = [admission("ok", "t2", ("app",)), admission("a", "t3", ("app", "audit"))]
    assert admit(config, [retry]) == [[AdmitOutcome.DUPLICATE, AdmitOutcome.ACCEPTED]]
    assert redis_db.xlen("{gw:0}:q:audit") == 1


def test_partitions_keep_every_key_of_a_call_in_one_hash_slot(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    config = store_config(redis_server.port, partitions=8)
    batch_by_partition: dict[int, list[Admission]] = {}
    store = RedisStore(config)
    for i in range(40):
        a = admission(f"k{i}", f"t{i}")
        batch_by_partition.setdefault(store.partition(a.dedup_key), []).append(a)
    asyncio.run(store.close())
    assert len(batch_by_partition) > 1
    admit(config, list(batch_by_partition.values()))
    slots: dict[bytes, set[int]] = {}
    for key in redis_db.keys("*"):
        slots.setdefault(key.split(b"}")[0], set()).add(cluster_slot(key))
    assert len(slots) > 1
    assert all(len(s) == 1 for s in slots.values())  # one slot per partition
    assert sum(redis_db.xlen(k) for k in redis_db.keys("*:q:app")) == 40


def cluster_slot(key: bytes) -> int:
    """Redis Cluster's key slot: CRC16/XMODEM of the hash tag, mod 16384."""
    start = key.find(b"{")
    if start >= 0 and (end := key.find(b"}", start + 1)) > start + 1:
        key = key[start + 1 : end]
    crc = 0
    for byte in key:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % 16384


def test_cluster_slot_matches_the_spec_example() -> None:
    assert cluster_slot(b"123456789") == 0x31C3 % 16384  # CRC16/XMODEM check value
    assert cluster_slot(b"{user1000}.following") == cluster_slot(b"user1000")


def test_lost_reply_is_resent_and_still_counts_as_accepted(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    proxy = DropReplyProxy(redis_server.port, trigger=b"EVALSHA")
    try:
        config = store_config(proxy.port)

        async def run() -> list[AdmitOutcome]:
            store = RedisStore(config)
            try:
                await store.admit(0, [admission("warm", "t0")])  # loads the script
                proxy.armed.set()
                return await store.admit(0, [admission("a", "t1")])
            finally:
                await store.close()

        outcomes = asyncio.run(run())
    finally:
        proxy.close()
    assert proxy.dropped.is_set()  # the first reply really was lost
    assert outcomes == [AdmitOutcome.ACCEPTED]
    assert [f[b"key"] for _, f in redis_db.xrange("{gw:0}:q:app")] == [b"warm", b"a"]


def test_an_admit_after_redis_lost_its_scripts_loads_the_script_again(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def scenario() -> list[AdmitOutcome]:
        store = RedisStore(store_config(redis_server.port))
        try:
            first = await store.admit(0, [admission("before", "t1")])
            redis_db.script_flush()  # as after a Redis restart: the script cache is empty
            return first + await store.admit(0, [admission("after", "t2")])
        finally:
            await store.close()

    assert asyncio.run(scenario()) == [AdmitOutcome.ACCEPTED, AdmitOutcome.ACCEPTED]
    assert [f[b"key"] for _, f in redis_db.xrange("{gw:0}:q:app")] == [b"before", b"after"]


def test_the_admit_call_is_written_when_admit_is_called_not_when_awaited(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """Store.admit's contract for the Redis store: the batcher calls it inside the
    loop callback that filled the batch, so Redis gets the call then."""

    async def scenario() -> tuple[int, list[AdmitOutcome]]:
        store = RedisStore(store_config(redis_server.port))
        try:
            await store.admit(0, [admission("warm", "t0")])  # connects the link
            reply = store.admit(0, [admission("early", "t1")])
            # Not awaited yet, and the loop does not turn while we wait here:
            # only a call already on the wire can reach Redis.
            wait_until(lambda: redis_db.xlen("{gw:0}:q:app") == 2, 5, "the early call in Redis")
            return redis_db.xlen("{gw:0}:q:app"), await reply
        finally:
            await store.close()

    queued, outcomes = asyncio.run(scenario())
    assert queued == 2
    assert outcomes == [AdmitOutcome.ACCEPTED]


@pytest.mark.parametrize(
    ("kinds", "events", "error"),
    [
        ([b"src", b"e", 1, b"0"], [b"t1|d", 1], "bad stream offset"),
        ([b"src", b"e", 1, b"3"], [b"t1|d", 1], "bad stream offset"),
        ([b"src", b"e", 1, b"x"], [b"t1|d", 1], "bad stream offset"),
        ([b"src", b"e", b"x"], [b"t1|d", 1], "bad target count"),
        ([b"src", b"e", 1, 1], [b"t1|d", 3], "bad kind"),
        ([b"src", b"e", 1, 1], [b"t1|d", b"x"], "bad kind"),
    ],
)
def test_a_malformed_admit_call_is_refused_before_it_marks(
    redis_server: RedisServer,
    redis_db: redis.Redis,
    kinds: list[bytes | int],
    events: list[bytes | int],
    error: str,
) -> None:
    """A bad kind, target count or stream offset (a packer bug) is an error before
    the first SET: a Lua error after it would leave a marker without its event. The
    call's first event is well formed: nothing of it may be written either."""
    sha = redis_db.script_load(lua.ADMIT)
    keys = ["{gw:0}:idem:src:e:a", "{gw:0}:idem:src:e:b", "{gw:0}:q:app"]
    good_kind = [b"src", b"e", 1, 1]
    argv = [60_000, 2, 2, *good_kind, *kinds, b"t0|d", 1, b"a", b"{}", *events, b"b", b"{}"]
    with pytest.raises(redis.ResponseError, match=error):
        redis_db.evalsha(sha, 3, *keys, *argv)
    assert redis_db.exists("{gw:0}:idem:src:e:a", "{gw:0}:idem:src:e:b") == 0
    assert redis_db.exists("{gw:0}:q:app") == 0


def test_acks_are_taken_while_redis_is_full(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """A backlog that filled Redis (noeviction) drains only if the acks of the
    deliveries that follow are taken: they free the memory."""

    async def scenario() -> None:
        store = RedisStore(store_config(redis_server.port))
        try:
            await store.admit(0, [admission("full", "t1")])
            await store.ensure_group(0, "app")
            (entry,) = await store.claim(0, "app", "c", 1, 0)
            redis_db.config_set("maxmemory", 1)
            try:
                with pytest.raises(StoreUnavailable, match="OOM"):
                    await store.admit(0, [admission("refused", "t2")])
                await store.ack(0, "app", [entry.id])
            finally:
                redis_db.config_set("maxmemory", 0)
        finally:
            await store.close()

    asyncio.run(scenario())
    assert redis_db.xlen("{gw:0}:q:app") == 0
    assert redis_db.xpending("{gw:0}:q:app", "gateway")["pending"] == 0


async def claimed_by_c(store: RedisStore, prefix: str, n: int) -> list[Queued]:
    """`n` events queued and claimed by consumer "c" (the claim a test then treats as
    one whose reply was lost, or whose entries it deletes)."""
    await store.admit(0, [admission(f"{prefix}{i}", f"t{i}") for i in range(n)])
    await store.ensure_group(0, "app")
    return await store.claim(0, "app", "c", n, 0)


def test_resuming_own_pending_entries_goes_past_a_page_of_ones_already_gone(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """Deleted before their ack reached the group (a crash between the two), they
    stay in the consumer's pending list with no fields: a full page of them must
    not read as "nothing left", or the entries after wait for the reclaim."""
    stream = "{gw:0}:q:app"

    async def scenario() -> list[str]:
        store = RedisStore(store_config(redis_server.port))
        try:
            claimed = await claimed_by_c(store, "r", 4)
            redis_db.xdel(stream, claimed[0].id, claimed[1].id)  # gone, still pending
            own = await store.claim_own_pending(0, "app", "c", 2)
            return [entry.key for entry in own]
        finally:
            await store.close()

    assert asyncio.run(scenario()) == ["r2", "r3"]
    assert redis_db.xpending(stream, "gateway")["pending"] == 2  # the gone ones acked


def test_resuming_own_pending_entries_recreates_a_vanished_group(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """A Redis restarted without AOF (here a FLUSHALL) has no consumer group. The
    forwarder reads its own pending entries after a failed claim: that read must
    recreate the group, as a claim does, not fail every second for good."""

    async def scenario() -> tuple[list[Queued], list[str]]:
        store = RedisStore(store_config(redis_server.port))
        try:
            await store.ensure_group(0, "app")
            redis_db.flushall()
            own = await store.claim_own_pending(0, "app", "c", 10)
            await store.admit(0, [admission("after", "t1")])
            claimed = await store.claim(0, "app", "c", 10, 0)
            return own, [entry.key for entry in claimed]
        finally:
            await store.close()

    assert asyncio.run(scenario()) == ([], ["after"])


def test_orphans_are_taken_back_and_what_the_consumer_holds_is_left_untouched(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """After a failed claim: of this consumer's pending entries, those it does not
    hold come back, at the attempt the lost claim counted (the retake is not
    another: with `max_attempts: 1` a raised counter dead-lettered them unsent);
    an acked one does not, and a held one's delivery counter is not raised."""
    stream = "{gw:0}:q:app"

    async def scenario() -> tuple[list[tuple[str, int]], int]:
        store = RedisStore(store_config(redis_server.port))
        try:
            first = await claimed_by_c(store, "o", 4)  # its reply "lost"
            await store.ack(0, "app", [first[0].id])  # delivered and acked meanwhile
            held = first[1].id  # still in flight

            def holds(entry_id: bytes) -> bool:
                return entry_id == held

            orphans = await store.claim_orphans(0, "app", "c", holds, 100, 10)
            (pending,) = redis_db.xpending_range(stream, "gateway", held, held, 1)
            return [(e.key, e.attempt) for e in orphans], pending["times_delivered"]
        finally:
            await store.close()

    assert asyncio.run(scenario()) == ([("o2", 1), ("o3", 1)], 1)


def test_an_orphan_another_consumer_reclaimed_meanwhile_stays_with_it(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """Between this consumer's XPENDING and its XCLAIM, another gateway's reclaim
    takes an old orphan of ours and starts delivering it. Each orphan is claimed
    with its own idle time: with the least of all (a fresh orphan's, ~0 ms) that
    one was taken back, and both gateways delivered it. At most `count` come back."""
    stream = "{gw:0}:q:app"

    async def scenario() -> tuple[list[str], dict[bytes, str]]:
        store = RedisStore(store_config(redis_server.port))
        try:
            keys = ["old", "fresh", "fresh2"]
            await store.admit(0, [admission(k, f"t{i}") for i, k in enumerate(keys)])
            await store.ensure_group(0, "app")
            (old,) = await store.claim(0, "app", "c", 1, 0)
            redis_db.xclaim(stream, "gateway", "c", 0, [old.id], idle=120_000)  # long an orphan
            await store.claim(0, "app", "c", 2, 0)  # a claim whose reply was "lost": idle ~0

            def holds(entry_id: bytes) -> bool:
                if entry_id == old.id:  # called between XPENDING and XCLAIM
                    redis_db.xautoclaim(stream, "gateway", "d", 60_000, "0-0")
                return False

            orphans = await store.claim_orphans(0, "app", "c", holds, 100, 2)
            listed = redis_db.xpending_range(stream, "gateway", "-", "+", 10)
            owners = {p["message_id"]: p["consumer"].decode() for p in listed}
            return [e.key for e in orphans], {old.id: owners[old.id]}
        finally:
            await store.close()

    orphans, owners = asyncio.run(scenario())
    assert orphans == ["fresh", "fresh2"]  # count 2: "old" is gone to "d", the next in its place
    assert list(owners.values()) == ["d"]


def test_orphans_acked_between_the_listing_and_the_claim_leave_room_for_the_next(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """The first `count` orphans listed had their acks land between XPENDING and
    XCLAIM: the retake came back empty with more orphans pending, so the forwarder
    took none were left and left them for the reclaim, a visibility timeout later
    (CI on 5ed57d5). Fewer than `count` now means no more are left."""
    stream = "{gw:0}:q:app"

    async def scenario() -> list[str]:
        store = RedisStore(store_config(redis_server.port))
        try:
            first = await claimed_by_c(store, "o", 5)  # its reply "lost"
            acked = {entry.id for entry in first[:2]}

            def holds(entry_id: bytes) -> bool:
                if entry_id in acked:  # called between XPENDING and XCLAIM
                    redis_db.xack(stream, "gateway", entry_id)
                return False

            return [e.key for e in await store.claim_orphans(0, "app", "c", holds, 100, 2)]
        finally:
            await store.close()

    assert asyncio.run(scenario()) == ["o2", "o3"]


def test_reclaiming_goes_on_from_where_the_last_scan_stopped(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """XAUTOCLAIM scans at most 10 x COUNT pending entries per call: with one free
    slot, 30 live entries ahead of a dead consumer's hid it from every scan begun
    at the start of the pending list."""
    stream = "{gw:0}:q:app"

    async def scenario() -> list[str]:
        store = RedisStore(store_config(redis_server.port))
        try:
            await store.admit(0, [admission(f"live{i}", f"t{i}") for i in range(30)])
            await store.admit(0, [admission("dead", "td")])
            await store.ensure_group(0, "app")
            await store.claim(0, "app", "live", 30, 0)
            (dead,) = await store.claim(0, "app", "crashed", 1, 0)
            redis_db.xclaim(stream, "gateway", "crashed", 0, [dead.id], idle=120_000)
            found: list[str] = []
            for _ in range(4):  # 10 entries a scan: the fourth reaches it
                found += [e.key for e in await store.claim_stale(0, "app", "me", 60_000, 1)]
            return found
        finally:
            await store.close()

    assert asyncio.run(scenario()) == ["dead"]
