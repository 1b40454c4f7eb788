"""What every source shares: the result values, the Source and HmacSource
bases, the HMAC check and the rejections it produces. Pure: headers, bytes
and a clock in.

Headers arrive as the listener gives them: a list of (name, value) byte
pairs, names lower-cased, in arrival order; the first occurrence wins.
"""

from __future__ import annotations

import binascii
import hmac
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from hmac import compare_digest
from typing import TYPE_CHECKING, ClassVar, Final, NamedTuple

from gateway.errors import Rejection
from gateway.sources.fields import FieldReader, read_fields

if TYPE_CHECKING:
    from gateway.config_sources import SourceConfig

Headers = list[tuple[bytes, bytes]]

_UNIX_TIME: Final = re.compile(rb"[0-9]{1,12}")  # bounded: a huge digit run is not a time


class Parsed:
    """A request's event type and idempotency key, as its source read them.

    A plain class, as is Claim, not a frozen dataclass: compiled, mypyc builds this
    __init__ natively, while a dataclass's is generated Python, run interpreted for
    every request (1.8% of py-spy's samples of the compiled gateway). Final: mypy
    keeps them read-only."""

    __slots__ = ("event_type", "key")

    def __init__(self, event_type: str, key: str) -> None:
        self.event_type: Final = event_type
        self.key: Final = key


class CloudEvent(NamedTuple):
    """One queued event as CloudEvents attributes. A NamedTuple, not a frozen
    dataclass: the forwarder builds one per delivery (about 3x cheaper)."""

    id: str
    type: str
    source: str
    time: str | None
    subject: str | None
    data: bytes


class Claim:
    """What a request's headers claim: the MACs offered, the signed bytes
    around the body, and the signed timestamp if the scheme has one."""

    __slots__ = ("after", "before", "signatures", "timestamp")

    def __init__(
        self,
        signatures: tuple[bytes, ...],
        before: bytes = b"",
        after: bytes = b"",
        timestamp: int | None = None,
    ) -> None:
        self.signatures: Final = signatures
        self.before: Final = before
        self.after: Final = after
        self.timestamp: Final = timestamp


class Source:
    """A configured source: authenticates a request, then finds its key and type.

    `early_check` runs on the headers alone, before the body is read, so a
    request that cannot be authentic costs no body buffering; `parse` runs
    every check again (headers are small) and then verifies the raw body.
    `now` is wall-clock unix seconds (time.time()), read once per request.
    """

    __slots__ = ("_event", "_key", "checks_headers", "kind", "name", "type_prefix")

    # A header name -> the one read in its place when it is absent.
    header_aliases: ClassVar[Mapping[bytes, bytes]] = {}

    def __init__(self, config: SourceConfig) -> None:
        self.name = config.name
        self.kind = config.kind
        self.type_prefix = config.ce_type_prefix
        self._key = FieldReader.of(config.key, "missing_key", 256, self.header_aliases)
        self._event = FieldReader.of(config.event_type, "missing_event", 128, self.header_aliases)
        # Whether early_check can ever reject: when not, the listener skips the call.
        self.checks_headers = type(self).early_check is not Source.early_check

    def early_check(self, headers: Headers, now: float) -> Rejection | None:
        return None

    def parse(self, headers: Headers, body: bytes, now: float) -> Parsed:
        """The event type and key of an authentic request; raises Rejection."""
        self.authenticate(headers, body, now)
        key, event_type = read_fields(self._key, self._event, headers, body)
        return Parsed(event_type, key)

    def authenticate(self, headers: Headers, body: bytes, now: float) -> None:
        """Raises Rejection unless the request is authentic."""

    def cloudevent(self, ce_source: str, body: bytes, event_type: str, key: str) -> CloudEvent:
        """CloudEvents attributes of a body this source accepted (headers are not stored)."""
        event_time = self.time(body)
        return CloudEvent(key, self.type_prefix + event_type, ce_source, event_time, None, body)

    def time(self, body: bytes) -> str | None:
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} kind={self.kind}>"


class HmacSource(Source):
    """A source whose requests carry an HMAC of (some framing +) the raw body."""

    __slots__ = ("_digest", "_keys", "_timestamped", "_tolerance")

    def __init__(self, config: SourceConfig, digest: str = "sha256") -> None:
        super().__init__(config)
        self._digest = digest
        self._keys = tuple(self.signing_key(secret.reveal()) for secret in config.secrets)
        self._tolerance = config.tolerance
        self._timestamped = config.timestamped

    def signing_key(self, secret: bytes) -> bytes:
        return secret

    def claim(self, headers: Headers) -> Claim | Rejection:
        raise NotImplementedError

    def early_check(self, headers: Headers, now: float) -> Rejection | None:
        claim = self.claim(headers)
        if isinstance(claim, Rejection):
            return claim
        return self._stale(claim, now)

    def authenticate(self, headers: Headers, body: bytes, now: float) -> None:
        claim = self.claim(headers)
        if isinstance(claim, Rejection):
            raise claim
        stale = self._stale(claim, now)
        if stale is not None:
            raise stale
        if not verify(self._keys, self._digest, claim, body):
            raise Rejection("signature mismatch", status=401, code="bad_signature")

    def _stale(self, claim: Claim, now: float) -> Rejection | None:
        if not self._timestamped:
            return None
        if claim.timestamp is None or abs(now - claim.timestamp) > self._tolerance:
            return Rejection("timestamp outside the tolerance", code="stale_timestamp")
        return None


def verify(keys: tuple[bytes, ...], digest: str, claim: Claim, body: bytes) -> bool:
    """True if any key's MAC equals any offered signature (rotation on both sides).

    The body is fed to the MAC as received, never re-serialized; each
    comparison is constant-time, so a mismatch says nothing about where.
    """
    for key in keys:
        mac = hmac.new(key, claim.before, digest)
        mac.update(body)
        mac.update(claim.after)
        expected = mac.digest()
        for offered in claim.signatures:
            if compare_digest(expected, offered):
                return True
    return False


def unix_time(value: bytes) -> int | None:
    return int(value) if _UNIX_TIME.fullmatch(value) else None


def unhex(value: bytes) -> bytes | None:
    try:
        return binascii.unhexlify(value)
    except (binascii.Error, ValueError):
        return None


def unbase64(value: bytes) -> bytes | None:
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def missing_signature(what: str) -> Rejection:
    return Rejection(f"missing {what}", status=401, code="missing_signature")


def bad_signature(reason: str) -> Rejection:
    return Rejection(reason, status=401, code="bad_signature")


_YEAR_9999_END = 253402300799  # 9999-12-31T23:59:59Z


def rfc3339(value: int | float | str | None) -> str | None:
    """A provider timestamp (unix seconds) as RFC 3339 UTC; strings pass through."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, int):
        if value > _YEAR_9999_END:
            return None  # RFC 3339 has four-digit years (datetime refuses them too)
        # Whole seconds, the common case, a third of datetime's cost: the
        # forwarder renders one per delivery.
        try:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
        except (OverflowError, OSError, ValueError):
            return None
    try:
        moment = datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    if moment.microsecond:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
