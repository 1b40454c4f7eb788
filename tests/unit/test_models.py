"""The body digest kept in a dedup marker, and when two digests mean two bodies."""

from __future__ import annotations

import pytest
import xxhash

from gateway.models import body_digest, conflicting, digest_kind
from tests.support.digests import EARLIER_KINDS, Digest, blake2b_kind, sha256_kind


def test_a_digest_is_tagged_96_bits_of_xxh3_128() -> None:
    digest = body_digest(b"one")
    assert digest == "x" + xxhash.xxh3_128_hexdigest(b"one")[:24]
    assert body_digest(b"one") == digest != body_digest(b"two")


def test_a_digest_kind_is_its_tag_or_none_for_hex() -> None:
    digests = ("x01", "s01", "0a1", "fa1", "Fa1", "")
    assert [digest_kind(d) for d in digests] == ["x", "s", "", "", "", ""]


@pytest.mark.parametrize("kind", [body_digest, *EARLIER_KINDS])
def test_digests_of_one_kind_conflict_when_they_differ(kind: Digest) -> None:
    assert not conflicting(kind(b"one"), kind(b"one"))
    assert conflicting(kind(b"one"), kind(b"two"))


@pytest.mark.parametrize("earlier", EARLIER_KINDS)
def test_digests_of_two_kinds_are_not_compared(earlier: Digest) -> None:
    assert not conflicting(earlier(b"one"), body_digest(b"two"))
    assert not conflicting(body_digest(b"two"), earlier(b"one"))


def test_the_two_earlier_kinds_are_not_compared_either() -> None:
    assert not conflicting(blake2b_kind(b"one"), sha256_kind(b"two"))
    assert not conflicting(sha256_kind(b"two"), blake2b_kind(b"one"))
