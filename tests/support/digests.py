"""Body digests as earlier versions wrote them into dedup markers, which outlive an
upgrade by the dedup TTL (gateway.models.body_digest is the current kind)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

Digest = Callable[[bytes], str]


def blake2b_kind(body: bytes) -> str:
    """Before 2026-12-07: 96 bits of BLAKE2b, untagged hex."""
    return hashlib.blake2b(body, digest_size=12).hexdigest()


def sha256_kind(body: bytes) -> str:
    """2026-12-07 to 2026-12-08: "s" and 96 bits of SHA-256."""
    return "s" + hashlib.sha256(body).hexdigest()[:24]


EARLIER_KINDS: list[Digest] = [blake2b_kind, sha256_kind]
