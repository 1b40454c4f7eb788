"""Values that cross module boundaries."""

from __future__ import annotations

import enum
from typing import NamedTuple

import xxhash

# The body's digest in a dedup marker: "x" and 96 bits of its XXH3-128, in hex. It only
# tells a key sent again with another body (a conflict: logged and counted, acked as a
# duplicate either way) from a plain duplicate, never guards anything an attacker could
# use, so a fast non-cryptographic hash suffices; 96 bits: a changed body goes unnoticed
# only on a collision. Per body on this project's machine (`python -m
# benchmarks.digest_choice`, 2026-12-08): 0.25 µs for 1 KiB and 1.60 µs for 64 KiB,
# where SHA-256 (tag "s", 2026-12-07 to 2026-12-08) took 1.31 and 44.4 µs even in the
# CPU's SHA extensions, BLAKE2b (untagged, before) 1.71 and 85.4. The gateway's CPU per
# 64 KiB request fell from 246-288 µs to 200-248 (benchmarks/cpu_split.sh with
# PAD=65536, 4 interleaved pairs).
DIGEST_TAG = "x"
_HEX = frozenset("0123456789abcdefABCDEF")  # what Lua's %x matches


def body_digest(body: bytes) -> str:
    """A short fingerprint of a body, stored with its dedup marker."""
    return DIGEST_TAG + xxhash.xxh3_128_hexdigest(body)[:24]


def digest_kind(digest: str) -> str:
    """Which hash made a digest: its tag (a letter no hex digit can be), "" untagged."""
    tag = digest[:1]
    return "" if tag in _HEX else tag


def conflicting(held: str, mine: str) -> bool:
    """Whether a marker's digest `held` says its body differs from the one digested as
    `mine`. Markers live for the dedup TTL across upgrades (and the spool moves them into
    Redis later), so `held` may be the digest of an earlier version's hash: digests of
    two kinds cannot be compared, and the key counts as a plain duplicate, as it would
    have been without the check. lua.ADMIT applies the same rule in Redis."""
    return held != mine and digest_kind(held) == digest_kind(mine)


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
