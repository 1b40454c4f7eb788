"""GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.

There is no timestamp, so no replay window: a captured delivery verifies
forever, and deduplication on X-GitHub-Delivery is what stops a replay. The
legacy SHA-1 `X-Hub-Signature` is deliberately not accepted.
"""

from __future__ import annotations

from gateway.errors import Rejection
from gateway.sources.base import Claim, Headers, HmacSource, bad_signature, missing_signature, unhex
from gateway.sources.fields import header


class GitHub(HmacSource):
    __slots__ = ()

    def claim(self, headers: Headers) -> Claim | Rejection:
        value = header(headers, b"x-hub-signature-256")
        if value is None:
            return missing_signature("X-Hub-Signature-256 header")
        mac = unhex(value[7:]) if value.startswith(b"sha256=") else None
        if not mac:
            return bad_signature("malformed X-Hub-Signature-256 header")
        return Claim((mac,))
