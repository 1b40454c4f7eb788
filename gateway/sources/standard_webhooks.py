"""Standard Webhooks (and Svix, where it comes from).

Headers `webhook-id`, `webhook-timestamp`, `webhook-signature` (or the same
with `svix-`); the signed bytes are `{id}.{timestamp}.{body}`; the signature
header holds space-separated `v1,<base64 HMAC-SHA256>` entries, several
during a secret rotation, and any one may match. Secrets are `whsec_` +
base64 of the key. The timestamp must be within the tolerance both ways, as
in the reference libraries. (standard-webhooks spec/standard-webhooks.md)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Final, NamedTuple

from gateway.errors import Rejection
from gateway.sources.base import (
    Claim,
    Headers,
    HmacSource,
    bad_signature,
    missing_signature,
    unbase64,
    unix_time,
)
from gateway.sources.fields import header


class _Family(NamedTuple):
    prefix: str
    id: bytes
    timestamp: bytes
    signature: bytes


_FAMILIES: Final = tuple(
    _Family(p, f"{p}id".encode(), f"{p}timestamp".encode(), f"{p}signature".encode())
    for p in ("webhook-", "svix-")
)


def signing_key(secret: bytes) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; like the reference libraries,
    the prefix and the base64 padding are optional."""
    text = secret.removeprefix(b"whsec_").rstrip(b"=")
    key = unbase64(text + b"=" * (-len(text) % 4))
    if not key:
        raise ValueError("not a Standard Webhooks secret (expected whsec_ followed by base64)")
    return key


class StandardWebhooks(HmacSource):
    __slots__ = ()

    header_aliases: ClassVar[Mapping[bytes, bytes]] = {b"webhook-id": b"svix-id"}

    def signing_key(self, secret: bytes) -> bytes:
        return signing_key(secret)

    def claim(self, headers: Headers) -> Claim | Rejection:
        family = next((f for f in _FAMILIES if header(headers, f.signature)), None)
        if family is None:
            return missing_signature("webhook-signature header")
        msg_id, stamp = header(headers, family.id), header(headers, family.timestamp)
        if not msg_id or not stamp:
            return missing_signature(f"{family.prefix}id or {family.prefix}timestamp header")
        timestamp = unix_time(stamp)
        if timestamp is None:
            return bad_signature(f"malformed {family.prefix}timestamp header")
        signatures = v1_signatures(header(headers, family.signature) or b"")
        if not signatures:
            return bad_signature(f"no v1 signature in the {family.prefix}signature header")
        return Claim(signatures, msg_id + b"." + stamp + b".", timestamp=timestamp)


def v1_signatures(value: bytes) -> tuple[bytes, ...]:
    """The decoded `v1` MACs; other versions (v1a: ed25519) are not ours to check."""
    found: list[bytes] = []
    for entry in value.split():
        version, comma, encoded = entry.partition(b",")
        mac = unbase64(encoded) if version == b"v1" and comma else None
        if mac:
            found.append(mac)
    return tuple(found)
