"""InboxComponents: a JSON body with `idempotency_key`, `event` and `data`.

The provider does not sign its requests; a shared token (header or path
segment) can be configured. With the default key and event fields the
envelope is decoded by a Struct that reads only those two fields (the fast
path, with the messages senders already know); `data` is what is delivered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec

from gateway.errors import Rejection
from gateway.sources.base import CloudEvent, Headers, Parsed, Source, rfc3339
from gateway.sources.fields import TOO_DEEP, FieldReader
from gateway.sources.shapes import Data, decode_data, decode_envelope
from gateway.sources.token_auth import TokenCheck

if TYPE_CHECKING:
    from gateway.config_sources import SourceConfig

TYPE_PREFIX: Final = "com.inboxcomponents."


_KEY: Final = FieldReader("body", "idempotency_key", "missing_key", 256)
_EVENT: Final = FieldReader("body", "event", "missing_event", 128)


def parse_envelope(body: bytes) -> Parsed:
    try:
        envelope = decode_envelope(body)
    except msgspec.ValidationError as exc:
        raise Rejection(f"invalid payload: {exc}") from None
    except msgspec.DecodeError as exc:
        raise Rejection(f"invalid JSON: {exc}", code="invalid_json") from None
    except RecursionError:  # msgspec's nesting limit, even in skipped fields
        raise Rejection(TOO_DEEP, code="invalid_json") from None
    key = _KEY.check(envelope.idempotency_key)
    return Parsed(_EVENT.check(envelope.event), key)


def _normalize(
    body: bytes, ce_source: str, type_prefix: str, stored: tuple[str, str] | None
) -> CloudEvent:
    """The `data` object as received, its date and conversation; `stored` is
    (key, event type), or None to take them from the envelope."""
    envelope = decode_envelope(body)
    key, event_type = stored or (envelope.idempotency_key or "", envelope.event or "")
    data = bytes(envelope.data)
    attrs = Data() if data[:1] != b"{" else decode_data(data)
    event = type_prefix + event_type
    return CloudEvent(key, event, ce_source, rfc3339(attrs.date), attrs.conversation_id, data)


class InboxComponentsSource(Source):
    __slots__ = ("_fast", "_token")

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        fields = (str(config.key), str(config.event_type))
        self._fast = fields == ("body:idempotency_key", "body:event")
        self._token = None if config.token is None else TokenCheck(config.token, config.secrets)
        self.checks_headers = self._token is not None

    def early_check(self, headers: Headers, now: float) -> Rejection | None:
        return None if self._token is None else self._token.check(headers)

    def authenticate(self, headers: Headers, body: bytes, now: float) -> None:
        rejection = self.early_check(headers, now)
        if rejection is not None:
            raise rejection

    def parse(self, headers: Headers, body: bytes, now: float) -> Parsed:
        if not self._fast:
            return super().parse(headers, body, now)
        if self._token is not None:
            self.authenticate(headers, body, now)
        return parse_envelope(body)

    def cloudevent(self, ce_source: str, body: bytes, event_type: str, key: str) -> CloudEvent:
        # With the default fields, id and type are the envelope's, as they always
        # were; for any body this source accepted they equal the stored ones.
        stored = None if self._fast else (key, event_type)
        return _normalize(body, ce_source, self.type_prefix, stored)
