"""The forwarder's claims, in process against a real redis-server and a real app
socket: the budget (concurrency + prefetch) holds across the claim loops, one per
partition, claiming side by side (each takes its share of the free slots); and a
stop lets a claim blocked in Redis return, its entries delivered."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from gateway.config import ForwarderConfig
from gateway.forwarder import PREFETCH, TargetForwarder
from gateway.metrics import Metrics
from gateway.store.redis import RedisStore
from tests.support.faultproxy import DropReplyProxy
from tests.support.processes import RedisServer, wait_until
from tests.support.stores import store_config
from tests.support.webhooks import seed
from tests.unit.test_delivery_rules import SOURCES, target

pytestmark = pytest.mark.integration

PARTITIONS = 8
CONCURRENCY = 4


def forwarder_to(
    port: int,
    store: RedisStore,
    consumer: str,
    concurrency: int = 4,
    visibility: float = 60.0,
    **target_fields: Any,
) -> TargetForwarder:
    """A forwarder of the target "app" (raw bodies) to the app listening on `port`."""
    url = f"http://127.0.0.1:{port}/events"
    app_target = dataclasses.replace(
        target("raw"), url=url, port=port, path="/events", concurrency=concurrency, **target_fields
    )
    metrics = Metrics(CollectorRegistry()).target("app")
    config = ForwarderConfig(True, visibility, 100, consumer)
    return TargetForwarder(app_target, SOURCES, store, config, metrics, False)


class SilentApp:
    """An app that reads each request's head and never answers."""

    def __init__(self, wanted: int) -> None:
        self.heads = 0
        self.enough = asyncio.Event()
        self._wanted = wanted

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.heads += 1
        if self.heads >= self._wanted:
            self.enough.set()
        await reader.read()  # until the forwarder lets go of the connection
        writer.close()


def pending_summary(redis_db: redis.Redis, stream: str) -> Any:
    """XPENDING's summary of the group. A partition whose claim loop has not created its
    group yet (the slots filled from other partitions first) holds nothing: CI once
    asked before partition 5 had, and got NOGROUP."""
    try:
        return redis_db.xpending(stream, "gateway")
    except redis.ResponseError as exc:
        if not str(exc).startswith("NOGROUP"):
            raise
        return {"pending": 0, "consumers": []}


