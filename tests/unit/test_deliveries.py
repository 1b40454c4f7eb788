"""gateway.deliveries' slot accounting, with the pool and the store replaced at
their seams (gateway.upstream.Pool, gateway.store.DeliveryStore: this project's
own). The HTTP and Redis halves are covered for real in tests/upstream and
tests/integration/test_delivery.py; here: what a chain of callbacks must keep
straight when deliveries fail at once, wait for a store write, or outlive a stop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any, TypeVar

import uvloop
from prometheus_client import CollectorRegistry

from gateway.deliveries import Deliveries
from gateway.errors import StoreUnavailable
from gateway.formats import Renderer
from gateway.metrics import Metrics
from gateway.models import Queued
from gateway.upstream import Done, Response
from tests.support.webhooks import seed
from tests.unit.test_delivery_rules import SOURCES, target

T = TypeVar("T")
OK = Response(200, (), b"")
FAILED = Response(500, (), b"")
REFUSED = Response(422, (), b"")  # a 4xx: dead-lettered at once


class FakePool:
    """Holds each post until the test answers it."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.posts: list[Done] = []
        self.closed = False

    def post(self, data: bytes, done: Done) -> None:
        self.posts.append(done)

    async def aclose(self) -> None:
        self.closed = True


class FakeStore:
    """The writes a delivery ends in; a retry waits for `release`."""

    partitions = 1

    def __init__(self) -> None:
        self.acked: list[bytes] = []
        self.retried: list[bytes] = []
        self.writing = asyncio.Event()  # a retry write has begun
        self.release = asyncio.Event()
        self.dead: list[bytes] = []
        self.refuse_dead_letters = False
        self.acks_released: asyncio.Event | None = None  # set: acks wait for it

    async def ack(self, partition: int, target: str, ids: list[bytes]) -> None:
        if self.acks_released is not None:
            await self.acks_released.wait()
        self.acked += ids

    async def retry_later(self, entry: Queued, target: str, delay: float) -> None:
        self.writing.set()
        await self.release.wait()
        self.retried.append(entry.id)

    async def dead_letter(
        self, entry: Queued, target: str, status: int, error: str, now_ms: int
    ) -> None:
        if self.refuse_dead_letters:
            raise StoreUnavailable("dead_letter failed: OOM")
        self.dead.append(entry.id)


class Harness:
    def __init__(self, concurrency: int) -> None:
        self.store = FakeStore()
        self.pool = FakePool()
        self.freed = self.retries_scheduled = 0
        self.slot_freed = asyncio.Event()
        self.rendering_broken = False  # set: every render raises (a bug)
        self.metrics = metrics = Metrics(CollectorRegistry()).target("app")
        config = replace(target("cloudevents-binary"), concurrency=concurrency)
        self._renderer = Renderer(config, SOURCES)
        store: Any = self.store  # the writes a delivery makes, nothing else
        self.deliveries = Deliveries(
            config, SOURCES, store, metrics, self._freed, self._retry_scheduled,
            pool=self.pool, renderer=self,
        )  # fmt: skip

    def render(self, entry: Queued) -> tuple[bytes, bytes]:
        if self.rendering_broken:
            raise RuntimeError("a rendering bug")
        return self._renderer.render(entry)

    def _freed(self) -> None:
        self.freed += 1
        self.slot_freed.set()

    def _retry_scheduled(self) -> None:
        self.retries_scheduled += 1

    def start(self, n: int, first: int = 0) -> list[Queued]:
        entries = [
            Queued(0, b"%d-0" % i, "inbox", "message.received", f"k{i}", seed(), 1)
            for i in range(first, first + n)
        ]
        for entry in entries:
            assert self.deliveries.start(entry)
        return entries

    @property
    def busy(self) -> int:
        return self.deliveries._busy


