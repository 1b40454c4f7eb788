"""The admit batcher against stand-in stores (the Store protocol is our seam)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any

from structlog.testing import capture_logs

from gateway.admit import ADMIT_CHUNK, AdmitBatcher
from gateway.errors import StoreUnavailable
from gateway.metrics import Metrics
from gateway.models import Admission, AdmitOutcome, body_digest


def admission(key: str) -> Admission:
    body = key.encode()
    return Admission(f"s:e:{key}", key, "s", "e", key, body, body_digest(body), ("app",))


class Recording:
    """A store that records its calls and answers with `outcomes` (or raises)."""

    def __init__(self, answer: list[AdmitOutcome] | Exception, partitions: int = 1) -> None:
        self.answer = answer
        self.calls: list[list[str]] = []
        self.call_partitions: list[int] = []
        self.partitions = partitions
        self.asked: list[str] = []

    def partition(self, dedup_key: str) -> int:
        self.asked.append(dedup_key)
        return len(dedup_key) % self.partitions

    async def admit(self, partition: int, batch: Sequence[Admission]) -> list[AdmitOutcome]:
        self.calls.append([a.key for a in batch])
        self.call_partitions.append(partition)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def submit_three(store: Recording) -> list[AdmitOutcome | None]:
    """Three admits in one loop tick; the outcomes each request got."""

    async def main() -> list[AdmitOutcome | None]:
        batcher = AdmitBatcher(store, 1.0, Metrics())  # type: ignore[arg-type]
        got: dict[str, AdmitOutcome | None] = {}
        for key in ("a", "b", "c"):
            batcher.submit(admission(key), lambda o, _, k=key: got.__setitem__(k, o))
        await asyncio.sleep(0)  # the flush runs after this tick's callbacks
        calls = list(batcher._calls)
        await asyncio.gather(*calls)  # raises if an admit task failed
        return [got[k] for k in ("a", "b", "c")]

    return asyncio.run(main())


def test_one_tick_of_admits_is_one_store_call_and_each_gets_its_outcome() -> None:
    answer = [AdmitOutcome.ACCEPTED, AdmitOutcome.DUPLICATE, AdmitOutcome.CONFLICT]
    store = Recording(answer)
    assert submit_three(store) == answer
    assert store.calls == [["a", "b", "c"]]


def test_a_failed_store_call_answers_every_request_none_and_the_task_ends_cleanly() -> None:
    assert submit_three(Recording(StoreUnavailable("down"))) == [None, None, None]


def test_outcomes_that_cannot_be_paired_answer_none() -> None:
    assert submit_three(Recording([AdmitOutcome.ACCEPTED])) == [None, None, None]


def test_with_one_partition_the_store_is_not_asked_for_one() -> None:
    store = Recording([AdmitOutcome.ACCEPTED] * 3)
    submit_three(store)
    assert store.asked == []
    assert (store.calls, store.call_partitions) == ([["a", "b", "c"]], [0])


def test_with_partitions_each_event_goes_to_its_partition_s_call() -> None:
    store = Recording([AdmitOutcome.ACCEPTED] * 3, partitions=2)

    async def main() -> None:
        batcher = AdmitBatcher(store, 1.0, Metrics())  # type: ignore[arg-type]
        for key in ("a", "bb", "c"):  # dedup keys s:e:a (5 chars), s:e:bb (6), s:e:c (5)
            batcher.submit(admission(key), lambda o, _: None)
        await asyncio.sleep(0)
        await asyncio.gather(*list(batcher._calls))

    asyncio.run(main())
    assert store.asked == ["s:e:a", "s:e:bb", "s:e:c"]
    calls = sorted(zip(store.call_partitions, store.calls, strict=True))
    assert calls == [(0, ["bb"]), (1, ["a", "c"])]


class Eager(Recording):
    """A store that starts its call when admit() is called, as the Redis store
    writes its EVALSHA then (Store.admit), and only the reply is awaited."""

    def admit(  # type: ignore[override]
        self, partition: int, batch: Sequence[Admission]
    ) -> Coroutine[Any, Any, list[AdmitOutcome]]:
        self.calls.append([a.key for a in batch])
        if isinstance(self.answer, Exception):
            raise self.answer  # the call could not even be built
        return self._reply(len(batch))

    async def _reply(self, size: int) -> list[AdmitOutcome]:
        assert isinstance(self.answer, list)
        return self.answer[:size]


def test_a_full_chunk_goes_to_the_store_inside_the_callback_that_filled_it() -> None:
    store = Eager([AdmitOutcome.ACCEPTED] * (ADMIT_CHUNK + 1))

    async def main() -> tuple[list[list[str]], list[list[str]], int]:
        batcher = AdmitBatcher(store, 1.0, Metrics())  # type: ignore[arg-type]
        answered: list[AdmitOutcome | None] = []
        keys = [f"k{n}" for n in range(ADMIT_CHUNK + 1)]
        for key in keys:
            batcher.submit(admission(key), lambda o, _: answered.append(o))
        within_the_tick = [list(c) for c in store.calls]  # nothing awaited yet
        await asyncio.sleep(0)  # the end-of-tick flush sends the rest
        await asyncio.gather(*list(batcher._calls))
        return within_the_tick, store.calls, len(answered)

    within_the_tick, calls, answered = asyncio.run(main())
    assert within_the_tick == [[f"k{n}" for n in range(ADMIT_CHUNK)]]
    assert calls == [*within_the_tick, [f"k{ADMIT_CHUNK}"]]
    assert answered == ADMIT_CHUNK + 1


def test_a_store_call_that_cannot_be_built_answers_every_request_none() -> None:
    store = Eager(ValueError("a bug while packing"))

    async def main() -> list[AdmitOutcome | None]:
        batcher = AdmitBatcher(store, 1.0, Metrics())  # type: ignore[arg-type]
        got: list[AdmitOutcome | None] = []
        for key in ("a", "b"):
            batcher.submit(admission(key), lambda o, _: got.append(o))
        await asyncio.sleep(0)
        await asyncio.gather(*list(batcher._calls))
        return got

    assert asyncio.run(main()) == [None, None]


def test_a_crashing_store_logs_its_traceback_once_per_interval_not_per_batch() -> None:
    store = Recording(RuntimeError("a bug in the store"))

    async def main() -> list[AdmitOutcome | None]:
        batcher = AdmitBatcher(store, 1.0, Metrics())  # type: ignore[arg-type]
        got: list[AdmitOutcome | None] = []
        for i in range(20):  # twenty ticks: twenty store calls, each crashing
            batcher.submit(admission(f"k{i}"), lambda o, _: got.append(o))
            await asyncio.sleep(0)
            await asyncio.gather(*batcher._calls)
        return got

    with capture_logs() as logs:
        got = asyncio.run(main())
    assert got == [None] * 20  # every request answered: 503
    assert len(store.calls) == 20
    crashed = [entry for entry in logs if entry["event"] == "admit_crashed"]
    assert len(crashed) == 1
    assert crashed[0]["crashes"] == 1
    assert isinstance(crashed[0]["exc_info"], RuntimeError)
