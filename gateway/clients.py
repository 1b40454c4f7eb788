"""Who is asking: the client IP behind trusted proxies, per-IP rate limits, allowlists.

Pure: addresses, header bytes and the clock in; decisions out.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_ip(peer: str, forwarded_for: bytes | None, trusted_hops: int) -> str:
    """The client's address: the socket peer, or the X-Forwarded-For entry
    `trusted_hops` from the right when that many proxies we trust appended it.

    Entries left of the trusted ones are written by the client itself and
    are ignored: spoofing them gains nothing.
    """
    if trusted_hops <= 0 or not forwarded_for:
        return peer
    hops = [h.strip() for h in forwarded_for.decode("latin-1").split(",") if h.strip()]
    if len(hops) < trusted_hops:
        return peer  # fewer entries than trusted proxies: something is off, use the socket
    candidate = hops[-trusted_hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return peer


class RateLimiter:
    """A token bucket per client IP: `rate` requests per second, bursts of `burst`.

    The table is bounded: past `max_clients` entries, buckets that are full
    again (idle clients) are dropped first, then everything (a flood of
    spoofed sources must not grow memory without bound).
    """

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # ip -> (tokens, at)

    def wait(self, ip: str, now: float) -> float:
        """0.0 if the request may pass (and takes a token), else the seconds until it may."""
        tokens, at = self._buckets.get(ip, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= self.max_clients and ip not in self._buckets:
                self._prune(now)
            self._buckets[ip] = (tokens - 1.0, now)
            return 0.0
        self._buckets[ip] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        refill = self.burst / self.rate
        idle = [ip for ip, (_, at) in self._buckets.items() if now - at >= refill]
        for ip in idle:
            del self._buckets[ip]
        if len(self._buckets) >= self.max_clients:
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_seconds(wait: float) -> str:
    """Retry-After takes whole seconds; never tell a client 0."""
    return str(max(1, math.ceil(wait)))


class AllowList:
    """CIDR allowlist; an empty list allows everyone."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self._networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]

    def __bool__(self) -> bool:
        return bool(self._networks)

    def allows(self, ip: str) -> bool:
        if not self._networks:
            return True
        try:
            address: IPAddress = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
        return any(address in network for network in self._networks)
