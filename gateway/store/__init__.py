"""The store contract (DESIGN.md §3) and its implementations."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from gateway.models import Admission, AdmitOutcome, Queued


class Store(Protocol):
    """What ingest needs from a store. The delivery half extends it."""

    partitions: int  # 1: every event is in partition 0, and `partition` is not asked

    def partition(self, dedup_key: str) -> int:
        """Which partition an event belongs to: one admit call per partition."""
        ...

    def admit(
        self, partition: int, batch: Sequence[Admission]
    ) -> Coroutine[Any, Any, list[AdmitOutcome]]:
        """Mark every event seen and enqueue it, atomically per event.

        A store may write its call at once, when admit() is called, and only
        wait for the reply in the coroutine (the Redis store does: the admit
        batcher calls it when a batch is full or the tick ends, so Redis works
        while the loop parses what comes next). The coroutine must be
        awaited. Raises StoreUnavailable when the store refused or could not be
        reached; then none of the batch may be answered 200.
        """
        ...

    async def ping(self) -> bool: ...

    async def durability_warnings(self) -> list[str]: ...

    async def close(self) -> None: ...


class DeliveryStore(Store, Protocol):
    """What the forwarder needs: the queue side of the contract (DESIGN.md §3)."""

    async def ensure_group(self, partition: int, target: str) -> None: ...

    async def claim(
        self, partition: int, target: str, consumer: str, count: int, block_ms: int
    ) -> list[Queued]: ...

    async def claim_own_pending(
        self, partition: int, target: str, consumer: str, count: int, after: bytes = b"0"
    ) -> list[Queued]: ...

    async def claim_orphans(
        self,
        partition: int,
        target: str,
        consumer: str,
        holds: Callable[[bytes], bool],
        scan: int,
        count: int,
    ) -> list[Queued]:
        """Up to `count` entries pending under `consumer` (of the first `scan`) that
        it does not hold, taken again: what a failed claim may have handed it (its
        reply lost) without its knowing; fewer only when no more are left. Their
        attempt stays what the lost claim counted: the retake is not another attempt."""
        ...

    async def claim_stale(
        self, partition: int, target: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Queued]: ...

    async def ack(self, partition: int, target: str, ids: Sequence[bytes]) -> None: ...

    async def retry_later(self, entry: Queued, target: str, delay: float) -> None:
        """Release the entry for `delay` seconds, its attempts so far made durable.
        The store keeps the due time (gateway/store/due_clock.py)."""
        ...

    async def dead_letter(
        self, entry: Queued, target: str, status: int, error: str, now_ms: int
    ) -> None: ...

    async def promote_due(self, partition: int, target: str) -> float | None:
        """Make the retries now due claimable; seconds until the next one falls due
        (0 or less when more were due than one call moves), or None when none waits."""
        ...

    async def depth(self, partition: int, target: str) -> tuple[int, int | None]: ...


def sqlite_path(url: str) -> str | None:
    """The file of a `sqlite:///path` store URL (relative to the working
    directory; `sqlite:////abs/path` for an absolute one), else None."""
    prefix = "sqlite:///"
    return url[len(prefix) :] if url.startswith(prefix) and len(url) > len(prefix) else None
