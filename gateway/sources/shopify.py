"""Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>`.

Base64, where GitHub, Stripe and Slack use hex. No timestamp. After a
client-secret rotation Shopify may sign with the old secret for up to an
hour, so configure both: any secret of the list verifies.
"""

from __future__ import annotations

from gateway.errors import Rejection
from gateway.sources.base import (
    Claim,
    Headers,
    HmacSource,
    bad_signature,
    missing_signature,
    unbase64,
)
from gateway.sources.fields import header


class Shopify(HmacSource):
    __slots__ = ()

    def claim(self, headers: Headers) -> Claim | Rejection:
        value = header(headers, b"x-shopify-hmac-sha256")
        if value is None:
            return missing_signature("X-Shopify-Hmac-Sha256 header")
        mac = unbase64(value.strip())
        if not mac:
            return bad_signature("malformed X-Shopify-Hmac-Sha256 header")
        return Claim((mac,))
