"""Per-provider parsing and normalization: pure functions, no I/O.

A source turns a request's raw bytes into the event type and idempotency key
(or a Rejection naming the problem), and turns a stored body into the
CloudEvents attributes the forwarder sends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from gateway.errors import Rejection

# Both end up in HTTP headers (ce-id, ce-type) and Redis keys: visible ASCII
# only, bounded so that a hostile sender cannot bloat the dedup keyspace.
_KEY = re.compile(r"[\x21-\x7e]{1,256}")
_EVENT = re.compile(r"[\x21-\x7e]{1,128}")


@dataclass(frozen=True, slots=True)
class Parsed:
    event_type: str
    key: str


@dataclass(frozen=True, slots=True)
class CloudEvent:
    id: str
    type: str
    source: str
    time: str | None
    subject: str | None
    data: bytes


class _InboxEnvelope(msgspec.Struct):
    # Only the fields the gateway needs are decoded; `data` stays raw bytes
    # so it is forwarded exactly as received, never re-serialized.
    idempotency_key: str | None = None
    event: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"")


class _InboxData(msgspec.Struct):
    date: int | float | str | None = None
    conversation_id: str | None = None


_decode_envelope = msgspec.json.Decoder(_InboxEnvelope).decode
_decode_data = msgspec.json.Decoder(_InboxData).decode


class InboxComponents:
    """InboxComponents: JSON body with `idempotency_key`, `event`, `data`."""

    kind = "inboxcomponents"
    type_prefix = "com.inboxcomponents."

    def parse(self, body: bytes) -> Parsed:
        try:
            envelope = _decode_envelope(body)
        except msgspec.ValidationError as exc:
            raise Rejection(f"invalid payload: {exc}") from None
        except msgspec.DecodeError as exc:
            raise Rejection(f"invalid JSON: {exc}") from None
        key = _required(envelope.idempotency_key, "idempotency_key", _KEY, 256)
        event = _required(envelope.event, "event", _EVENT, 128)
        return Parsed(event, key)

    def cloudevent(self, ce_source: str, body: bytes) -> CloudEvent:
        """CloudEvents attributes for a body this source already accepted."""
        envelope = _decode_envelope(body)
        data = bytes(envelope.data)
        attrs = _InboxData() if data[:1] != b"{" else _decode_data(data)
        return CloudEvent(
            id=envelope.idempotency_key or "",
            type=self.type_prefix + (envelope.event or ""),
            source=ce_source,
            time=rfc3339(attrs.date),
            subject=attrs.conversation_id,
            data=data,
        )


def _required(value: str | None, field: str, pattern: re.Pattern[str], limit: int) -> str:
    if not value:
        raise Rejection(f"missing or empty {field}")
    if pattern.fullmatch(value) is None:
        raise Rejection(f"{field} must be 1-{limit} visible ASCII characters")
    return value


def rfc3339(value: int | float | str | None) -> str | None:
    """A provider timestamp (unix seconds) as RFC 3339 UTC; strings pass through."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value or None
    try:
        moment = datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    if moment.microsecond:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


SOURCE_KINDS = {InboxComponents.kind: InboxComponents}
