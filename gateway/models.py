"""Values that cross module boundaries."""

from __future__ import annotations

import enum
from typing import NamedTuple


class Admission(NamedTuple):
    """One event to mark seen and enqueue, for every target it routes to.

    A NamedTuple, not a dataclass: one is built per request on the hot path.
    """

    dedup_key: str  # "<source>:<event type>:<idempotency key>"
    token: str  # unique per request: finding it again means "this was mine"
    source: str
    event_type: str
    key: str
    body: bytes  # the provider's body, byte for byte
    targets: tuple[str, ...]  # empty: unrouted and dropped (still marked seen)


class AdmitOutcome(enum.IntEnum):
    DUPLICATE = 0
    ACCEPTED = 1


class Queued(NamedTuple):
    """An event claimed from a target's queue, about to be delivered."""

    partition: int
    id: bytes  # the stream entry id
    source: str
    event_type: str
    key: str
    body: bytes
    attempt: int  # the number of the attempt about to be made, counted durably