def test_partitions_claiming_side_by_side_hold_no_more_than_the_budget(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    budget = CONCURRENCY + int(CONCURRENCY * PREFETCH)  # 6; 24 were held before

    async def scenario() -> int:
        app = SilentApp(CONCURRENCY)
        server = await asyncio.start_server(app.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        store = RedisStore(store_config(redis_server.url, partitions=PARTITIONS), block_ms=100)
        for p in range(PARTITIONS):
            for i in range(20):
                fields = {"source": "inbox", "type": "message.received", "key": f"p{p}-{i}"}
                redis_db.xadd(store.keys.stream(p, "app"), {**fields, "body": seed()})
        forwarder = forwarder_to(port, store, "budget", CONCURRENCY)
        forwarder.start()
        try:
            async with asyncio.timeout(10):
                await app.enough.wait()  # every delivery slot busy: claims are done
            return sum(
                pending_summary(redis_db, store.keys.stream(p, "app"))["pending"]
                for p in range(PARTITIONS)
            )
        finally:
            await forwarder.stop(0.1)
            await store.close()
            server.close()

    assert asyncio.run(scenario()) <= budget + PARTITIONS


class AnsweringApp:
    """An app that answers 200 to every request, counting them and recording
    each one's Idempotency-Key (the raw format's)."""

    def __init__(self, wanted: int = 1, delay: float = 0.0) -> None:
        self.answered = 0
        self.keys: list[bytes] = []
        self.first = asyncio.Event()
        self.enough = asyncio.Event()
        self._wanted = wanted
        self._delay = delay  # seconds each request takes

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
            fields = {name.lower(): value.strip() for name, value in fields.items()}
            await reader.readexactly(int(fields[b"content-length"]))
            if self._delay:
                await asyncio.sleep(self._delay)
            self.answered += 1
            self.keys.append(fields[b"idempotency-key"])
            self.first.set()
            if self.answered >= self._wanted:
                self.enough.set()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()


async def forward_until_answered(
    app: AnsweringApp,
    store_url: str,
    consumer: str,
    within: float,
    *,
    partitions: int = 1,
    meanwhile: Callable[[], None] | None = None,
    linger: float = 0.0,
    **forwarder_fields: Any,
) -> AnsweringApp:
    """Forward as `consumer` from the store at `store_url` (claims blocking 100 ms) to
    `app` until it has every answer it wants, `within` seconds at most; then stop (5 s grace)
    and close the store. `meanwhile` runs in a thread once the forwarder started;
    `linger`: seconds more, for a duplicate still on its way to land in `app.keys`."""
    server = await asyncio.start_server(app.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore(store_config(store_url, partitions=partitions), block_ms=100)
    forwarder = forwarder_to(port, store, consumer, **forwarder_fields)
    forwarder.start()
    try:
        if meanwhile is not None:
            await asyncio.to_thread(meanwhile)
        async with asyncio.timeout(within):
            await app.enough.wait()
        await asyncio.sleep(linger)
    finally:
        await forwarder.stop(5.0)
        await store.close()
        server.close()
    return app


def test_a_reclaim_while_claims_wait_in_redis_leaves_room_for_what_they_asked(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """Each partition's claim, blocked in XREADGROUP, has asked for its share of the
    free slots; a reclaim pass counted the same slots, and a burst of new events
    answering the claims came on top: 30 held against a budget of 12 (a review's
    test). Bound: the budget, one per partition (the shares round up), the extra."""
    partitions, concurrency = 8, 8
    budget = concurrency + int(concurrency * PREFETCH)  # 12
    bound = budget + partitions + max(1, concurrency // 4)  # 22
    store = RedisStore(store_config(redis_server.url, partitions=partitions), block_ms=100)
    fields = {"source": "inbox", "type": "message.received"}
    first = store.keys.stream(0, "app")
    for i in range(20):
        redis_db.xadd(first, {**fields, "key": f"ghost{i}", "body": seed()})
    for p in range(partitions):
        redis_db.xgroup_create(store.keys.stream(p, "app"), "gateway", id="0", mkstream=True)
    (reply,) = redis_db.xreadgroup("gateway", "ghost", {first: ">"}, count=20)
    ids = [entry_id for entry_id, _ in reply[1]]
    redis_db.xclaim(first, "gateway", "ghost", 0, ids, idle=120_000)  # it died long ago

    def burst() -> None:
        # One MULTI: Redis serves the blocked claims right after it, before the
        # next command, with all they asked for.
        pipe = redis_db.pipeline(transaction=True)
        for p in range(partitions):
            for i in range(5):
                entry = {**fields, "key": f"new{p}-{i}", "body": seed()}
                pipe.xadd(store.keys.stream(p, "app"), entry)
        pipe.execute()

    class BurstOnFirst(SilentApp):
        async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if self.heads == 0:  # the reclaim's first entry reached the app: new events now
                burst()
                self.enough.set()
            await super().serve(reader, writer)

    async def scenario() -> int:
        app = BurstOnFirst(10**9)
        server = await asyncio.start_server(app.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # No delivery ends (the app never answers, the timeout is long): nothing frees.
        forwarder = forwarder_to(port, store, "alive", concurrency, 1.0, timeout=60.0)
        forwarder.start()
        try:
            async with asyncio.timeout(10):
                await app.enough.wait()
            held = 0
            for p in range(partitions):
                pending = pending_summary(redis_db, store.keys.stream(p, "app"))
                held += sum(c["pending"] for c in pending["consumers"] if c["name"] == b"alive")
            return held
        finally:
            await forwarder.stop(0.1)
            await store.close()
            server.close()

    assert asyncio.run(scenario()) <= bound


def test_a_stop_lets_a_claim_blocked_in_redis_return_and_delivers_what_it_claimed(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """Ingest drains alongside the forwarder's stop, so admits still land while a
    claim waits in XREADGROUP BLOCK. Cancelled, that claim's reply was dropped
    with the entry Redis handed it: pending until the visibility timeout."""

    async def scenario() -> int:
        app = AnsweringApp()
        server = await asyncio.start_server(app.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        store = RedisStore(store_config(redis_server.url), block_ms=2000)
        forwarder = forwarder_to(port, store, "stopping")
        forwarder.start()
        try:
            blocked = partial(wait_until, lambda: redis_db.info("clients")["blocked_clients"] > 0)
            await asyncio.to_thread(blocked, what="a claim blocked in XREADGROUP")
            stopping = asyncio.create_task(forwarder.stop(5.0))
            await asyncio.sleep(0)  # stop() runs up to its wait for the loops
            fields = {"source": "inbox", "type": "message.received", "key": "late"}
            redis_db.xadd(store.keys.stream(0, "app"), {**fields, "body": seed()})
            await stopping
        finally:
            await store.close()
            server.close()
        return app.answered

    assert asyncio.run(scenario()) == 1
    assert redis_db.xpending("{gw:0}:q:app", "gateway")["pending"] == 0
    assert redis_db.xlen("{gw:0}:q:app") == 0


def test_an_entry_without_an_events_fields_is_dead_lettered_and_the_others_flow(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """Something else wrote into the stream: raised while claiming, it ended the
    partition's claim loop for good (and met the next one after a restart)."""
    stream = "{gw:0}:q:app"
    redis_db.xadd(stream, {"note": "not an event"})
    fields = {"source": "inbox", "type": "message.received", "key": "fine"}
    redis_db.xadd(stream, {**fields, "body": seed()})

    app = asyncio.run(forward_until_answered(AnsweringApp(), redis_server.url, "foreign", 10))
    assert app.answered == 1
    ((_, dead),) = redis_db.xrange("{gw:0}:dead:app")
    assert (dead[b"note"], dead[b"status"]) == (b"not an event", b"0")
    assert dead[b"error"].startswith(b"malformed stream entry: no 'source' field")
    assert redis_db.xlen(stream) == 0
    assert redis_db.xpending(stream, "gateway")["pending"] == 0


def test_entries_a_lost_claim_reply_carried_are_delivered_before_new_ones_are_claimed(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """Redis ran the claim; the connection dropped before its reply came. Those
    entries are pending under this consumer, unseen: re-sending `>` claimed the next
    ones and left these for the reclaim, a visibility timeout (60 s here) later.
    With `max_attempts: 1`: taking them back is not another attempt (a raised
    delivery counter dead-lettered them, never sent)."""
    events = 10
    stream = "{gw:0}:q:app"
    for i in range(events):
        fields = {"source": "inbox", "type": "message.received", "key": f"k{i}"}
        redis_db.xadd(stream, {**fields, "body": seed()})
    # The `>` of a claim of new entries, and only that: resuming reads from "0".
    proxy = DropReplyProxy(redis_server.port, trigger=b"$1\r\n>\r\n")

    proxy.armed.set()
    lossy = f"redis://127.0.0.1:{proxy.port}/0"
    try:
        run = forward_until_answered(AnsweringApp(events), lossy, "lost-reply", 15, max_attempts=1)
        keys = asyncio.run(run).keys
    finally:
        proxy.close()
    assert proxy.dropped.is_set()  # a claim's reply really was lost
    assert sorted(keys) == sorted(f"k{i}".encode() for i in range(events))  # each once
    assert redis_db.xpending(stream, "gateway")["pending"] == 0
    assert redis_db.xlen(stream) == 0


def test_orphans_past_the_room_of_one_retake_are_all_taken_before_the_reclaim(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """More entries pending under this consumer, unseen, than one retake has room
    for (lost replies of claims that asked past the free slots, side by side). The
    retake took the room's worth and left the rest to the reclaim, a visibility
    timeout (600 s here) later: CI saw the drain stall so, now and then."""
    orphans, stream = 40, "{gw:0}:q:app"
    proxy = DropReplyProxy(redis_server.port, trigger=b"$1\r\n>\r\n")

    def claiming_new_entries() -> bool:
        # Blocked in XREADGROUP: a claim of new entries (resuming does not block).
        clients = redis_db.client_list()
        return any(c["cmd"] == "xreadgroup" and "b" in c["flags"] for c in clients)

    def orphan_entries() -> None:
        """As a lost reply leaves them: claimed under the forwarder's name, unseen.
        One transaction: the forwarder's blocked claim finds none of them new."""
        wait_until(claiming_new_entries, what="a claim blocked in XREADGROUP")
        proxy.armed.set()  # the next claim's reply is lost: the retake follows
        pipe = redis_db.pipeline(transaction=True)
        for i in range(orphans):
            fields = {"source": "inbox", "type": "message.received", "key": f"k{i}"}
            pipe.xadd(stream, {**fields, "body": seed()})
        pipe.xreadgroup("gateway", "orphans", {stream: ">"}, count=orphans)
        pipe.execute()

    # Room for 7 at a time: 4 slots, 2 claimed ahead, 1 past the budget.
    run = forward_until_answered(
        AnsweringApp(orphans),
        f"redis://127.0.0.1:{proxy.port}/0",
        "orphans",
        15,
        meanwhile=orphan_entries,
        visibility=600.0,
    )
    try:
        keys = asyncio.run(run).keys
    finally:
        proxy.close()
    assert proxy.dropped.is_set()
    assert sorted(keys) == sorted(f"k{i}".encode() for i in range(orphans))  # each once
    assert redis_db.xpending(stream, "gateway")["pending"] == 0


@pytest.mark.parametrize("dead", [2, 30])
def test_a_dead_consumers_entries_go_ahead_of_a_backlog_that_keeps_every_slot_busy(
    redis_server: RedisServer, redis_db: redis.Redis, dead: int
) -> None:
    """The oldest events in the queue: the reclaim took them only into free slots,
    and while a backlog kept every slot busy they waited for all of it. More than a
    page of them (30: a dead consumer's whole budget and more) are taken page after
    page in one pass, the claim loops pausing; a page per pass left most of them
    behind the backlog."""
    stream = "{gw:0}:q:app"
    backlog = 240  # 3 s at 8 slots of 0.1 s; the first reclaim pass runs after 1 s
    dead_keys = [f"dead-{i}".encode() for i in range(dead)]

    def add(key: str) -> None:
        fields = {"source": "inbox", "type": "message.received", "key": key}
        redis_db.xadd(stream, {**fields, "body": seed()})

    for key in dead_keys:
        add(key.decode())
    redis_db.xgroup_create(stream, "gateway", id="0")
    redis_db.xreadgroup("gateway", "ghost", {stream: ">"}, count=dead)  # then it died
    for i in range(backlog):
        add(f"b{i}")

    app = AnsweringApp(wanted=backlog + dead, delay=0.1)
    # concurrency 8: a reclaim pass may take 2 past the budget (a quarter of it)
    run = forward_until_answered(app, redis_server.url, "alive", 30, concurrency=8, visibility=1.0)
    keys = asyncio.run(run).keys
    assert sorted(keys) == sorted([*dead_keys, *(b"b%d" % i for i in range(backlog))])
    # Taken at the first pass or so, about 80 deliveries in; before, the last ones.
    assert max(keys.index(key) for key in dead_keys) < backlog - 40
    assert redis_db.xpending(stream, "gateway")["pending"] == 0


def test_claim_replies_lost_again_and_again_under_a_backlog_deliver_each_entry_once(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """Replies dropped over and over while deliveries finish and their acks are
    written: the entries a lost reply carried are delivered, and none that was in
    flight, claimed ahead or being acked when the loss was handled goes out twice."""
    partitions, per_partition = 4, 300
    store = RedisStore(store_config(redis_server.url, partitions=partitions))
    for p in range(partitions):
        for i in range(per_partition):
            fields = {"source": "inbox", "type": "message.received", "key": f"p{p}-{i}"}
            redis_db.xadd(store.keys.stream(p, "app"), {**fields, "body": seed()})
    proxy = DropReplyProxy(redis_server.port, trigger=b"$1\r\n>\r\n")
    stop_arming = threading.Event()

    def arm_again_and_again() -> None:
        # At most 40 losses, 50 ms apart: the drain is under way all along, and
        # the claims' backoff stays short once the losses stop.
        for _ in range(40):
            if stop_arming.wait(0.05):
                return
            proxy.armed.set()

    run = forward_until_answered(
        AnsweringApp(wanted=partitions * per_partition, delay=0.005),
        f"redis://127.0.0.1:{proxy.port}/0",
        "lossy",
        45,
        partitions=partitions,
        linger=0.5,  # a duplicate still on its way lands in `keys`
        concurrency=32,
    )
    arming = threading.Thread(target=arm_again_and_again, daemon=True)
    arming.start()
    try:
        keys = asyncio.run(run).keys
    finally:
        stop_arming.set()
        proxy.close()
    assert proxy.dropped.is_set()
    expected = [f"p{p}-{i}".encode() for p in range(partitions) for i in range(per_partition)]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    assert twice == []
    assert sorted(keys) == sorted(expected)
