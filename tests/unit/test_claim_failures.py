"""The forwarder's claim loop when claims fail, with the store replaced at its seam
(gateway.store.DeliveryStore, this project's own): a claim that keeps failing while
every other store call succeeds (Redis at maxclients for a new claim connection, a
full disk under the spool) is retried with a growing pause, not back to back."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
import uvloop
from prometheus_client import CollectorRegistry

from gateway import forwarder as forwarder_module
from gateway.config import ForwarderConfig
from gateway.errors import StoreUnavailable
from gateway.forwarder import TargetForwarder
from gateway.metrics import Metrics
from gateway.models import Queued
from tests.unit.test_delivery_rules import SOURCES, target

CLAIMS = 5


class FailingClaims:
    """Claims fail (`claims` of them, then they succeed with nothing); everything
    else answers at once, with nothing."""

    partitions = 1

    def __init__(self, claims: int = CLAIMS) -> None:
        self.claimed_at: list[float] = []
        self.enough = asyncio.Event()
        self._claims = claims

    async def ensure_group(self, partition: int, target: str) -> None:
        pass

    async def claim_own_pending(self, *args: Any) -> list[Queued]:
        return []

    async def claim_orphans(self, *args: Any) -> list[Queued]:
        return []

    async def claim(self, *args: Any) -> list[Queued]:
        self.claimed_at.append(asyncio.get_running_loop().time())
        if len(self.claimed_at) > self._claims:
            self.enough.set()  # the claim loop is still claiming after them all
            await asyncio.sleep(0.01)  # a claim blocked in XREADGROUP, empty
            return []
        raise StoreUnavailable("claim failed: max number of clients reached")

    async def claim_stale(self, *args: Any) -> list[Queued]:
        return []

    async def promote_due(self, *args: Any) -> None:
        return None


def claims_until_enough(claims: int, timeout: float) -> list[float]:
    """A forwarder on FailingClaims(claims) until its claims succeed again: when
    each claim was made (loop time)."""

    async def scenario() -> list[float]:
        store = FailingClaims(claims)
        config = ForwarderConfig(True, 60.0, 100, "failing")
        metrics = Metrics(CollectorRegistry()).target("app")
        any_store: Any = store
        forwarder = TargetForwarder(target("raw"), SOURCES, any_store, config, metrics, False)
        forwarder.start()
        try:
            async with asyncio.timeout(timeout):
                await store.enough.wait()
        finally:
            await forwarder.stop(0.1)
        return store.claimed_at

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(scenario())


def test_a_claim_that_keeps_failing_is_retried_with_a_growing_pause() -> None:
    at = claims_until_enough(CLAIMS, 10)[:CLAIMS]
    pauses = [later - earlier for earlier, later in itertools.pairwise(at)]
    # Back to back before (about 600 claims a second); now 50, 100, 200, 400 ms at
    # least (uvloop's timers may fire up to a millisecond early).
    assert all(p >= 0.025 * 2 ** (n + 1) - 0.002 for n, p in enumerate(pauses[: CLAIMS - 1]))


def test_a_claim_loop_outlives_a_thousand_failed_claims_in_a_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pause doubled without end: after 1,024 failures in a row (about 17
    minutes at 1 s each) 2.0**1024 raised OverflowError and the partition's claim
    loop ended for good, silently. The pauses are made 0 here, only to be quick."""
    monkeypatch.setattr(forwarder_module, "_IDLE_RETRY", 0.0)
    assert len(claims_until_enough(1100, 20)) > 1100
