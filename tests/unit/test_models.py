"""The body digest kept in a dedup marker, and when two digests mean two bodies."""

from __future__ import annotations

import hashlib

from gateway.models import body_digest, conflicting

OLD_KIND = hashlib.blake2b(b"one", digest_size=12).hexdigest()  # before 2026-12-07


def test_a_digest_is_tagged_96_bits_of_sha256() -> None:
    digest = body_digest(b"one")
    assert digest == "s" + hashlib.sha256(b"one").hexdigest()[:24]
    assert body_digest(b"one") == digest != body_digest(b"two")


def test_digests_of_one_kind_conflict_when_they_differ() -> None:
    assert not conflicting(body_digest(b"one"), body_digest(b"one"))
    assert conflicting(body_digest(b"one"), body_digest(b"two"))
    assert conflicting(OLD_KIND, hashlib.blake2b(b"two", digest_size=12).hexdigest())


def test_digests_of_two_kinds_are_not_compared() -> None:
    assert not conflicting(OLD_KIND, body_digest(b"two"))
    assert not conflicting(body_digest(b"two"), OLD_KIND)
