"""Values that cross module boundaries."""

from __future__ import annotations

import enum
import hashlib
from typing import NamedTuple

# The body's digest in a dedup marker: "s" and 96 bits of its SHA-256, in hex. SHA-256
# where it was BLAKE2b (24 hex digits, no "s"; 3.2% of the compiled gateway's ingest CPU,
# benchmarks/PROFILE.md): CPUs with SHA extensions hash it in hardware. On this project's
# machine, per body, BLAKE2b against this function: 2.64 against 2.27 µs for 1 KiB, 122.0
# against 50.3 µs for 64 KiB (`python -m benchmarks.digest_choice`). 96 bits: a key sent
# again with another body goes unnoticed only on a collision. The "s" tells the two
# kinds apart, see `conflicting`.
DIGEST_TAG = "s"


def body_digest(body: bytes) -> str:
    """A short fingerprint of a body, stored with its dedup marker."""
    return DIGEST_TAG + hashlib.sha256(body).digest()[:12].hex()


def conflicting(held: str, mine: str) -> bool:
    """Whether a marker's digest `held` says its body differs from the one digested as
    `mine`. Markers live for the dedup TTL across upgrades (and the spool moves them into
    Redis later), so `held` may be a BLAKE2b digest of an earlier version: digests of two
    kinds cannot be compared, and the key counts as a plain duplicate, as it would have
    been without the check. lua.ADMIT applies the same rule in Redis."""
    return held != mine and held.startswith(DIGEST_TAG) == mine.startswith(DIGEST_TAG)


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
