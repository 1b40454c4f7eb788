"""The forwarder's store writes after an attempt: acks, retries, dead letters.

Each write runs as a task this object owns, so cancelling whoever awaits it
cannot cut it in half (`settle` awaits it through a shield), and `finish` waits
for what is still running, up to a bound (at stop, after the grace). Acks are
gathered for ACK_DELAY and go to the store as one call per partition.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from functools import partial
from typing import Any

import structlog

from gateway.errors import StoreUnavailable
from gateway.models import Queued
from gateway.store import DeliveryStore

log = structlog.get_logger("gateway.forwarder")

# Per loop tick acks were 18 ids a call; gathered over 2 ms about 45, which took
# 4-7 µs off the forwarder's CPU per event (benchmarks/cpu_per_delivery.sh). An ack
# held back is at worst one more delivery after a crash in those 2 ms:
# at-least-once, as ever.
ACK_DELAY = 0.002


class Bookkeeping:
    def __init__(self, store: DeliveryStore, target: str) -> None:
        self._store = store
        self._target = target
        self._tasks: set[asyncio.Task[bool]] = set()
        self._acks: dict[int, list[bytes]] = {}
        # Delivered, the ack gathered or being written: still pending in the store,
        # and not to be delivered again by a read of this consumer's own pending.
        self._acking: set[tuple[int, bytes]] = set()

    def ack_later(self, entry: Queued) -> None:
        if not self._acks:
            asyncio.get_running_loop().call_later(ACK_DELAY, self.flush_acks)
        self._acks.setdefault(entry.partition, []).append(entry.id)
        self._acking.add((entry.partition, entry.id))

    def acking(self, partition: int, entry_id: bytes) -> bool:
        return (partition, entry_id) in self._acking

    def acking_ids(self) -> set[tuple[int, bytes]]:
        return set(self._acking)

    def flush_acks(self) -> None:
        acks, self._acks = self._acks, {}
        for partition, ids in acks.items():
            write = self._own(self._store.ack(partition, self._target, ids))
            write.add_done_callback(partial(self._acked, partition, ids))

    def _acked(self, partition: int, ids: list[bytes], write: asyncio.Task[bool]) -> None:
        # Written or refused alike: one the store refused stays pending and is
        # delivered again (by a read of own pending, or the reclaim): at-least-once.
        for entry_id in ids:
            self._acking.discard((partition, entry_id))

    async def settle(self, write: Coroutine[Any, Any, None]) -> bool:
        """Run one write to the end, even if the caller is cancelled meanwhile;
        whether the store took it."""
        return await asyncio.shield(self._own(write))

    async def dead_letter(self, entry: Queued, status: int, error: str) -> bool:
        """Whether the dead letter was written: one the store refused stays pending,
        is delivered again later, and is neither logged nor counted now."""
        now_ms = int(time.time() * 1000)
        dead = self._store.dead_letter(entry, self._target, status, error[:500], now_ms)
        if not await self.settle(dead):
            return False
        log.warning(
            "dead_lettered",
            target=self._target,
            key=entry.key,
            event_type=entry.event_type,
            status=status,
            attempts=entry.attempt,
            error=error[:200],
        )
        return True

    async def finish(self, within: float) -> None:
        """Send the gathered acks and wait up to `within` seconds for every write."""
        if self._acks:
            self.flush_acks()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within)

    def __len__(self) -> int:
        return len(self._tasks)

    def _own(self, write: Coroutine[Any, Any, None]) -> asyncio.Task[bool]:
        task = asyncio.get_running_loop().create_task(_logged(write, self._target))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def _logged(write: Coroutine[Any, Any, None], target: str) -> bool:
    try:
        await write
    except StoreUnavailable as exc:
        # The entry stays pending and is claimed again after the visibility
        # timeout: a possible duplicate delivery, never a lost event.
        log.error("forwarder_bookkeeping_failed", target=target, error=str(exc))
        return False
    return True
