"""The queue depth and oldest entry's age per target, for the dashboards and alerts.

One reading of every partition each `interval` seconds. A store outage skips the
reading: the gauges keep their last values rather than fall to a false 0 (the
store's own metrics say it is down).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gateway.errors import StoreUnavailable
from gateway.metrics import TargetMetrics
from gateway.store import DeliveryStore


async def watch_depth(
    store: DeliveryStore,
    target: str,
    metrics: TargetMetrics,
    interval: float,
    stopping: Callable[[], bool],
) -> None:
    """Until cancelled, or `stopping()` at its next turn (a cancellation can be
    absorbed inside a redis-py call: gateway.forwarder's stop)."""
    while not stopping():
        reading = await _read(store, target)
        if reading is not None:
            total, oldest = reading
            metrics.depth.set(total)
            age = 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)
            metrics.oldest_age.set(age)
        await asyncio.sleep(interval)


async def _read(store: DeliveryStore, target: str) -> tuple[int, int | None] | None:
    """(entries queued, the oldest one's enqueue time in ms), or None in an outage."""
    total, oldest = 0, None
    for partition in range(store.partitions):
        try:
            depth, first = await store.depth(partition, target)
        except StoreUnavailable:
            return None
        total += depth
        if first is not None and (oldest is None or first < oldest):
            oldest = first
    return total, oldest
