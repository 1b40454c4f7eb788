"""Pure delivery rules: formats on the wire, retry verdicts, backoff."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import Backoff, SourceConfig, TargetConfig
from gateway.formats import Renderer, UnknownSource, ce_header_value
from gateway.models import Queued
from gateway.policy import Verdict, backoff, judge, next_delay, retry_after
from tests.support.webhooks import seed

# CloudEvents HTTP binding §3.1.3.2: printable ASCII but '"' and '%' goes as is.
CE_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')

SOURCES = {
    "inbox": SourceConfig("inbox", "inboxcomponents", "/webhooks/inbox", "https://app.example")
}


def target(fmt: str, headers: tuple[tuple[str, str], ...] = ()) -> TargetConfig:
    return TargetConfig(
        name="app", url="http://127.0.0.1:3000/events?x=1", host="127.0.0.1", port=3000,
        path="/events?x=1", format=fmt, connect_timeout=1.0, timeout=10.0, concurrency=4,
        max_attempts=3, backoff=Backoff(1.0, 60.0), headers=headers,
    )  # fmt: skip


def queued(body: bytes, attempt: int = 1, source: str = "inbox") -> Queued:
    return Queued(0, b"1-0", source, "message.received", "the-key", body, attempt)


def data_bytes(body: bytes) -> bytes:
    """The `data` object's bytes as they stand in the payload (brace matching)."""
    start = body.index(b"{", body.index(b'"data"'))
    depth = 0
    for i in range(start, len(body)):
        depth += {ord("{"): 1, ord("}"): -1}.get(body[i], 0)
        if depth == 0:
            return body[start : i + 1]
    raise AssertionError("unbalanced")


def split(request: tuple[bytes, bytes]) -> tuple[list[str], dict[str, str], bytes]:
    head, body = request
    assert head.endswith(b"\r\n\r\n")
    lines = head[:-4].decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body)
    return lines, headers, body


def test_binary_cloudevent_has_the_exact_headers_and_the_data_bytes_as_received() -> None:
    body = seed("message.received")
    lines, headers, sent = split(
        Renderer(target("cloudevents-binary"), SOURCES).render(queued(body, 2))
    )
    assert lines[0] == "POST /events?x=1 HTTP/1.1"
    assert headers["Host"] == "127.0.0.1:3000"
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-id"] == "ae74038cfaa2ead7095ef0517ead67f58eeca1abeb8dc60fa7a39b3bdfb04793"
    assert headers["ce-type"] == "com.inboxcomponents.message.received"
    assert headers["ce-source"] == "https://app.example"
    assert headers["ce-time"] == "2025-04-01T13:14:05Z"
    assert headers["ce-subject"] == "0195f0b1-5f4c-7bbe-8826-de31472446d0"
    assert headers["ce-attempt"] == "2"
    assert headers["Content-Type"] == "application/json"
    assert sent == data_bytes(body)


def test_structured_cloudevent_embeds_the_data_unchanged() -> None:
    body = seed("message.sent")
    _, headers, sent = split(
        Renderer(target("cloudevents-structured"), SOURCES).render(queued(body))
    )
    assert headers["Content-Type"] == "application/cloudevents+json; charset=utf-8"
    assert data_bytes(sent) == data_bytes(body)  # spliced in, not re-serialized
    doc = json.loads(sent)
    assert doc["type"] == "com.inboxcomponents.message.sent"
    assert (doc["specversion"], doc["attempt"], doc["datacontenttype"]) == (
        "1.0",
        1,
        "application/json",
    )
    assert doc["data"] == json.loads(body)["data"]


def test_raw_format_is_the_original_body_with_key_event_and_attempt_headers() -> None:
    body = seed()
    extra = (("Authorization", "Bearer t"),)
    _, headers, sent = split(Renderer(target("raw", extra), SOURCES).render(queued(body, 3)))
    assert sent == body
    assert headers["Idempotency-Key"] == "the-key"
    assert headers["X-Webhook-Event"] == "message.received"
    assert headers["X-Webhook-Attempt"] == "3"
    assert headers["Authorization"] == "Bearer t"


def test_an_event_of_a_source_no_longer_configured_is_refused() -> None:
    with pytest.raises(UnknownSource):
        Renderer(target("cloudevents-binary"), SOURCES).render(queued(seed(), source="gone"))


def test_ce_header_values_are_percent_encoded_per_the_http_binding() -> None:
    assert ce_header_value('a b"c%dé') == b"a%20b%22c%25d%C3%A9"
    assert ce_header_value("com.x/y:z") == b"com.x/y:z"


@given(st.text(max_size=12))
def test_ce_header_values_fast_path_encodes_as_the_full_encoder(value: str) -> None:
    # Values with nothing to encode skip urllib's quote: the bytes must not change.
    assert ce_header_value(value) == quote(value, safe=CE_SAFE).encode("ascii")


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(200, Verdict.DELIVERED), (204, Verdict.DELIVERED), (0, Verdict.RETRY), (408, Verdict.RETRY),
     (429, Verdict.RETRY), (500, Verdict.RETRY), (503, Verdict.RETRY), (302, Verdict.RETRY),
     (400, Verdict.GIVE_UP), (404, Verdict.GIVE_UP), (410, Verdict.GIVE_UP)],
)  # fmt: skip
def test_judge(status: int, verdict: Verdict) -> None:
    assert judge(status) is verdict


def test_backoff_grows_exponentially_within_the_bounds_with_jitter() -> None:
    rng = random.Random(7)
    for attempt in range(1, 30):
        ceiling = min(60.0, 1.0 * 2 ** (attempt - 1))
        delays = [backoff(attempt, 1.0, 60.0, rng) for _ in range(200)]
        assert all(1.0 <= d <= ceiling for d in delays)
    assert len({round(backoff(6, 1.0, 60.0, rng), 6) for _ in range(50)}) > 40  # jittered
    assert backoff(1, 1.0, 60.0, rng) == 1.0


def test_retry_after_seconds_and_http_date() -> None:
    now = 1_700_000_000.0
    later = format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True).encode()
    assert retry_after(b"2", now) == 2.0
    assert retry_after(later, now) == pytest.approx(30.0)
    assert retry_after(b"soon", now) is None
    assert retry_after(None, now) is None


def test_a_longer_retry_after_wins_but_never_beyond_the_maximum() -> None:
    rng = random.Random(1)
    assert next_delay(1, 429, b"2", (0.1, 60.0), 0.0, rng) == 2.0
    assert next_delay(1, 503, b"9999", (0.1, 60.0), 0.0, rng) == 60.0
    assert next_delay(1, 500, b"2", (0.1, 60.0), 0.0, rng) == 0.1  # only 429/503 are honoured
