"""Values that cross module boundaries."""

from __future__ import annotations

import enum
import hashlib
from typing import NamedTuple


def body_digest(body: bytes) -> str:
    """A short fingerprint of a body, stored with its dedup marker."""
    return hashlib.blake2b(body, digest_size=12).hexdigest()


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
    digest: str  # of the body: the same key with another body is a conflict
    targets: tuple[str, ...]  # empty: unrouted and dropped (still marked seen)


def marker_value(a: Admission) -> str:
    """What an event's dedup marker holds, in every store: its request's token
    (found again, the call was re-sent: the event is ours) and its body's digest
    (the same key with another body is a conflict). resp.AdmitPacker inlines it."""
    return f"{a.token}|{a.digest}"


class AdmitOutcome(enum.IntEnum):
    DUPLICATE = 0
    ACCEPTED = 1
    CONFLICT = 2  # a duplicate key whose body differs from the first one's


class Queued(NamedTuple):
    """An event claimed from a target's queue, about to be delivered."""

    partition: int
    id: bytes  # the stream entry id
    source: str
    event_type: str
    key: str
    body: bytes
    attempt: int  # the number of the attempt about to be made, counted durably
