"""gateway/store/redis_shapes.py: a claimed entry read from its flat field list."""

from __future__ import annotations

import pytest

from gateway.models import AdmitOutcome, Queued
from gateway.store import redis_shapes
from gateway.store.redis_shapes import first_claim, pairs, queued

FRESH = [b"source", b"inbox", b"type", b"message.received", b"key", b"k1", b"body", b"{}"]


def test_an_entry_the_admit_script_wrote_is_read_by_position_as_by_name() -> None:
    read = first_claim(2, b"1-1", FRESH)
    assert read == queued(2, b"1-1", pairs(FRESH), 1)
    assert read == Queued(2, b"1-1", "inbox", "message.received", "k1", b"{}", 1)


def test_a_retried_entry_counts_its_earlier_attempts() -> None:
    retried = [*FRESH, b"attempts", b"3", b"since", b"1700000000000"]
    assert first_claim(0, b"2-1", retried).attempt == 4


def test_fields_in_another_order_are_read_by_name() -> None:
    shuffled = [b"key", b"k1", b"body", b"{}", b"source", b"inbox", b"type", b"message.received"]
    assert first_claim(0, b"3-1", shuffled) == queued(0, b"3-1", pairs(FRESH), 1)


def test_outcomes_name_each_flag_of_the_admit_script() -> None:
    assert redis_shapes.outcomes([1, 0, 2]) == [
        AdmitOutcome.ACCEPTED,
        AdmitOutcome.DUPLICATE,
        AdmitOutcome.CONFLICT,
    ]
    with pytest.raises(KeyError):  # a flag the script never returns: no guessing
        redis_shapes.outcomes([1, 3])
