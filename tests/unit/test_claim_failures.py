"""The forwarder's claim loop when claims fail, with the store replaced at its seam
(gateway.store.DeliveryStore, this project's own): a claim that keeps failing while
every other store call succeeds (Redis at maxclients for a new claim connection, a
full disk under the spool) is retried with a growing pause, not back to back."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import uvloop
from prometheus_client import CollectorRegistry

from gateway.config import ForwarderConfig
from gateway.errors import StoreUnavailable
from gateway.forwarder import TargetForwarder
from gateway.metrics import Metrics
from gateway.models import Queued
from tests.unit.test_delivery_rules import SOURCES, target

CLAIMS = 5


class FailingClaims:
    """Claims fail; everything else answers at once, with nothing."""

    partitions = 1

    def __init__(self) -> None:
        self.claimed_at: list[float] = []
        self.enough = asyncio.Event()

    async def ensure_group(self, partition: int, target: str) -> None:
        pass

    async def claim_own_pending(self, *args: Any) -> list[Queued]:
        return []

    async def claim_orphans(
        self, partition: int, target: str, consumer: str, holds: Callable[[bytes], bool], scan: int
    ) -> list[Queued]:
        return []

    async def claim(self, *args: Any) -> list[Queued]:
        self.claimed_at.append(asyncio.get_running_loop().time())
        if len(self.claimed_at) >= CLAIMS:
            self.enough.set()
        raise StoreUnavailable("claim failed: max number of clients reached")

    async def claim_stale(self, *args: Any) -> list[Queued]:
        return []

    async def promote_due(self, *args: Any) -> None:
        return None


def test_a_claim_that_keeps_failing_is_retried_with_a_growing_pause() -> None:
    async def scenario() -> list[float]:
        store = FailingClaims()
        config = ForwarderConfig(True, 60.0, 100, "failing")
        metrics = Metrics(CollectorRegistry()).target("app")
        any_store: Any = store
        forwarder = TargetForwarder(target("raw"), SOURCES, any_store, config, metrics, False)
        forwarder.start()
        try:
            async with asyncio.timeout(10):
                await store.enough.wait()
        finally:
            await forwarder.stop(0.1)
        at = store.claimed_at
        return [later - earlier for earlier, later in itertools.pairwise(at)]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        pauses = runner.run(scenario())
    # Back to back before (about 600 claims a second); now 50, 100, 200, 400 ms at
    # least (uvloop's timers may fire up to a millisecond early).
    assert all(p >= 0.025 * 2 ** (n + 1) - 0.002 for n, p in enumerate(pauses[: CLAIMS - 1]))
