"""InboxComponents: key extraction and normalization, pure."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import load
from gateway.errors import Rejection
from gateway.sources import build_source, rfc3339
from gateway.sources.fields import FieldReader, visible
from tests.support.processes import ROOT
from tests.support.webhooks import seed

SOURCE = build_source(load(ROOT / "config" / "gateway.yaml", {}).source("inboxcomponents"))


def parse(body: bytes) -> object:
    return SOURCE.parse([], body, 0.0)


@pytest.mark.parametrize("name", ["message.received", "message.sent"])
def test_seed_payloads_yield_their_event_and_key(name: str) -> None:
    parsed = SOURCE.parse([], seed(name), 0.0)
    assert parsed.event_type == name
    assert parsed.key == "ae74038cfaa2ead7095ef0517ead67f58eeca1abeb8dc60fa7a39b3bdfb04793"


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"event": "message.sent"}, "missing or empty idempotency_key"),
        ({"event": "message.sent", "idempotency_key": ""}, "missing or empty idempotency_key"),
        ({"idempotency_key": "k"}, "missing or empty event"),
        ({"idempotency_key": "k", "event": None}, "missing or empty event"),
        ({"idempotency_key": "k y", "event": "e"}, "idempotency_key must be 1-256 visible ASCII"),
        ({"idempotency_key": "k" * 257, "event": "e"}, "idempotency_key must be 1-256 visible"),
        ({"idempotency_key": "k", "event": "é"}, "event must be 1-128 visible ASCII"),
        (
            {"idempotency_key": 12, "event": "e"},
            "invalid payload: Expected `str | null`, got `int`",
        ),
        ([1, 2], "invalid payload: Expected `object`, got `array`"),
    ],
)
def test_bad_events_are_rejected_with_the_reason(doc: object, reason: str) -> None:
    with pytest.raises(Rejection) as caught:
        parse(json.dumps(doc).encode())
    assert caught.value.status == 400
    assert reason in caught.value.reason


def test_invalid_json_is_rejected() -> None:
    with pytest.raises(Rejection, match="invalid JSON"):
        parse(b'{"event": ')


def test_unknown_fields_are_ignored() -> None:
    body = json.dumps({"idempotency_key": "k", "event": "e", "extra": {"deep": [1]}}).encode()
    assert SOURCE.parse([], body, 0.0).key == "k"


def test_normalization_takes_time_and_subject_from_data() -> None:
    event = SOURCE.cloudevent("https://src", seed("message.sent"), "message.sent", "k")
    assert event.type == "com.inboxcomponents.message.sent"
    assert (event.time, event.subject) == (
        "2025-04-01T13:14:05Z",
        "0195f0b1-5f4c-7bbe-8826-de31472446d0",
    )
    assert json.loads(event.data) == json.loads(seed("message.sent"))["data"]


def test_normalization_without_data_has_no_time_subject_or_body() -> None:
    event = SOURCE.cloudevent("https://src", b'{"idempotency_key":"k","event":"e"}', "e", "k")
    assert (event.time, event.subject, event.data) == (None, None, b"")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1743513245, "2025-04-01T13:14:05Z"),
        (1743513245.25, "2025-04-01T13:14:05.250Z"),
        ("2025-04-01T13:14:05Z", "2025-04-01T13:14:05Z"),
        (None, None),
        (True, None),
        (10**20, None),
        (253402300799, "9999-12-31T23:59:59Z"),
        (253402300800, None),  # year 10000: not RFC 3339
        (253402300800.5, None),
        (-1, "1969-12-31T23:59:59Z"),
        (0, "1970-01-01T00:00:00Z"),
    ],
)
def test_rfc3339(value: object, expected: str | None) -> None:
    assert rfc3339(value) == expected  # type: ignore[arg-type]


@given(st.text(alphabet=st.characters(max_codepoint=0x2FFF), max_size=8))
def test_visible_is_exactly_visible_ascii(value: str) -> None:
    expected = re.fullmatch(r"[\x21-\x7e]+", value) is not None
    assert visible(value) == expected
    reader = FieldReader("body", "k", "missing_key", 256)
    if expected:
        assert reader.check(value) == value  # the inlined fast path agrees
    else:
        with pytest.raises(Rejection):
            reader.check(value)


def test_visible_excludes_every_control_space_and_non_ascii_character() -> None:
    for code in [*range(0x00, 0x21), 0x7F, 0x80, 0xA0, 0xE9, 0x2028]:
        assert not visible(f"a{chr(code)}b"), hex(code)
    assert visible("".join(chr(c) for c in range(0x21, 0x7F)))
