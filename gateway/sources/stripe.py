"""Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]` over `{t}.{body}`.

Several v1 entries appear while a secret rolls over; any may match. Other
schemes (v0) are ignored, as Stripe's libraries do. Stricter than those
libraries, which reject only timestamps that are too old: a timestamp
beyond the tolerance in the future is rejected too, since an honest sender's
clock is never that far ahead.
"""

from __future__ import annotations

import msgspec

from gateway.errors import Rejection
from gateway.sources.base import (
    Claim,
    Headers,
    HmacSource,
    bad_signature,
    missing_signature,
    rfc3339,
    unhex,
    unix_time,
)
from gateway.sources.fields import header
from gateway.sources.shapes import decode_stripe_event


class Stripe(HmacSource):
    __slots__ = ()

    def claim(self, headers: Headers) -> Claim | Rejection:
        value = header(headers, b"stripe-signature")
        if value is None:
            return missing_signature("Stripe-Signature header")
        stamp, signatures = _entries(value)
        timestamp = unix_time(stamp)
        if timestamp is None or not signatures:
            return bad_signature("malformed Stripe-Signature header (needs t= and v1=)")
        return Claim(signatures, stamp + b".", timestamp=timestamp)

    def time(self, body: bytes) -> str | None:
        try:
            return rfc3339(decode_stripe_event(body).created)
        except (msgspec.DecodeError, RecursionError):  # ValidationError included
            return None


def _entries(value: bytes) -> tuple[bytes, tuple[bytes, ...]]:
    """(the first t= value, the decoded v1= MACs)."""
    stamp: bytes | None = None
    signatures: list[bytes] = []
    for item in value.split(b","):
        name, _, field = item.strip().partition(b"=")
        if name == b"t" and stamp is None:
            stamp = field
        elif name == b"v1" and (mac := unhex(field)):
            signatures.append(mac)
    return stamp or b"", tuple(signatures)
