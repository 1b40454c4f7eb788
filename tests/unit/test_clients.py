"""Client IP behind proxies, per-IP token buckets, allowlists."""

from __future__ import annotations

import pytest

from gateway.clients import AllowList, RateLimiter, client_ip, retry_after_seconds


@pytest.mark.parametrize(
    ("peer", "xff", "hops", "expected"),
    [
        ("10.0.0.9", None, 0, "10.0.0.9"),
        ("10.0.0.9", b"1.2.3.4", 0, "10.0.0.9"),  # no trusted proxy: the header is ignored
        ("10.0.0.9", b"1.2.3.4", 1, "1.2.3.4"),
        ("10.0.0.9", b"6.6.6.6, 1.2.3.4", 1, "1.2.3.4"),  # the spoofed left entry is ignored
        ("10.0.0.9", b"6.6.6.6, 1.2.3.4, 10.0.0.2", 2, "1.2.3.4"),
        ("10.0.0.9", b"1.2.3.4", 2, "10.0.0.9"),  # fewer entries than trusted hops
        ("10.0.0.9", b"not-an-ip", 1, "10.0.0.9"),
        ("10.0.0.9", b"2001:db8::1", 1, "2001:db8::1"),
    ],
)
def test_client_ip(peer: str, xff: bytes | None, hops: int, expected: str) -> None:
    assert client_ip(peer, xff, hops) == expected


def test_a_burst_passes_then_the_rate_applies_per_ip() -> None:
    limiter = RateLimiter(rate=10.0, burst=5)
    assert [limiter.wait("a", 0.0) for _ in range(5)] == [0.0] * 5
    assert limiter.wait("a", 0.0) == pytest.approx(0.1)
    assert limiter.wait("b", 0.0) == 0.0  # another client is unaffected
    assert limiter.wait("a", 0.1) == 0.0  # one token refilled after 1/rate s
    assert limiter.wait("a", 0.1) > 0.0


def test_the_bucket_table_stays_bounded_under_a_flood_of_sources() -> None:
    limiter = RateLimiter(rate=1.0, burst=2, max_clients=100)
    for i in range(10_000):
        limiter.wait(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", float(i) / 1000)
    assert len(limiter) <= 100


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [retry_after_seconds(w) for w in (0.01, 1.0, 1.2)] == ["1", "1", "2"]


def test_allowlist() -> None:
    allow = AllowList(["192.30.252.0/22", "2001:db8::/32"])
    assert allow.allows("192.30.253.7")
    assert allow.allows("::ffff:192.30.253.7")
    assert allow.allows("2001:db8::5")
    assert not allow.allows("8.8.8.8")
    assert not allow.allows("garbage")
    assert AllowList([]).allows("8.8.8.8")