def run(coro: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def test_a_run_of_deliveries_failing_at_once_frees_every_slot_without_nesting() -> None:
    # 2000 in flight and 1000 claimed ahead. Rendering then breaks (a bug): when
    # one answer frees a slot, each waiting entry fails the moment it starts. A
    # recursion per entry (finished -> deliver -> crash -> finished) ran out of
    # stack at about 700 and left slots counted as taken.
    async def main() -> None:
        h = Harness(2000)
        h.start(3000)
        assert (h.busy, len(h.pool.posts)) == (2000, 2000)

        h.rendering_broken = True
        h.pool.posts[0](OK, None)
        assert h.busy == 1999
        assert h.freed == 1001  # the answered one, and each of the 1000 that failed
        assert len(h.deliveries._ready) == 0
        assert len(h.deliveries._delivering) == 1999  # only what is still in flight
        await h.deliveries._bookkeeping.finish(within=1.0)  # the gathered ack goes out
        assert h.store.acked == [b"0-0"]

    run(main())


def test_a_retry_holds_its_slot_until_its_store_write_is_done() -> None:
    async def main() -> None:
        h = Harness(1)
        first, second = h.start(2)  # the second waits for the only slot
        h.pool.posts[0](FAILED, None)
        await h.store.writing.wait()  # the retry's write is under way, held by the store
        assert (h.busy, h.freed, len(h.pool.posts)) == (1, 0, 1)
        assert h.deliveries.holds(first)
        h.store.release.set()
        await h.slot_freed.wait()
        assert h.store.retried == [first.id]
        assert h.retries_scheduled == 1
        assert not h.deliveries.holds(first)
        assert len(h.pool.posts) == 2  # the slot went on to the waiting entry
        assert h.deliveries.holds(second)

    run(main())


def test_after_the_grace_late_answers_are_ignored_and_waiting_entries_stay_pending() -> None:
    async def main() -> None:
        h = Harness(1)
        h.start(2)
        await h.deliveries.stop(grace=0.05)
        assert h.pool.closed
        h.pool.posts[0](OK, None)  # answered after the grace
        await h.deliveries._bookkeeping.finish(within=1.0)
        assert h.store.acked == []  # pending in the store: delivered after the restart
        assert len(h.pool.posts) == 1  # the entry claimed ahead was never sent
        late = Queued(0, b"9-0", "inbox", "message.received", "k9", seed(), 1)
        assert not h.deliveries.start(late)  # claimed by a loop that outlived the stop

    run(main())


def test_a_dead_letter_the_store_refused_is_not_counted() -> None:
    """It stays pending and is delivered again: counted now, it would be counted
    twice, or as dead when it was delivered in the end."""

    def dead_letters(h: Harness) -> float:
        return h.metrics.dead_letters._value.get()

    async def main() -> None:
        h = Harness(1)
        h.start(2)
        h.store.refuse_dead_letters = True
        h.pool.posts[0](REFUSED, None)
        await h.slot_freed.wait()
        assert (h.store.dead, dead_letters(h)) == ([], 0)
        h.slot_freed.clear()
        h.store.refuse_dead_letters = False
        h.pool.posts[1](REFUSED, None)
        await h.slot_freed.wait()
        assert (h.store.dead, dead_letters(h)) == ([b"1-0"], 1)

    run(main())


def test_a_delivered_entry_is_held_until_its_ack_is_written() -> None:
    """Still pending in the store until the ack is written: a read of this consumer's
    own pending entries then (after a claim's lost reply) must not deliver it again."""

    async def scenario() -> tuple[bool, bool, bool, bool]:
        h = Harness(4)
        h.store.acks_released = asyncio.Event()
        (entry,) = h.start(1)
        h.pool.posts[0](OK, None)  # delivered: the ack is gathered for ACK_DELAY
        gathered = h.deliveries.holds(entry)
        h.deliveries._bookkeeping.flush_acks()  # the gather ends: the ack is written
        await asyncio.sleep(0)
        writing = h.deliveries.holds(entry) and h.store.acked == []
        h.store.acks_released.set()
        await h.deliveries._bookkeeping.finish(within=1.0)
        return gathered, writing, h.store.acked == [entry.id], h.deliveries.holds(entry)

    assert run(scenario()) == (True, True, True, False)
