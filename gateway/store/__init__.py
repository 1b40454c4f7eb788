"""The store contract (DESIGN.md §3) and its implementations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.models import Admission, AdmitOutcome


class Store(Protocol):
    """What ingest needs from a store. The delivery half extends it."""

    def partition(self, dedup_key: str) -> int:
        """Which partition an event belongs to: one admit call per partition."""
        ...

    async def admit(self, partition: int, batch: Sequence[Admission]) -> list[AdmitOutcome]:
        """Mark every event seen and enqueue it, atomically per event.

        Raises StoreUnavailable when the store refused or could not be reached;
        then none of the batch may be answered 200.
        """
        ...

    async def ping(self) -> bool: ...

    async def durability_warnings(self) -> list[str]: ...

    async def close(self) -> None: ...
